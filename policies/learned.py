"""The learned allocator, in three forms that answer alike (``greedy_arms``):

- ``AllocatorPolicy`` (REINFORCE's): a small network with one head per action factor. A trunk
  (``layers`` x ``hidden`` ReLU layers) reads the standardised observation. The strategy head
  picks a strategy; the knob head sees the trunk and the chosen strategy (one-hot) and picks among
  that strategy's knobs only (the others are masked); in the adaptive mode the budget head sees
  the trunk, the strategy and the knob. A value head (the learned baseline of REINFORCE) reads the
  trunk.
- The outcome policies (``ArmRatePolicy``): each predicts every arm's expected correctness on the
  question and chooses the arm with the highest prediction within the budget (fixed mode), or the
  highest prediction minus ``lam`` times the arm's mean compute (adaptive mode): the Lagrangian
  choice of the expected-rate oracle, with predictions in place of the rates. Fitted to every
  arm's rate at once (``trainers.allocator.fit_outcomes``), they learn from full information
  instead of one sampled reward per episode, and one fit serves every budget and every ``lam``.
  ``OutcomePolicy`` is the same trunk as above with one output per arm; ``NeighbourPolicy``
  predicts the mean rates of the nearest training questions; ``BlendPolicy`` the mean of the two.

Saved as one directory: ``policy.json`` (the kind, the action space, the feature config, the
network sizes, and for an outcome policy its ``lam`` and arm costs, for the neighbour and blend
policies their ``neighbours`` and number of training rows) and ``model.safetensors`` (the weights, or the
neighbour policy's training features and rates, and the observation mean and scale). Loading (``load_policy``) checks the action
space against the one expected and refuses another.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from pydantic import Field
from safetensors.torch import load_file, save_file
from torch import nn
from torch.distributions import Categorical
from ttc_runtime.env.actions import ActionSpace

from ttc_runtime.config import StrictModel
from ttc_runtime.files import write_text_atomic
from ttc_runtime.strategies import Arm

from .allocators import Allocator
from .features import FeatureConfig, Featurizer


class PolicyConfig(StrictModel):
    """Network sizes: ``layers`` hidden ReLU layers of ``hidden`` units; 0 layers is a linear read
    of the standardised features."""

    hidden: int = Field(64, ge=4)
    layers: int = Field(2, ge=0)


class PolicyMismatch(ValueError):
    """A saved policy whose action space is not the one expected."""


class AllocatorPolicy(nn.Module):
    """The factored policy (see the module docstring)."""

    def __init__(self, obs_dim: int, actions: ActionSpace, config: PolicyConfig) -> None:
        super().__init__()
        self.actions = actions
        self.config = config
        self.obs_dim = obs_dim
        self.trunk, width = _trunk(obs_dim, config)
        strategies, knobs = actions.nvec[0], actions.nvec[1]
        self.strategy_head = nn.Linear(width, strategies)
        self.knob_head = nn.Linear(width + strategies, knobs)
        self.budget_head = nn.Linear(width + strategies + knobs, len(actions.budgets)) if actions.adaptive else None
        self.value_head = nn.Linear(width, 1)
        mask = torch.full((strategies, knobs), float("-inf"))
        for s, count in enumerate(actions.knob_counts()):
            mask[s, :count] = 0.0
        self.register_buffer("knob_mask", mask)
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_scale", torch.ones(obs_dim))

    def set_normalisation(self, observations: np.ndarray) -> None:
        """Standardise inputs with the mean and spread of ``observations`` (training data)."""
        obs = torch.as_tensor(observations, dtype=torch.float32)
        self.obs_mean.copy_(obs.mean(dim=0))
        self.obs_scale.copy_(obs.std(dim=0).clamp_min(1e-6))

    def _heads(self, obs: torch.Tensor, actions: torch.Tensor | None, greedy: bool):
        h = self.trunk((obs - self.obs_mean) / self.obs_scale)
        strategies, knobs = self.actions.nvec[0], self.actions.nvec[1]
        dists = [Categorical(logits=self.strategy_head(h))]
        s = actions[:, 0] if actions is not None else self._pick(dists[0], greedy)
        s_hot = nn.functional.one_hot(s, strategies).float()
        dists.append(Categorical(logits=self.knob_head(torch.cat([h, s_hot], -1)) + self.knob_mask[s]))
        k = actions[:, 1] if actions is not None else self._pick(dists[1], greedy)
        chosen = [s, k]
        if self.budget_head is not None:
            k_hot = nn.functional.one_hot(k, knobs).float()
            dists.append(Categorical(logits=self.budget_head(torch.cat([h, s_hot, k_hot], -1))))
            chosen.append(actions[:, 2] if actions is not None else self._pick(dists[2], greedy))
        taken = torch.stack(chosen, dim=1)
        log_prob = sum(d.log_prob(a) for d, a in zip(dists, chosen))
        entropy = sum(d.entropy() for d in dists)
        return taken, log_prob, entropy, self.value_head(h).squeeze(-1), dists

    @staticmethod
    def _pick(dist: Categorical, greedy: bool) -> torch.Tensor:
        return dist.probs.argmax(dim=-1) if greedy else dist.sample()

    def greedy_arms(self, features: np.ndarray, budget: int | None) -> list[Arm]:
        """The greedy arm for each feature row (``budget`` in the fixed mode)."""
        obs = torch.as_tensor(self.actions.observations(features, budget))
        with torch.inference_mode():
            taken, *_ = self.act(obs, greedy=True)
        return [self.actions.arm(row, budget) for row in taken.tolist()]

    def act(self, obs: torch.Tensor, greedy: bool = False):
        """Actions for a batch, with their log-probability, entropy and the value estimate."""
        taken, log_prob, entropy, value, _ = self._heads(obs, None, greedy)
        return taken, log_prob, entropy, value

    def evaluate(self, obs: torch.Tensor, actions: torch.Tensor):
        """Log-probability and entropy of given ``actions``, and the value estimate."""
        _, log_prob, entropy, value, dists = self._heads(obs, actions, False)
        return log_prob, entropy, value, dists

    def save(self, directory: str | Path, features: FeatureConfig) -> None:
        """Write the policy directory (files renamed into place)."""
        _save(self, directory, features, {"kind": "factored"})

    @classmethod
    def load(cls, directory: str | Path, actions: ActionSpace | None = None) -> tuple[AllocatorPolicy, FeatureConfig]:
        """Load a policy directory of this kind (``load_policy`` for either kind)."""
        policy, features = load_policy(directory, actions)
        if not isinstance(policy, cls):
            raise PolicyMismatch(f"the policy at {directory} is an outcome policy, not a factored one")
        return policy, features


def _trunk(obs_dim: int, config: PolicyConfig) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    width = obs_dim
    for _ in range(config.layers):
        layers += [nn.Linear(width, config.hidden), nn.ReLU()]
        width = config.hidden
    return nn.Sequential(*layers), width


class ArmRatePolicy(nn.Module):
    """What the two outcome policies share: per-arm predicted expected correctness (``predict``,
    arms in ``actions.arms()`` order) and the Lagrangian choice on it. ``costs`` are the arms'
    mean compute (the training unit, divided by the reward's scale), in ``actions.arms()`` order;
    ``lam`` prices them in the adaptive mode."""

    def __init__(
        self, obs_dim: int, actions: ActionSpace, config: PolicyConfig, costs: Sequence[float], lam: float = 0.0
    ) -> None:
        super().__init__()
        self.actions = actions
        self.config = config
        self.obs_dim = obs_dim
        self.arms = actions.arms()
        if len(costs) != len(self.arms):
            raise ValueError(f"got {len(costs)} costs for {len(self.arms)} arms")
        self.costs = np.asarray(costs, dtype=float)
        self.lam = float(lam)
        # Predicted rates of its training questions, each by the cross-validation's fit that did not
        # see it (trainers.allocator.fit_outcomes; None without one): what pricing for an accuracy reads.
        self.held_out: np.ndarray | None = None
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_scale", torch.ones(obs_dim))

    set_normalisation = AllocatorPolicy.set_normalisation

    def predict(self, features: np.ndarray) -> np.ndarray:
        """(rows, arms) predicted expected correctness, arms in ``actions.arms()`` order."""
        raise NotImplementedError

    def fitted_with(self) -> dict[str, float]:
        """The hyperparameter its fit chose by cross-validation (for the record)."""
        raise NotImplementedError

    def choose_columns(
        self, predicted: np.ndarray, budget: int | None, lam: float | None = None, costs: np.ndarray | None = None
    ) -> np.ndarray:
        """Per row of ``predicted``, the index (into ``arms``) of the chosen arm: in the fixed mode
        the best prediction among the arms at ``budget``, in the adaptive mode the best prediction
        minus ``lam`` times the cost (default: the policy's own ``lam`` and ``costs``; an evaluation
        prices another unit with its own); the cheaper arm wins a tie."""
        costs = self.costs if costs is None else costs
        if self.actions.adaptive:
            value = predicted - (self.lam if lam is None else lam) * costs
        else:
            value = np.where([arm.budget == budget for arm in self.arms], predicted, -np.inf)
        value = value - 1e-9 * costs
        return value.argmax(axis=1)

    def greedy_arms(self, features: np.ndarray, budget: int | None) -> list[Arm]:
        """The chosen arm for each feature row (``budget`` in the fixed mode)."""
        if not self.actions.adaptive and budget not in self.actions.budgets:
            raise ValueError(f"budget {budget} is not one of the policy's budgets {list(self.actions.budgets)}")
        return [self.arms[c] for c in self.choose_columns(self.predict(features), budget)]


class OutcomePolicy(ArmRatePolicy):
    """The network outcome policy: the trunk and one logit per arm (see the module docstring)."""

    def __init__(
        self, obs_dim: int, actions: ActionSpace, config: PolicyConfig, costs: Sequence[float], lam: float = 0.0
    ) -> None:
        super().__init__(obs_dim, actions, config, costs, lam)
        self.penalty: float | None = None  # the L2 penalty its fit chose (trainers.allocator.fit_outcomes)
        self.trunk, width = _trunk(obs_dim, config)
        self.head = nn.Linear(width, len(self.arms))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(rows, arms) logits of each arm's expected correctness."""
        return self.head(self.trunk((features - self.obs_mean) / self.obs_scale))

    def predict(self, features: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return torch.sigmoid(self(torch.as_tensor(features, dtype=torch.float32))).double().numpy()

    def fitted_with(self) -> dict[str, float]:
        return {"penalty": float(self.penalty) if self.penalty is not None else float("nan")}

    def save(self, directory: str | Path, features: FeatureConfig) -> None:
        """Write the policy directory (files renamed into place)."""
        _save(self, directory, features, {"kind": "outcome", "lam": self.lam, "costs": self.costs.tolist()})


class NeighbourPolicy(ArmRatePolicy):
    """The nearest-neighbour outcome policy: a question's predicted rate on each arm is the mean
    expected rate of its ``neighbours`` nearest training questions (Euclidean, on features
    standardised with the training questions' mean and spread). It keeps the training questions'
    features (``memory``, standardised) and rates (``rates``), a few hundred rows. Where questions
    fall into groups that a feature separates (a task's families), it predicts each group's mean
    rates, as the feature table does with the group given, instead of a network's per-question
    guesses, whose noise moves a Lagrangian choice from one question to the next."""

    def __init__(
        self,
        obs_dim: int,
        actions: ActionSpace,
        config: PolicyConfig,
        costs: Sequence[float],
        rows: int,
        neighbours: int,
        lam: float = 0.0,
    ) -> None:
        super().__init__(obs_dim, actions, config, costs, lam)
        if not 1 <= neighbours <= rows:
            raise ValueError(f"neighbours must be between 1 and the {rows} training questions, got {neighbours}")
        self.neighbours = neighbours
        self.register_buffer("memory", torch.zeros(rows, obs_dim))
        self.register_buffer("rates", torch.zeros(rows, len(self.arms), dtype=torch.float64))

    def remember(self, features: np.ndarray, rates: np.ndarray) -> None:
        """Keep ``features`` (standardised by them) and their arms' expected ``rates``."""
        self.set_normalisation(features)
        obs = torch.as_tensor(features, dtype=torch.float32)
        self.memory.copy_((obs - self.obs_mean) / self.obs_scale)
        self.rates.copy_(torch.as_tensor(rates, dtype=torch.float64))

    def predict(self, features: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            obs = (torch.as_tensor(features, dtype=torch.float32) - self.obs_mean) / self.obs_scale
            nearest = torch.cdist(obs, self.memory).topk(self.neighbours, dim=1, largest=False).indices
            return self.rates[nearest].mean(dim=1).numpy()

    def fitted_with(self) -> dict[str, float]:
        return {"neighbours": float(self.neighbours)}

    def save(self, directory: str | Path, features: FeatureConfig) -> None:
        """Write the policy directory (files renamed into place)."""
        extra = {
            "kind": "neighbours",
            "lam": self.lam,
            "costs": self.costs.tolist(),
            "rows": int(self.memory.shape[0]),
            "neighbours": self.neighbours,
        }
        _save(self, directory, features, extra)


class BlendPolicy(ArmRatePolicy):
    """The two outcome models at once: a question's predicted rate on each arm is the mean of the
    network's and the neighbours' predictions (``network`` and ``neighbours``, each fitted with its
    own cross-validated setting). The two err differently (the network's per-question guesses
    scatter a family's choices, the neighbours' group means blur a family's edges); on the family
    task's pools the blend's saving sat between the two (``AllocatorTrainConfig.outcome_model``)."""

    def __init__(self, network: OutcomePolicy, neighbours: NeighbourPolicy, lam: float = 0.0) -> None:
        super().__init__(network.obs_dim, network.actions, network.config, network.costs, lam)
        self.network = network
        self.neighbours = neighbours

    def predict(self, features: np.ndarray) -> np.ndarray:
        return (self.network.predict(features) + self.neighbours.predict(features)) / 2

    def fitted_with(self) -> dict[str, float]:
        return {**self.network.fitted_with(), **self.neighbours.fitted_with()}

    def save(self, directory: str | Path, features: FeatureConfig) -> None:
        """Write the policy directory (files renamed into place)."""
        extra = {
            "kind": "blend",
            "lam": self.lam,
            "costs": self.costs.tolist(),
            "rows": int(self.neighbours.memory.shape[0]),
            "neighbours": self.neighbours.neighbours,
        }
        _save(self, directory, features, extra)


def _save(policy: nn.Module, directory: str | Path, features: FeatureConfig, extra: dict) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in policy.state_dict().items()}
    save_file(tensors, str(directory / "model.safetensors.tmp"))
    (directory / "model.safetensors.tmp").replace(directory / "model.safetensors")
    meta = {
        **extra,
        "actions": json.loads(policy.actions.to_json()),
        "action_space": policy.actions.to_dict(),
        "features": features.model_dump(mode="json"),
        "policy": policy.config.model_dump(mode="json"),
        "obs_dim": policy.obs_dim,
    }
    write_text_atomic(directory / "policy.json", json.dumps(meta, indent=1) + "\n")


def load_policy(
    directory: str | Path, actions: ActionSpace | None = None
) -> tuple[AllocatorPolicy | ArmRatePolicy, FeatureConfig]:
    """Load a policy directory of either kind; with ``actions``, refuse a policy trained for
    another action space; without, use the space saved with it (what the runtime does)."""
    directory = Path(directory)
    meta_path = directory / "policy.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{directory} holds no policy (no policy.json)")
    meta = json.loads(meta_path.read_text())
    if actions is None:
        if "action_space" not in meta:
            raise PolicyMismatch(f"{meta_path} does not describe its action space; train the policy again")
        actions = ActionSpace.from_dict(meta["action_space"])
    if meta["actions"] != json.loads(actions.to_json()):
        raise PolicyMismatch(
            f"the policy at {directory} was trained for another action space: {meta['actions']} "
            f"(expected {json.loads(actions.to_json())})"
        )
    config = PolicyConfig.model_validate_json(json.dumps(meta["policy"]))
    kind = meta.get("kind", "factored")
    policy: AllocatorPolicy | ArmRatePolicy
    if kind == "outcome":
        policy = OutcomePolicy(meta["obs_dim"], actions, config, meta["costs"], meta["lam"])
    elif kind == "neighbours":
        policy = NeighbourPolicy(
            meta["obs_dim"], actions, config, meta["costs"], meta["rows"], meta["neighbours"], meta["lam"]
        )
    elif kind == "blend":
        network = OutcomePolicy(meta["obs_dim"], actions, config, meta["costs"], meta["lam"])
        nearest = NeighbourPolicy(
            meta["obs_dim"], actions, config, meta["costs"], meta["rows"], meta["neighbours"], meta["lam"]
        )
        policy = BlendPolicy(network, nearest, meta["lam"])
    else:
        policy = AllocatorPolicy(meta["obs_dim"], actions, config)
    policy.load_state_dict(load_file(str(directory / "model.safetensors")))
    return policy.eval(), FeatureConfig.model_validate_json(json.dumps(meta["features"]))


class LearnedAllocator(Allocator):
    """The policy behind the ``Allocator`` interface: features from the question text, then the
    greedy action. ``last_decision_seconds`` is the wall time of the last ``choose`` call's
    decision, features included."""

    def __init__(self, name: str, policy: AllocatorPolicy | ArmRatePolicy, featurizer: Featurizer) -> None:
        self.name = name
        self.policy = policy.eval()
        self.featurizer = featurizer
        self.last_decision_seconds = 0.0
        self.last_feature_flops = np.zeros(0)

    def decide(self, features: np.ndarray, budget: int | None) -> list[Arm]:
        """Greedy arms for precomputed feature rows (``budget`` in the fixed mode)."""
        return self.policy.greedy_arms(features, budget)

    def choose(self, questions: Sequence[str], budget: int) -> list[Arm]:
        started = time.perf_counter()
        features, self.last_feature_flops = self.featurizer(questions)
        arms = self.decide(features, None if self.policy.actions.adaptive else budget)
        self.last_decision_seconds = time.perf_counter() - started
        return arms
