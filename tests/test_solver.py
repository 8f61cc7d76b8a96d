"""The runtime ``Solver`` and ``ttc solve``: decisions, batching, compute, bad queries."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from ttc_runtime.env.actions import ActionSpace
from ttc_runtime.policies.features import FeatureConfig, build_featurizer
from ttc_runtime.policies.learned import AllocatorPolicy, PolicyConfig
from ttc_runtime.trainers.allocator import AllocatorTrainConfig, train_policy

from tests.conftest import biased_model
from ttc_runtime.cli import main
from ttc_runtime.config import ConfigError
from ttc_runtime.generation.base import PromptTooLong, SamplingParams
from ttc_runtime.outcomes import arm_outcomes
from ttc_runtime.pool import RolloutPool
from ttc_runtime.prompts import PromptConfig
from ttc_runtime.solver import BadQuery, Query, Solution, Solver, SolverConfig, best_text, question_seed
from ttc_runtime.strategies import Arm, Candidate, StrategyConfig

BON = StrategyConfig(name="best_of_n_weighted")
MAJORITY = StrategyConfig(name="majority")
BEAM2 = StrategyConfig(name="beam_search", beam_width=2, max_rounds=3)
REV2 = StrategyConfig(name="revisions", chain_length=2)
QUESTIONS = ["Evaluate left to right:\n4-2", "Evaluate left to right:\n9+7*3-1", "Evaluate left to right:\n5*5"]


def forced_policy(directory, strategy: StrategyConfig, arms: list[Arm]) -> str:
    """A saved fixed-budget policy over ``arms`` (n-gram features) that always picks ``strategy``:
    every weight zero but the strategy head's bias."""
    space = ActionSpace.from_arms(arms, adaptive=False)
    features = FeatureConfig(kind="ngrams", ngram_features=32)
    policy = AllocatorPolicy(32 + len(space.budgets), space, PolicyConfig(hidden=8, layers=1))
    with torch.no_grad():
        for parameter in policy.parameters():
            parameter.zero_()
        policy.strategy_head.bias[space.strategies.index(strategy.name)] = 10.0
    policy.save(directory, features)
    return str(directory)


def config(model_dir, **changes) -> SolverConfig:
    base = {
        "proposer": str(model_dir),
        "verifier": {"kind": "proposer_margin"},
        "budget": 4,
        "max_budget": 8,
        "sampling": {"max_new_tokens": 12, "temperature": 1.0},
        **changes,
    }
    return SolverConfig.model_validate_json(json.dumps(base))


def same(a, b) -> bool:
    """Two solutions agree on everything but timing."""
    skip = {"decision_ms", "strategy_ms"}
    return {k: v for k, v in a.to_dict().items() if k not in skip} == {
        k: v for k, v in b.to_dict().items() if k not in skip
    }


@pytest.fixture(scope="module")
def trained_policy(tiny_model_dir, full_pool, tmp_path_factory):
    """A policy trained with REINFORCE on the test pool, reading the proposer's hidden states."""
    outcomes = arm_outcomes(RolloutPool(full_pool))
    featurizer = build_featurizer(FeatureConfig(), str(tiny_model_dir), PromptConfig())
    features, _ = featurizer(outcomes.questions)
    space = ActionSpace.from_arms(outcomes.within_budget(), adaptive=False)
    rows = np.arange(len(outcomes.questions))
    policy, _ = train_policy(features, outcomes, rows, space, AllocatorTrainConfig(updates=20, envs=8), 0.0, 1.0)
    directory = tmp_path_factory.mktemp("policy") / "fixed"
    policy.save(directory, FeatureConfig())
    return directory


def test_the_shown_solution_is_the_best_scored_with_an_answer_equal_to_the_chosen_one():
    """Selection merges equal answers, and a chain selection (revisions) may have met another
    member of the group first: the shown text is the best candidate of the whole group."""
    candidates = [
        Candidate("a", (), 0.2, "\\frac{\\sqrt{2}}{2}", True),
        Candidate("b", (), 0.9, "1", True),
        Candidate("c", (), 0.6, "\\frac{1}{\\sqrt{2}}", True),
        Candidate("d", (), 0.1, None, True),
    ]
    assert best_text(candidates, "\\frac{1}{\\sqrt{2}}") == "c"
    assert best_text(candidates, "\\sqrt{\\frac{1}{2}}") == "c"
    assert best_text(candidates, "1") == "b"
    assert best_text(candidates[3:], None) == "d"
    assert best_text([], None) == ""


def test_the_trained_policy_decides_and_a_batch_answers_as_each_question_alone(tiny_model_dir, trained_policy):
    solver = Solver.load(config(tiny_model_dir, policy=str(trained_policy), revision_model=str(tiny_model_dir)))
    batch = solver.solve_batch([Query(q) for q in QUESTIONS])
    for question, solution in zip(QUESTIONS, batch):
        assert solution.chosen_by == "allocator" and solution.budget == 4
        assert Arm(solution.strategy, 4) in solver.allocator.policy.actions.available
        assert solution.decision_flops > 0 and solution.decision_seconds > 0
        assert solution.flops == solution.compute.flops + solution.decision_flops
        assert solution.compute.generations == 4
        assert len(solution.candidates) >= 1
        alone = solver.solve(question)
        assert same(alone, solution)
    # the batch's sampling depends on each question's own seed only
    assert solver.solve(QUESTIONS[0], seed=1).seed == 1
    assert question_seed(0, QUESTIONS[0]) != question_seed(0, QUESTIONS[1])


def test_a_policy_that_can_choose_revisions_needs_a_revision_model(tiny_model_dir, tmp_path):
    arms = [Arm(s, n) for n in (2, 4) for s in (BON, REV2)]
    policy = forced_policy(tmp_path / "policy", BON, arms)
    with pytest.raises(ConfigError, match="needs a revision model"):
        Solver.load(config(tiny_model_dir, policy=policy))


def test_budgets_fallback_and_requested_strategies(tiny_model_dir, tmp_path):
    arms = [Arm(s, n) for n in (2, 4) for s in (BON, BEAM2)]
    solver = Solver.load(config(tiny_model_dir, policy=forced_policy(tmp_path / "p", BEAM2, arms)))
    chosen = solver.solve(QUESTIONS[0], budget=4)
    assert (chosen.strategy, chosen.budget, chosen.chosen_by, chosen.note) == (BEAM2, 4, "allocator", None)
    assert chosen.knobs() == {"beam_width": 2}
    # a budget between trained ones: decided at the one below, run at the one asked
    assert (solver.solve(QUESTIONS[0], budget=8).strategy, solver.solve(QUESTIONS[0], budget=8).budget) == (BEAM2, 8)
    for budget in (3, 1):  # beam width 2 does not divide 3 and exceeds 1: the default runs, with the reason
        fallback = solver.solve(QUESTIONS[0], budget=budget)
        assert (fallback.strategy, fallback.chosen_by) == (BON, "default")
        assert f"cannot run at budget {budget}" in fallback.note
    asked = solver.solve(QUESTIONS[1], budget=2, strategy=MAJORITY)
    assert (asked.strategy, asked.chosen_by, asked.decision_flops, asked.decision_seconds) == (
        MAJORITY,
        "request",
        0,
        0,
    )
    assert asked.compute.generations == 2 and asked.flops == asked.compute.flops
    plain = Solver.load(config(tiny_model_dir))
    assert plain.solve(QUESTIONS[0]).chosen_by == "default"
    # a question with room for one solution but not for search: the allocator's beam search falls back
    long = long_question(solver, 240)
    fallback = solver.solve(long)
    assert (fallback.strategy, fallback.chosen_by) == (BON, "default")
    assert "the 23 tokens beam_search(M=2) needs" in fallback.note


def test_bad_queries_are_refused_before_any_work(tiny_model_dir):
    solver = Solver.load(config(tiny_model_dir))
    cases = [
        (Query("   "), "the question is empty"),
        (Query(QUESTIONS[0], budget=0), "budget must be an integer from 1 to 8"),
        (Query(QUESTIONS[0], budget=9), "budget must be an integer from 1 to 8"),
        (Query(QUESTIONS[0], budget=2, strategy=StrategyConfig(name="beam_search")), "cannot run at budget 2"),
        (Query(QUESTIONS[0], strategy=REV2), "needs a revision model"),
        (Query("1+" * 200), "leaves room for"),
    ]
    for query, message in cases:
        with pytest.raises(BadQuery, match=message):
            solver.solve_batch([Query(QUESTIONS[0]), query])
    for value in (True, -1, 2**64, 1.5, "3"):
        with pytest.raises(BadQuery, match=f"seed must be an integer from 0 to 2\\*\\*64 - 1, got {value!r}"):
            solver.check(Query(QUESTIONS[0], seed=value))
    for value in (True, 4.0, "4"):
        with pytest.raises(BadQuery, match=f"budget must be an integer from 1 to 8 generations, got {value!r}"):
            solver.check(Query(QUESTIONS[0], budget=value))
    with pytest.raises(ValueError, match="budget 16 is above max_budget 8"):
        config(tiny_model_dir, budget=16)
    with pytest.raises(ValueError, match="verifier_model"):
        config(tiny_model_dir, verifier={"kind": "token_classification"})


def test_a_typed_chain_is_asked_in_the_format_of_the_task_the_proposer_learned(tiny_model_dir):
    plain = Solver.load(config(tiny_model_dir))
    assert plain.check(Query("7-3*2+5")).question == "7-3*2+5"
    solver = Solver.load(config(tiny_model_dir, task={}))
    # The family task pads every chain to its longest family's 7 operations (two spaces each).
    assert solver.check(Query("7-3*2+5")).question == "Evaluate left to right:\n7-3*2+5" + " " * 8
    assert solver.check(Query("3+4")).question == "Compute:\n3+4" + " " * 12
    solution = solver.solve("7 - 3*2 + 5", budget=1)
    assert solution.question == "Evaluate left to right:\n7-3*2+5" + " " * 8
    chains = Solver.load(config(tiny_model_dir, task={"name": "synthetic"}))
    assert chains.check(Query("3+4")).question == "Evaluate left to right:\n3+4        "
    # Under the task's header without the padding, as a person copies a question.
    assert chains.check(Query("Evaluate left to right:\n3+4")).question == "Evaluate left to right:\n3+4        "


def test_solve_command_answers_one_question_and_a_jsonl_file(tiny_model_dir, tmp_path, capsys):
    path = tmp_path / "solver.yaml"
    path.write_text(json.dumps(config(tiny_model_dir).model_dump(mode="json")))
    assert main(["solve", QUESTIONS[0], "--config", str(path), "--json", "--seed", "3"]) == 0
    printed = json.loads(capsys.readouterr().out)
    direct = Solver.load(config(tiny_model_dir)).solve(QUESTIONS[0], seed=3)
    assert printed["answer"] == direct.answer and printed["compute"] == direct.compute.to_dict()
    assert printed["strategy"] == "best_of_n_weighted" and printed["budget"] == 4

    source = tmp_path / "questions.jsonl"
    rows = [
        {"id": "a", "question": QUESTIONS[0]},
        {"id": "b", "question": QUESTIONS[1], "budget": 2, "strategy": "majority"},
        {"id": "c", "question": QUESTIONS[2], "strategy": {"name": "beam_search", "beam_width": 2, "max_rounds": 3}},
    ]
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "answers.jsonl"
    assert (
        main(["solve", "--input", str(source), "--output", str(out), "--config", str(path), "--batch-size", "2"]) == 0
    )
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["strategy"], r["budget"]) for r in written] == [
        ("a", "best_of_n_weighted", 4),
        ("b", "majority", 2),
        ("c", "beam_search", 4),
    ]
    at_seed_0 = Solver.load(config(tiny_model_dir)).solve(QUESTIONS[0])
    assert (written[0]["answer"], written[0]["compute"]) == (at_seed_0.answer, at_seed_0.compute.to_dict())

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": QUESTIONS[0], "budget": 99}) + "\n")
    assert main(["solve", "--input", str(bad), "--output", str(tmp_path / "never.jsonl"), "--config", str(path)]) == 2
    assert "budget must be an integer from 1 to 8" in capsys.readouterr().err
    assert not (tmp_path / "never.jsonl").exists()
    assert main(["solve", QUESTIONS[0], "--config", str(path), "--strategy", "beam_serch"]) == 2
    assert "--strategy: name" in capsys.readouterr().err


def long_question(solver: Solver, tokens: int) -> str:
    """A question whose prompt is ``tokens`` tokens (the embedded tokenizer: a space is one token)."""
    question = "Evaluate left to right:\n" + "1+" * 20 + "1"
    question = " " * (tokens - solver.prompt_tokens(question)) + question
    assert solver.prompt_tokens(question) == tokens
    return question


class FailsOn:
    """The wrapped generator, except that a call with a prompt holding ``marker`` raises: a fault
    that one query triggers inside a batched call."""

    def __init__(self, generator, marker: str) -> None:
        self.generator, self.marker = generator, marker

    def __getattr__(self, name):
        return getattr(self.generator, name)

    def generate(self, prompts, n=1, params=SamplingParams(), seed=0):
        if any(self.marker in prompt for prompt in prompts):
            raise RuntimeError(f"a fault on {self.marker!r}")
        return self.generator.generate(prompts, n, params, seed)


EIGHT = [f"Evaluate left to right:\n{a}*{a}-{a}" for a in range(1, 9)]


def test_a_question_too_long_for_search_is_refused_alone_and_the_eight_in_its_batch_are_answered(tiny_model_dir):
    solver = Solver.load(config(tiny_model_dir))  # a context of 256 tokens, solutions of up to 12
    # Room for one solution (a prompt of 244 tokens at most) but not for search, which may sample a
    # step of 12 tokens after a partial solution of 11 (233 at most): refused alone, before any work.
    long = long_question(solver, 240)
    queries = [Query(q, budget=2, strategy=BEAM2, seed=7) for q in EIGHT]
    queries.insert(4, Query(long, budget=2, strategy=BEAM2, seed=7))
    outcomes = solver.solve_each(queries)
    refused = outcomes.pop(4)
    assert isinstance(refused, BadQuery)
    assert str(refused) == (
        "the question's prompt is 240 tokens; the proposer's context of 256 tokens leaves room for 233 next to "
        "the 23 tokens beam_search(M=2) needs"
    )
    for question, outcome in zip(EIGHT, outcomes, strict=True):
        assert isinstance(outcome, Solution) and same(outcome, solver.solve(question, 2, BEAM2, seed=7))
    with pytest.raises(BadQuery, match="leaves room for 233"):
        solver.check(Query(long, strategy=StrategyConfig(name="dvts", beam_width=2)))
    assert solver.solve(long).strategy == BON  # one solution's room is enough for best-of-N


def test_a_query_that_fails_inside_a_batched_call_fails_alone(tiny_model_dir):
    solver = Solver.load(config(tiny_model_dir))
    solver.generator = FailsOn(solver.generator, "poison")
    queries = [Query(q, budget=2) for q in EIGHT]
    queries.insert(5, Query("Evaluate left to right:\npoison", budget=2))
    outcomes = solver.solve_each(queries)
    failed = outcomes.pop(5)
    assert isinstance(failed, RuntimeError) and str(failed) == "a fault on 'poison'"
    for question, outcome in zip(EIGHT, outcomes, strict=True):
        assert isinstance(outcome, Solution) and same(outcome, solver.solve(question, budget=2))
    with pytest.raises(RuntimeError, match="a fault on 'poison'"):
        solver.solve_batch(queries)


@pytest.fixture(scope="module")
def stepwise_model_dir(tmp_path_factory):
    """A proposer of a 256-token context that writes steps of ones and newlines, a step separator
    every dozen tokens or so: search grows partial solutions over several rounds."""
    model, tokenizer = biased_model({"1": 8.0, "\n": 7.0})
    model.config.max_position_embeddings = 256
    path = tmp_path_factory.mktemp("stepwise")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize(
    "strategy",
    [
        StrategyConfig(name="beam_search", beam_width=2),
        StrategyConfig(name="lookahead", beam_width=2, lookahead=1),
        StrategyConfig(name="dvts", beam_width=2),
    ],
)
def test_search_runs_at_the_longest_question_it_has_room_for(stepwise_model_dir, strategy):
    solver = Solver.load(config(stepwise_model_dir, sampling={"max_new_tokens": 24, "temperature": 1.0}))
    longest = long_question(solver, 256 - (2 * 24 - 1))
    solution = solver.solve(longest, budget=2, strategy=strategy, seed=2)
    # a step was sampled after a partial solution: the search needed more than one solution's room
    tokens = solver.generator.tokenizer
    assert max(len(tokens(c.text)["input_ids"]) for c in solution.candidates) > 24
    with pytest.raises(BadQuery, match=re.escape(f"leaves room for 209 next to the 47 tokens {strategy.label} needs")):
        solver.check(Query(" " + longest, budget=2, strategy=strategy))
    # With room for one solution only, the second round's prompts overflow the context: what failed
    # whole batches before search had its own room in the check.
    crowded = long_question(solver, 256 - 24)
    with pytest.raises(PromptTooLong, match="leave no room for max_new_tokens 24 in the model's context of 256"):
        strategy.build(2).run([crowded], solver.generator, solver.scorer, 2, solver.settings, seed=1)
