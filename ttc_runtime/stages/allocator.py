"""``allocator``: the learned allocators against the baselines in the fixed-budget and adaptive
modes, with their ablations, trained on the training pool or cross-validated on the pool
(``allocator.md``; ``allocator.png``, one panel in generations and one in FLOPs;
``allocator_choices.png`` and JSON), and the policies of ``allocator.trainer`` trained on every
question it learns from, saved under ``allocator/`` for the runtime. Two learners: REINFORCE on
the replay environment (its adaptive points are the compute targets it was calibrated to) and
the outcome model (its adaptive points are the price sweep's frontier); both frontiers are
matched against best-of-N weighted and the oracle frontier like the baselines'."""

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
from ..policies.features import build_featurizer
from ..policies.learned import LearnedAllocator
from ..pool import RolloutPool
from ..tracking import training_logger
from ..trainers.allocator import calibrate_lambda, fit_outcomes, outcome_lambda, scale_of, train_policy
from .base import RunContext, Stage, fingerprint
from .pool import pools_key, train_pool


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


class Allocator(Stage):
    name = "allocator"
    record = "allocator.json"
    outputs = ("allocator.md",)
    tracked = True
    title = "Learned allocator against the baselines, and what it chose per bin"
    plots = ("allocator.png", "allocator_choices.png")

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
        ablation = build_featurizer(settings.ablation_features, proposer, config.proposer.prompt, ctx.device)
        main, main_flops = featurizer(table.questions)
        ablation_features, ablation_flops = ablation(table.questions)
        label, ablation_label = settings.features.kind, settings.ablation_features.kind
        say(
            f"  {splits.description}: REINFORCE at a fixed budget ({label}, {ablation_label}), supervised, the "
            f"outcome model, then adaptive: REINFORCE at mean compute {settings.adaptive_targets}, the outcome "
            "model over the price sweep"
        )
        results = baseline_results(protocol)
        names = {
            "reinforce": (f"REINFORCE, fixed budget ({label})", f"REINFORCE, adaptive budget ({label})"),
            "outcomes": (f"outcome model, fixed budget ({label})", f"outcome model, adaptive budget ({label})"),
        }
        results += cross_validated_fixed(names["reinforce"][0], main, main_flops, table, splits, training)
        results += cross_validated_fixed(
            f"REINFORCE, fixed budget ({ablation_label})", ablation_features, ablation_flops, table, splits, training
        )
        results += cross_validated_fixed(
            f"supervised, fixed budget ({label})", main, main_flops, table, splits, training, supervised=True
        )
        results += cross_validated_adaptive(
            names["reinforce"][1], main, main_flops, table, splits, training, settings.adaptive_targets
        )
        lambdas = lambda_sweep()
        fixed_outcomes, adaptive_outcomes = cross_validated_outcomes(
            names["outcomes"], main, main_flops, table, splits, training, lambdas, protocol.scales
        )
        results += fixed_outcomes + adaptive_outcomes
        adaptive_names = [names["reinforce"][1], names["outcomes"][1]]
        report = allocator_report(protocol, results, config.baselines, adaptive=adaptive_names, lambdas=lambdas)

        tested = np.arange(splits.tested)
        log = training_logger(config.wandb, run_dir, "allocator-training", settings.model_dump(mode="json"))
        scale = scale_of(table, training.unit)
        middle = sorted(settings.adaptive_targets)[len(settings.adaptive_targets) // 2]
        fixed_space = ActionSpace.from_arms(table.within_budget(), False)
        reinforced, history = train_policy(main, table, splits.fit_rows, fixed_space, training, 0.0, 1.0, log)
        if settings.trainer == "outcomes":
            fixed = fit_outcomes(main, table, splits.fit_rows, fixed_space, training, scale)
            adaptive = fit_outcomes(
                main, table, splits.fit_rows, ActionSpace.from_arms(table.within_budget(), True), training, scale
            )
            lam = adaptive.lam = outcome_lambda(adaptive, main[splits.fit_rows], middle, scale)
        else:
            fixed = reinforced
            lam, adaptive = calibrate_lambda(
                main, table, splits.fit_rows, ActionSpace.from_arms(table.arms, True), training, scale, middle
            )
        fixed.save(ctx.layout.policy_dir("fixed"), settings.features)
        adaptive.save(ctx.layout.policy_dir("adaptive"), settings.features)
        timing = decision_time(fixed, featurizer, table.questions[: splits.tested], max(a.budget for a in table.arms))
        choices = {
            budget: choice_shares(
                fixed.greedy_arms(main[tested], budget),
                report.difficulty.oracle_bins,
            )
            for budget in fixed.actions.budgets
        }
        plot_choices(choices, run_dir / "allocator_choices.png")
        plot_report(report, run_dir / "allocator.png", learned=list(names[settings.trainer]))
        write_text_atomic(run_dir / "allocator.md", format_report(report))
        if log is not None:
            log.finish()
        return {
            "seconds": time.perf_counter() - started,
            "feature_flops_mean": {
                "main": float(main_flops[tested].mean()),
                "ablation": float(ablation_flops[tested].mean()),
            },
            "final_training": {"reward": history.reward[-20:], "accuracy": history.accuracy[-20:]},
            "decision_ms_per_question": timing,
            "choices_by_oracle_bin": choices,
            "trainer": settings.trainer,
            "adaptive_lambda": lam,
            "adaptive_target": middle,
            **report_to_json(report),
        }

    def describe(self, record: dict) -> str:
        timing = record["decision_ms_per_question"]
        return (
            f"{record['protocol']}; decision {timing['features_and_policy']:.4f} ms per question "
            "(features included); policies in allocator/"
        )
