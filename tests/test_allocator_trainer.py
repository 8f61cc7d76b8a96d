"""Training the allocator policy: REINFORCE, the supervised fit, and the compute price lambda."""

from __future__ import annotations

import numpy as np
import pytest
from ttc_runtime.env.actions import ActionSpace
from ttc_runtime.trainers.allocator import (
    AllocatorTrainConfig,
    _best_setting,
    _fit_outcome_models,
    accuracy_lambda,
    closest_accuracy,
    closest_to,
    fit_outcomes,
    fit_supervised,
    greedy_columns,
    lambda_sweep,
    matched_lambda,
    mean_compute,
    outcome_lambda,
    reinforce_sweep,
    selection_key,
    train_policy,
)

from tests.conftest import ARMS, BON, REV, learnable, table


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


def test_lambda_prices_compute_and_the_sweep_spans_the_budgets():
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
    sweep = reinforce_sweep(features, outcomes, rows, space, config, 16.0, [0.0, 1.0])
    assert [lam for lam, _ in sweep] == [0.0, 1.0]
    assert [mean_compute(p, features, rows, outcomes, "generations") for _, p in sweep] == [16, 4]
    lam, policy = closest_to(sweep, features, rows, outcomes, "generations", target=5.0)
    assert lam == 1.0 and mean_compute(policy, features, rows, outcomes, "generations") == 4
    # Priced to match an accuracy instead: the cheapest policy of the sweep that reaches it.
    assert closest_accuracy(sweep, features, rows, outcomes, "generations", target=0.55)[0] == 0.0
    assert closest_accuracy(sweep, features, rows, outcomes, "generations", target=0.5)[0] == 1.0
    assert closest_accuracy(sweep, features, rows, outcomes, "generations", target=0.9)[0] == 0.0


def test_outcome_policy_learns_every_arms_rate_and_prices_compute_without_refitting():
    features, correct = learnable(64)
    outcomes = table(correct)
    rows = np.arange(64)
    fixed = fit_outcomes(
        features, outcomes, rows, ActionSpace.from_arms(ARMS, adaptive=False), AllocatorTrainConfig(), 16.0
    )
    for budget in (4, 16):
        arms = fixed.greedy_arms(features, budget)
        assert all(arm.budget == budget for arm in arms)
        assert correct[rows, [outcomes.column(arm) for arm in arms]].mean() >= 0.9
    # Adaptive: the right strategy is as good at 4 as at 16, so a small price picks budget 4.
    space = ActionSpace.from_arms(ARMS, adaptive=True)
    adaptive = fit_outcomes(features, outcomes, rows, space, AllocatorTrainConfig(), 16.0)
    assert adaptive.costs.tolist() == [arm.budget / 16.0 for arm in space.arms()]
    adaptive.lam = 0.05
    arms = adaptive.greedy_arms(features, None)
    assert {arm.budget for arm in arms} == {4} and correct[rows, [outcomes.column(a) for a in arms]].mean() >= 0.9
    # Rates that grow with the budget: the price moves the choice, and outcome_lambda finds the
    # price for a target mean compute on the features alone.
    rising = table(np.array([[0.5 if arm.budget == 4 else 0.9 for arm in ARMS]] * 32))
    policy = fit_outcomes(features[:32], rising, np.arange(32), space, AllocatorTrainConfig(), 16.0)
    assert {a.budget for a in policy.greedy_arms(features[:32], None)} == {16}
    policy.lam = outcome_lambda(policy, features[:32], target=4.0, scale=16.0)
    assert {a.budget for a in policy.greedy_arms(features[:32], None)} == {4} and policy.lam > 0.4 / 0.75 - 1e-6
    # Or for a target accuracy, from the arms' rates: 0.9 needs budget 16 on every question, 0.7
    # is reached (on some questions at 4), 0.5 is met at budget 4, at the largest price tried.
    policy.lam = accuracy_lambda(policy, policy.predict(features[:32]), np.arange(32), rising, target=0.9)
    assert {a.budget for a in policy.greedy_arms(features[:32], None)} == {16}
    policy.lam = accuracy_lambda(policy, policy.predict(features[:32]), np.arange(32), rising, target=0.7)
    arms = policy.greedy_arms(features[:32], None)
    assert np.mean([0.5 if arm.budget == 4 else 0.9 for arm in arms]) >= 0.7
    policy.lam = accuracy_lambda(policy, policy.predict(features[:32]), np.arange(32), rising, target=0.5)
    assert {a.budget for a in policy.greedy_arms(features[:32], None)} == {4} and policy.lam > 9


def test_outcome_fit_chooses_its_penalty_by_the_held_out_arms_it_picks():
    # Features that carry nothing: at each budget one arm is right 80% of the time and the others
    # 20%, whatever the features say. The strongest penalty predicts the arms' overall rates and
    # picks the good arm on every held-out question; no penalty learns the training questions'
    # coins and picks worse. The strong one is chosen, and it is the fit a lone penalty gives.
    rng = np.random.default_rng(0)
    features = rng.normal(size=(48, 64)).astype(np.float32)
    good = np.array([arm.strategy == BON for arm in ARMS])
    correct = (rng.random((48, len(ARMS))) < np.where(good, 0.8, 0.2)).astype(float)
    space = ActionSpace.from_arms(ARMS, adaptive=False)
    config = AllocatorTrainConfig(outcome_model="network", outcome_penalties=[0.0, 10.0])
    chosen = fit_outcomes(features, table(correct), np.arange(48), space, config, 16.0)
    strong = fit_outcomes(
        features,
        table(correct),
        np.arange(48),
        space,
        config.model_copy(update={"outcome_penalties": [10.0]}),
        16.0,
    )
    assert chosen.penalty == 10.0
    np.testing.assert_allclose(chosen.predict(features), strong.predict(features), atol=1e-5)
    assert all(arm.strategy == BON for arm in chosen.greedy_arms(features, 16))
    spread = chosen.predict(features).std(axis=0).max()
    free = fit_outcomes(
        features, table(correct), np.arange(48), space, config.model_copy(update={"outcome_penalties": [0.0]}), 16.0
    )
    assert spread < free.predict(features).std(axis=0).max()


def test_settings_are_ranked_by_the_arms_their_predictions_pick_then_by_their_error():
    # Two arms at budget 4 and one at 16, two questions. The first predictions are close to the
    # rates but rank the first question's arms the wrong way round; the second are far off in
    # value and rank every question's arms right: the second serve the questions better.
    arms = [arm for arm in ARMS if arm.budget == 4][:2] + [arm for arm in ARMS if arm.budget == 16][:1]
    targets = np.array([[0.80, 0.85, 0.9], [0.2, 0.1, 0.5]])
    close = np.array([[0.83, 0.82, 0.9], [0.2, 0.1, 0.5]])
    ranked = np.array([[0.1, 0.9, 0.1], [0.9, 0.1, 0.1]])
    assert selection_key(close, targets, arms)[1] > selection_key(ranked, targets, arms)[1]
    assert selection_key(ranked, targets, arms) > selection_key(close, targets, arms)
    # Mean over the budgets of the picked arms' mean rate: ((0.85 + 0.2) / 2 + (0.9 + 0.5) / 2) / 2.
    assert selection_key(ranked, targets, arms)[0] == pytest.approx(0.6125)
    # Settings that pick alike are told apart by their squared error.
    nearer = targets + 0.01 * np.array([[-1, 1, 0], [1, -1, 0]])
    assert selection_key(nearer, targets, arms)[0] == selection_key(ranked, targets, arms)[0]
    assert selection_key(nearer, targets, arms) > selection_key(ranked, targets, arms)


def test_the_most_smoothing_setting_within_one_standard_error_of_the_best_is_chosen():
    # Forty questions; at each budget one arm is always right and the others never. A setting
    # rates the wrong arms highest on some questions: A on questions 0-3, B on 2-7, C on 0-15.
    # A is the best. B loses questions 4-7 against A and wins 0-1: 2 of 40 short, within one
    # standard error of the paired difference (0.05 against 0.062); C loses 4-15 (0.30 against
    # 0.073). Settings are ordered from the least smoothing to the most.
    space = ActionSpace.from_arms(ARMS, adaptive=False)
    arms = space.arms()
    targets = np.zeros((40, len(arms)))
    for budget in {arm.budget for arm in arms}:
        targets[:, next(i for i, arm in enumerate(arms) if arm.budget == budget)] = 1.0

    def wrong_on(questions: range) -> np.ndarray:
        predicted = targets.copy()
        predicted[list(questions)] = 1.0 - targets[list(questions)]
        return predicted

    a, b, c = wrong_on(range(0, 4)), wrong_on(range(2, 8)), wrong_on(range(0, 16))
    costs = np.zeros(len(arms))
    assert _best_setting([a, b, c], targets, space, costs) == 1
    assert _best_setting([a, c], targets, space, costs) == 0
    assert _best_setting([b, a], targets, space, costs) == 1
    assert selection_key(a, targets, arms) > selection_key(b, targets, arms) > selection_key(c, targets, arms)


def test_outcome_networks_fitted_together_take_the_steps_each_takes_alone():
    # The penalty's cross-validation fits all its networks in one stacked pass (torch.func.vmap):
    # different rows, different penalties, and each must come out as if it were fitted alone.
    features, correct = learnable(48)
    space = ActionSpace.from_arms(ARMS, adaptive=False)
    targets = correct[:, [ARMS.index(arm) for arm in space.arms()]]
    config = AllocatorTrainConfig(outcome_epochs=50)
    costs = np.zeros(len(space.arms()))
    fits = [(np.arange(48), 0.0), (np.arange(32), 1e-2), (np.arange(16, 48), 1.0)]
    together = _fit_outcome_models(features, targets, fits, space, config, costs)
    alone = [_fit_outcome_models(features, targets, [fit], space, config, costs)[0] for fit in fits]
    for stacked, single in zip(together, alone):
        np.testing.assert_allclose(stacked.predict(features), single.predict(features), atol=1e-5)
    # The fits differ, so agreeing is not a matter of every network ending the same.
    assert np.abs(together[0].predict(features) - together[2].predict(features)).max() > 0.05


def test_outcome_fits_keep_each_training_questions_prediction_by_the_fit_that_did_not_see_it():
    # Coins on features that carry nothing: without a penalty the network learns its training
    # questions' coins, and the nearest neighbour of a training question is itself. Their held-out
    # predictions, each row by the fold fit that left it out, know nothing of the coins.
    rng = np.random.default_rng(0)
    features = rng.normal(size=(48, 64)).astype(np.float32)
    correct = (rng.random((48, len(ARMS))) < 0.5).astype(float)
    space = ActionSpace.from_arms(ARMS, adaptive=False)
    targets = correct[:, [ARMS.index(arm) for arm in space.arms()]]

    def agreement(predicted: np.ndarray) -> float:
        return float(np.corrcoef(predicted.ravel(), targets.ravel())[0, 1])

    network = fit_outcomes(
        features,
        table(correct),
        np.arange(48),
        space,
        AllocatorTrainConfig(outcome_model="network", outcome_penalties=[0.0, 1e-4]),
        16.0,
    )
    assert network.held_out.shape == targets.shape
    assert agreement(network.predict(features)) > 0.9 and abs(agreement(network.held_out)) < 0.3
    config = AllocatorTrainConfig(outcome_model="neighbours", outcome_neighbours=[1])
    nearest = fit_outcomes(features, table(correct), np.arange(48), space, config, 16.0)
    np.testing.assert_allclose(nearest.predict(features), targets)
    assert abs(agreement(nearest.held_out)) < 0.3
    # Too few questions to cross-validate: nothing held out.
    few = fit_outcomes(features[:4], table(correct[:4]), np.arange(4), space, config, 16.0)
    assert few.held_out is None


def test_adaptive_settings_are_ranked_by_the_lagrangian_value_of_their_choices():
    # A cheap arm (budget 4, a quarter of the cost) and a dear one (budget 16), two questions: on
    # the first the dear arm adds 0.4, on the second nothing is ever right (out of reach). Each
    # budget has one arm, so the fixed mode's key cannot tell the two settings apart; the second
    # setting rates the second question like the first and spends on it at moderate prices.
    arms = [next(arm for arm in ARMS if arm.budget == 4), next(arm for arm in ARMS if arm.budget == 16)]
    costs = np.array([0.25, 1.0])
    targets = np.array([[0.5, 0.9], [0.0, 0.0]])
    mixed = np.array([[0.5, 0.9], [0.5, 0.9]])
    assert selection_key(targets, targets, arms)[0] == selection_key(mixed, targets, arms)[0]
    exact, blurred = selection_key(targets, targets, arms, costs), selection_key(mixed, targets, arms, costs)
    assert exact > blurred
    # Exact rates make the oracle's choice at every price, the most any predictions can reach: at
    # each price the better of the two arms per question, averaged over the prices.
    prices = np.array(lambda_sweep())
    best = (targets[:, None, :] - prices[None, :, None] * costs).max(axis=2)
    assert exact[0] == pytest.approx(best.mean(axis=0).mean())
    # The mixed setting loses 0.75 of cost at every price where the first question takes the dear
    # arm (below 0.4 / 0.75), half of it per question, and nothing elsewhere.
    spent = prices < 0.4 / 0.75
    assert exact[0] - blurred[0] == pytest.approx((prices[spent] * 0.75 / 2).sum() / len(prices))


def test_neighbour_fit_predicts_group_means_and_chooses_its_count_by_held_out_error():
    # Two groups of questions told apart by one feature, each with its own best arm, and a coin
    # within each group. The neighbour count that predicts held-out questions best averages many of
    # a group's questions (the group's mean rate) without reaching into the other group.
    rng = np.random.default_rng(0)
    group = np.repeat([0, 1], 30)
    features = np.stack([group, rng.normal(size=60)], axis=1).astype(np.float32)
    good = np.array([[arm.strategy == BON, arm.strategy == REV] for arm in ARMS], dtype=float).T[group]
    correct = (rng.random((60, len(ARMS))) < 0.1 + 0.8 * good).astype(float)
    space = ActionSpace.from_arms(ARMS, adaptive=False)
    config = AllocatorTrainConfig(outcome_model="neighbours", outcome_neighbours=[1, 15, 40])
    policy = fit_outcomes(features, table(correct), np.arange(60), space, config, 16.0)
    assert policy.fitted_with() == {"neighbours": 15.0}
    predicted = policy.predict(features)
    columns = [ARMS.index(arm) for arm in space.arms()]
    for rows in (slice(0, 30), slice(30, 60)):
        assert np.abs(predicted[rows].mean(axis=0) - correct[rows][:, columns].mean(axis=0)).max() < 0.1
    chosen = [arm.strategy for arm in policy.greedy_arms(features, 16)]
    assert chosen == [BON] * 30 + [REV] * 30
    # A count larger than a fold's training questions is never tried.
    small = fit_outcomes(
        features, table(correct), np.arange(12), space, config.model_copy(update={"outcome_neighbours": [40]}), 16.0
    )
    assert small.fitted_with() == {"neighbours": 8.0}


def test_the_served_price_is_the_lower_of_the_own_and_held_out_predictions_prices():
    # Budget 4 is right half the time, budget 16 nine times in ten, on every question, so a target
    # of 0.7 needs budget 16. Predictions that rate budget 4 at 0.85 give it up for budget 16 only
    # below a price of 0.067 (0.05 of rate for 0.75 of compute); rating it 0.55, below 0.47. The
    # served price is the lower of the two, whichever predictions flatter the cheap arm.
    features, _ = learnable(32)
    rising = table(np.array([[0.5 if arm.budget == 4 else 0.9 for arm in ARMS]] * 32))
    space = ActionSpace.from_arms(ARMS, adaptive=True)
    policy = fit_outcomes(features, rising, np.arange(32), space, AllocatorTrainConfig(), 16.0)
    rows = np.arange(32)

    def rated(four: float) -> np.ndarray:
        return np.array([[four if arm.budget == 4 else 0.9 for arm in policy.arms]] * 32)

    flattering, sober = rated(0.85), rated(0.55)
    low = accuracy_lambda(policy, flattering, rows, rising, 0.7)
    high = accuracy_lambda(policy, sober, rows, rising, 0.7)
    assert low == pytest.approx(0.05 / 0.75, rel=1e-3) and high == pytest.approx(0.35 / 0.75, rel=1e-3)
    policy.held_out = flattering
    assert matched_lambda(policy, sober, rows, rising, 0.7) == low
    policy.held_out = sober
    assert matched_lambda(policy, flattering, rows, rising, 0.7) == low
    policy.held_out = None
    assert matched_lambda(policy, sober, rows, rising, 0.7) == high
