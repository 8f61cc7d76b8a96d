"""Time ``group_answers`` on one question's pool of K = 2048 sampled answers, and count the
math-verify work it does.

    python scripts/time_grouping.py

Three pools: the synthetic task's (plain integers 0 to 999, most samples on a few values), 2048
distinct integers (the worst case for the string grouping), and a MATH-like pool drawn from 30
distinct strings, some equal only under math-verify (``\\frac{1}{\\sqrt{2}}`` and
``\\frac{\\sqrt{2}}{2}``). Each pool is grouped three times in one process (math-verify imported
beforehand): first as the process's first question (math-verify's parser warms up on its first
parses), then with the caches emptied (a new question's strings, parser warm), then with
everything cached (what a question's second grouping finds).
"""

from __future__ import annotations

import random
import sys
import time

from ttc_runtime.tasks import grading

CACHES = (grading._canonical, grading._value, grading._parsed, grading._verifies)

MATH_LIKE = [
    "\\frac{1}{2}",
    "\\frac12",
    "0.5",
    "\\dfrac{1}{2}",
    "1/2",
    "\\frac{\\sqrt{2}}{2}",
    "\\frac{1}{\\sqrt{2}}",
    "\\frac{\\sqrt2}{2}",
    "\\sqrt{\\frac{1}{2}}",
    "\\sqrt{4}",
    "2",
    "2.0",
    "\\frac{\\pi}{4}",
    "45^\\circ",
    "45",
    "x^{2}",
    "x^2",
    "x \\cdot x",
    "(1, 2)",
    "(1,2)",
    "\\left(1, 2\\right)",
    "1, 2",
    "2, 1",
    "\\{1, 2\\}",
    "376, 625",
    "376625",
    "376,625",
    "3",
    "-1",
    "\\frac{3}{4}",
]


def pools(rng: random.Random) -> dict[str, list[str]]:
    gold = rng.randrange(1000)
    synthetic = [str(gold if rng.random() < 0.6 else rng.randrange(1000)) for _ in range(2048)]
    distinct = [str(i) for i in rng.sample(range(10**6), 2048)]
    weights = [1 / (rank + 1) for rank in range(len(MATH_LIKE))]
    math_like = rng.choices(MATH_LIKE, weights=weights, k=2048)
    return {"synthetic": synthetic, "distinct integers": distinct, "MATH-like (30 strings)": math_like}


def main() -> None:
    import math_verify  # noqa: F401  (imported up front: its import, sympy's included, is not grouping)

    for name, answers in pools(random.Random(0)).items():
        times, work = [], []
        for emptied in (False, True, False):
            if emptied:
                for cache in CACHES:
                    cache.cache_clear()
            parses, verdicts = grading._parsed.cache_info().misses, grading._verifies.cache_info().misses
            start = time.perf_counter()
            grouped = grading.group_answers(answers)
            times.append(time.perf_counter() - start)
            work.append(
                (grading._parsed.cache_info().misses - parses, grading._verifies.cache_info().misses - verdicts)
            )
        print(
            f"{name:24} distinct strings {len(set(answers)):4}  groups {len(set(grouped)):4}  "
            f"first {times[0] * 1000:7.1f} ms  new question {times[1] * 1000:7.1f} ms  "
            f"cached {times[2] * 1000:5.1f} ms  math-verify parses/verdicts per call {work}"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
