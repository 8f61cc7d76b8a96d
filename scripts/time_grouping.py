"""Time ``group_answers`` on one question's pool of K = 2048 sampled answers, and count the
math-verify work it does.

    python scripts/time_grouping.py

Pools: the synthetic task's (plain integers 0 to 999, most samples on a few values), 2048
distinct integers (the worst case for the string grouping), and MATH-like pools drawn from 30
distinct strings, some equal only under math-verify (``\\frac{1}{\\sqrt{2}}`` and
``\\frac{\\sqrt{2}}{2}``). Each MATH-like question has strings of its own (its numbers differ), so
timing a new question times real parsing and comparing; the first question of the process also
pays for math-verify's parser warming up (math-verify itself is imported beforehand). "again" is
the same pool grouped a second time, which finds everything cached.
"""

from __future__ import annotations

import random
import time

from ttc_runtime.tasks import grading


def math_like(n: int) -> list[str]:
    """30 distinct answers to a question about 1/n (n = 2, 4, 5 or 8: 1/n has a short decimal), in
    13 groups of equal answers (12 for n = 4, where 1/sqrt(4) equals 3/6)."""
    a, b = n - 1, 376 + n
    return [
        f"\\frac{{1}}{{{n}}}",
        f"\\frac1{n}",
        str(1 / n),
        f"\\dfrac{{1}}{{{n}}}",
        f"1/{n}",
        f"\\frac{{\\sqrt{{{n}}}}}{{{n}}}",
        f"\\frac{{1}}{{\\sqrt{{{n}}}}}",
        f"\\frac{{\\sqrt{n}}}{{{n}}}",
        f"\\sqrt{{\\frac{{1}}{{{n}}}}}",
        f"\\sqrt{{{n * n}}}",
        str(n),
        f"{n}.0",
        f"\\frac{{\\pi}}{{{2 * n}}}",
        f"{45 * n}^\\circ",
        str(45 * n),
        f"x^{{{n}}}",
        f"x^{n}",
        f"x^{a} \\cdot x",
        f"({a}, {n})",
        f"({a},{n})",
        f"\\left({a}, {n}\\right)",
        f"{a}, {n}",
        f"{n}, {a}",
        f"\\{{{a}, {n}\\}}",
        f"{b}, 625",
        f"{b}625",
        f"{b},625",
        str(n + 1),
        f"-{n}",
        f"\\frac{{3}}{{{n + 2}}}",
    ]


def timed(answers: list[str]) -> tuple[float, int, int, int]:
    """Milliseconds, groups, and the parses and verdicts math-verify computed (cache misses)."""
    parses, verdicts = grading._parsed.cache_info().misses, grading._verifies.cache_info().misses
    start = time.perf_counter()
    grouped = grading.group_answers(answers)
    seconds = time.perf_counter() - start
    return (
        seconds * 1000,
        len(set(grouped)),
        grading._parsed.cache_info().misses - parses,
        grading._verifies.cache_info().misses - verdicts,
    )


def report(name: str, answers: list[str]) -> None:
    ms, groups, parses, verdicts = timed(answers)
    again = timed(answers)
    print(
        f"{name:28} distinct {len(set(answers)):4}  groups {groups:4}  {ms:7.1f} ms  "
        f"(math-verify: {parses:2} parses, {verdicts:2} verdicts)  again {again[0]:5.1f} ms "
        f"({again[2]} parses, {again[3]} verdicts)"
    )


def main() -> None:
    import math_verify  # noqa: F401  (its import, sympy's included, is not grouping)

    rng = random.Random(0)
    gold = rng.randrange(1000)
    report("synthetic", [str(gold if rng.random() < 0.6 else rng.randrange(1000)) for _ in range(2048)])
    report("distinct integers", [str(i) for i in rng.sample(range(10**6), 2048)])
    weights = [1 / (rank + 1) for rank in range(30)]
    for n in (2, 4, 5, 8):
        label = "MATH-like, first question" if n == 2 else f"MATH-like, new question {n}"
        report(label, rng.choices(math_like(n), weights=weights, k=2048))


if __name__ == "__main__":
    main()
