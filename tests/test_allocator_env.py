"""The allocation environment, the learned policy and its training."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from ttc_runtime.env.actions import ActionSpace
from ttc_runtime.env.allocation import ENV_ID, AllocationEnv, LiveBackend, ReplayBackend, register
from ttc_runtime.policies.features import FeatureConfig, NgramFeatures, build_featurizer
from ttc_runtime.policies.learned import AllocatorPolicy, LearnedAllocator, PolicyConfig, PolicyMismatch
from ttc_runtime.trainers.allocator import (
    AllocatorTrainConfig,
    calibrate_lambda,
    fit_supervised,
    greedy_columns,
    mean_compute,
    train_policy,
)

from tests import pool_worker
from ttc_runtime.outcomes import ArmOutcomes, arm_outcomes
from ttc_runtime.pool import RolloutPool
from ttc_runtime.prompts import PromptConfig
from ttc_runtime.strategies import Arm, StrategyConfig

BON = StrategyConfig(name="best_of_n_weighted")
BEAM4 = StrategyConfig(name="beam_search", beam_width=4)
BEAM16 = StrategyConfig(name="beam_search", beam_width=16)
REV = StrategyConfig(name="revisions", chain_length=4)
ARMS = [Arm(s, n) for n in (4, 16) for s in (BON, BEAM4, BEAM16, REV) if not (s == BEAM16 and n == 4)]


def table(correct: np.ndarray, flops: np.ndarray | None = None) -> ArmOutcomes:
    count = len(correct)
    return ArmOutcomes(
        ARMS,
        np.ones(count, dtype=int),
        [f"question {i}" for i in range(count)],
        correct,
        np.array([[arm.budget for arm in ARMS]] * count, dtype=float),
        np.ones_like(correct) if flops is None else flops,
    )


def learnable(count: int = 64, seed: int = 0):
    """Features where the first coordinate says which strategy is right: beam search on questions
    with x > 0, revisions otherwise, at both budgets."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(count, 4)).astype(np.float32)
    correct = np.zeros((count, len(ARMS)))
    for a, arm in enumerate(ARMS):
        correct[:, a] = np.where(features[:, 0] > 0, float(arm.strategy == BEAM4), float(arm.strategy == REV))
    return features, correct


def test_action_space_maps_actions_to_arms_with_the_documented_rules():
    space = ActionSpace.from_arms(ARMS, adaptive=False)
    assert space.strategies == ("best_of_n_weighted", "beam_search", "revisions")
    assert space.nvec == [3, 2] and space.knob_counts() == [1, 2, 1]
    assert space.arm([1, 1], 16) == Arm(BEAM16, 16)
    assert space.arm([0, 1], 16) == Arm(BON, 16)  # knob index modulo the strategy's one knob
    assert space.arm([1, 1], 4) == Arm(BEAM4, 4)  # M = 16 does not run at 4: the first knob that does
    for arm in ARMS:
        assert space.arm(space.action(arm), arm.budget) == arm
    with pytest.raises(ValueError, match="outside the space"):
        space.arm([3, 0], 4)
    with pytest.raises(ValueError, match="budget 64"):
        space.arm([0, 0], 64)
    adaptive = ActionSpace.from_arms(ARMS, adaptive=True)
    assert adaptive.nvec == [3, 2, 2] and adaptive.arm([2, 0, 1]) == Arm(REV, 16)


@pytest.mark.parametrize("adaptive", [False, True])
def test_check_env_passes(adaptive):
    features, correct = learnable(8)
    env = AllocationEnv(features, ActionSpace.from_arms(ARMS, adaptive), ReplayBackend(table(correct)), lam=0.1)
    check_env(env, skip_render_check=True)
    observation, info = env.reset(seed=1)
    assert observation.shape == env.observation_space.shape
    _, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert terminated and not truncated
    assert reward == pytest.approx(float(info["correct"]) - 0.1 * info["generations"])


def test_registered_under_a_versioned_id():
    register()
    features, correct = learnable(4)
    env = gym.make(
        ENV_ID, features=features, actions=ActionSpace.from_arms(ARMS, True), backend=ReplayBackend(table(correct))
    )
    observation, _ = env.reset(seed=0)
    assert observation.shape == (4,)


def test_replay_draws_parallel_arms_at_their_rate():
    correct = np.full((1, len(ARMS)), 0.3)
    backend, rng = ReplayBackend(table(correct)), np.random.default_rng(0)
    draws = [backend.outcome(0, ARMS[0], rng).correct for _ in range(4000)]
    assert np.mean(draws) == pytest.approx(0.3, abs=0.03)


def test_live_and_replay_back_ends_agree_on_a_pool(tiny_model_dir, full_pool):
    from ttc_runtime.generation.hf import TransformersGenerator
    from ttc_runtime.scoring import ProposerMarginScorer

    pool = RolloutPool(full_pool)
    outcomes = arm_outcomes(pool)
    generator = TransformersGenerator.from_pretrained(tiny_model_dir)
    live = LiveBackend(
        pool_worker.problems(),
        generator,
        ProposerMarginScorer.from_pretrained(tiny_model_dir),
        pool_worker.settings(generator),
        pool_worker.CONFIG,
    )
    replay = ReplayBackend(outcomes)
    rng = np.random.default_rng(0)
    for arm in pool_worker.CONFIG.run_arms():  # runs replayed with the pool's seeds: identical
        for question in (0, 4):
            assert live.outcome(question, arm, rng) == replay.outcome(question, arm, rng)
    bon = Arm(pool_worker.CONFIG.grid[0], 4)  # fresh samples: the same distribution of compute
    live_flops = [live.outcome(1, bon, rng).flops for _ in range(12)]
    replay_flops = [replay.outcome(1, bon, rng).flops for _ in range(12)]
    assert np.mean(live_flops) == pytest.approx(np.mean(replay_flops), rel=0.2)
    space = ActionSpace.from_arms(outcomes.arms, adaptive=True)
    features = np.zeros((len(outcomes.questions), 2), dtype=np.float32)
    rewards = {}
    for name, backend in (("live", live), ("replay", replay)):
        env = AllocationEnv(features, space, backend, lam=0.01)
        rewards[name] = []
        for episode in range(4):
            env.reset(seed=episode)
            rewards[name].append(env.step(space.action(Arm(pool_worker.CONFIG.grid[1], 4)))[1])
    assert rewards["live"] == rewards["replay"]


def test_reinforce_learns_which_strategy_a_question_needs():
    features, correct = learnable(64)
    outcomes = table(correct)
    space = ActionSpace.from_arms(ARMS, adaptive=False)
    policy, log = train_policy(features, outcomes, np.arange(64), space, AllocatorTrainConfig(updates=300), 0.0, 1.0)
    for budget in (4, 16):
        columns = greedy_columns(policy, features, np.arange(64), budget, outcomes)
        assert correct[np.arange(64), columns].mean() >= 0.9
    assert np.mean(log.accuracy[-20:]) > np.mean(log.accuracy[:20])
    supervised = fit_supervised(features, outcomes, np.arange(64), space, AllocatorTrainConfig())
    columns = greedy_columns(supervised, features, np.arange(64), 16, outcomes)
    assert correct[np.arange(64), columns].mean() >= 0.9


def test_lambda_prices_compute_and_calibration_hits_a_target():
    features, _ = learnable(32)
    correct = np.array([[0.5 if arm.budget == 4 else 0.6 for arm in ARMS]] * 32)
    outcomes = table(correct)
    space = ActionSpace.from_arms(ARMS, adaptive=True)
    config = AllocatorTrainConfig(updates=200)
    rows = np.arange(32)
    cheap, _ = train_policy(features, outcomes, rows, space, config, lam=1.0, scale=16.0)
    free, _ = train_policy(features, outcomes, rows, space, config, lam=0.0, scale=16.0)
    assert mean_compute(cheap, features, rows, outcomes, "generations") == 4
    assert mean_compute(free, features, rows, outcomes, "generations") == 16
    lam, policy = calibrate_lambda(features, outcomes, rows, space, config, 16.0, target=4.0, steps=4)
    assert mean_compute(policy, features, rows, outcomes, "generations") == 4 and lam > 0


def test_policy_directory_round_trips_and_refuses_another_action_space(tmp_path):
    features, correct = learnable(16)
    space = ActionSpace.from_arms(ARMS, adaptive=False)
    policy, _ = train_policy(features, table(correct), np.arange(16), space, AllocatorTrainConfig(updates=20), 0, 1)
    policy.save(tmp_path / "policy", FeatureConfig(kind="ngrams"))
    loaded, feature_config = AllocatorPolicy.load(tmp_path / "policy", space)
    assert feature_config.kind == "ngrams"
    for key, value in policy.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])
    obs = torch.as_tensor(np.hstack([features, np.tile(space.budget_one_hot(4), (16, 1))]))
    assert torch.equal(policy.act(obs, greedy=True)[0], loaded.act(obs, greedy=True)[0])
    smaller = ActionSpace.from_arms([a for a in ARMS if a.strategy != REV], adaptive=False)
    with pytest.raises(PolicyMismatch, match="another action space"):
        AllocatorPolicy.load(tmp_path / "policy", smaller)
    with pytest.raises(FileNotFoundError, match="no policy"):
        AllocatorPolicy.load(tmp_path / "nothing", space)


def test_learned_allocator_decides_from_text_and_features_are_charged(tiny_model_dir):
    questions = ["Evaluate left to right:\n4-2", "Evaluate left to right:\n9+7*3-1"]
    ngrams = NgramFeatures(64, 3)
    matrix, cost = ngrams(questions)
    assert matrix.shape == (2, 64) and cost.tolist() == [0.0, 0.0]
    hidden = build_featurizer(FeatureConfig(), str(tiny_model_dir), PromptConfig())
    states, flops = hidden(questions)
    assert states.shape == (2, hidden.dim) and (flops > 0).all() and flops[1] > flops[0]
    space = ActionSpace.from_arms(ARMS, adaptive=False)
    policy = AllocatorPolicy(64 + len(space.budgets), space, PolicyConfig())
    allocator = LearnedAllocator("learned", policy, ngrams)
    arms = allocator.choose(questions, 16)
    assert len(arms) == 2 and all(arm.budget == 16 and arm in ARMS for arm in arms)
    assert allocator.last_decision_seconds > 0
