"""The allocation environment: the gymnasium checks, its registration, and the replay and live
back ends."""

from __future__ import annotations

from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from ttc_runtime.env.actions import ActionSpace
from ttc_runtime.env.allocation import ENV_ID, AllocationEnv, LiveBackend, ReplayBackend, register

from tests import pool_worker
from tests.conftest import ARMS, learnable, table
from ttc_runtime.outcomes import StoredRuns, arm_outcomes
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


def test_replay_draws_one_stored_run_of_a_run_arm_uniformly():
    beam = ARMS[1]
    assert not beam.strategy.parallel
    runs = StoredRuns(
        correct=np.array([[1.0, 0.0, 0.0, 0.0]]),
        generations=np.array([[4.0, 4.0, 4.0, 4.0]]),
        flops=np.array([[10.0, 20.0, 30.0, 40.0]]),
    )
    correct = np.full((1, len(ARMS)), 0.25)
    outcomes = replace(table(correct), stored={1: runs})
    backend = ReplayBackend(outcomes)
    seen = [backend.outcome(0, beam, np.random.default_rng(seed)) for seed in range(400)]
    # Each draw is one whole stored run: its correctness goes with its own compute.
    assert {(o.correct, o.flops) for o in seen} == {(True, 10.0), (False, 20.0), (False, 30.0), (False, 40.0)}
    shares = np.bincount([int(o.flops) // 10 - 1 for o in seen], minlength=4) / len(seen)
    assert shares == pytest.approx([0.25] * 4, abs=0.07)
    # Seeded: the same generator state draws the same run.
    assert [backend.outcome(0, beam, np.random.default_rng(7)) for _ in range(3)] == [seen[7]] * 3


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
    # Both draw the stored run from the episode's generator; the live one reruns it with the seed
    # the pool used for it: identical outcomes, on every run of the arm.
    for arm in pool_worker.CONFIG.run_arms():
        for question in (0, 4):
            for seed in range(4):
                run = np.random.default_rng(seed)
                assert live.outcome(question, arm, run) == replay.outcome(question, arm, np.random.default_rng(seed))
    rng = np.random.default_rng(0)
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
