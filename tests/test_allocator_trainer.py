"""Training the allocator policy: REINFORCE, the supervised fit, and the compute price lambda."""

from __future__ import annotations

import numpy as np
from ttc_runtime.env.actions import ActionSpace
from ttc_runtime.trainers.allocator import (
    AllocatorTrainConfig,
    calibrate_lambda,
    fit_supervised,
    greedy_columns,
    mean_compute,
    train_policy,
)

from tests.conftest import ARMS, learnable, table


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
