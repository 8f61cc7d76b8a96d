"""What the revision model adds, on held-out problems, by level.

**One revision.** The proposer samples ``attempts_per_problem`` solutions per problem; up to
``cases_per_problem`` incorrect ones and as many correct ones are each revised once (the attempt
alone in context). Reported per level: the proposer's pass@1 over all problems and over the
problems that had an incorrect attempt, the accuracy of a revision of an incorrect attempt, the
share of those revisions that repeat the attempt's wrong answer, and the share of correct attempts
that a revision turns wrong (the paper saw 38%). Three controls on the same incorrect cases, with the
same seeds, say where a revision's accuracy comes from: a fresh proposer sample for the problem (the
pass@1 of exactly those cases, which lean to the harder problems of a level), the revision model
with no attempt in context, and the revision model with an incorrect attempt of another problem of
the same level in place of the problem's own. A model that reads the attempt beats the last two;
one that only samples better than the proposer beats the first alone. Also the verifier's
AUROC (answer score against correctness) on the proposer's attempts and on the revisions: the
revision strategy selects with the same verifier, and this is where that choice is checked.

**Parallel against sequential.** Chains of every length L in {1, 2, 4, ..., N_max} are run once
per problem at the largest budget N_max (``strategies.revisions``), each problem with the same seed
for every L. A smaller budget N uses N/L of the N_max/L chains: its accuracy is the mean over
``resamples`` random subsets of chains drawn without replacement, and its compute the N/N_max share
of the full run's. Accuracy intervals are bootstrap intervals over problems as in ``evaluation.search``.
The longest chains (L = N_max, one per problem) also give the share of problems whose k-th attempt
is right, by level: where that share falls along a chain, later attempts are wasted budget (a
revision model that reads one earlier attempt but not three writes worse solutions the longer its
chain runs).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import Field, field_validator, model_validator
from tqdm.auto import tqdm

from ttc_runtime.config import StrictModel
from ttc_runtime.evaluation.efficiency import Interval, bootstrap_weights
from ttc_runtime.evaluation.search import BudgetPoint, Outcome, budget_points
from ttc_runtime.evaluation.verifier import auroc
from ttc_runtime.generation.base import Generator
from ttc_runtime.generation.batches import sample_in_batches
from ttc_runtime.generation.sampling import derive_seed
from ttc_runtime.scoring import StepScorer
from ttc_runtime.selection import aggregate_steps
from ttc_runtime.strategies import SearchSettings, SequentialRevisions, select_chains
from ttc_runtime.strategies.base import Ledger, answer_of, score_texts
from ttc_runtime.strategies.revisions import revise
from ttc_runtime.tasks import LEVELS, Problem, Task, answers_match, check_levels


class RevisionEvalConfig(StrictModel):
    """The revision evaluation (see the module docstring)."""

    split: str = Field("test", pattern="^(validation|test)$")
    levels: list[int] = Field(list(LEVELS), min_length=1)
    problems_per_level: int = Field(100, ge=1, description="Problems per level for the one-revision figures.")
    attempts_per_problem: int = Field(
        32, ge=1, description="Proposer samples per problem, among which incorrect and correct attempts are found."
    )
    cases_per_problem: int = Field(4, ge=1, description="Incorrect (and correct) attempts revised per problem.")
    ratio_problems_per_level: int = Field(30, ge=1, description="Problems per level for the parallel/sequential sweep.")
    budgets: list[int] = Field([4, 16, 64], min_length=1, description="Budgets N of the sweep, powers of 2.")
    resamples: int = Field(50, ge=1, description="Chain subsets drawn per problem at budgets below the largest.")
    bootstrap: int = Field(1000, ge=10)
    batch_rows: int = Field(512, ge=1, description="Chains advanced together: problems per call x chains.")
    seed: int = 0

    @field_validator("budgets")
    @classmethod
    def _powers_of_two(cls, budgets: list[int]) -> list[int]:
        for n in budgets:
            if n < 1 or n & (n - 1):
                raise ValueError(f"budget {n} is not a power of 2 (chain lengths are 1, 2, 4, ... N)")
        return sorted(set(budgets))

    @model_validator(mode="after")
    def _known_levels(self) -> RevisionEvalConfig:
        check_levels(self.levels)
        return self

    def lengths(self) -> list[int]:
        """Chain lengths L of the sweep: 1, 2, 4, ... up to the largest budget."""
        return [2**i for i in range(int(math.log2(max(self.budgets))) + 1)]


@dataclass(frozen=True)
class OneRevisionLevel:
    """The one-revision figures of one level (None where a level had no such case)."""

    level: int
    problems: int
    pass_at_1: float
    problems_with_incorrect: int
    pass_at_1_those_problems: float | None
    incorrect_revised: int
    revised_correct: float | None
    repeated_answer: float | None
    fresh_sample_correct: float | None
    without_attempt_correct: float | None
    other_attempt_correct: float | None
    correct_revised: int
    turned_wrong: float | None
    verifier_auroc_attempts: float | None
    verifier_auroc_revisions: float | None


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def one_revision(
    generator: Generator,
    reviser: Generator,
    scorer: StepScorer,
    task: Task,
    problems: Sequence[Problem],
    settings: SearchSettings,
    config: RevisionEvalConfig,
) -> list[OneRevisionLevel]:
    """The one-revision figures by level (see the module docstring)."""
    attempts: list[list[tuple[str, bool]]] = []
    for batch, output in sample_in_batches(
        generator,
        problems,
        settings.prompt,
        settings.sampling,
        config.attempts_per_problem,
        config.seed,
        max(1, config.batch_rows // config.attempts_per_problem),
        "proposer attempts",
    ):
        for problem, row in zip(batch, output.completions, strict=True):
            attempts.append([(c.text, task.is_correct(c.text, problem)) for c in row])
    cases = []  # (problem index, attempt text, attempt correct)
    for index, row in enumerate(attempts):
        for right in (False, True):
            cases += [(index, text, ok) for text, ok in row if ok == right][: config.cases_per_problem]
    questions = [p.question for p in problems]
    ledgers = [Ledger() for _ in problems]
    histories = {k: [text] for k, (_, text, _) in enumerate(cases)}
    revised = _revise_cases(reviser, settings, config, questions, cases, histories, ledgers, "one revision")
    wrong_cases = [k for k, (_, _, ok) in enumerate(cases) if not ok]
    controls = _controls(generator, reviser, task, problems, settings, config, cases, wrong_cases)
    owners = [index for index, _, _ in cases]
    scored = score_texts(scorer, questions, [text for _, text, _ in cases] + revised, owners + owners, ledgers)
    scores = [aggregate_steps(s, settings.aggregation) if s else 0.0 for s in scored]
    after = [task.is_correct(text, problems[index]) for (index, _, _), text in zip(cases, revised, strict=True)]
    levels = []
    for level in sorted({p.level for p in problems}):
        mine = [i for i, p in enumerate(problems) if p.level == level]
        rates = {i: float(np.mean([ok for _, ok in attempts[i]])) for i in mine}
        wrong_problems = [i for i in mine if rates[i] < 1.0]
        rows = [k for k, (index, _, _) in enumerate(cases) if problems[index].level == level]
        wrong_rows = [k for k in rows if not cases[k][2]]
        from_wrong = [after[k] for k in wrong_rows]
        repeated = [answer_of(revised[k]) == answer_of(cases[k][1]) for k in wrong_rows]
        from_right = [after[k] for k in rows if cases[k][2]]
        levels.append(
            OneRevisionLevel(
                level=level,
                problems=len(mine),
                pass_at_1=float(np.mean(list(rates.values()))),
                problems_with_incorrect=len(wrong_problems),
                pass_at_1_those_problems=_mean([rates[i] for i in wrong_problems]),
                incorrect_revised=len(from_wrong),
                revised_correct=_mean(from_wrong),
                repeated_answer=_mean(repeated),
                **{name: _mean([ok[k] for k in wrong_rows if k in ok]) for name, ok in controls.items()},
                correct_revised=len(from_right),
                turned_wrong=_mean([not ok for ok in from_right]),
                verifier_auroc_attempts=auroc([cases[k][2] for k in rows], [scores[k] for k in rows]),
                verifier_auroc_revisions=auroc([after[k] for k in rows], [scores[len(cases) + k] for k in rows]),
            )
        )
    return levels


def _controls(
    generator: Generator,
    reviser: Generator,
    task: Task,
    problems: Sequence[Problem],
    settings: SearchSettings,
    config: RevisionEvalConfig,
    cases: Sequence[tuple[int, str, bool]],
    wrong: Sequence[int],
) -> dict[str, dict[int, bool]]:
    """Whether each incorrect case ``wrong[i]`` is answered right by each control of the module
    docstring, keyed by the case's index in ``cases``; a case whose level has no other problem
    with an incorrect attempt has no other-attempt control. Seeds are the revision's own."""
    other: dict[int, str] = {}
    for position, k in enumerate(wrong):
        index = cases[k][0]
        for step in range(1, len(wrong)):
            j = wrong[(position + step) % len(wrong)]
            if problems[cases[j][0]].level == problems[index].level and cases[j][0] != index:
                other[k] = cases[j][1]
                break
    runs = {
        "fresh_sample_correct": (generator, {k: [] for k in wrong}),
        "without_attempt_correct": (reviser, {k: [] for k in wrong}),
        "other_attempt_correct": (reviser, {k: [text] for k, text in other.items()}),
    }
    questions = [p.question for p in problems]
    ledgers = [Ledger() for _ in problems]
    results: dict[str, dict[int, bool]] = {}
    for name, (model, histories) in runs.items():
        texts = _revise_cases(model, settings, config, questions, cases, histories, ledgers, name.replace("_", " "))
        results[name] = {k: task.is_correct(text, problems[cases[k][0]]) for k, text in zip(histories, texts)}
    return results


def _revise_cases(
    model: Generator,
    settings: SearchSettings,
    config: RevisionEvalConfig,
    questions: Sequence[str],
    cases: Sequence[tuple[int, str, bool]],
    histories: dict[int, list[str]],
    ledgers: list[Ledger],
    desc: str,
) -> list[str]:
    """One sample from ``model`` for each case ``k`` of ``histories`` (in its order) with
    ``histories[k]`` in context, seeded by the case's index, ``config.batch_rows`` cases a call."""
    keys, texts = list(histories), []
    for start in tqdm(range(0, len(keys), config.batch_rows), desc=desc, unit="batch"):
        part = keys[start : start + config.batch_rows]
        completions = revise(
            model,
            settings,
            questions,
            [histories[k] for k in part],
            [cases[k][0] for k in part],
            [derive_seed(config.seed, k, 1) for k in part],
            ledgers,
        )
        texts += [c.text for c in completions]
    return texts


@dataclass(frozen=True)
class LengthGain:
    """At ``budget``, a level's own best chain length (``best``, weighted selection across chains)
    against the length best on all levels (``reference``: the one ratio a user would fix) and
    against all-parallel chains (L = 1): the paired differences of their rates on the level's
    questions, bootstrapped over those questions. On a tie the reference, then the shortest length,
    is the level's best, so a level that gains nothing shows 0."""

    level: int
    budget: int
    best: int
    accuracy: float
    reference: int
    reference_accuracy: float
    over_reference: Interval
    over_parallel: Interval


def length_gains(
    rates: dict[tuple[int, int], np.ndarray], levels: Sequence[int], resamples: int, seed: int
) -> list[LengthGain]:
    """Per budget and level, the level's best chain length against the best over all levels and
    against L = 1 (``LengthGain``); ``rates[length, budget]`` holds each question's rate (the share
    of resampled chain subsets whose answer is right), in the order of ``levels``."""
    levels = np.asarray(levels, dtype=int)
    gains = []
    for budget in sorted({n for _, n in rates}):
        lengths = sorted(length for length, n in rates if n == budget)
        reference = max(lengths, key=lambda length: (rates[length, budget].mean(), -length))
        for level in sorted(set(levels.tolist())):
            rows = np.flatnonzero(levels == level)
            on_level = {length: float(rates[length, budget][rows].mean()) for length in lengths}
            best = max(lengths, key=lambda length: (on_level[length], length == reference, -length))
            weights = bootstrap_weights(len(rows), resamples, derive_seed(seed, budget, level))
            chosen = rates[best, budget][rows]
            gains.append(
                LengthGain(
                    level,
                    budget,
                    best,
                    on_level[best],
                    reference,
                    on_level[reference],
                    Interval.of((weights @ (chosen - rates[reference, budget][rows])).tolist()),
                    Interval.of((weights @ (chosen - rates[1, budget][rows])).tolist()),
                )
            )
    return gains


@dataclass(frozen=True)
class RatioSweep:
    """The parallel-to-sequential sweep: accuracy against budget for every chain length; each
    level's best length against the best over all levels and against all-parallel chains
    (``gains``); and for the longest chains the share of problems whose k-th attempt is right, per
    level (0: all levels)."""

    points: list[BudgetPoint]
    gains: list[LengthGain]
    positions: dict[int, list[float]]


def revision_ratios(
    generator: Generator,
    scorer: StepScorer,
    task: Task,
    problems: Sequence[Problem],
    settings: SearchSettings,
    config: RevisionEvalConfig,
) -> RatioSweep:
    """Accuracy against budget for every chain length, selection across chains weighted (label
    ``revisions(L=l)``) and by majority (``revisions(L=l,majority)``), and attempts right by their
    place in the longest chains; see the module docstring."""
    top = max(config.budgets)
    outcomes: dict[tuple[str, int], list[Outcome]] = defaultdict(list)
    attempts_right: dict[int, list[list[bool]]] = defaultdict(list)
    for length in config.lengths():
        strategy, chains = SequentialRevisions(length), top // length
        per_call = max(1, config.batch_rows // chains)
        with tqdm(total=len(problems), desc=f"revisions L={length} N={top}", unit="problem") as bar:
            for start in range(0, len(problems), per_call):
                batch = problems[start : start + per_call]
                seeds = [derive_seed(config.seed, start + i) for i in range(len(batch))]
                results = strategy.run([p.question for p in batch], generator, scorer, top, settings, seeds)
                for offset, (problem, result) in enumerate(zip(batch, results, strict=True)):
                    rng = np.random.default_rng(derive_seed(config.seed, start + offset, length) & 0xFFFFFFFF)
                    right = {c.answer: answers_match(c.answer, problem.answer) for c in result.candidates if c.answer}
                    if length == top:
                        attempts = [bool(c.answer) and right[c.answer] for c in result.candidates]
                        attempts_right[problem.level].append(attempts)
                        attempts_right[0].append(attempts)
                    for n in config.budgets:
                        if length > n:
                            continue
                        subsets = [
                            sorted(rng.choice(chains, size=n // length, replace=False))
                            for _ in range(1 if n == top else config.resamples)
                        ]
                        for how in ("weighted", "majority"):
                            wins = 0
                            for picked in subsets:
                                chosen = [c for k in picked for c in result.candidates[k * length : (k + 1) * length]]
                                answer = select_chains(chosen, length, how)
                                wins += answer is not None and right[answer]
                            label = f"revisions(L={length}" + ("" if how == "weighted" else ",majority") + ")"
                            outcomes[label, n].append(
                                Outcome(
                                    problem.level,
                                    wins / len(subsets),
                                    result.compute.proposer.generated_tokens * n / top,
                                    result.compute.flops * n / top,
                                )
                            )
                bar.update(len(batch))
    positions = {level: np.mean(rows, axis=0).tolist() for level, rows in attempts_right.items()}
    rates = {
        (_chain_length(label), n): np.array([o.correct for o in rows])
        for (label, n), rows in outcomes.items()
        if "majority" not in label
    }
    gains = length_gains(rates, [p.level for p in problems], config.bootstrap, config.seed)
    return RatioSweep(budget_points(dict(outcomes), config.bootstrap, config.seed), gains, positions)


def _chain_length(label: str) -> int:
    """L of a weighted sweep label ``revisions(L=l)``."""
    return int(label[len("revisions(L=") : -1])


def best_lengths(points: Sequence[BudgetPoint]) -> dict[int, dict[int, list[int]]]:
    """Per level (0: all) and budget, the chain lengths with the highest accuracy under weighted
    selection across chains (several on a tie)."""
    best: dict[int, dict[int, list[int]]] = defaultdict(dict)
    weighted = [p for p in points if p.strategy.startswith("revisions(L=") and "majority" not in p.strategy]
    for level in sorted({p.level for p in weighted}):
        for n in sorted({p.budget for p in weighted}):
            here = [p for p in weighted if p.level == level and p.budget == n]
            top = max(p.accuracy for p in here)
            best[level][n] = sorted(_chain_length(p.strategy) for p in here if p.accuracy == top)
    return dict(best)


def format_one_revision(levels: Sequence[OneRevisionLevel]) -> str:
    """Markdown table of the one-revision figures."""

    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    lines = [
        "| level | problems | pass@1 | problems with an incorrect attempt | their pass@1 | incorrect attempts "
        "revised | revision correct | repeats the wrong answer | controls: fresh proposer sample | revision "
        "without the attempt | revision with another problem's attempt | correct attempts revised | turned "
        "wrong | verifier AUROC: attempts | revisions |",
        "| ---: |" + " ---: |" * 14,
    ]
    for a in levels:
        lines.append(
            f"| {a.level} | {a.problems} | {a.pass_at_1:.3f} | {a.problems_with_incorrect} | "
            f"{cell(a.pass_at_1_those_problems)} | {a.incorrect_revised} | {cell(a.revised_correct)} | "
            f"{cell(a.repeated_answer)} | {cell(a.fresh_sample_correct)} | {cell(a.without_attempt_correct)} | "
            f"{cell(a.other_attempt_correct)} | "
            f"{a.correct_revised} | {cell(a.turned_wrong)} | {cell(a.verifier_auroc_attempts)} | "
            f"{cell(a.verifier_auroc_revisions)} |"
        )
    return "\n".join(lines) + "\n"


def format_best_lengths(best: dict[int, dict[int, list[int]]]) -> str:
    """Markdown table: the best chain length L per level and budget."""
    budgets = sorted({n for by_n in best.values() for n in by_n})
    lines = ["| level | " + " | ".join(f"N={n}" for n in budgets) + " |", "| --- |" + " ---: |" * len(budgets)]
    for level, by_n in sorted(best.items(), key=lambda item: (item[0] == 0, item[0])):
        name = "all" if level == 0 else str(level)
        lines.append(f"| {name} | " + " | ".join(", ".join(map(str, by_n.get(n, []))) for n in budgets) + " |")
    return "\n".join(lines) + "\n"


def format_length_gains(gains: Sequence[LengthGain]) -> str:
    """Markdown table: each level's best chain length against the best over all levels and against
    L = 1, with the paired differences' 90% intervals."""

    def gain(interval: Interval) -> str:
        return f"{interval.value:+.3f} [{interval.low:+.3f}, {interval.high:+.3f}]"

    lines = [
        "| N | level | its best L | accuracy | best L over all levels | its accuracy | gain | gain over L = 1 |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for g in gains:
        lines.append(
            f"| {g.budget} | {g.level} | {g.best} | {g.accuracy:.3f} | {g.reference} | {g.reference_accuracy:.3f} | "
            f"{gain(g.over_reference)} | {gain(g.over_parallel)} |"
        )
    return "\n".join(lines) + "\n"


def format_positions(positions: dict[int, list[float]]) -> str:
    """Markdown table: the share of problems whose k-th attempt of the longest chains is right."""
    length = max((len(shares) for shares in positions.values()), default=0)
    lines = [
        "| level | " + " | ".join(f"attempt {k}" for k in range(1, length + 1)) + " |",
        "| --- |" + " ---: |" * length,
    ]
    for level, shares in sorted(positions.items(), key=lambda item: (item[0] == 0, item[0])):
        name = "all" if level == 0 else str(level)
        lines.append(f"| {name} | " + " | ".join(f"{share:.3f}" for share in shares) + " |")
    return "\n".join(lines) + "\n"
