"""What every test-time strategy shares: its signature, its result, and the candidate bookkeeping.

A strategy answers a batch of questions within a budget of ``N`` generations (the paper's unit: one
generation is one full solution's worth of proposer samples) and returns, per question, the chosen
answer, every final candidate with its step scores, and the compute it really spent in tokens and
FLOPs (proposer and verifier apart). Strategies are objects holding their own knobs (beam width,
lookahead depth, selection rule); ``run`` takes the rest:

    strategy.run(questions, generator, scorer, budget, settings, seed) -> list[StrategyResult]

Rules every strategy follows, tested in ``tests/test_strategies.py``:

- **Empty steps.** A sampled step with nothing but whitespace adds no step: the candidate keeps
  the steps it had. A candidate with no steps at all has score 0.
- **Scores.** A scorer's step score must be a number in [0, 1]; NaN or anything outside is an
  error naming the question and candidate, never a silent ranking.
- **Answers.** A candidate's answer is the normalised last ``\\boxed{}`` of its text, or None;
  candidates without one never win a selection, and equal answers written differently are merged
  (``tasks.group_answers``) before a selection counts them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..compute import Compute, Usage
from ..generation.base import Completion, Generator, SamplingParams
from ..generation.sampling import derive_seed
from ..prompts import PromptConfig, RevisionPromptConfig
from ..scoring import StepScorer
from ..scoring.margin import FusedMarginScorer, MarginState, fuse
from ..selection import Aggregation, Selection, aggregate_steps, select_answer
from ..tasks.grading import STEP_SEPARATOR, extract_boxed, group_answers, normalize_answer, split_steps


@dataclass(frozen=True)
class SearchSettings:
    """How any strategy formats prompts, samples, and turns step scores into an answer score."""

    prompt: PromptConfig = PromptConfig()
    sampling: SamplingParams = SamplingParams()
    aggregation: Aggregation = "last"
    fused_scoring: bool = True
    """Score steps from the log-probabilities the generator returned while sampling them when the
    verifier is a margin PRM over the generator's own model (``scoring.margin.fuse``): search reads
    each new step once instead of re-reading every prefix each round, best-of-N and the rollout
    pool read every step of a whole sample, and the verifier costs the head alone on every path.
    False forces the full scorer everywhere."""
    reviser: Generator | None = None
    """The revision model, for ``revisions`` chains longer than one attempt."""
    revision_prompt: RevisionPromptConfig = RevisionPromptConfig()
    """How the revision model is prompted: the format it was trained on."""


@dataclass(frozen=True)
class Candidate:
    """One final candidate: its text after the prompt, its steps and their scores, its answer.

    ``finished`` is True when the proposer ended the solution (end of sequence); False when the
    candidate was cut by the token limit or the round limit.
    """

    text: str
    step_scores: tuple[float, ...]
    score: float
    answer: str | None
    finished: bool

    @property
    def steps(self) -> list[str]:
        return split_steps(self.text)


@dataclass(frozen=True)
class StrategyResult:
    """A strategy's output for one question."""

    answer: str | None
    candidates: list[Candidate]
    compute: Compute


@dataclass(frozen=True)
class Beam:
    """A partial solution during search: the text generated after the prompt, its proposer tokens,
    how it ended (None while open) and the step scores of its text once scored."""

    text: str = ""
    tokens: int = 0
    finish_reason: str | None = None
    step_scores: tuple[float, ...] = ()
    blank_step: bool = False
    state: MarginState = MarginState()
    """Running margin statistics of the text, kept only under fused scoring."""

    @property
    def open(self) -> bool:
        return self.finish_reason is None

    def extend(self, completion: Completion, max_tokens: int, fused: FusedMarginScorer | None = None) -> Beam:
        """This beam followed by one sampled step, keeping the step scores it had. A step cut at the
        separator gets it back; a beam whose solution reaches ``max_tokens`` tokens ends with reason
        "length". With ``fused``, the margin statistics take in the step's tokens."""
        tokens = self.tokens + completion.num_tokens
        blank = not completion.text.strip()
        state = self.state.extend(completion, fused.skip, evidence=fused.evidence) if fused is not None else self.state
        if completion.finish_reason == "stop":
            reason = "length" if tokens >= max_tokens else None
            text = self.text + completion.text + STEP_SEPARATOR
        else:
            text, reason = self.text + completion.text, completion.finish_reason
        return Beam(text, tokens, reason, self.step_scores, blank, state)

    @property
    def rank(self) -> float:
        """What search ranks the beam by: its newest step's score, 0 when the newest step was blank
        (no progress) or the beam has no scored step."""
        return 0.0 if self.blank_step or not self.step_scores else self.step_scores[-1]

    @property
    def scored(self) -> bool:
        """Whether every step of the text has its score."""
        return len(self.step_scores) == len(split_steps(self.text))

    def candidate(self, aggregation: Aggregation) -> Candidate:
        score = aggregate_steps(self.step_scores, aggregation) if self.step_scores else 0.0
        return Candidate(self.text, self.step_scores, score, answer_of(self.text), self.finish_reason == "eos")


@dataclass
class Ledger:
    """The compute one question has spent so far, proposer and verifier apart."""

    proposer: Usage = field(default_factory=Usage)
    verifier: Usage = field(default_factory=Usage)

    def record(self, generations: int) -> Compute:
        return Compute(self.proposer, self.verifier, generations)


def charge(ledgers: list[Ledger], owners: Sequence[int], usages: Sequence[Usage], role: str) -> None:
    """Add each usage to the ledger of the question that owns it, as proposer or verifier spend."""
    for owner, usage in zip(owners, usages, strict=True):
        setattr(ledgers[owner], role, getattr(ledgers[owner], role) + usage)


def continued(usages: Sequence[Usage], params: int) -> list[Usage]:
    """``usages`` of sampling that continues prefixes already charged to their questions (a beam's
    text, a candidate a rollout extends, a prompt another sample of the question already read),
    charged by the one rule of ``compute``: the tokens sampled, not the prefix read again."""
    return [Usage.inference(params, 0, usage.generated_tokens) for usage in usages]


def check_budget(budget: int, divisor: int | None = None, knob: str = "beam width") -> None:
    """Errors for a budget the strategies cannot honour: below 1, or not a multiple of the knob
    that divides it (the beam width of search, the chain length of revisions)."""
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be a positive number of generations, got {budget!r}")
    if divisor is not None:
        if divisor < 1:
            raise ValueError(f"{knob} must be >= 1, got {divisor}")
        if divisor > budget:
            raise ValueError(f"{knob} {divisor} is larger than the budget {budget}")
        if budget % divisor:
            raise ValueError(f"budget {budget} is not divisible by {knob} {divisor}")


def question_seeds(seed: int | Sequence[int], count: int) -> list[int]:
    """One seed per question: derived from ``seed`` and the position, or given one by one."""
    if isinstance(seed, int):
        return [derive_seed(seed, i) for i in range(count)]
    seeds = list(seed)
    if len(seeds) != count:
        raise ValueError(f"got {len(seeds)} seeds for {count} questions")
    return seeds


def answer_of(text: str) -> str | None:
    """The normalised final answer of a solution text, None without a ``\\boxed{}``."""
    return normalize_answer(extract_boxed(text))


def select(candidates: Sequence[Candidate], how: Selection) -> str | None:
    """The answer ``how`` picks among ``candidates`` (see ``selection``), equal answers merged
    first; it is one of the candidates' answers, the first one of its group."""
    answers = group_answers([c.answer for c in candidates])
    return select_answer(how, answers, [c.score for c in candidates])


def sample(
    generator: Generator,
    prompts: Sequence[str],
    owners: Sequence[int],
    n: int,
    params: SamplingParams,
    seeds: Sequence[int],
    ledgers: list[Ledger],
) -> list[list[Completion]]:
    """``n`` samples per prompt in one batched call; each prompt's cost is charged to the question
    ``owners[i]`` it belongs to."""
    output = generator.generate(prompts, n=n, params=params, seed=list(seeds))
    charge(ledgers, owners, output.usages, "proposer")
    return output.completions


def fused_verifier(
    scorer: StepScorer | None, generator: Generator, settings: SearchSettings
) -> FusedMarginScorer | None:
    """The fused form of ``scorer`` when ``settings`` allow it and it reads the generator's own
    model (``scoring.margin.fuse``), else None: then the full scorer reads the texts."""
    return fuse(scorer, generator, settings.prompt) if settings.fused_scoring else None


def score_samples(
    scorer: StepScorer,
    fused: FusedMarginScorer | None,
    questions: Sequence[str],
    samples: Sequence[Completion],
    owners: Sequence[int],
    ledgers: list[Ledger],
) -> list[tuple[float, ...]]:
    """Step scores of whole sampled solutions (sample i answers question ``owners[i]``), each
    sample's verifier cost charged to its question. With ``fused`` (the samples then carry their
    log-probabilities), the margin PRM's score at the end of each step is read from them and every
    scored step costs one read of the head, as each step of a search does; else ``score_texts``
    runs the full scorer over the texts."""
    if fused is None:
        return score_texts(scorer, questions, [sample.text for sample in samples], owners, ledgers)
    scores = fused.step_scores(samples)
    charge(ledgers, owners, [Usage.inference(fused.head_params, len(s)) for s in scores], "verifier")
    return scores


def score_texts(
    scorer: StepScorer,
    questions: Sequence[str],
    texts: Sequence[str],
    owners: Sequence[int],
    ledgers: list[Ledger],
) -> list[tuple[float, ...]]:
    """Step scores of each text (a solution or prefix of question ``owners[i]``) in one batched
    call, each pair's verifier cost charged to its question. Texts without a step score ()."""
    steps = [split_steps(text) for text in texts]
    wanted = [i for i, s in enumerate(steps) if s]
    scores: list[tuple[float, ...]] = [() for _ in texts]
    if not wanted:
        return scores
    output = scorer.score([questions[owners[i]] for i in wanted], [steps[i] for i in wanted])
    for i, values in zip(wanted, output.step_scores, strict=True):
        if len(values) != len(steps[i]):
            raise ValueError(f"the scorer returned {len(values)} scores for {len(steps[i])} steps")
        for value in values:
            if not (isinstance(value, float | int) and 0.0 <= value <= 1.0):  # NaN fails both comparisons
                raise ValueError(
                    f"the scorer returned {value!r} for a step of question {owners[i]} "
                    f"(candidate {texts[i][:60]!r}); step scores must lie in [0, 1]"
                )
        scores[i] = tuple(float(v) for v in values)
    charge(ledgers, [owners[i] for i in wanted], output.usages, "verifier")
    return scores


class Strategy(ABC):
    """A test-time strategy: its knobs are its attributes, ``run`` does the work."""

    name: str
    needs_scorer: bool = True

    def context_room(self, max_new_tokens: int) -> int:
        """Tokens of the proposer's context this strategy may need after a question's prompt when
        solutions are sampled with ``max_new_tokens``: one whole solution, for a strategy that
        samples solutions in one call. A question whose prompt leaves less room is refused before
        the strategy runs (``Solver.check``): the generator would refuse it mid-run."""
        return max_new_tokens

    @abstractmethod
    def run(
        self,
        questions: Sequence[str],
        generator: Generator,
        scorer: StepScorer | None,
        budget: int,
        settings: SearchSettings = SearchSettings(),
        seed: int | Sequence[int] = 0,
    ) -> list[StrategyResult]:
        """Answer each question within ``budget`` generations; ``seed`` is one integer for the
        call or one per question (a question's result then does not depend on the batch)."""

    def _start(
        self,
        questions: Sequence[str],
        scorer: StepScorer | None,
        budget: int,
        width: int | None,
        settings: SearchSettings,
        seed: int | Sequence[int],
        knob: str = "beam width",
    ) -> tuple[list[int], list[Ledger], list[str]]:
        """Check the inputs (budget and the knob ``width`` that divides it, scorer, questions) and
        return what every run starts from: one seed, one empty ledger and one formatted prompt per
        question."""
        check_budget(budget, width, knob)
        if self.needs_scorer and scorer is None:
            raise ValueError(f"strategy {self.name!r} needs a scorer")
        for i, question in enumerate(questions):
            if not question.strip():
                raise ValueError(f"question {i} is empty")
        prompts = [settings.prompt.format(q) for q in questions]
        return question_seeds(seed, len(questions)), [Ledger() for _ in questions], prompts
