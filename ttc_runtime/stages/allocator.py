"""``allocator``: the learned allocator against the baselines in the fixed-budget and adaptive
modes, with its ablations, trained on the training pool or cross-validated on the pool
(``allocator.md``; ``allocator.png``, one panel in generations and one in FLOPs;
``allocator_choices.png`` and JSON), and the policies trained on every question it learns from,
saved under ``allocator/``. The adaptive allocator's points at its compute targets are its
frontier, matched against best-of-N weighted and the oracle frontier like the baselines'."""

from __future__ import annotations

import time

import numpy as np

from ..console import say
from ..env.actions import ActionSpace
from ..evaluation.allocators import (
    Protocol,
    allocator_report,
    baseline_results,
    choice_shares,
    cross_validated_adaptive,
    cross_validated_fixed,
    format_report,
    plot_choices,
    plot_report,
    report_to_json,
)
from ..files import write_text_atomic
from ..policies.features import build_featurizer
from ..policies.learned import LearnedAllocator
from ..pool import RolloutPool
from ..tracking import training_logger
from ..trainers.allocator import calibrate_lambda, greedy_columns, scale_of, train_policy
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
            f"  {splits.description}: fixed budget ({label}, {ablation_label}, supervised), "
            f"then adaptive at mean compute {settings.adaptive_targets}"
        )
        results = baseline_results(protocol)
        learned_fixed, learned_adaptive = f"learned, fixed budget ({label})", f"learned, adaptive budget ({label})"
        results += cross_validated_fixed(learned_fixed, main, main_flops, table, splits, training)
        results += cross_validated_fixed(
            f"learned, fixed budget ({ablation_label})", ablation_features, ablation_flops, table, splits, training
        )
        results += cross_validated_fixed(
            f"supervised, fixed budget ({label})", main, main_flops, table, splits, training, supervised=True
        )
        results += cross_validated_adaptive(
            learned_adaptive, main, main_flops, table, splits, training, settings.adaptive_targets
        )
        report = allocator_report(protocol, results, config.baselines, adaptive=[learned_adaptive])

        tested = np.arange(splits.tested)
        log = training_logger(config.wandb, run_dir, "allocator-training", settings.model_dump(mode="json"))
        space = ActionSpace.from_arms(table.within_budget(), False)
        fixed, history = train_policy(main, table, splits.fit_rows, space, training, 0.0, 1.0, log)
        fixed.save(ctx.layout.policy_dir("fixed"), settings.features)
        timing = decision_time(fixed, featurizer, table.questions[: splits.tested], max(a.budget for a in table.arms))
        choices = {
            budget: choice_shares(
                [table.arms[c] for c in greedy_columns(fixed, main, tested, budget, table)],
                report.difficulty.oracle_bins,
            )
            for budget in fixed.actions.budgets
        }
        plot_choices(choices, run_dir / "allocator_choices.png")
        middle = sorted(settings.adaptive_targets)[len(settings.adaptive_targets) // 2]
        lam, adaptive = calibrate_lambda(
            main,
            table,
            splits.fit_rows,
            ActionSpace.from_arms(table.arms, True),
            training,
            scale_of(table, training.unit),
            middle,
        )
        adaptive.save(ctx.layout.policy_dir("adaptive"), settings.features)
        plot_report(report, run_dir / "allocator.png", learned=[learned_fixed, learned_adaptive])
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
