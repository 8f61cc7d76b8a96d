"""The allocation environment: the gymnasium checks, its registration, and the replay and live
back ends."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from ttc_runtime.env.actions import ActionSpace
from ttc_runtime.env.allocation import ENV_ID, AllocationEnv, LiveBackend, ReplayBackend, register

from tests import pool_worker
from tests.conftest import ARMS, learnable, table
from ttc_runtime.outcomes import arm_outcomes
from ttc_runtime.pool import RolloutPool
from ttc_runtime.strategies import Arm


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
