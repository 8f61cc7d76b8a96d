"""``allocator``: the learned allocators against the baselines in the fixed-budget and adaptive
modes, with their ablations, trained on the training pool or cross-validated on the pool
(``allocator.md``; ``allocator.png``, one panel in generations and one in FLOPs;
``allocator_choices.png`` by difficulty bin and ``allocator_choices_levels.png`` by level, and
JSON), and the policies of ``allocator.trainer`` trained on every
question it learns from, saved under ``allocator/`` for the runtime. Two learners: REINFORCE on
the replay environment (its adaptive points are one policy per price of ``reinforce_lambdas``) and
the outcome model (its adaptive points are the price sweep's frontier); both frontiers are
matched against best-of-N weighted and the oracle frontier like the baselines'. The outcome model
also runs on each of ``allocator.ablation_features``, its other models (of the network, the
neighbours and their blend) on the main features, and on fewer training questions
(``allocator.learning_curve``)."""

from __future__ import annotations

import time

import numpy as np

from ..console import say
from ..env.actions import ActionSpace
from ..evaluation.allocator_tables import choice_shares, format_report, plot_choices, plot_report, report_to_json
from ..evaluation.allocators import (
    Protocol,
    allocator_report,
    baseline_results,
    cross_validated_adaptive,
    cross_validated_fixed,
    cross_validated_outcomes,
    lambda_sweep,
)
from ..files import write_text_atomic
from ..outcomes import ArmOutcomes
from ..policies.features import build_featurizer
from ..policies.learned import LearnedAllocator
from ..pool import RolloutPool
from ..tracking import training_logger
from ..trainers.allocator import (
    OUTCOME_MODELS,
    closest_accuracy,
    closest_to,
    fit_outcomes,
    greedy_columns,
    matched_lambda,
    outcome_lambda,
    reinforce_sweep,
    scale_of,
    train_policy,
)
from .base import RunContext, Stage, fingerprint
from .pool import pools_key, train_pool


def outcome_names(tag: str, model: str = "") -> tuple[str, str]:
    """The fixed-budget and adaptive names of an outcome model fitted on ``tag`` (features, and the
    training-set size where it is a learning-curve point); ``model`` names the other outcome model."""
    return f"outcome model{model}, fixed budget ({tag})", f"outcome model{model}, adaptive budget ({tag})"


def decision_time(policy, featurizer, questions: list[str], budget: int) -> dict[str, float]:
    """Milliseconds per question of the allocator's decision on a batch of ``questions``: the
    policy alone on precomputed features, and features plus policy (the best of 3 runs each)."""
    allocator = LearnedAllocator("learned", policy, featurizer)
    features, _ = featurizer(questions)
    policy_only, whole = [], []
    for _ in range(3):
        started = time.perf_counter()
        allocator.decide(features, budget)
        policy_only.append(time.perf_counter() - started)
        allocator.choose(questions, budget)
        whole.append(allocator.last_decision_seconds)
    return {
        "policy": 1000 * min(policy_only) / len(questions),
        "features_and_policy": 1000 * min(whole) / len(questions),
    }


def matched_accuracy(table: ArmOutcomes, rows: np.ndarray, budget: int | None) -> float | None:
    """Best-of-N weighted's mean expected correctness at ``budget`` on the questions ``rows`` (None
    without a budget): the accuracy the runtime's adaptive policy is priced to match."""
    if budget is None:
        return None
    for column, arm in enumerate(table.arms):
        if arm.strategy.name == "best_of_n_weighted" and arm.budget == budget:
            return float(table.correct[rows, column].mean())
    budgets = sorted({arm.budget for arm in table.arms if arm.strategy.name == "best_of_n_weighted"})
    raise ValueError(f"allocator.adaptive_match_budget {budget} is not one of best-of-N weighted's budgets {budgets}")


class Allocator(Stage):
    name = "allocator"
    record = "allocator.json"
    outputs = ("allocator.md",)
    tracked = True
    title = "Learned allocator against the baselines, and what it chose per bin"
    plots = ("allocator.png", "allocator_choices.png", "allocator_choices_levels.png")

    def key(self, ctx: RunContext) -> str:
        config = ctx.config
        return fingerprint(config.allocator, config.baselines, pools_key(ctx), ctx.identity(ctx.layout.proposer_dir()))

    def run(self, ctx: RunContext, force: bool) -> dict[str, object]:
        config, settings, run_dir = ctx.config, ctx.config.allocator, ctx.run_dir
        started = time.perf_counter()
        protocol = Protocol.of(RolloutPool(ctx.layout.pool_dir()), config.baselines, train_pool(ctx))
        table, splits, training = protocol.table, protocol.splits, settings.training
        proposer = str(ctx.layout.proposer_dir())
        featurizer = build_featurizer(settings.features, proposer, config.proposer.prompt, ctx.device)
        main, main_flops = featurizer(table.questions)
        label = settings.features.kind
        kinds = ", ".join(f.kind for f in [settings.features, *settings.ablation_features])
        say(
            f"  {splits.description}: the outcome model ({kinds}), "
            f"REINFORCE and the supervised fit at a fixed budget ({label}), REINFORCE at "
            f"{len(settings.reinforce_lambdas)} prices of compute"
        )
        results = baseline_results(protocol)
        lambdas = lambda_sweep()
        names = {
            "reinforce": (f"REINFORCE, fixed budget ({label})", f"REINFORCE, adaptive budget ({label})"),
            "outcomes": outcome_names(label),
        }
        adaptive_names = [names["reinforce"][1]]
        fitted_with = {}

        def outcome_runs(tag: str, rows: np.ndarray, flops: np.ndarray, parts=splits, fit=training, model="") -> None:
            """The outcome model, fixed and adaptive, named after ``tag`` (and ``model``), into ``results``."""
            pair = outcome_names(tag, model)
            fixed_results, adaptive_results = cross_validated_outcomes(
                pair, rows, flops, table, parts, fit, lambdas, protocol.scales
            )
            results.extend(fixed_results + adaptive_results)
            adaptive_names.append(pair[1])

        for features in [settings.features, *settings.ablation_features]:
            if features == settings.features:
                outcome_runs(label, main, main_flops)
            else:
                other = build_featurizer(features, proposer, config.proposer.prompt, ctx.device)
                outcome_runs(features.kind, *other(table.questions))
        for other_model in OUTCOME_MODELS:
            if other_model != training.outcome_model:
                other_fit = training.model_copy(update={"outcome_model": other_model})
                outcome_runs(label, main, main_flops, fit=other_fit, model=f" ({other_model})")
        levels = np.asarray(table.levels)
        for size in sorted(n for n in settings.learning_curve if n < min(len(train) for train, _ in splits.parts)):
            fewer = splits.fewer(size, levels, training.seed)
            outcome_runs(f"{label}, {size} training questions", main, main_flops, parts=fewer)
        results += cross_validated_fixed(names["reinforce"][0], main, main_flops, table, splits, training)
        results += cross_validated_fixed(
            f"supervised, fixed budget ({label})", main, main_flops, table, splits, training, supervised=True
        )
        results += cross_validated_adaptive(
            names["reinforce"][1], main, main_flops, table, splits, training, settings.reinforce_lambdas
        )
        report = allocator_report(protocol, results, config.baselines, adaptive=adaptive_names, lambdas=lambdas)

        tested = np.arange(splits.tested)
        log = training_logger(config.wandb, run_dir, "allocator-training", settings.model_dump(mode="json"))
        scale = scale_of(table, training.unit)
        fixed_space = ActionSpace.from_arms(table.within_budget(), False)
        adaptive_space = ActionSpace.from_arms(table.arms, True)
        reinforced, history = train_policy(main, table, splits.fit_rows, fixed_space, training, 0.0, 1.0, log)
        match = matched_accuracy(table, splits.fit_rows, settings.adaptive_match_budget)
        if match is not None:
            match = min(1.0, match + settings.adaptive_match_margin)
        if settings.trainer == "outcomes":
            fixed = fit_outcomes(main, table, splits.fit_rows, fixed_space, training, scale)
            adaptive = fit_outcomes(main, table, splits.fit_rows, adaptive_space, training, scale)
            if match is None:
                lam = outcome_lambda(adaptive, main[splits.fit_rows], settings.adaptive_target, scale)
            else:
                lam = matched_lambda(adaptive, adaptive.predict(main[splits.fit_rows]), splits.fit_rows, table, match)
            adaptive.lam = lam
            fitted_with = {"fixed": fixed.fitted_with(), "adaptive": adaptive.fitted_with()}
        else:
            fixed = reinforced
            sweep = reinforce_sweep(
                main, table, splits.fit_rows, adaptive_space, training, scale, settings.reinforce_lambdas
            )
            if match is None:
                lam, adaptive = closest_to(sweep, main, splits.fit_rows, table, training.unit, settings.adaptive_target)
            else:
                lam, adaptive = closest_accuracy(sweep, main, splits.fit_rows, table, training.unit, match)
        adaptive_columns = greedy_columns(adaptive, main, splits.fit_rows, None, table)
        adaptive_on_training = {
            "accuracy": float(table.correct[splits.fit_rows, adaptive_columns].mean()),
            "generations": float(table.generations[splits.fit_rows, adaptive_columns].mean()),
            "matched_accuracy": match,
        }
        fixed.save(ctx.layout.policy_dir("fixed"), settings.features)
        adaptive.save(ctx.layout.policy_dir("adaptive"), settings.features)
        timing = decision_time(fixed, featurizer, table.questions[: splits.tested], max(a.budget for a in table.arms))
        fixed_arms = {budget: fixed.greedy_arms(main[tested], budget) for budget in fixed.actions.budgets}
        choices = {budget: choice_shares(arms, report.difficulty.oracle_bins) for budget, arms in fixed_arms.items()}
        by_level = {budget: choice_shares(arms, levels[tested]) for budget, arms in fixed_arms.items()}
        plot_choices(by_level, run_dir / "allocator_choices_levels.png", rows="level")
        plot_choices(choices, run_dir / "allocator_choices.png")
        plot_report(report, run_dir / "allocator.png", learned=list(names[settings.trainer]))
        write_text_atomic(run_dir / "allocator.md", format_report(report))
        if log is not None:
            log.finish()
        return {
            "seconds": time.perf_counter() - started,
            "feature_flops_mean": float(main_flops[tested].mean()),
            "final_training": {"reward": history.reward[-20:], "accuracy": history.accuracy[-20:]},
            "decision_ms_per_question": timing,
            "choices_by_oracle_bin": choices,
            "choices_by_level": by_level,
            "trainer": settings.trainer,
            "adaptive_lambda": lam,
            "adaptive_target": settings.adaptive_target,
            "adaptive_on_training_questions": adaptive_on_training,
            "outcome_fit_chosen": fitted_with,
            **report_to_json(report),
        }

    def describe(self, record: dict) -> str:
        timing = record["decision_ms_per_question"]
        return (
            f"{record['protocol']}; decision {timing['features_and_policy']:.4f} ms per question "
            "(features included); policies in allocator/"
        )
