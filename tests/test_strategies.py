"""Strategies: hand-checked bookkeeping on scripted fakes, invariants, bad input, and the real path."""

import math
from dataclasses import replace

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ttc_runtime.compute import Compute, Usage
from ttc_runtime.config import ConfigError, parse_config
from ttc_runtime.generation.base import Completion, GenerationOutput, SamplingParams
from ttc_runtime.generation.hf import TransformersGenerator
from ttc_runtime.prompts import PromptConfig
from ttc_runtime.scoring import ProposerMarginScorer, ScoreOutput
from ttc_runtime.selection import best_of_n_weighted, majority_vote
from ttc_runtime.strategies import (
    MAX_STEPS,
    STRATEGIES,
    BeamSearch,
    BestOfN,
    DiverseTreeSearch,
    SearchSettings,
    StrategyConfig,
    StrategyName,
)
from ttc_runtime.strategies.base import Beam
from ttc_runtime.strategies.beam import _best_distinct, rollout_steps
from ttc_runtime.tasks.grading import STEP_SEPARATOR, split_steps

PROMPT = PromptConfig()
LETTERS = "abcd"


class TreeGenerator:
    """A scripted step-wise proposer. From a prefix of d steps (a path such as ``0b/1d``), sample j
    is step ``{d}{LETTERS[j]}``; at depth ``depth`` the step is ``\\boxed{x}`` with x the path's
    first letter, ending the solution. ``finals`` lists first steps that end the solution at once.
    Greedy decoding always takes letter a. Every prompt costs 1 token, every step 2."""

    flop_params = 3

    def __init__(self, depth=2, finals=()):
        self.depth, self.finals, self.calls = depth, set(finals), []

    def _step(self, steps, j):
        if len(steps) == self.depth or (not steps and f"0{LETTERS[j]}" in self.finals):
            first = steps[0][1] if steps else LETTERS[j]
            return f"\\boxed{{{first}}}", "eos"
        return f"{len(steps)}{LETTERS[j]}", "stop"

    def generate(self, prompts, n=1, params=SamplingParams(), seed=0):
        self.calls.append((len(prompts), n, params.temperature, params.stop_count))
        rows, usages = [], []
        for prompt in prompts:
            steps = split_steps(prompt.split(STEP_SEPARATOR, 1)[1])
            row = []
            for j in range(n):
                taken, texts, reason = list(steps), [], "stop"
                for _ in range(params.stop_count):  # greedy rollouts take several steps
                    text, reason = self._step(taken, 0 if params.temperature == 0 else j)
                    taken.append(text)
                    texts.append(text)
                    if reason == "eos":
                        break
                row.append(Completion(STEP_SEPARATOR.join(texts), 2 * len(texts), reason))
            rows.append(row)
            usages.append(Usage.inference(self.flop_params, 1, sum(c.num_tokens for c in row)))
        return GenerationOutput(rows, usages)


class PathScorer:
    """Scores each step by the path up to it: ``paths`` first, else by the step's own text. Each
    scored pair costs one verifier token per step. Records what it was asked to score."""

    flop_params = 5
    STEP = {"a": 0.5, "b": 0.9, "c": 0.1, "d": 0.7}
    BOXED = {"b": 0.6, "d": 0.8}

    def __init__(self, paths=None):
        self.paths, self.seen = paths or {}, []

    def value(self, steps):
        path = "/".join(steps)
        if path in self.paths:
            return self.paths[path]
        last = steps[-1]
        return self.BOXED.get(last[7], 0.3) if last.startswith("\\boxed") else self.STEP[last[1]]

    def score(self, questions, solutions):
        self.seen.extend("/".join(s) for s in solutions)
        scores = [[self.value(s[: i + 1]) for i in range(len(s))] for s in solutions]
        return ScoreOutput(scores, [Usage.inference(self.flop_params, len(s)) for s in solutions])


def usage(params, prompt_tokens, generated_tokens=0):
    return Usage.inference(params, prompt_tokens, generated_tokens)


def test_beam_search_keeps_the_best_n_over_m_and_expands_each_by_m():
    generator, scorer = TreeGenerator(), PathScorer()
    (result,) = BeamSearch(beam_width=2).run(["Q"], generator, scorer, budget=4)
    # Round 0: 4 first steps 0a .5, 0b .9, 0c .1, 0d .7 -> keep 0b, 0d. Round 1: 2 children each,
    # 1b (.9) beats 1a (.5) -> keep 0b/1b, 0d/1b. Round 2: every child ends with \boxed{first letter}.
    assert generator.calls == [(1, 4, 0.8, 1), (2, 2, 0.8, 1), (2, 2, 0.8, 1)]
    assert [c.text for c in result.candidates] == [
        "0b\n\n1b\n\n\\boxed{b}",
        "0b\n\n1b\n\n\\boxed{b}",
        "0d\n\n1b\n\n\\boxed{d}",
        "0d\n\n1b\n\n\\boxed{d}",
    ]
    assert [c.step_scores for c in result.candidates] == [(0.9, 0.9, 0.6)] * 2 + [(0.7, 0.9, 0.8)] * 2
    assert all(c.finished for c in result.candidates)
    assert result.answer == "d"  # weighted: d 1.6 against b 1.2
    # Proposer: the prompt's 1 token once (later rounds continue prefixes already charged), 12 steps
    # of 2 tokens. Verifier: 4 prefixes of 1, 2, 3 steps.
    assert result.compute == Compute(usage(3, 1, 24), usage(5, 4 * (1 + 2 + 3)), generations=4)


def test_beam_search_moves_finished_candidates_to_the_pool_and_samples_only_what_is_left():
    generator, scorer = TreeGenerator(finals=["0c"]), PathScorer()
    (result,) = BeamSearch(beam_width=2).run(["Q"], generator, scorer, budget=4)
    # Round 0: \boxed{c} ends at once (pool 1, 3 left): keep 0b (2 children) and 0d (1 child).
    # Round 1: 0b/1b .9, 0b/1a .5, 0d/1a .5 -> 0b/1b (2 children), 0b/1a (the 1 left; ties keep order).
    assert generator.calls == [(1, 4, 0.8, 1), (1, 1, 0.8, 1), (1, 2, 0.8, 1), (1, 1, 0.8, 1), (1, 2, 0.8, 1)]
    assert sorted(c.text for c in result.candidates) == sorted(
        ["\\boxed{c}", "0b\n\n1b\n\n\\boxed{b}", "0b\n\n1b\n\n\\boxed{b}", "0b\n\n1a\n\n\\boxed{b}"]
    )
    assert result.compute.proposer.generated_tokens == 2 * (4 + 3 + 3)
    assert result.answer == "b"


def test_lookahead_ranks_by_the_rollout_and_charges_it():
    # 0c looks bad alone (.1) but its greedy continuation 0c/1a is the best path seen (.95).
    scorer = PathScorer({"0c/1a": 0.95})
    generator = TreeGenerator()
    (result,) = BeamSearch(beam_width=2, lookahead=1).run(["Q"], generator, scorer, budget=4)
    assert generator.calls == [(1, 4, 0.8, 1), (4, 1, 0.0, 1), (2, 2, 0.8, 1), (4, 1, 0.0, 1), (2, 2, 0.8, 1)]
    assert "0c/1a" in scorer.seen[:4]  # the rollout's text is what gets scored (the prior art's bug)
    assert {c.answer for c in result.candidates} == {"c"} and result.answer == "c"
    # Sampled: 12 steps; rolled out: 4 + 4 one-step rollouts; 2 tokens each. The prompt once: the
    # rollouts and later rounds continue prefixes already charged.
    assert result.compute.proposer == usage(3, 1, 2 * (12 + 8))
    assert result.compute.generations == 8  # N x (k + 1)


def test_lookahead_deeper_than_its_solutions_is_charged_for_the_rollouts_it_ran():
    # Solutions here are 3 steps: a rollout from a first step takes 2 (1a, then \boxed{}), from a
    # second step 1. A depth of MAX_STEPS is the search with k = 2, spend and generations alike.
    deep = BeamSearch(beam_width=2, lookahead=MAX_STEPS, max_rounds=MAX_STEPS).run(
        ["Q"], TreeGenerator(), PathScorer(), budget=4
    )
    assert deep == BeamSearch(beam_width=2, lookahead=2).run(["Q"], TreeGenerator(), PathScorer(), budget=4)
    assert deep[0].compute.generations == 4 * (2 + 1)
    wide = BeamSearch(beam_width=2, max_rounds=MAX_STEPS).run(["Q"], TreeGenerator(), PathScorer(), budget=4)
    assert wide[0].compute.generations == 4  # every candidate finished in 3 of the rounds allowed


def test_a_rollout_counts_the_steps_it_took():
    assert rollout_steps(Completion("1a\n\n2a\n\n3a", 6, "stop"), 3) == 3  # the third separator ended it
    assert rollout_steps(Completion("1a\n\n\\boxed{a}", 4, "eos"), 3) == 2
    assert rollout_steps(Completion("1a\n\n", 3, "eos"), 3) == 2  # the end of sequence opened a step
    assert rollout_steps(Completion("1a", 2, "length"), 3) == 1
    assert rollout_steps(Completion("a\n\nb\n\nc", 5, "eos"), 2) == 2


def test_dvts_keeps_the_best_child_of_each_subtree():
    generator, scorer = TreeGenerator(), PathScorer()
    (result,) = DiverseTreeSearch(beam_width=2).run(["Q"], generator, scorer, budget=4)
    assert generator.calls == [(2, 2, 0.8, 1)] * 3  # 2 subtrees x 2 children, 3 rounds
    assert [c.text for c in result.candidates] == ["0b\n\n1b\n\n\\boxed{b}"] * 2
    # The prompt once, though both subtrees start from it; 12 steps of 2 tokens.
    assert result.compute == Compute(usage(3, 1, 24), usage(5, 4 * (1 + 2 + 3)), generations=4)


def test_duplicates_are_kept_once_until_the_beam_runs_out_of_distinct_prefixes():
    a, a_copy, b = Beam("x"), Beam("x"), Beam("y")
    ranked = [(0.9, a), (0.9, a_copy), (0.5, b)]
    assert _best_distinct(ranked, 2) == [a, b]
    kept = _best_distinct(ranked, 3)
    assert kept[:2] == [a, b] and kept[2] is a_copy


def test_empty_steps_rank_last_and_add_no_step():
    beam = Beam("0a" + STEP_SEPARATOR).extend(Completion("  ", 1, "stop"), 100)
    assert beam.blank_step and split_steps(beam.text) == ["0a"] and beam.open
    assert Beam().extend(Completion("x", 100, "stop"), 100).finish_reason == "length"


class FullSamples:
    """Full solutions: sample j of every prompt answers ``answers[j]``, 3 tokens each."""

    flop_params = 2

    def __init__(self, answers):
        self.answers = answers

    def generate(self, prompts, n=1, params=SamplingParams(), seed=0):
        rows = [[Completion(f"1a\n\n\\boxed{{{self.answers[j]}}}", 3, "eos") for j in range(n)] for _ in prompts]
        return GenerationOutput(rows, [Usage.inference(self.flop_params, 1, 3 * n)] * len(prompts))


class ByAnswer:
    flop_params = 1

    def __init__(self, values):
        self.values = values

    def score(self, questions, solutions):
        scores = [[0.5, self.values[s[-1][7]]] for s in solutions]
        return ScoreOutput(scores, [Usage.inference(1, 2)] * len(solutions))


def test_best_of_n_selection_rules_and_compute():
    generator = FullSamples("aabc")
    scorer = ByAnswer({"a": 0.2, "b": 0.5, "c": 0.9})
    majority, weighted, naive = (
        BestOfN(s).run(["Q", "R"], generator, scorer, 4) for s in ("majority", "weighted", "naive")
    )
    assert [r.answer for r in majority] == ["a", "a"]
    assert [r.answer for r in weighted] == ["c", "c"]  # a 0.4, b 0.5, c 0.9
    assert [r.answer for r in naive] == ["c", "c"]
    assert majority[0].compute == Compute(usage(2, 1, 12), Usage(), generations=4)  # no verifier
    assert weighted[1].compute == Compute(usage(2, 1, 12), usage(1, 8), generations=4)
    assert BestOfN("majority").run(["Q"], generator, None, 4)[0].answer == "a"


@given(
    st.lists(st.tuples(st.sampled_from("abcde"), st.floats(0, 1)), min_size=1, max_size=20),
)
def test_weighted_picks_a_candidate_answer_and_equals_majority_when_scores_are_equal(pairs):
    answers = [a for a, _ in pairs]
    assert best_of_n_weighted(answers, [s for _, s in pairs]) in answers
    assert best_of_n_weighted(answers, [0.7] * len(answers)) == majority_vote(answers)


class NaNScorer:
    flop_params = 1

    def score(self, questions, solutions):
        return ScoreOutput([[math.nan] * len(s) for s in solutions], [Usage()] * len(solutions))


@pytest.mark.parametrize(
    "run, message",
    [
        (lambda g, s: BeamSearch(3).run(["Q"], g, s, 4), "budget 4 is not divisible by beam width 3"),
        (lambda g, s: BeamSearch(8).run(["Q"], g, s, 4), "beam width 8 is larger than the budget 4"),
        (lambda g, s: BestOfN().run(["Q"], g, s, 0), "budget must be a positive number of generations, got 0"),
        (lambda g, s: DiverseTreeSearch(2).run(["Q"], g, None, 4), "strategy 'dvts' needs a scorer"),
        (lambda g, s: BeamSearch(2).run(["Q"], g, NaNScorer(), 4), r"returned nan .* must lie in \[0, 1\]"),
        (lambda g, s: BestOfN().run([" "], g, s, 4), "question 0 is empty"),
    ],
)
def test_bad_input_is_an_error(run, message):
    with pytest.raises(ValueError, match=message):
        run(TreeGenerator(), PathScorer())


def test_strategy_config_names_the_registry_and_resolves_the_width():
    assert set(STRATEGIES) == set(StrategyName.__args__)
    sqrt = StrategyConfig(name="beam_search", beam_width="sqrt")
    assert [sqrt.width(n) for n in (1, 2, 4, 8, 16, 32, 64)] == [1, 1, 2, 2, 4, 4, 8]
    assert sqrt.build(64).beam_width == 8 and sqrt.label == "beam_search(M=sqrt)"
    lookahead = StrategyConfig(name="lookahead", beam_width=4, lookahead=3)
    assert lookahead.label == "lookahead(M=4,k=3)" and lookahead.build(16).lookahead == 3
    assert lookahead.unusable(1) == "beam width 4 is larger than the budget 1"
    assert StrategyConfig(name="majority").unusable(3) is None
    with pytest.raises(ValueError, match="larger than the budget"):
        lookahead.build(2)


@pytest.mark.parametrize(
    "knobs, message",
    [
        ({"name": "lookahead", "lookahead": 10**30}, "lookahead: Input should be less than or equal to 1024"),
        ({"name": "lookahead", "lookahead": MAX_STEPS + 1}, "lookahead: Input should be less than or equal to 1024"),
        ({"name": "beam_search", "max_rounds": 10**30}, "max_rounds: Input should be less than or equal to 1024"),
        ({"name": "dvts", "max_rounds": 0}, "max_rounds: Input should be greater than or equal to 1"),
        ({"name": "beam_search", "beam_width": 0}, "beam_width: Value error, beam_width must be at least 1, got 0"),
        ({"name": "revisions", "chain_length": -1}, "chain_length: Value error, chain_length must be at least 1"),
        ({"name": "lookahead", "lookahead": True}, "lookahead: Input should be a valid integer"),
        ({"name": "dvts", "max_rounds": True}, "max_rounds: Input should be a valid integer"),
        ({"name": "beam_search", "beam_width": True}, "beam_width.int: Input should be a valid integer"),
        ({"name": "revisions", "chain_length": True}, "chain_length.int: Input should be a valid integer"),
        ({"name": "beam_search", "max_rounds": 4.0}, "max_rounds: Input should be a valid integer"),
    ],
)
def test_knobs_beyond_their_bounds_are_refused_naming_the_knob_and_the_limit(knobs, message):
    with pytest.raises(ConfigError, match=f"^strategy: {message}"):
        parse_config(StrategyConfig, knobs, "strategy")


def test_knobs_bounded_by_the_budget_name_the_knob_and_the_budget():
    assert StrategyConfig(name="dvts", beam_width=8).unusable(4) == "beam width 8 is larger than the budget 4"
    assert StrategyConfig(name="lookahead", beam_width=3).unusable(4) == "budget 4 is not divisible by beam width 3"
    assert StrategyConfig(name="revisions", chain_length=8).unusable(4) == "chain length 8 is larger than the budget 4"
    assert StrategyConfig(name="revisions", chain_length="all").unusable(4) is None


def test_search_needs_context_for_a_step_after_a_partial_solution():
    rooms = {name: STRATEGIES[name](StrategyConfig(name=name, beam_width=2), 4).context_room(48) for name in STRATEGIES}
    assert rooms == {
        "majority": 48,
        "best_of_n_weighted": 48,
        "best_of_n_naive": 48,
        "beam_search": 95,
        "lookahead": 95,
        "dvts": 95,
        "revisions": 48,
    }


@pytest.mark.parametrize(
    "config",
    [
        {"name": "best_of_n_weighted"},
        {"name": "beam_search", "beam_width": 2, "max_rounds": 3},
        {"name": "lookahead", "beam_width": 2, "lookahead": 1, "max_rounds": 3},
        {"name": "dvts", "beam_width": 2, "max_rounds": 3},
    ],
)
def test_real_models_reproducible_and_independent_of_the_batch(tiny_model_dir, config):
    generator = TransformersGenerator.from_pretrained(tiny_model_dir)
    scorer = ProposerMarginScorer.from_pretrained(tiny_model_dir)
    settings = SearchSettings(sampling=SamplingParams(max_new_tokens=12))
    strategy = StrategyConfig(**config).build(4)
    questions = ["Evaluate left to right:\n3+4*2", "Evaluate left to right:\n9-1"]
    batch = strategy.run(questions, generator, scorer, 4, settings, seed=[11, 12])
    alone = strategy.run(questions[1:], generator, scorer, 4, settings, seed=[12])
    assert batch == strategy.run(questions, generator, scorer, 4, settings, seed=[11, 12])
    assert alone[0] == batch[1]
    for result in batch:
        assert 1 <= len(result.candidates) <= 4
        assert all(len(c.step_scores) == len(c.steps) for c in result.candidates)
        compute = result.compute
        assert compute.proposer.generated_tokens > 0 and compute.verifier.prompt_tokens > 0
        assert compute.proposer.flops == 2 * generator.flop_params * compute.proposer.tokens
        assert compute.verifier.flops == 2 * scorer.flop_params * compute.verifier.tokens


@pytest.fixture(scope="module")
def margin_prm(tiny_model_dir, tmp_path_factory):
    from ttc_runtime.models import load_causal_lm, load_tokenizer
    from ttc_runtime.scoring import MarginPRMForTokenClassification, TokenClassificationPRM

    path = tmp_path_factory.mktemp("margin-prm")
    tokenizer = load_tokenizer(tiny_model_dir)
    model = MarginPRMForTokenClassification.from_proposer(load_causal_lm(tiny_model_dir), tokenizer)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return TokenClassificationPRM.from_pretrained(path)


@pytest.mark.parametrize(
    "config",
    [
        {"name": "beam_search", "beam_width": 2, "max_rounds": 4},
        {"name": "lookahead", "beam_width": 2, "lookahead": 1, "max_rounds": 4},
        {"name": "dvts", "beam_width": 2, "max_rounds": 4},
    ],
)
def test_fused_margin_scoring_matches_full_rescoring(tiny_model_dir, margin_prm, config):
    from ttc_runtime.scoring.margin import fuse

    generator = TransformersGenerator.from_pretrained(tiny_model_dir)
    questions = ["Evaluate left to right:\n3+4*2", "Evaluate left to right:\n9-1"]
    fast = SearchSettings(sampling=SamplingParams(max_new_tokens=40))
    slow = SearchSettings(sampling=SamplingParams(max_new_tokens=40), fused_scoring=False)
    assert fuse(margin_prm, generator, fast.prompt) is not None
    strategy = StrategyConfig(**config).build(4)
    fused = strategy.run(questions, generator, margin_prm, 4, fast, seed=3)
    full = strategy.run(questions, generator, margin_prm, 4, slow, seed=3)
    # A random model often samples a number as several tokens that the tokenizer would write as
    # one, so the two paths' scores may differ here (the full path re-tokenizes the text; see the
    # next test for what the fused scores equal). Sampling itself is untouched by fusion.
    for a, b in zip(fused, full):
        assert all(len(c.step_scores) == len(c.steps) for c in a.candidates)
        assert a.compute.proposer.generated_tokens == b.compute.proposer.generated_tokens
        assert a.compute.verifier.flops < b.compute.verifier.flops  # the head only, no prefix re-read
    if config["name"] != "lookahead":  # without rollouts, the first round's samples are the same
        assert fused[0].candidates[0].text.split("\n\n")[0] == full[0].candidates[0].text.split("\n\n")[0]


def test_fused_scores_are_the_margin_prms_scores_of_the_sampled_tokens(tiny_model_dir, margin_prm):
    from ttc_runtime.scoring.margin import MarginState, fuse

    generator = TransformersGenerator.from_pretrained(tiny_model_dir)
    fused = fuse(margin_prm, generator, PromptConfig())
    prompt = PromptConfig().format("Evaluate left to right:\n3+4*2")
    params = SamplingParams(max_new_tokens=30, logprobs=True)
    for completion in generator.generate([prompt], n=4, params=params, seed=5).completions[0]:
        assert len(completion.logprobs) == len(completion.top_logprobs) == completion.num_tokens
        state = MarginState().extend(completion, fused.skip)
        prompt_ids = margin_prm.tokenizer(prompt)["input_ids"]
        ids = prompt_ids + [t for t in completion.token_ids if t not in generator.eos_ids.tolist()]
        with torch.no_grad():
            logits = margin_prm.model(
                input_ids=torch.tensor([ids]), solution_start=torch.tensor([len(prompt_ids)])
            ).logits
        assert fused.probabilities([state])[0] == pytest.approx(torch.sigmoid(logits[0, -1, 0]).item(), abs=1e-5)


def test_fused_step_scores_of_whole_samples_are_the_full_margin_prms(stepwise_pair):
    from ttc_runtime.scoring.margin import fuse

    generator, prm = stepwise_pair
    fused = fuse(prm, generator, PromptConfig())
    questions = ["Evaluate left to right:\n3+4*2", "Evaluate left to right:\n9-1"]
    params = SamplingParams(max_new_tokens=48, logprobs=True)
    output = generator.generate([PromptConfig().format(q) for q in questions], n=8, params=params, seed=7)
    samples = [c for row in output.completions for c in row]
    steps = [split_steps(c.text) for c in samples]
    assert {c.finish_reason for c in samples} == {"eos", "length"} and max(map(len, steps)) >= 3
    full = prm.score([q for q in questions for _ in range(8)], steps).step_scores
    for sample, mine, theirs in zip(samples, fused.step_scores(samples), full, strict=True):
        assert mine == pytest.approx(theirs, abs=1e-5), sample.text
    # Best-of-N scores its samples so: the same candidates and scores as the full scorer's, the
    # verifier charged one head read per scored step instead of a pass over every sample.
    settings = SearchSettings(sampling=SamplingParams(max_new_tokens=48))
    quick = BestOfN("weighted").run(questions, generator, prm, 8, settings, seed=[3, 4])
    slow = BestOfN("weighted").run(questions, generator, prm, 8, replace(settings, fused_scoring=False), seed=[3, 4])
    for a, b in zip(quick, slow, strict=True):
        assert [c.text for c in a.candidates] == [c.text for c in b.candidates] and a.answer == b.answer
        for x, y in zip(a.candidates, b.candidates):
            assert x.step_scores == pytest.approx(y.step_scores, abs=1e-5)
        scored = sum(len(c.step_scores) for c in a.candidates)
        assert a.compute.verifier == Usage.inference(fused.head_params, scored)
        assert b.compute.verifier.flops == 2 * prm.flop_params * b.compute.verifier.tokens
        assert a.compute.proposer == b.compute.proposer


def test_one_rule_charges_a_single_sample_the_same_on_every_path(stepwise_pair):
    """At N = 1 a plain sample, best-of-N weighted and beam search (M = sqrt: 1, the only width that
    runs at budget 1) are charged 2 x params per generated token, the prompt once, and the verifier
    the margin PRM's head per scored step, however the sample was drawn."""
    from ttc_runtime.scoring.margin import fuse

    generator, prm = stepwise_pair
    head = fuse(prm, generator, PromptConfig()).head_params
    params = 2 * generator.flop_params
    questions = ["Evaluate left to right:\n3+4*2", "Evaluate left to right:\n9-1"]
    prompt_tokens = [len(generator.tokenizer(PromptConfig().format(q))["input_ids"]) for q in questions]
    settings = SearchSettings(sampling=SamplingParams(max_new_tokens=48))
    assert StrategyConfig(name="beam_search", beam_width=4).unusable(1) is not None
    bon, beam = StrategyConfig(name="best_of_n_weighted"), StrategyConfig(name="beam_search", beam_width="sqrt")
    assert beam.unusable(1) is None and beam.width(1) == 1
    plain = generator.generate([PromptConfig().format(q) for q in questions], params=settings.sampling, seed=0)
    for usage, prompt in zip(plain.usages, prompt_tokens):
        assert usage == Usage.inference(generator.flop_params, prompt, usage.generated_tokens)
    runs = {config.name: config.build(1).run(questions, generator, prm, 1, settings, seed=5) for config in (bon, beam)}
    for results in runs.values():
        for result, prompt in zip(results, prompt_tokens, strict=True):
            (candidate,) = result.candidates
            proposer, verifier = result.compute.proposer, result.compute.verifier
            assert proposer.prompt_tokens == prompt
            assert proposer.flops - params * prompt == params * proposer.generated_tokens
            assert verifier.flops == len(candidate.step_scores) * 2 * head
            assert verifier.tokens == len(candidate.step_scores)
    # Beam search at N = 1 samples one step per round, from the prompt and the steps so far: on a
    # run of several steps a rule that charged that prefix each round would charge the prompt
    # again. How many steps each run writes turns on near-tied logits (summation order can flip a
    # sample), so one run of several steps is asked for, not every one.
    assert any(len(r.candidates[0].steps) >= 2 for r in runs["beam_search"])


def test_fusion_needs_the_generators_own_weights(tiny_model_dir, margin_prm):
    from ttc_runtime.models import TinyLMConfig, build_embedded_tokenizer, build_tiny_causal_lm
    from ttc_runtime.scoring.margin import fuse

    other = build_tiny_causal_lm(
        TinyLMConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=256),
        build_embedded_tokenizer(),
        seed=1,
    )
    generator = TransformersGenerator(other, build_embedded_tokenizer())
    assert fuse(margin_prm, generator, PromptConfig()) is None
    own = TransformersGenerator.from_pretrained(tiny_model_dir)
    assert fuse(margin_prm, own, PromptConfig(template="Q: {question}\n\n")) is None  # another prompt
    assert fuse(ProposerMarginScorer.from_pretrained(tiny_model_dir), own, PromptConfig()) is None
