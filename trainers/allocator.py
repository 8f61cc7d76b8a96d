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
(``weight_decay``, Adam's coupled form), the outcome model one chosen on held-out folds.

``fit_supervised`` is the ablation: the same network fitted by cross-entropy to the best arm of
each training question in hindsight.

``fit_outcomes`` is the trainer beside REINFORCE: an outcome policy that predicts every arm's
expected correctness on every training question at once (the replay environment's full
information, where REINFORCE sees one sampled reward per episode), then chooses by the Lagrangian
rule; ``outcome_lambda`` sets its ``lam`` for a target mean compute without refitting. Two models
(``outcome_model``): the nearest training questions' mean rates (``NeighbourPolicy``, the default;
how many neighbours is chosen from ``outcome_neighbours``), or a network fitted by cross-entropy
(``OutcomePolicy``; its L2 penalty is chosen from ``outcome_penalties``). Either choice is made on
folds of the training questions, by the held-out value of the decisions each setting's predictions
make (``selection_key``): the most smoothing setting within one standard error of the best
(``_best_setting``). The held-out predictions are kept to price the adaptive policy for a target
accuracy (``accuracy_lambda``).

Logging: reward, accuracy, mean compute, entropy and the share of each strategy per update go to
wandb when ``report_to`` is ``wandb`` (offline unless ``WANDB_MODE`` says otherwise).
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, get_args

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, NonNegativeFloat, PositiveInt
from ttc_runtime.env.actions import ActionSpace
from ttc_runtime.env.allocation import AllocationEnv, ReplayBackend
from ttc_runtime.policies.features import FeatureConfig
from ttc_runtime.policies.learned import (
    AllocatorPolicy,
    ArmRatePolicy,
    BlendPolicy,
    NeighbourPolicy,
    OutcomePolicy,
    PolicyConfig,
)
from ttc_runtime.strategies import Arm

from ttc_runtime.config import StrictModel
from ttc_runtime.outcomes import ArmOutcomes, folds_of


OutcomeModel = Literal["network", "neighbours", "blend"]
OUTCOME_MODELS: tuple[OutcomeModel, ...] = get_args(OutcomeModel)


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
    outcome_model: OutcomeModel = Field(
        "neighbours",
        description="The outcome policy's model: the nearest training questions' mean rates, a network, or the mean "
        "of the two (blend). On the family task's pools (two runs, 150 held-out questions, the neighbour count "
        "and the penalty chosen by the held-out Lagrangian value of their choices) the neighbours' saving at "
        "best-of-N's accuracy at N = 4, 8 and 16 was within its interval of the feature table's or above it at "
        "every one (-0.005 / -0.001 / -0.000 and +0.026 / +0.002 / -0.001 in generations), the network's 0.008 to "
        "0.032 below it with intervals below 0 at one budget or more on each run, the blend between the two. "
        "Questions of one family lie close together in the embeddings, and a family's mean rates are what a "
        "Lagrangian choice needs; the network's per-question guesses scatter a family's choices. The neighbours "
        "weigh every feature alike: where a few features of many decide, the network, which learns their "
        "weights, is the one to choose.",
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
    adaptive_match_margin: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Accuracy added to that target (best-of-N's on the training questions plus this), a margin for "
        "new questions: a policy priced to just reach a fixed strategy's accuracy on the questions it was fitted on "
        "falls short of it on others as often as not.",
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
    features and rates; the network is fitted by mean binary cross-entropy between its per-arm
    predictions and the rates (soft targets) plus an L2 penalty on its weights, full batch, the
    output biases started at each arm's mean rate. Each model's setting (the neighbour count of
    ``config.outcome_neighbours``, at most the rows of a fold; the penalty of
    ``config.outcome_penalties``) is the one whose fits on ``config.outcome_folds`` folds of
    ``rows`` serve the held-out folds best (``selection_key``), and the policy keeps those fits'
    predictions of ``rows`` (``held_out``). The blend fits both and predicts their mean (its
    ``held_out`` the mean of theirs). Arm costs are their mean compute on ``rows``
    (``config.unit``) over ``scale``; ``lam`` starts at 0."""
    rows = np.asarray(rows)
    columns = [outcomes.column(arm) for arm in actions.arms()]
    costs = outcomes.compute(config.unit)[np.ix_(rows, columns)].mean(axis=0) / scale
    targets = outcomes.correct[:, columns]
    if config.outcome_model == "neighbours":
        return _fit_neighbours(features, targets, rows, actions, config, costs)
    if config.outcome_model == "network":
        return _fit_network(features, targets, rows, actions, config, costs)
    network = _fit_network(features, targets, rows, actions, config, costs)
    nearest = _fit_neighbours(features, targets, rows, actions, config, costs)
    blend = BlendPolicy(network, nearest)
    if network.held_out is not None and nearest.held_out is not None:
        blend.held_out = (network.held_out + nearest.held_out) / 2
    return blend


def _fit_network(
    features: np.ndarray,
    targets: np.ndarray,
    rows: np.ndarray,
    actions: ActionSpace,
    config: AllocatorTrainConfig,
    costs: np.ndarray,
) -> OutcomePolicy:
    penalties = config.outcome_penalties
    crossed = len(penalties) > 1 and len(rows) >= 2 * config.outcome_folds
    fits = [(rows, penalty) for penalty in (penalties if crossed else penalties[:1])]
    if crossed:
        folds, parts = _fold_parts(rows, config)
        fits += [(train, penalty) for penalty in penalties for train, _ in parts]
    with _one_thread():
        models = _fit_outcome_models(features, targets, fits, actions, config, costs)
    if not crossed:
        models[0].penalty = penalties[0]
        return models[0]
    finals, folded = models[: len(penalties)], models[len(penalties) :]
    held_out = [
        _out_of_fold(features, folds, parts, folded[k * len(parts) : (k + 1) * len(parts)])
        for k in range(len(penalties))
    ]
    chosen = _best_setting(held_out, targets[rows], actions, costs)
    policy = finals[chosen]
    policy.penalty = penalties[chosen]
    policy.held_out = held_out[chosen]
    return policy


def lambda_sweep(low: float = 1e-3, high: float = 1e3, per_decade: int = 4) -> list[float]:
    """The prices of compute the priced allocators are swept over: 0 (the most accurate arm, the
    cheaper on ties), then ``per_decade`` geometric steps a decade from ``low`` to ``high``, in
    accuracy per ``scale`` of compute (see ``ttc_runtime.evaluation.allocators``). At ``high`` every
    arm costlier than the cheapest by a 1/1000th of the scale must add a whole correct answer: every
    question gets its cheapest arm, so the frontier runs from the cheapest arms to the most accurate."""
    count = round(math.log10(high / low) * per_decade) + 1
    return [0.0, *np.geomspace(low, high, count).tolist()]


def selection_key(
    predicted: np.ndarray, targets: np.ndarray, arms: Sequence[Arm], costs: np.ndarray | None = None
) -> tuple[float, float]:
    """How well out-of-fold ``predicted`` rates serve the questions whose expected correctness is
    ``targets`` (both ``(questions, arms)``, columns in ``arms`` order), larger is better: first
    the value of the decisions the predictions make, then, between settings that decide alike,
    minus the squared error of the predictions. Without ``costs`` (the fixed mode) the decisions
    are the arm picked at each budget of ``arms`` and their value the mean expected correctness,
    averaged over the budgets. With ``costs`` (the adaptive mode: the arms' costs, as the policy
    prices them) the decisions are the Lagrangian choices at each price of ``lambda_sweep()`` and
    their value the held-out objective they maximise, mean expected correctness minus the price
    times mean cost, averaged over the prices: an adaptive policy's choices trade accuracy for
    compute, and a setting that picks each budget's best arm well can still price the spending
    badly (on the family task's pools, 30 neighbours picked the arms as well as 5 but mixed the
    long chains with the out-of-reach chains, where spending buys nothing).
    Decisions come first because they are what the model is for: a setting that
    predicts the rates better on average (a stronger penalty, pulling every question towards the
    arms' overall rates) can still rank a family's two nearly tied arms the wrong way round, and
    on a 20-minute job's training pool the penalty chosen by held-out cross-entropy did, on the
    long chains (revisions over beam search, 0.54 against 0.82 on the test questions)."""
    error = -float(((predicted - targets) ** 2).mean())
    return float(decision_values(predicted, targets, arms, costs).mean()), error


def decision_values(
    predicted: np.ndarray, targets: np.ndarray, arms: Sequence[Arm], costs: np.ndarray | None = None
) -> np.ndarray:
    """Per question, the value of the decisions ``predicted`` makes for it (``selection_key``'s
    first term is their mean): the expected correctness of the arm picked at each budget, averaged
    over the budgets, or with ``costs`` the Lagrangian objective of the choice at each price of
    ``lambda_sweep()``, averaged over the prices."""
    rows = np.arange(len(targets))
    if costs is not None:
        values = []
        for lam in lambda_sweep():
            choice = (predicted - (lam + 1e-9) * costs).argmax(axis=1)
            values.append(targets[rows, choice] - lam * costs[choice])
        return np.mean(values, axis=0)
    picked = []
    for budget in sorted({arm.budget for arm in arms}):
        within = np.flatnonzero([arm.budget == budget for arm in arms])
        picked.append(targets[rows, within[predicted[:, within].argmax(axis=1)]])
    return np.mean(picked, axis=0)


def _best_setting(
    held_out: Sequence[np.ndarray], targets: np.ndarray, actions: ActionSpace, costs: np.ndarray
) -> int:
    """The index of the setting to fit with, given each setting's out-of-fold predictions
    (``held_out``, ordered from the least smoothing to the most: neighbour counts and penalties
    both ascend) of ``targets`` (priced by ``costs`` in the adaptive mode): the most smoothing
    setting whose decisions serve the questions within one standard error of the best setting's
    (``selection_key``; the error of their paired difference over questions), the one-standard-
    error rule. The best by the key alone follows the folds' noise. On the family task's pools with
    a revision model of 150 steps (150 training questions) it took 5 neighbours, and the adaptive
    allocator saved 0.048 [0.020, 0.092] less of best-of-N's generations than the feature table at
    best-of-4's accuracy; with the rule, 20 neighbours and -0.003 [-0.014, +0.013]. At a fixed
    budget on the default's pools it took 10 where 30 were within noise, 0.016 behind the table at
    N = 16; with the rule, level with it. Few questions make the error wide and the rule lenient:
    from 25 training questions (5 a family) it reaches across families (1.63x fewer generations
    than best-of-N at best-of-4's accuracy, against 2.06x by the key alone)."""
    priced = costs if actions.adaptive else None
    arms = actions.arms()
    best = max(range(len(held_out)), key=lambda k: selection_key(held_out[k], targets, arms, priced))
    top = decision_values(held_out[best], targets, arms, priced)
    for k in reversed(range(best + 1, len(held_out))):
        shortfall = top - decision_values(held_out[k], targets, arms, priced)
        if shortfall.mean() <= shortfall.std(ddof=1) / math.sqrt(len(shortfall)):
            return k
    return best


def _fold_parts(
    rows: np.ndarray, config: AllocatorTrainConfig
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """The fold of each of ``rows`` (``config.outcome_folds`` of them) and, per fold in order, the
    rows fitted on (the other folds) and the rows it holds out."""
    folds = folds_of(len(rows), config.outcome_folds, config.seed)
    return folds, [(rows[folds != fold], rows[folds == fold]) for fold in range(config.outcome_folds)]


def _out_of_fold(
    features: np.ndarray,
    folds: np.ndarray,
    parts: Sequence[tuple[np.ndarray, np.ndarray]],
    models: Sequence[ArmRatePolicy],
) -> np.ndarray:
    """Each training row's predicted rates by the model of ``models`` fitted on the other folds
    (``parts`` in fold order, ``folds`` the fold of each row)."""
    predicted = np.zeros((len(folds), len(models[0].arms)))
    for fold, ((_, held), model) in enumerate(zip(parts, models)):
        predicted[folds == fold] = model.predict(features[held])
    return predicted


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
    if len(rows) < 2 * config.outcome_folds:
        return fitted(rows, min(candidates[0], len(rows)))
    folds, parts = _fold_parts(rows, config)
    smallest_fold = min(len(train) for train, _ in parts)
    candidates = [k for k in candidates if k <= smallest_fold] or [smallest_fold]
    held_out = [_out_of_fold(features, folds, parts, [fitted(train, k) for train, _ in parts]) for k in candidates]
    chosen = _best_setting(held_out, targets[rows], actions, costs)
    policy = fitted(rows, min(candidates[chosen], len(rows)))
    policy.held_out = held_out[chosen]
    return policy


def _fit_outcome_models(
    features: np.ndarray,
    targets: np.ndarray,
    fits: Sequence[tuple[np.ndarray, float]],
    actions: ActionSpace,
    config: AllocatorTrainConfig,
    costs: np.ndarray,
) -> list[OutcomePolicy]:
    """One network outcome policy per ``(rows, penalty)`` of ``fits``, all fitted at once. Each
    starts from the same seed, its inputs standardised on its rows and its output biases at their
    mean rates, and takes ``config.outcome_epochs`` full-batch Adam steps on its mean cross-entropy
    over its rows plus ``penalty`` times its squared weights. The networks' weights are stacked
    along a leading axis (``torch.func.stack_module_state``) and run together under ``vmap``, with
    one Adam over the stack: Adam's update is elementwise and each network's loss touches only its
    own weights, so every network takes the steps it would take alone, and the cross-validation's
    fits cost one pass of wider matrix products instead of one pass each."""
    policies = []
    for rows, _ in fits:
        torch.manual_seed(config.seed)
        policy = OutcomePolicy(features.shape[1], actions, config.policy, costs)
        policy.set_normalisation(features[rows])
        with torch.no_grad():
            rates = torch.as_tensor(targets[rows].mean(axis=0), dtype=torch.float32)
            policy.head.bias.copy_(torch.logit(rates.clamp(0.01, 0.99)))
        policies.append(policy)
    used = np.unique(np.concatenate([rows for rows, _ in fits]))
    inputs = torch.as_tensor(features[used], dtype=torch.float32)
    labels = torch.as_tensor(targets[used], dtype=torch.float32).expand(len(fits), -1, -1)
    row_weight = torch.zeros(len(fits), len(used))
    for k, (rows, _) in enumerate(fits):
        row_weight[k, np.searchsorted(used, rows)] = 1.0 / len(rows)
    penalty = torch.tensor([penalty for _, penalty in fits], dtype=torch.float32)
    params, buffers = torch.func.stack_module_state(policies)
    weights = [name for name in params if name.endswith("weight")]
    template = copy.deepcopy(policies[0]).to("meta")

    def logits(params: dict, buffers: dict) -> torch.Tensor:
        return torch.func.functional_call(template, (params, buffers), (inputs,))

    stacked = torch.func.vmap(logits)
    optimizer = torch.optim.Adam(params.values(), lr=config.learning_rate)
    for _ in range(config.outcome_epochs):
        entropy = F.binary_cross_entropy_with_logits(stacked(params, buffers), labels, reduction="none").mean(dim=2)
        squares = sum((params[name] ** 2).flatten(1).sum(dim=1) for name in weights)
        loss = ((entropy * row_weight).sum(dim=1) + penalty * squares).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        for k, policy in enumerate(policies):
            for name, parameter in policy.named_parameters():
                parameter.copy_(params[name][k])
    return [policy.eval() for policy in policies]


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
    policy: ArmRatePolicy, predicted: np.ndarray, rows: np.ndarray, outcomes: ArmOutcomes, target: float
) -> float:
    """The largest ``lam`` (geometric bisection between 1e-4 and 10, 40 steps: the least compute)
    at which the adaptive outcome policy's choices on ``predicted``, its predicted rates for the
    pool questions ``rows``, reach a mean expected correctness of at least ``target`` (the arms'
    rates from ``outcomes``, not the predictions); the smallest price tried where none does
    (``matched_lambda`` asks it with the policy's own predictions and its held-out ones)."""
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


def matched_lambda(
    policy: ArmRatePolicy, own: np.ndarray, rows: np.ndarray, outcomes: ArmOutcomes, target: float
) -> float:
    """The price of the adaptive policy the runtime serves, for a ``target`` accuracy on its
    training questions ``rows``: the lower of the prices (``accuracy_lambda``) at which its ``own``
    predictions of those questions and its ``held_out`` ones (where it has them) reach the target.
    The one maps price to compute as the served model does, the other shows how its choices carry
    to new questions; on one run the held-out price alone (0.639) left its own choices 0.010 short
    of the target, and the served policy 0.025 less accurate than the strategy it was matched to."""
    predictions = [own] if policy.held_out is None else [own, policy.held_out]
    return min(accuracy_lambda(policy, p, rows, outcomes, target) for p in predictions)


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
