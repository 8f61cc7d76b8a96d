"""Sequential revisions: chains, the context window, selection, compute, the context rule, and the
real path on tiny models."""

import pytest

from ttc_runtime.compute import Compute, Usage
from ttc_runtime.evaluation.revisions import (
    OneRevisionLevel,
    RevisionEvalConfig,
    best_lengths,
    one_revision,
    revision_ratios,
)
from ttc_runtime.generation.base import Completion, GenerationOutput, PromptTooLong, SamplingParams
from ttc_runtime.generation.hf import TransformersGenerator
from ttc_runtime.scoring import ProposerMarginScorer, ScoreOutput
from ttc_runtime.strategies import BestOfN, SearchSettings, SequentialRevisions, StrategyConfig, select_chains
from ttc_runtime.strategies.base import Candidate
from ttc_runtime.tasks import Problem, Task


class Proposer:
    """Sample j of every prompt answers ``answers[j]``; a prompt costs 1 token, a sample 3."""

    flop_params = 2

    def __init__(self, answers="ab"):
        self.answers = answers

    def generate(self, prompts, n=1, params=SamplingParams(), seed=0):
        rows = [[Completion(f"p\n\n\\boxed{{{self.answers[j]}}}", 3, "eos") for j in range(n)] for _ in prompts]
        return GenerationOutput(rows, [Usage.inference(self.flop_params, 1, 3 * n)] * len(prompts))


class Reviser:
    """Answers the number k of attempts in its prompt's context: ``\\boxed{k}``. A prompt costs
    k + 1 tokens, a revision 2. With ``fits``, prompts holding more attempts are refused."""

    flop_params = 7

    def __init__(self, fits=None):
        self.fits, self.prompts = fits, []

    def generate(self, prompts, n=1, params=SamplingParams(), seed=0):
        counts = [p.count("<attempt>") for p in prompts]
        over = [i for i, count in enumerate(counts) if self.fits is not None and count > self.fits]
        if over:
            raise PromptTooLong(over, f"{len(over)} prompts too long")
        self.prompts.extend(prompts)
        rows = [[Completion(f"r\n\n\\boxed{{{count}}}", 2, "eos")] * n for count in counts]
        return GenerationOutput(rows, [Usage.inference(self.flop_params, c + 1, 2 * n) for c in counts])


class ByAnswer:
    """Scores a solution's last step by its answer; each scored solution costs 2 tokens."""

    flop_params = 1

    def __init__(self, values):
        self.values = values

    def score(self, questions, solutions):
        return ScoreOutput([[0.5, self.values[s[-1][7]]] for s in solutions], [Usage.inference(1, 2)] * len(solutions))


SCORES = ByAnswer({"a": 0.2, "b": 0.6, "1": 0.3, "2": 0.9, "3": 0.1, "4": 0.5})


def test_a_chain_keeps_the_last_four_attempts_and_its_compute_sums_exactly():
    reviser = Reviser()
    settings = SearchSettings(reviser=reviser)
    (result,) = SequentialRevisions(6).run(["Q"], Proposer(), SCORES, 6, settings)
    # Turn t sees min(t, 4) earlier attempts: the proposer's, then its own revisions.
    assert [c.answer for c in result.candidates] == ["a", "1", "2", "3", "4", "4"]
    last = reviser.prompts[-1]
    assert "\\boxed{a}" not in last and all(f"\\boxed{{{k}}}" in last for k in (1, 2, 3, 4))
    assert last.index("\\boxed{1}") < last.index("\\boxed{4}")
    assert result.answer == "2"  # the chain's best-scored attempt
    reviser_usage = Usage.inference(7, sum(k + 1 for k in (1, 2, 3, 4, 4)), 2 * 5)
    assert result.compute == Compute(Usage.inference(2, 1, 3) + reviser_usage, Usage.inference(1, 2 * 6), generations=6)


def test_chains_run_in_parallel_and_are_laid_out_chain_by_chain():
    (result,) = SequentialRevisions(2).run(["Q"], Proposer("ab"), SCORES, 4, SearchSettings(reviser=Reviser()))
    assert [c.answer for c in result.candidates] == ["a", "1", "b", "1"]
    # Picks: chain 0 "1" (.3 > .2), chain 1 "b" (.6 > .3); weighted: b .6 against 1 .3.
    assert result.answer == "b"
    assert result.compute.generations == 4
    assert result.compute.proposer == Usage.inference(2, 1, 6) + Usage.inference(7, 4, 4)


def test_selection_within_then_across_chains():
    def chains(*rows):
        return [Candidate("", (s,), s, a, True) for row in rows for a, s in row]

    three = chains([("a", 0.9), ("b", 0.1)], [("b", 0.4), ("c", 0.2)], [("b", 0.4), ("a", 0.3)])
    assert select_chains(three, 2, "weighted") == "a"  # picks a .9, b .4, b .4: a .9 > b .8
    assert select_chains(three, 2, "majority") == "b"
    assert select_chains(three, 6, "weighted") == "a"
    with pytest.raises(ValueError, match="do not split into chains of length 4"):
        select_chains(three, 4, "weighted")


def test_an_overlong_revision_prompt_loses_its_oldest_attempts_and_otherwise_is_refused():
    reviser = Reviser(fits=2)
    (result,) = SequentialRevisions(4).run(["Q"], Proposer(), SCORES, 4, SearchSettings(reviser=reviser))
    assert [c.answer for c in result.candidates] == ["a", "1", "2", "2"]
    assert "\\boxed{a}" not in reviser.prompts[-1] and "\\boxed{1}" in reviser.prompts[-1]
    with pytest.raises(ValueError, match="question 0: the revision prompt does not fit .* without earlier attempts"):
        SequentialRevisions(2).run(["Q"], Proposer(), SCORES, 2, SearchSettings(reviser=Reviser(fits=-1)))


@pytest.mark.parametrize(
    "run, message",
    [
        (lambda s: SequentialRevisions(4).run(["Q"], Proposer(), s, 6), "budget 6 is not divisible by chain length 4"),
        (lambda s: SequentialRevisions(8).run(["Q"], Proposer(), s, 4), "chain length 8 is larger than the budget"),
        (lambda s: SequentialRevisions(2).run(["Q"], Proposer(), s, 4), "needs a revision model"),
        (lambda s: SequentialRevisions(2).run(["Q"], Proposer(), None, 4), "needs a scorer"),
    ],
)
def test_bad_input_is_an_error(run, message):
    with pytest.raises(ValueError, match=message):
        run(SCORES)


def test_strategy_config_builds_revisions():
    config = StrategyConfig(name="revisions", chain_length=4, across_chains="majority")
    assert config.label == "revisions(L=4,majority)"
    strategy = config.build(16)
    assert (strategy.length, strategy.selection) == (4, "majority")
    assert StrategyConfig(name="revisions", chain_length="all").build(16).length == 16
    assert config.unusable(2) == "chain length 4 is larger than the budget 2"
    assert config.unusable(6) == "budget 6 is not divisible by chain length 4"


QUESTIONS = ["Evaluate left to right:\n3+4*2", "Evaluate left to right:\n9-1"]


def test_real_models_reproducible_batch_independent_and_one_attempt_chains_are_best_of_n(tiny_model_dir):
    generator = TransformersGenerator.from_pretrained(tiny_model_dir)
    scorer = ProposerMarginScorer.from_pretrained(tiny_model_dir)
    settings = SearchSettings(sampling=SamplingParams(max_new_tokens=12), reviser=generator)
    strategy = SequentialRevisions(2)
    batch = strategy.run(QUESTIONS, generator, scorer, 4, settings, seed=[3, 4])
    assert batch == strategy.run(QUESTIONS, generator, scorer, 4, settings, seed=[3, 4])
    assert strategy.run(QUESTIONS[1:], generator, scorer, 4, settings, seed=[4])[0] == batch[1]
    for result in batch:
        assert len(result.candidates) == 4 and result.compute.generations == 4
        assert result.compute.proposer.flops == 2 * generator.flop_params * result.compute.proposer.tokens
    parallel = SequentialRevisions(1).run(QUESTIONS, generator, scorer, 4, settings, seed=[3, 4])
    assert parallel == BestOfN("weighted").run(QUESTIONS, generator, scorer, 4, settings, seed=[3, 4])


def test_the_transformers_generator_refuses_a_prompt_without_room_in_the_context(tiny_model_dir):
    generator = TransformersGenerator.from_pretrained(tiny_model_dir)  # 256 positions
    fits, long = "1+1", "1+1" * 200
    with pytest.raises(PromptTooLong, match="context of 256 tokens") as error:
        generator.generate([fits, long, fits], params=SamplingParams(max_new_tokens=16))
    assert error.value.indices == [1]
    assert len(generator.generate([fits], params=SamplingParams(max_new_tokens=16)).completions) == 1


class Problems(Task):
    """A task over hand-made problems."""

    name = "hand-made"

    def __init__(self, problems):
        self.listed = problems

    def problems(self, split):
        return self.listed


def test_one_revision_figures_by_level():
    problems = [Problem("p1", "Q1", "1", 1), Problem("p2", "Q2", "b", 2)]
    config = RevisionEvalConfig(attempts_per_problem=2, cases_per_problem=4)
    settings = SearchSettings(reviser=Reviser())
    first, second = one_revision(Proposer("ab"), Reviser(), SCORES, Problems(problems), problems, settings, config)
    # Q1: attempts a, b both wrong; each revised to "1", right. Q2: a wrong, b right; both revised to "1", wrong.
    # Controls: a fresh proposer sample answers "a" (wrong for both); the reviser with no attempt
    # answers "0" (wrong); no level has a second problem, so there is no other-problem attempt.
    assert first == OneRevisionLevel(1, 1, 0.0, 1, 0.0, 2, 1.0, 0.0, 0.0, 0.0, None, 0, None, None, None)
    assert second == OneRevisionLevel(2, 1, 0.5, 1, 0.5, 1, 0.0, 0.0, 0.0, 0.0, None, 1, 1.0, 1.0, None)


class WrongByQuestion(Proposer):
    """Every sample of question Qi answers "a" for even i, "b" for odd i, which is never right."""

    def generate(self, prompts, n=1, params=SamplingParams(), seed=0):
        rows = [[Completion(f"p\n\n\\boxed{{{'ab'[int(p.strip()[1:]) % 2]}}}", 3, "eos")] * n for p in prompts]
        return GenerationOutput(rows, [Usage.inference(self.flop_params, 1, 3 * n)] * len(prompts))


def test_the_one_revision_controls_swap_in_another_problems_attempt_of_the_same_level():
    problems = [Problem("p1", "Q1", "1", 3), Problem("p2", "Q2", "0", 3), Problem("p3", "Q3", "1", 4)]
    config = RevisionEvalConfig(attempts_per_problem=1, cases_per_problem=1)
    reviser = Reviser()
    settings = SearchSettings(reviser=reviser)
    three, four = one_revision(WrongByQuestion(), reviser, SCORES, Problems(problems), problems, settings, config)
    # The reviser answers the number of attempts it sees: "1" with an attempt (right for Q1 and
    # Q3), "0" without (right for Q2 only); a fresh proposer sample is always wrong.
    assert (three.incorrect_revised, three.revised_correct, three.fresh_sample_correct) == (2, 0.5, 0.0)
    assert (three.without_attempt_correct, three.other_attempt_correct) == (0.5, 0.5)
    assert (four.revised_correct, four.without_attempt_correct, four.other_attempt_correct) == (1.0, 0.0, None)
    one_attempt = [p for p in reviser.prompts if p.count("<attempt>") == 1]
    assert sorted((p.strip()[-2:], p[p.index("boxed{") + 6]) for p in one_attempt) == [
        ("Q1", "a"),  # Q2's attempt, the other problem of level 3
        ("Q1", "b"),  # its own attempt
        ("Q2", "a"),
        ("Q2", "b"),
        ("Q3", "b"),  # level 4 has no other problem: its own attempt only
    ]


def test_the_parallel_sequential_sweep_resamples_chains_and_shares_compute():
    problems = [Problem("p1", "Q1", "2", 3)]
    config = RevisionEvalConfig(budgets=[4, 2], resamples=3, bootstrap=10)
    assert config.budgets == [2, 4] and config.lengths() == [1, 2, 4]
    settings = SearchSettings(reviser=Reviser())
    points = revision_ratios(Proposer("abab"), SCORES, Problems(problems), problems, settings, config)
    at = {(p.strategy, p.budget): p for p in points if p.level == 3}
    assert set(at) == {
        (f"revisions(L={length}{how})", n) for how in ("", ",majority") for n in (2, 4) for length in (1, 2, 4)
    } - {("revisions(L=4)", 2), ("revisions(L=4,majority)", 2)}
    # Only the one chain of four reaches the answer 2 (attempts a, 1, 2, 3); shorter ones stop at 1.
    assert {key: p.accuracy for key, p in at.items() if p.accuracy} == {
        ("revisions(L=4)", 4): 1.0,
        ("revisions(L=4,majority)", 4): 1.0,
    }
    for length in (1, 2):
        assert at[f"revisions(L={length})", 2].flops == at[f"revisions(L={length})", 4].flops / 2
    assert best_lengths(points)[3] == {2: [1, 2], 4: [4]}
    with pytest.raises(ValueError, match="budget 6 is not a power of 2"):
        RevisionEvalConfig(budgets=[6])
