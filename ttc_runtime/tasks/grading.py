"""Answer extraction, normalisation, grading and grouping, shared by every task.

Solutions follow the MATH convention: the final answer stands in the last ``\\boxed{...}``. One
grader serves the synthetic task and MATH-format data. Answers are first brought to a canonical
string (``normalize_answer``): plain numbers to their exact value, LaTeX spelling variants to one
form. Equal canonical strings are equal answers; two different plain numbers are different answers;
collections of different shapes (a set, a tuple or interval, a bare list) are different answers;
everything else goes to math-verify (the grader the field uses), so that ``\\sqrt{4}`` equals ``2``.

``group_answers`` applies the same equality to a question's candidate answers, so that voting and
weighted best-of-N count ``\\frac12``, ``0.5`` and ``\\dfrac{1}{2}`` as one answer.
"""

from __future__ import annotations

import cmath
import functools
import re
import threading
from collections.abc import Sequence
from fractions import Fraction

STEP_SEPARATOR = "\n\n"
"""Solution steps are separated by a blank line, as in the paper."""

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


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


_CONTROL = re.compile(r"\\(?:[A-Za-z]+|.)|\{,\}|~|°", re.S)
"""A control sequence (``\\frac``, ``\\,``, ``\\\\``), or a spelling ``_rewrite_control`` handles
that is not one. Matching whole control sequences keeps ``\\rightarrow`` from losing its
``\\right`` and a row break ``\\\\`` from reading as a spacing command."""

_DROPPED = frozenset(
    ("\\left", "\\right", "\\big", "\\Big", "\\bigl", "\\bigr", "\\Bigl", "\\Bigr", "\\displaystyle", "\\textstyle")
    + ("\\!", "\\,", "\\$", "\\degree", "°")
)
"""Removed outright: sizing and style commands, the dollar sign, degree signs, and the thin spaces
that group digits (``1,\\!000``, ``1\\,000``)."""

_BLANK = frozenset(("\\;", "\\:", "\\ ", "~", "\\quad", "\\qquad"))
_RENAMED = {"\\dfrac": "\\frac", "\\tfrac": "\\frac", "{,}": ","}
_DEGREES = re.compile(r"(?<!\\)\^\s*(?:\{\s*\\circ\s*\}|\\circ(?![A-Za-z]))")
_THOUSANDS = re.compile(r"(?<![\d.,])\d{1,3}(?:,\d{3})+(?!\d|,\d)")
"""A number with thousands separators: 1 to 3 digits, then groups of exactly 3 after commas with no
space (``1,000``, ``12,345,678``; MATH's ``1,\\!000`` and ``10{,}000`` reach this form first).
``376, 625`` (a space) and ``1,00`` (not a group of 3) are lists, and so is anything that goes on
with another comma and a digit (``1,000,2``), where the reading is ambiguous."""
_SPACES = re.compile(r"\s+")
_LOOSE_SPACE = re.compile(r"(?<![A-Za-z\\]) | (?![A-Za-z])")
"""A blank that is not needed: only one between letters (``\\pi r``, ``x y``) or after a row break
``\\\\`` separates tokens."""
_WRAPPER = re.compile(r"\\(?:text|textbf|textit|textrm|textnormal|mathrm|mathbf|mathit|mbox|boxed)\{")
_ARGUMENT_COMMANDS = re.compile(r"\\(?:frac|sqrt)(?![A-Za-z])|[\^_]|\\(?:[A-Za-z]+|.)", re.S)
_DECIMAL = r"(?:\d+(?:\.\d*)?|\.\d+)"
_RATIONAL = re.compile(
    rf"([-+]?)(?:({_DECIMAL})|\\frac\{{([-+]?{_DECIMAL})\}}\{{([-+]?{_DECIMAL})\}}|({_DECIMAL})/({_DECIMAL}))"
)
_PLAIN = re.compile(r"-?\d+(?:/\d+)?")
"""The canonical form of a plain number (``str`` of a ``Fraction``)."""


def normalize_answer(answer: str | None) -> str | None:
    """Canonical string form of an answer; None for no answer or an empty one.

    Equal canonical forms are equal answers, so grouping by this string never merges different
    answers, and the form is still LaTeX that math-verify reads as the original. The canonical form
    of a canonical form (of well-formed LaTeX) is itself.

    - A plain number (integer, decimal, ``a/b``, ``\\frac{a}{b}``, thousands separators) becomes
      its exact value: ``"0.5"``, ``"\\frac12"`` and ``"\\dfrac{1}{2}"`` all become ``"1/2"``.
    - Spelling goes: math delimiters, ``\\left``/``\\right``, spacing commands, ``\\dfrac`` and
      ``\\tfrac``, ``\\$``, degree signs, a trailing period or percent sign, blanks not needed
      between tokens, and outer braces or ``\\text{}`` around the whole answer.
    - Shorthand is spelled one way: ``\\frac12`` is ``\\frac{1}{2}``, ``\\sqrt2`` is
      ``\\sqrt{2}``, ``x^{2}`` is ``x^2`` (a one-character exponent or subscript loses its braces).
    - A list keeps its commas, each followed by one blank: ``"376, 625"`` stays a list (math-verify
      reads ``376,625`` without the blank as a number), and only an unambiguous thousands
      separator (``1,000``, no blank) is read as one.
    """
    if answer is None:
        return None
    return _canonical(answer)


@functools.lru_cache(maxsize=1 << 16)
def _canonical(answer: str) -> str | None:
    """``normalize_answer``'s work, cached: a pool meets the same few strings in sample after sample."""
    text = _CONTROL.sub(_rewrite_control, answer).replace("$", "")
    text = _DEGREES.sub("", text)
    text = _strip_trailing(text)
    text = _THOUSANDS.sub(lambda m: m.group().replace(",", ""), text)
    text = _LOOSE_SPACE.sub("", _SPACES.sub(" ", text).strip())
    text = _unwrap(_tidy_arguments(text)).replace(",", ", ")
    number = _rational(text)
    if number is not None:
        return str(number)
    return text or None


def _rewrite_control(match: re.Match[str]) -> str:
    """A control sequence removed, made a blank, renamed, or kept (see ``_DROPPED``)."""
    token = match.group()
    if token in _DROPPED:
        return ""
    if token in _BLANK:
        return " "
    return _RENAMED.get(token, token)


def _strip_trailing(text: str) -> str:
    """Without the sentence's final period and a percent sign (MATH gives percentages as numbers)."""
    while True:
        stripped = text.strip().rstrip(".")
        stripped = stripped.removesuffix("\\%").removesuffix("%")
        if stripped == text:
            return text
        text = stripped


def _closing(text: str, start: int) -> int | None:
    """Index of the brace closing the one at ``start``; escaped braces ``\\{`` ``\\}`` don't count."""
    depth, i = 0, start
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _argument(text: str, start: int) -> tuple[str, int] | None:
    """The argument of a command that ends at ``start``: a braced group (its content), a control
    word, or a single character, after at most one blank; and the index after it."""
    if start < len(text) and text[start] == " ":
        start += 1
    if start >= len(text) or text[start] in "}^_":
        return None
    if text[start] == "{":
        end = _closing(text, start)
        return None if end is None else (text[start + 1 : end], end + 1)
    if text[start] == "\\":
        word = re.match(r"\\(?:[A-Za-z]+|.)", text[start:], re.S)
        return None if word is None else (word.group(), start + word.end())
    return text[start], start + 1


def _tidy_arguments(text: str) -> str:
    """``\\frac`` and ``\\sqrt`` with braced arguments; ``^`` and ``_`` with braces only around
    an argument longer than one character."""
    out, i = [], 0
    while True:
        match = _ARGUMENT_COMMANDS.search(text, i)
        if match is None:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i : match.start()])
        token, i = match.group(), match.end()
        if token == "\\frac":
            first = _argument(text, i)
            second = first and _argument(text, first[1])
            if second:
                out.append(f"\\frac{{{_tidy_arguments(first[0])}}}{{{_tidy_arguments(second[0])}}}")
                i = second[1]
                continue
        elif token == "\\sqrt":
            if text.startswith("[", i) and "]" in text[i:]:
                end = text.index("]", i) + 1
                token, i = token + text[i:end], end
            argument = _argument(text, i)
            if argument:
                out.append(f"{token}{{{_tidy_arguments(argument[0])}}}")
                i = argument[1]
                continue
        elif token in "^_":
            argument = _argument(text, i)
            if argument:
                inner = _tidy_arguments(argument[0])
                out.append(f"{token}{inner}" if len(inner) == 1 else f"{token}{{{inner}}}")
                i = argument[1]
                continue
        out.append(token)


def _unwrap(text: str) -> str:
    """Without braces or a ``\\text{}`` (and its kin) around the whole answer, nor a final period
    or percent sign inside them."""
    while True:
        if text.startswith("{") and _closing(text, 0) == len(text) - 1:
            text = _strip_trailing(text[1:-1])
            continue
        wrapper = _WRAPPER.match(text)
        if wrapper and _closing(text, wrapper.end() - 1) == len(text) - 1:
            text = _strip_trailing(text[wrapper.end() : -1])
            continue
        return text


def _rational(text: str) -> Fraction | None:
    """The exact value of a plain number, a quotient of two or a ``\\frac`` of two; None otherwise."""
    match = _RATIONAL.fullmatch(text)
    if match is None:
        return None
    sign, whole, numerator, denominator, top, bottom = match.groups()
    try:
        if whole is not None:
            value = Fraction(whole)
        else:
            numerator, denominator = (numerator, denominator) if numerator is not None else (top, bottom)
            if Fraction(denominator) == 0:
                return None
            value = Fraction(numerator) / Fraction(denominator)
    except ValueError:  # more digits than Python converts to an integer
        return None
    return -value if sign == "-" else value


def _is_plain(canonical: str) -> bool:
    return _PLAIN.fullmatch(canonical) is not None


def _shape(canonical: str) -> str | None:
    """The kind of collection an answer is: "set" (``\\{a, b\\}``), "tuple" (``(a, b)``, also an
    interval such as ``[a, b)``), "list" (``a, b`` with no brackets around), or None (anything
    else, a one-element set or tuple included)."""
    depth, first_close, top_comma, inner_comma, i = 0, None, False, False, 0
    while i < len(canonical):
        token = canonical[i : i + 2] if canonical[i] == "\\" else canonical[i]
        if token in ("(", "[", "{", "\\{"):
            depth += 1
        elif token in (")", "]", "}", "\\}"):
            depth -= 1
            if depth == 0 and first_close is None:
                first_close = i + len(token)
        elif token == ",":
            top_comma = top_comma or depth == 0
            inner_comma = inner_comma or depth == 1
        i += len(token)
    if first_close == len(canonical) and inner_comma:
        if canonical.startswith("\\{"):
            return "set"
        if canonical[0] in "([" and canonical[-1] in ")]":
            return "tuple"
    return "list" if top_comma else None


def _surely_different(a: str, b: str) -> bool:
    """True for two different canonical forms that are different answers without asking math-verify:
    two plain numbers (exact values differ), or collections of different shapes (a set or list
    of values is not an ordered tuple or an interval), where math-verify would compare ``(1, 2)``
    with ``2, 1`` or ``\\{1, 2\\}`` as if both were sets."""
    if _is_plain(a) and _is_plain(b):
        return True
    shapes = {_shape(a), _shape(b)}
    return None not in shapes and len(shapes) == 2 and shapes != {"set", "list"}


_MATH_VERIFY_LOCK = threading.Lock()


def answers_match(predicted: str | None, gold: str) -> bool:
    """True when the predicted answer equals the gold answer.

    Both are answer strings (what stands inside ``\\boxed{}``), compared by their canonical forms:
    equal forms match; two plain numbers compare exactly; collections of different shapes differ,
    and so do answers of different kinds (a number, an expression with variables, a collection of
    several elements) and numbers of clearly different values. Anything else goes to math-verify
    (gold first, as it expects), which compares symbolically.
    """
    if predicted is None:
        return False
    pred_norm, gold_norm = normalize_answer(predicted), normalize_answer(gold)
    if pred_norm is None or gold_norm is None:
        return False
    if pred_norm == gold_norm:
        return True
    return _matches(gold_norm, pred_norm)


def group_answers(answers: Sequence[str | None]) -> list[str | None]:
    """Each answer replaced by the representative of its group of equal answers; None stays None.

    A group's representative is its first answer (as given), so selecting among the returned
    strings picks one of the candidates' own answers. Two answers are put together when their
    canonical forms are equal, or when math-verify calls them equal both ways round (its verdict
    is not symmetric: ``2x+z=1`` as a prediction matches a gold ``1``, not the reverse). Each new
    answer is compared with the first answer of each group, oldest first.

    The cost is kept to what real pools need: canonical forms are grouped as strings; two plain
    numbers are never sent to math-verify (their canonical forms decide), so integer answers need
    no math-verify call at all; answers that ``answers_match`` tells apart without math-verify
    (different shapes or kinds, clearly different values) are not sent either; each distinct
    string is parsed once and each verdict computed once (both cached across calls, so a
    question's later groupings find them). Call it once per question on all of its candidates,
    not on every resampled subset.
    """
    groups = _Groups()
    representative: dict[str, str | None] = {}
    grouped: list[str | None] = []
    for answer in answers:
        if answer is not None and answer not in representative:
            representative[answer] = groups.join(answer)
        grouped.append(None if answer is None else representative[answer])
    return grouped


class _Groups:
    """The groups of one call of ``group_answers``."""

    def __init__(self) -> None:
        self.by_canonical: dict[str, str] = {}
        self.heads: list[tuple[str, str]] = []
        """The canonical form and representative of each group's first answer, oldest first."""
        self.unplain: list[tuple[str, str]] = []
        """The heads that are not plain numbers: the only ones a plain number can join."""

    def join(self, answer: str) -> str | None:
        """The representative of the group ``answer`` belongs to, opening a new one if need be."""
        canonical = normalize_answer(answer)
        if canonical is None:
            return None
        if canonical not in self.by_canonical:
            plain = _is_plain(canonical)
            for head, representative in self.unplain if plain else self.heads:
                if _same_answer(canonical, head):
                    break
            else:
                representative = answer
                self.heads.append((canonical, answer))
                if not plain:
                    self.unplain.append((canonical, answer))
            self.by_canonical[canonical] = representative
        return self.by_canonical[canonical]


def _same_answer(a: str, b: str) -> bool:
    """Whether two different canonical forms are equal answers (see ``group_answers``)."""
    return _matches(a, b) and _verifies(b, a)


def _matches(gold: str, predicted: str) -> bool:
    """Whether a prediction equals a gold answer, their canonical forms being different: math-verify's
    verdict, unless the forms or their values already tell them apart."""
    if _surely_different(gold, predicted) or not _may_be_equal(_value(gold), _value(predicted)):
        return False
    return _verifies(gold, predicted)


def _may_be_equal(a: tuple[str, complex] | None, b: tuple[str, complex] | None) -> bool:
    """False when math-verify cannot call the two equal: two numbers whose values differ by more
    than its rounding (6 decimals) allows, or answers of different kinds among a number, an
    expression with variables and a collection of several elements (math-verify compares a single
    value with a collection as a one-element set)."""
    if a is None or b is None:
        return True
    if a[0] == "number" and b[0] == "number":
        return abs(a[1] - b[1]) <= 2e-6 * max(1.0, abs(a[1]), abs(b[1]))
    return a[0] == b[0]


@functools.lru_cache(maxsize=1 << 14)
def _value(canonical: str) -> tuple[str, complex] | None:
    """("number", value) for an answer that is a number, ("variables", 0) for an expression with
    variables, ("collection", 0) for a set, tuple, interval or list of several elements (see
    ``_shape``), None for anything else (equations, matrices, text) or what fails to evaluate."""
    if _is_plain(canonical):
        try:
            return "number", complex(Fraction(canonical))
        except OverflowError:
            return None
    if _shape(canonical) is not None:
        return "collection", 0j
    from sympy import Expr

    parsed = _parsed(canonical)
    if not parsed or not isinstance(parsed[0], Expr):
        return None
    with _MATH_VERIFY_LOCK:
        try:
            if parsed[0].free_symbols:
                return "variables", 0j
            value = complex(parsed[0].evalf())
        except Exception:  # sympy raises many kinds on what it cannot evaluate
            return None
    return ("number", value) if cmath.isfinite(value) else None


@functools.lru_cache(maxsize=1 << 14)
def _parsed(canonical: str) -> tuple:
    """math-verify's reading of an answer, once per distinct string."""
    from math_verify import parse

    with _MATH_VERIFY_LOCK:
        return tuple(parse(f"${canonical}$", parsing_timeout=_timeout()))


@functools.lru_cache(maxsize=1 << 16)
def _verifies(gold: str, predicted: str) -> bool:
    """math-verify's verdict on a prediction against a gold answer (canonical forms)."""
    from math_verify import verify

    gold_parsed, predicted_parsed = _parsed(gold), _parsed(predicted)
    if not gold_parsed or not predicted_parsed:
        return False
    with _MATH_VERIFY_LOCK:
        return bool(verify(list(gold_parsed), list(predicted_parsed), timeout_seconds=_timeout()))


def _timeout() -> int | None:
    """math-verify's time limit: it bounds its sympy work with SIGALRM, which exists only in the main
    thread; a server thread grades without the limit instead of failing."""
    return 5 if threading.current_thread() is threading.main_thread() else None
