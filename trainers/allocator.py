"""Training the learned allocator: REINFORCE with a learned baseline over vectorised replay
environments, in one readable loop (after cleanrl's single-file style).

Each update steps ``envs`` one-step episodes of ``AllocationEnv`` (a gymnasium ``SyncVectorEnv``
with same-step autoreset), then takes one Adam step on

    loss = -mean(A * log pi(a | s)) + value_coef * mean((r - V(s))^2) - entropy_coef * mean(H)

with advantage ``A = r - V(s)`` (the value head is the baseline; episodes are one step, so the
return is the reward). The entropy bonus decays linearly to 0 over training, so the policy explores
early and commits late.

Two modes: **fixed** budget (the episode draws a budget N, the policy picks strategy and knob
among the arms that spend at most N generations; ``lam`` = 0, since they all spend N) and **adaptive** (the policy
also picks the budget; ``lam`` prices compute). ``reinforce_sweep`` trains one adaptive policy per
price of a sweep: their points on held-out questions form REINFORCE's frontier of accuracy against
compute, as the price sweep does for every other adaptive allocator.

**Regularisation.** The pool has a few hundred training questions and the features have hundreds of
dimensions, so a policy that maximises its training reward memorises which arm got lucky on which
training question. Every fit here carries an L2 penalty on its weights: REINFORCE a fixed one
(``weight_decay``, Adam's coupled form), the outcome model one chosen by held-out loss.

``fit_supervised`` is the ablation: the same network fitted by cross-entropy to the best arm of
each training question in hindsight.

``fit_outcomes`` is the trainer beside REINFORCE: an outcome policy that predicts every arm's
expected correctness on every training question at once (the replay environment's full
information, where REINFORCE sees one sampled reward per episode), then chooses by the Lagrangian
rule; ``outcome_lambda`` sets its ``lam`` for a target mean compute without refitting. Two models
(``outcome_model``): a network fitted by cross-entropy (``OutcomePolicy``, the default; its L2
penalty is the one of ``outcome_penalties`` whose fits on folds of the training questions predict
the held-out folds best), or the nearest training questions' mean rates (``NeighbourPolicy``; how
many neighbours is chosen from ``outcome_neighbours`` by the held-out squared error on the folds).

Logging: reward, accuracy, mean compute, entropy and the share of each strategy per update go to
wandb when ``report_to`` is ``wandb`` (offline unless ``WANDB_MODE`` says otherwise).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
from pydantic import Field, NonNegativeFloat, PositiveInt
from ttc_runtime.env.actions import ActionSpace
from ttc_runtime.env.allocation import AllocationEnv, ReplayBackend
from ttc_runtime.policies.features import FeatureConfig
from ttc_runtime.policies.learned import AllocatorPolicy, ArmRatePolicy, NeighbourPolicy, OutcomePolicy, PolicyConfig

from ttc_runtime.config import StrictModel
from ttc_runtime.outcomes import ArmOutcomes, folds_of


class AllocatorTrainConfig(StrictModel):
    """How the allocator is trained."""

    unit: Literal["generations", "flops"] = Field("generations", description="Compute unit of the reward.")
    envs: int = Field(64, ge=1, description="Environments stepped per update (episodes per update).")
    updates: int = Field(400, ge=1)
    learning_rate: float = Field(3e-3, gt=0)
    entropy_coef: float = Field(0.02, ge=0, description="Initial entropy bonus, decayed linearly to 0.")
    value_coef: float = Field(0.5, ge=0)
    weight_decay: float = Field(
        0.01,
        ge=0,
        description="L2 penalty of REINFORCE's and the supervised fit's Adam steps (coupled: added to the "
        "gradient). Without it the policy memorises the training questions' lucky arms: on the 20-minute job's "
        "pool, 1,500 updates without it fell from 1.6x to out of range at best-of-N's accuracy at N = 16.",
    )
    policy: PolicyConfig = PolicyConfig()
    outcome_model: Literal["network", "neighbours"] = Field(
        "network",
        description="The outcome policy's model: a network, or the nearest training questions' mean rates. On the "
        "family task's pools both keep at least 0.91 of the oracle's saving at best-of-N's accuracy at N = 4, 8 and "
        "16, the network within the feature table's interval at all three (the neighbours 0.01 behind at N = 16); "
        "on an earlier family design, whose families differed less, the network's per-question predictions "
        "scattered its choices within a family and it saved 0.10 less than the table at N = 4, the neighbours 0.02 "
        "less.",
    )
    outcome_neighbours: list[PositiveInt] = Field(
        [3, 5, 10, 15, 20, 30],
        min_length=1,
        description="Neighbour counts the neighbour model chooses from by cross-validation on its training questions.",
    )
    outcome_epochs: int = Field(300, ge=1, description="Full-batch Adam steps of the network outcome policy's fit.")
    outcome_penalties: list[NonNegativeFloat] = Field(
        [1e-4, 1e-3, 1e-2, 1e-1, 1.0],
        min_length=1,
        description="L2 penalties (on the weights, added to the mean cross-entropy) the network outcome policy's fit "
        "chooses from by cross-validation on its training questions: few questions and many features, so how "
        "much to trust the features is measured, not guessed.",
    )
    outcome_folds: int = Field(3, ge=2, description="Folds of that choice.")
    seed: int = 0


class AllocatorConfig(StrictModel):
    """The learned allocator: features, training, the adaptive mode's prices, logging."""

    trainer: Literal["outcomes", "reinforce"] = Field(
        "outcomes",
        description="Whose policies are saved for the runtime: the outcome model's (fit_outcomes) or REINFORCE's. "
        "Both are evaluated.",
    )
    features: FeatureConfig = FeatureConfig()
    ablation_features: list[FeatureConfig] = Field(
        [FeatureConfig(kind="proposer_hidden"), FeatureConfig(kind="ngrams")],
        description="Other features, each evaluated with the outcome model (fixed and adaptive) beside the main ones.",
    )
    training: AllocatorTrainConfig = AllocatorTrainConfig()
    reinforce_lambdas: list[NonNegativeFloat] = Field(
        [0.0, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0],
        min_length=1,
        description="Prices of compute (accuracy per largest-budget run, see env.allocation) REINFORCE's adaptive "
        "policies are trained at, one policy each: the points of its frontier.",
    )
    adaptive_target: float = Field(
        8.0,
        gt=0,
        description="Mean compute per question (training.unit) on the training questions of the adaptive policy "
        "saved for the runtime: the price is set to spend it (unless adaptive_match_budget is set).",
    )
    learning_curve: list[PositiveInt] = Field(
        [25, 50, 100],
        description="Numbers of training questions (an equal share per level) the outcome model on the main features "
        "is also fitted on, each evaluated like the rest: how many questions the policy needs. Sizes at or above "
        "the training questions there are are left out.",
    )
    adaptive_match_budget: PositiveInt | None = Field(
        None,
        description="When set, the adaptive policy saved for the runtime is priced instead to match, on its training "
        "questions, best-of-N weighted's accuracy at this budget (one of the pool's), with the least compute: the "
        "server then answers as accurately as that fixed strategy, and what it saves is the allocator's.",
    )


@dataclass(frozen=True)
class TrainLog:
    """Per-update training curves."""

    reward: list[float]
    accuracy: list[float]
    compute: list[float]
    entropy: list[float]


@contextmanager
def _one_thread():
    """Run a tiny network's training on one thread: with several, thread hand-offs cost more than
    the matrix products, and a concurrent job on the same cores slows both by an order of magnitude."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _vector_env(
    features: np.ndarray,
    outcomes: ArmOutcomes,
    rows: np.ndarray,
    actions: ActionSpace,
    lam: float,
    unit: str,
    scale: float,
    count: int,
) -> gym.vector.SyncVectorEnv:
    def make() -> AllocationEnv:
        return AllocationEnv(features, actions, ReplayBackend(outcomes), rows, lam, unit, scale)

    return gym.vector.SyncVectorEnv([make] * count, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def train_policy(
    features: np.ndarray,
    outcomes: ArmOutcomes,
    rows: np.ndarray,
    actions: ActionSpace,
    config: AllocatorTrainConfig,
    lam: float,
    scale: float,
    log: Callable[[dict], None] | None = None,
) -> tuple[AllocatorPolicy, TrainLog]:
    """Train a policy on the pool questions ``rows`` (see the module docstring)."""
    with _one_thread():
        return _train_policy(features, outcomes, rows, actions, config, lam, scale, log)


def _train_policy(features, outcomes, rows, actions, config, lam, scale, log):
    torch.manual_seed(config.seed)
    envs = _vector_env(features, outcomes, rows, actions, lam, config.unit, scale, config.envs)
    policy = AllocatorPolicy(envs.single_observation_space.shape[0], actions, config.policy)
    budgets = [None] if actions.adaptive else actions.budgets
    policy.set_normalisation(np.vstack([actions.observations(features[[r]], b) for r in rows for b in budgets]))
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    obs, _ = envs.reset(seed=config.seed)
    history = TrainLog([], [], [], [])
    for update in range(config.updates):
        taken, log_prob, entropy, value = policy.act(torch.as_tensor(obs))
        obs, rewards, _, _, infos = envs.step(taken.numpy())
        final = infos["final_info"]
        reward = torch.as_tensor(rewards, dtype=torch.float32)
        advantage = reward - value.detach()
        bonus = config.entropy_coef * (1.0 - update / config.updates)
        loss = (
            -(advantage * log_prob).mean() + config.value_coef * ((reward - value) ** 2).mean() - bonus * entropy.mean()
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.reward.append(float(reward.mean()))
        history.accuracy.append(float(np.mean(final["correct"])))
        history.compute.append(float(np.mean(final[config.unit])))
        history.entropy.append(float(entropy.detach().mean()))
        if log is not None:
            shares = Counter(actions.strategies[a] for a in taken[:, 0].tolist())
            log(
                {
                    "reward": history.reward[-1],
                    "accuracy": history.accuracy[-1],
                    f"mean_{config.unit}": history.compute[-1],
                    "entropy": history.entropy[-1],
                    **{f"share/{name}": shares[name] / len(taken) for name in actions.strategies},
                }
            )
    envs.close()
    return policy.eval(), history


def greedy_columns(
    policy: AllocatorPolicy | ArmRatePolicy,
    features: np.ndarray,
    rows: np.ndarray,
    budget: int | None,
    outcomes: ArmOutcomes,
) -> np.ndarray:
    """The outcome-table column of the policy's greedy arm for each question of ``rows``."""
    return np.array([outcomes.column(arm) for arm in policy.greedy_arms(features[rows], budget)])


def mean_compute(
    policy: AllocatorPolicy, features: np.ndarray, rows: np.ndarray, outcomes: ArmOutcomes, unit: str
) -> float:
    """Mean compute per question of the adaptive policy's greedy arms on ``rows``."""
    columns = greedy_columns(policy, features, rows, None, outcomes)
    return float(outcomes.compute(unit)[rows, columns].mean())


def reinforce_sweep(
    features: np.ndarray,
    outcomes: ArmOutcomes,
    rows: np.ndarray,
    actions: ActionSpace,
    config: AllocatorTrainConfig,
    scale: float,
    lambdas: Sequence[float],
) -> list[tuple[float, AllocatorPolicy]]:
    """One adaptive policy trained on ``rows`` at each price of ``lambdas``: REINFORCE's frontier."""
    return [(lam, train_policy(features, outcomes, rows, actions, config, lam, scale)[0]) for lam in lambdas]


def closest_to(
    policies: Sequence[tuple[float, AllocatorPolicy]],
    features: np.ndarray,
    rows: np.ndarray,
    outcomes: ArmOutcomes,
    unit: str,
    target: float,
) -> tuple[float, AllocatorPolicy]:
    """The (price, policy) of a sweep whose greedy mean compute on ``rows`` is closest to ``target``
    (a ratio: 4 is as far from 8 as 16 is)."""
    return min(policies, key=lambda pair: abs(np.log(mean_compute(pair[1], features, rows, outcomes, unit) / target)))


def fit_supervised(
    features: np.ndarray,
    outcomes: ArmOutcomes,
    rows: np.ndarray,
    actions: ActionSpace,
    config: AllocatorTrainConfig,
    epochs: int = 300,
) -> AllocatorPolicy:
    """The ablation: cross-entropy to each training question's best arm at each budget (fixed
    mode; the most accurate arm, the cheaper on ties)."""
    if actions.adaptive:
        raise ValueError("the supervised ablation is defined for the fixed-budget mode")
    with _one_thread():
        return _fit_supervised(features, outcomes, rows, actions, config, epochs)


def _fit_supervised(features, outcomes, rows, actions, config, epochs):
    torch.manual_seed(config.seed)
    obs, targets = [], []
    allowed = set(actions.available)
    for budget in actions.budgets:
        columns = [a for a, arm in enumerate(outcomes.arms) if arm.budget == budget and arm in allowed]
        for r in rows:
            best = min(columns, key=lambda c: (-outcomes.correct[r, c], outcomes.flops[r, c]))
            obs.append(actions.observations(features[r : r + 1], budget)[0])
            targets.append(actions.action(outcomes.arms[best]))
    policy = AllocatorPolicy(len(obs[0]), actions, config.policy)
    policy.set_normalisation(np.stack(obs))
    inputs = torch.as_tensor(np.stack(obs))
    labels = torch.as_tensor(targets)
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    for _ in range(epochs):
        log_prob, *_ = policy.evaluate(inputs, labels)
        loss = -log_prob.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return policy.eval()


def fit_outcomes(
    features: np.ndarray,
    outcomes: ArmOutcomes,
    rows: np.ndarray,
    actions: ActionSpace,
    config: AllocatorTrainConfig,
    scale: float,
) -> ArmRatePolicy:
    """The outcome policy of ``config.outcome_model`` over ``actions``, fitted on the pool
    questions ``rows`` to the arms' expected correctness. The neighbour model keeps the rows'
    features and rates, with the neighbour count of ``config.outcome_neighbours`` (at most the
    rows of a fold) whose predictions on ``config.outcome_folds`` folds of ``rows`` have the least
    squared error on the held-out folds. The network: mean binary cross-entropy between its per-arm
    predictions and the rates (soft targets) plus an L2 penalty on its weights, full batch, the
    output biases started at each arm's mean rate; the penalty is the one of
    ``config.outcome_penalties`` whose fits on the folds predict the held-out folds best
    (cross-entropy). Arm costs are their mean compute on ``rows`` (``config.unit``) over
    ``scale``; ``lam`` starts at 0."""
    rows = np.asarray(rows)
    arms = actions.arms()
    columns = [outcomes.column(arm) for arm in arms]
    costs = outcomes.compute(config.unit)[np.ix_(rows, columns)].mean(axis=0) / scale
    targets = outcomes.correct[:, columns]
    if config.outcome_model == "neighbours":
        return _fit_neighbours(features, targets, rows, actions, config, costs)
    with _one_thread():
        penalty = config.outcome_penalties[0]
        if len(config.outcome_penalties) > 1 and len(rows) >= 2 * config.outcome_folds:
            folds = folds_of(len(rows), config.outcome_folds, config.seed)
            losses = []
            for candidate in config.outcome_penalties:
                held_loss = 0.0
                for fold in range(config.outcome_folds):
                    train, held = rows[folds != fold], rows[folds == fold]
                    model = _fit_outcome_model(features, targets, train, actions, config, costs, candidate)
                    held_loss += _outcome_loss(model, features[held], targets[held]) * len(held)
                losses.append(held_loss)
            penalty = config.outcome_penalties[int(np.argmin(losses))]
        policy = _fit_outcome_model(features, targets, rows, actions, config, costs, penalty)
        policy.penalty = penalty
        return policy


def _fit_neighbours(
    features: np.ndarray,
    targets: np.ndarray,
    rows: np.ndarray,
    actions: ActionSpace,
    config: AllocatorTrainConfig,
    costs: np.ndarray,
) -> NeighbourPolicy:
    def fitted(train: np.ndarray, neighbours: int) -> NeighbourPolicy:
        policy = NeighbourPolicy(features.shape[1], actions, config.policy, costs, len(train), neighbours)
        policy.remember(features[train], targets[train])
        return policy.eval()

    candidates = sorted(set(config.outcome_neighbours))
    if len(rows) >= 2 * config.outcome_folds:
        folds = folds_of(len(rows), config.outcome_folds, config.seed)
        smallest_fold = min(int((folds != fold).sum()) for fold in range(config.outcome_folds))
        candidates = [k for k in candidates if k <= smallest_fold] or [smallest_fold]
        errors = []
        for neighbours in candidates:
            error = 0.0
            for fold in range(config.outcome_folds):
                train, held = rows[folds != fold], rows[folds == fold]
                error += float(((fitted(train, neighbours).predict(features[held]) - targets[held]) ** 2).sum())
            errors.append(error)
        chosen = candidates[int(np.argmin(errors))]
    else:
        chosen = candidates[0]
    return fitted(rows, min(chosen, len(rows)))


def _fit_outcome_model(
    features: np.ndarray,
    targets: np.ndarray,
    rows: np.ndarray,
    actions: ActionSpace,
    config: AllocatorTrainConfig,
    costs: np.ndarray,
    penalty: float,
) -> OutcomePolicy:
    torch.manual_seed(config.seed)
    policy = OutcomePolicy(features.shape[1], actions, config.policy, costs)
    inputs = torch.as_tensor(features[rows], dtype=torch.float32)
    labels = torch.as_tensor(targets[rows], dtype=torch.float32)
    policy.set_normalisation(features[rows])
    with torch.no_grad():
        policy.head.bias.copy_(torch.logit(labels.mean(dim=0).clamp(0.01, 0.99)))
    weights = [p for name, p in policy.named_parameters() if name.endswith("weight")]
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.learning_rate)
    for _ in range(config.outcome_epochs):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(policy.logits(inputs), labels)
        loss = loss + penalty * sum((w**2).sum() for w in weights)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return policy.eval()


def _outcome_loss(policy: OutcomePolicy, features: np.ndarray, targets: np.ndarray) -> float:
    """Mean binary cross-entropy of ``policy``'s predictions against expected correctness."""
    with torch.inference_mode():
        logits = policy.logits(torch.as_tensor(features, dtype=torch.float32))
        labels = torch.as_tensor(targets, dtype=torch.float32)
        return float(torch.nn.functional.binary_cross_entropy_with_logits(logits, labels))


def outcome_lambda(policy: ArmRatePolicy, features: np.ndarray, target: float, scale: float) -> float:
    """The ``lam`` (geometric bisection between 1e-4 and 10, 40 steps) at which the adaptive
    outcome policy's predicted arms on ``features`` spend a mean compute closest to ``target``
    (in the unit of its costs times ``scale``); no refitting, only the choice moves."""
    predicted = policy.predict(features)
    low, high = 1e-4, 10.0
    best = (float("inf"), low)
    for _ in range(40):
        lam = float(np.sqrt(low * high))
        spent = float(policy.costs[policy.choose_columns(predicted, None, lam)].mean() * scale)
        best = min(best, (abs(np.log(spent / target)), lam))
        if spent > target:
            low = lam
        else:
            high = lam
    return best[1]


def accuracy_lambda(
    policy: ArmRatePolicy, features: np.ndarray, rows: np.ndarray, outcomes: ArmOutcomes, target: float
) -> float:
    """The largest ``lam`` (geometric bisection between 1e-4 and 10, 40 steps: the least compute)
    at which the adaptive outcome policy's arms on the pool questions ``rows`` reach a mean
    expected correctness of at least ``target`` (the arms' rates from ``outcomes``, not the
    policy's predictions); the smallest price tried where none does."""
    predicted = policy.predict(features[rows])
    columns = np.asarray([outcomes.column(arm) for arm in policy.arms])
    low, high = 1e-4, 10.0
    for _ in range(40):
        lam = float(np.sqrt(low * high))
        chosen = columns[policy.choose_columns(predicted, None, lam)]
        if outcomes.correct[rows, chosen].mean() >= target:
            low = lam
        else:
            high = lam
    return low


def closest_accuracy(
    policies: Sequence[tuple[float, AllocatorPolicy]],
    features: np.ndarray,
    rows: np.ndarray,
    outcomes: ArmOutcomes,
    unit: str,
    target: float,
) -> tuple[float, AllocatorPolicy]:
    """The (price, policy) of a sweep that reaches a mean expected correctness of ``target`` on
    ``rows`` with the least mean compute; the most accurate where none does."""

    def accuracy(policy: AllocatorPolicy) -> float:
        columns = greedy_columns(policy, features, rows, None, outcomes)
        return float(outcomes.correct[rows, columns].mean())

    accuracies = [accuracy(policy) for _, policy in policies]
    reaching = [pair for pair, reached in zip(policies, accuracies) if reached >= target]
    if not reaching:
        return policies[int(np.argmax(accuracies))]
    return min(reaching, key=lambda pair: mean_compute(pair[1], features, rows, outcomes, unit))


def scale_of(outcomes: ArmOutcomes, unit: str) -> float:
    """The reward's compute scale: best-of-N weighted's mean compute at the largest budget (the
    largest budget itself in generations)."""
    top = max(arm.budget for arm in outcomes.arms)
    if unit == "generations":
        return float(top)
    columns = [a for a, arm in enumerate(outcomes.arms) if arm.budget == top]
    preferred = [a for a in columns if outcomes.arms[a].strategy.name == "best_of_n_weighted"]
    return float(outcomes.flops[:, (preferred or columns)[0]].mean())
