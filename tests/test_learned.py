"""The learned allocator: its policy's directory and its decisions from question text."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from ttc_runtime.env.actions import ActionSpace
from ttc_runtime.policies.features import FeatureConfig, NgramFeatures, build_featurizer
from ttc_runtime.policies.learned import AllocatorPolicy, LearnedAllocator, PolicyConfig, PolicyMismatch
from ttc_runtime.trainers.allocator import AllocatorTrainConfig, train_policy

from tests.conftest import ARMS, REV, learnable, table
from ttc_runtime.prompts import PromptConfig


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


@pytest.mark.parametrize("model", ["network", "neighbours", "blend"])
def test_outcome_policy_directory_round_trips_with_its_price(model):
    from ttc_runtime.policies.learned import BlendPolicy, NeighbourPolicy, OutcomePolicy, load_policy
    from ttc_runtime.trainers.allocator import fit_outcomes

    features, correct = learnable(16)
    space = ActionSpace.from_arms(ARMS, adaptive=True)
    policy = fit_outcomes(
        features,
        table(correct),
        np.arange(16),
        space,
        AllocatorTrainConfig(outcome_model=model, outcome_epochs=20, outcome_penalties=[1e-2]),
        16.0,
    )
    policy.lam = 0.25
    policy.save(tmp := Path(tempfile.mkdtemp()) / "policy", FeatureConfig(kind="ngrams"))
    loaded, feature_config = load_policy(tmp)
    kind = {"network": OutcomePolicy, "neighbours": NeighbourPolicy, "blend": BlendPolicy}[model]
    assert isinstance(loaded, kind) and feature_config.kind == "ngrams"
    assert loaded.lam == 0.25 and loaded.costs.tolist() == policy.costs.tolist()
    assert loaded.greedy_arms(features, None) == policy.greedy_arms(features, None)
    assert np.array_equal(loaded.predict(features), policy.predict(features))
    with pytest.raises(PolicyMismatch, match="outcome policy"):
        AllocatorPolicy.load(tmp)
