"""Answer extraction, normalisation and grading, shared by every task.

Solutions follow the MATH convention: the final answer stands in the last ``\\boxed{...}``. One
grader serves the synthetic task and MATH-format data: a fast exact path for plain numbers and
identical strings, and math-verify (the grader the field uses) for everything else, so that
``\\frac{1}{2}`` equals ``0.5``.
"""

from __future__ import annotations

import re
import threading
from fractions import Fraction

STEP_SEPARATOR = "\n\n"
"""Solution steps are separated by a blank line, as in the paper."""

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")


def split_steps(solution: str) -> list[str]:
    """Split a solution into its steps (separated by ``STEP_SEPARATOR``), dropping blank ones.

    Steps are kept verbatim, whitespace included: a prefix rebuilt from them
    (``PromptConfig.with_steps``) is exactly the text the proposer generated, so rollouts,
    search and PRM scoring continue from what the model saw rather than a normalised copy of it.
    """
    return [step for step in solution.split(STEP_SEPARATOR) if step.strip()]


def extract_boxed(text: str) -> str | None:
    """Return the content of the last ``\\boxed{...}`` in ``text`` (braces balanced), or None."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    for start in reversed(starts):
        depth = 1
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    return text[start:i].strip()
    return None


_STRIP = (
    ("\\left", ""),
    ("\\right", ""),
    ("\\!", ""),
    ("\\,", ""),
    ("\\;", ""),
    ("\\dfrac", "\\frac"),
    ("\\tfrac", "\\frac"),
    ("$", ""),
    (" ", ""),
)


def normalize_answer(answer: str | None) -> str | None:
    """Canonical string form of an answer, used to group equal answers (best-of-N, voting).

    Plain numbers become their exact rational value written canonically (``"3.0"`` and ``"3"``
    both become ``"3"``; ``"0.5"`` becomes ``"1/2"``); other answers lose spacing and LaTeX sizing
    commands. Grouping by this string never merges different answers; it may keep apart two
    answers that math-verify would call equal, which costs best-of-N weighted a little, never
    correctness.
    """
    if answer is None:
        return None
    text = answer.strip()
    for old, new in _STRIP:
        text = text.replace(old, new)
    text = text.rstrip(".")
    if text.startswith("\\text{") and text.endswith("}"):
        text = text[len("\\text{") : -1]
    number = _as_number(text)
    if number is not None:
        return str(number)
    return text or None


def _as_number(text: str) -> Fraction | None:
    cleaned = text.replace(",", "") if re.fullmatch(r"[-+]?\d{1,3}(,\d{3})+(\.\d+)?", text) else text
    if _NUMBER.fullmatch(cleaned):
        return Fraction(cleaned)
    return None


_MATH_VERIFY_LOCK = threading.Lock()


def answers_match(predicted: str | None, gold: str) -> bool:
    """True when the predicted answer equals the gold answer.

    Both are answer strings (what stands inside ``\\boxed{}``). Plain numbers compare exactly;
    anything else goes to math-verify, which compares symbolically.
    """
    if predicted is None:
        return False
    pred_norm, gold_norm = normalize_answer(predicted), normalize_answer(gold)
    if pred_norm is None or gold_norm is None:
        return False
    if pred_norm == gold_norm:
        return True
    if _as_number(pred_norm) is not None and _as_number(gold_norm) is not None:
        return False
    return _math_verify(predicted, gold)


def _math_verify(predicted: str, gold: str) -> bool:
    from math_verify import parse, verify

    # math-verify bounds its sympy work with SIGALRM, which exists only in the main thread; a
    # server thread grades without the time limit instead of failing.
    in_main = threading.current_thread() is threading.main_thread()
    timeout = 5 if in_main else None
    with _MATH_VERIFY_LOCK:
        gold_parsed = parse(f"${gold}$", parsing_timeout=timeout)
        pred_parsed = parse(f"${predicted}$", parsing_timeout=timeout)
        if not gold_parsed or not pred_parsed:
            return False
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))
