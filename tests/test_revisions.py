"""Sequential revisions: chains, the context window, selection, compute, and the real path on
tiny models."""

import pytest

from tests.conftest import SCORES, Proposer, Reviser
from ttc_runtime.compute import Compute, Usage
from ttc_runtime.generation.base import SamplingParams
from ttc_runtime.generation.hf import TransformersGenerator
from ttc_runtime.scoring import ProposerMarginScorer
from ttc_runtime.strategies import BestOfN, SearchSettings, SequentialRevisions, StrategyConfig, select_chains
from ttc_runtime.strategies.base import Candidate


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
