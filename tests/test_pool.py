"""The rollout pool, difficulty bins, the baseline allocators and their evaluation."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from ttc_runtime.policies.allocators import BinAllocator, FixedAllocator, PerQuestionOracle

from tests import pool_worker
from tests.conftest import collect_pool as _collect
from ttc_runtime.config import ConfigError, parse_config
from ttc_runtime.evaluation.allocators import (
    BaselinesConfig,
    cross_validated,
    efficiency_ratio,
    evaluate_allocators,
    format_report,
)
from ttc_runtime.evaluation.difficulty import difficulty, quantile_bins
from ttc_runtime.outcomes import ArmOutcomes, Splits, arm_outcomes, folds_of, parallel_outcome, with_training_pool
from ttc_runtime.pool import PoolConfig, PoolInputs, PoolMismatch, RolloutPool, TrainPoolConfig
from ttc_runtime.strategies import Arm, StrategyConfig

BON = StrategyConfig(name="best_of_n_weighted")
BEAM = StrategyConfig(name="beam_search", beam_width=2)


def outcomes(correct, flops, arms=None) -> ArmOutcomes:
    correct = np.asarray(correct, dtype=float)
    arms = arms or [Arm(BON, 4), Arm(BEAM, 4)]
    return ArmOutcomes(
        arms,
        np.ones(len(correct), dtype=int),
        [f"q{i}" for i in range(len(correct))],
        correct,
        np.full(correct.shape, 4.0),
        np.asarray(flops, dtype=float),
    )


def test_quantile_bins_easiest_first_and_ties_share_a_bin():
    assert quantile_bins(np.array([0.9, 0.1, 0.5, 0.7, 0.3]), 5).tolist() == [1, 5, 3, 2, 4]
    tied = quantile_bins(np.array([1.0, 1.0, 1.0, 1.0, 0.0]), 5)
    assert len(set(tied[:4].tolist())) == 1 and tied[4] == 5
    with pytest.raises(ValueError, match="no questions"):
        quantile_bins(np.array([]), 5)


def test_difficulty_from_samples_and_its_cost():
    frame = pd.DataFrame(
        {
            "question": [0, 0, 1, 1],
            "sample": [0, 1, 0, 1],
            "correct": [True, True, False, True],
            "last_score": [0.9, 0.7, 0.2, 0.4],
            "prompt_tokens": [5, 5, 7, 7],
            "generated_tokens": [10, 20, 30, 40],
            "verifier_flops": [100, 100, 200, 200],
        }
    )
    d = difficulty(frame, proposer_params=1000, bins=2)
    assert d.pass_at_1.tolist() == [1.0, 0.5]
    assert d.mean_last_score.tolist() == pytest.approx([0.8, 0.3])
    assert d.oracle_bins.tolist() == [1, 2] and d.predicted_bins.tolist() == [1, 2]
    assert d.oracle_flops.tolist() == [2 * 1000 * 35, 2 * 1000 * 77]
    assert d.predicted_flops.tolist() == [2 * 1000 * 35 + 200, 2 * 1000 * 77 + 400]


def test_efficiency_ratio_interpolates_in_log_compute_and_marks_bounds():
    compute, accuracy = [1.0, 4.0, 16.0], [0.5, 0.7, 0.8]
    assert efficiency_ratio(compute, accuracy, 0.7, 2.0) == (2.0, "=")
    ratio, bound = efficiency_ratio(compute, accuracy, 0.75, 4.0)
    assert bound == "=" and ratio == pytest.approx(8.0 / 4.0)
    assert efficiency_ratio(compute, accuracy, 0.9, 4.0) == (4.0, ">")
    assert efficiency_ratio(compute, accuracy, 0.4, 0.5) == (2.0, "<")


def test_folds_are_balanced_and_seeded():
    folds = folds_of(11, 2, seed=3)
    assert sorted(np.bincount(folds).tolist()) == [5, 6]
    assert folds.tolist() == folds_of(11, 2, seed=3).tolist()


def test_bin_allocator_picks_the_best_arm_per_bin_and_cheaper_on_ties():
    table = outcomes([[1, 0], [1, 0], [0, 1], [0, 1], [1, 1]], [[10, 5]] * 5)
    bins = np.array([1, 1, 2, 2, 1])
    fitted = BinAllocator.fit("by bin", table, bins, np.arange(5))
    assert fitted.choose(["q0", "q2"], 4) == [Arm(BON, 4), Arm(BEAM, 4)]
    tie = BinAllocator.fit("by bin", table, bins, np.array([4]))
    assert tie.choose(["q4"], 4) == [Arm(BEAM, 4)]
    with pytest.raises(KeyError, match="q9"):
        fitted.choose(["q9"], 4)
    with pytest.raises(ValueError, match="budget 16"):
        BinAllocator.fit("by bin", table, bins, np.arange(5)).choose(["q0"], 16)


def test_cross_validation_answers_each_fold_with_the_other_folds_fit():
    # One bin. Fold 0 questions are right only under beam, fold 1 only under best-of-N: fitted on
    # the other fold, every question gets the wrong arm, where fitting on itself would be perfect.
    table = outcomes([[0, 1], [1, 0], [0, 1], [1, 0]], [[1, 1]] * 4)
    folds = np.array([0, 1, 0, 1])
    splits = Splits([(np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in (0, 1)], 4, np.arange(4), "")
    result = cross_validated("cv", table, np.ones(4, dtype=int), 4, splits)
    assert result.correct.tolist() == [0, 0, 0, 0]
    balanced = Splits.folds(11, 2, seed=3)
    answered = np.sort(np.concatenate([held for _, held in balanced.parts]))
    assert answered.tolist() == list(range(11))
    assert all(not set(train) & set(held) for train, held in balanced.parts)


def test_a_training_pool_fits_the_allocator_and_the_evaluation_pool_only_tests_it():
    # Evaluation questions q0-q3, right only under beam; the training pool holds q2 again (left
    # out of training) and two new questions, right only under beam too, in the one bin.
    evaluation = outcomes([[0, 1]] * 4, [[1, 1]] * 4)
    training = ArmOutcomes(
        evaluation.arms,
        np.ones(3, dtype=int),
        ["q2", "t0", "t1"],
        np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]),
        np.full((3, 2), 4.0),
        np.ones((3, 2)),
    )
    table, kept = with_training_pool(evaluation, training)
    assert kept.tolist() == [1, 2]
    assert table.questions == ["q0", "q1", "q2", "q3", "t0", "t1"]
    assert table.correct[4:].tolist() == [[0.0, 1.0], [0.0, 1.0]]
    splits = Splits.training_pool(4, 2, "validation")
    assert splits.fit_rows.tolist() == [4, 5] and "2 validation questions" in splits.description
    result = cross_validated("trained", table, np.ones(6, dtype=int), 4, splits)
    assert result.correct.tolist() == [1, 1, 1, 1]
    other = ArmOutcomes(
        [Arm(BON, 4), Arm(BEAM, 16)],
        *[getattr(training, f) for f in ("levels", "questions")],
        training.correct,
        training.generations,
        training.flops,
    )
    with pytest.raises(PoolMismatch, match="arms"):
        with_training_pool(evaluation, other)
    with pytest.raises(ValueError, match="nothing to train on"):
        with_training_pool(evaluation, evaluation)


def test_the_training_pool_config_is_the_evaluation_pool_on_another_split():
    evaluation = PoolConfig(budgets=[4, 16], samples=32)
    config = TrainPoolConfig(problems_per_level=7).pool_config(evaluation)
    assert (config.split, config.problems_per_level, config.samples) == ("validation", 7, 32)
    assert config.grid == evaluation.grid and config.budgets == evaluation.budgets
    assert TrainPoolConfig(problems_per_level=7, samples=64).pool_config(evaluation).samples == 64
    assert not TrainPoolConfig().enabled
    with pytest.raises(ValueError, match="evaluation pool's split"):
        TrainPoolConfig(problems_per_level=7, split="test").pool_config(evaluation)


def test_per_question_oracle_and_fixed():
    table = outcomes([[1, 1], [0, 1], [0, 0]], [[10, 5], [1, 5], [3, 2]])
    oracle = PerQuestionOracle(table)
    assert oracle.choose(["q0", "q1", "q2"], 4) == [Arm(BEAM, 4), Arm(BEAM, 4), Arm(BEAM, 4)]
    assert FixedAllocator(BON).choose(["x", "y"], 16) == [Arm(BON, 16)] * 2


def test_pool_config_errors_name_the_bad_entry():
    with pytest.raises(ConfigError, match=r"grid\.0\.name"):
        parse_config(PoolConfig, {"grid": [{"name": "tree_of_thought"}]})
    with pytest.raises(ConfigError, match=r"grid\.1 \(beam_search\(M=128\)\) fits no budget"):
        parse_config(PoolConfig, {"grid": [{"name": "majority"}, {"name": "beam_search", "beam_width": 128}]})
    with pytest.raises(ConfigError, match="listed twice"):
        parse_config(PoolConfig, {"grid": [{"name": "majority"}, {"name": "majority"}]})
    with pytest.raises(ConfigError, match="samples"):
        parse_config(PoolConfig, {"samples": 8, "budgets": [16]})
    assert PoolConfig(samples=2048).samples == 2048


def _tables(directory: Path) -> dict[str, list]:
    return {
        str(path.relative_to(directory)): pq.read_table(path).to_pylist()
        for path in sorted(directory.rglob("*.parquet"))
    }


def test_pool_layout_and_outcome_table(full_pool):
    pool = RolloutPool(full_pool)
    assert pool.complete()
    manifest = pool.manifest()
    assert len(manifest["questions"]) == 6 and manifest["proposer_params"] > 0
    samples = pool.samples()
    assert len(samples) == 6 * 8 and samples.groupby("question").size().tolist() == [8] * 6
    assert (samples["prompt_tokens"] > 0).all() and (samples["generated_tokens"] > 0).all()
    runs = pool.runs()
    run_arms = sorted(set(runs["arm"]))
    assert run_arms == ["beam_search(M=2)@2", "beam_search(M=2)@4", "revisions(L=2)@2", "revisions(L=2)@4"]
    assert (runs.groupby("arm").size() == 6).all()
    assert (runs["generations"] == runs["budget"]).all()
    assert all(len(c) == 4 for c in runs[runs["arm"] == "revisions(L=2)@4"]["candidates"])
    table = arm_outcomes(pool)
    assert [a.label for a in table.arms] == [
        "best_of_n_weighted@2",
        "best_of_n_weighted@4",
        "beam_search(M=2)@2",
        "beam_search(M=2)@4",
        "revisions(L=2)@2",
        "revisions(L=2)@4",
    ]
    assert table.correct.shape == (6, 6) and ((table.correct >= 0) & (table.correct <= 1)).all()
    assert (table.flops > 0).all()
    assert table.generations[:, 1].tolist() == [4] * 6


def test_parallel_outcome_charges_the_prompt_once_and_majority_no_verifier():
    frame = pd.DataFrame(
        {
            "question": [0, 0, 0],
            "answer": ["1", "2", "2"],
            "correct": [True, False, False],
            "score": [0.6, 0.4, 0.5],
            "generated_tokens": [10, 20, 30],
            "prompt_tokens": [5, 5, 5],
            "verifier_flops": [7, 7, 7],
        }
    )
    correct, flops = parallel_outcome(frame, "weighted", 3, 4, seed=0, params=100)
    assert correct.tolist() == [0.0] and flops.tolist() == [2 * 100 * (5 + 60) + 21]
    correct, flops = parallel_outcome(frame, "naive", 3, 4, seed=0, params=100)
    assert correct.tolist() == [1.0]
    correct, flops = parallel_outcome(frame, "majority", 3, 4, seed=0, params=100)
    assert correct.tolist() == [0.0] and flops.tolist() == [2 * 100 * 65]


def test_pool_killed_and_restarted_ends_identical(tiny_model_dir, full_pool, tmp_path):
    directory = tmp_path / "pool"
    process = _collect(tiny_model_dir, directory)
    deadline = time.monotonic() + 600
    while not len(list(directory.glob("runs/*/*.parquet"))) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "the collection finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not RolloutPool(directory).complete()
    restarted = _collect(tiny_model_dir, directory)
    _, err = restarted.communicate(timeout=600)
    assert restarted.returncode == 0, err.decode()
    assert not list(directory.rglob("*.tmp"))
    assert _tables(directory) == _tables(full_pool)
    assert json.loads((directory / "manifest.json").read_text()) == json.loads(
        (full_pool / "manifest.json").read_text()
    )


def test_half_written_shard_is_redone_and_up_to_date_pool_is_left_alone(tiny_model_dir, full_pool, tmp_path):
    import shutil

    directory = tmp_path / "pool"
    shutil.copytree(full_pool, directory)
    victim = directory / "samples" / "00002.parquet"
    victim.rename(victim.with_name(victim.name + ".tmp"))
    victim.with_name(victim.name + ".tmp").write_bytes(b"half a parquet file")
    pool_worker.main(str(tiny_model_dir), str(directory))
    assert _tables(directory) == _tables(full_pool)
    before = {p: p.stat().st_mtime_ns for p in directory.rglob("*")}
    pool_worker.main(str(tiny_model_dir), str(directory))
    assert {p: p.stat().st_mtime_ns for p in directory.rglob("*")} == before


def test_pool_of_another_config_is_refused_and_untouched(tiny_model_dir, full_pool, tmp_path):
    import shutil

    from ttc_runtime.generation.hf import TransformersGenerator
    from ttc_runtime.scoring import ProposerMarginScorer
    from ttc_runtime.strategies import SearchSettings

    directory = tmp_path / "pool"
    shutil.copytree(full_pool, directory)
    before = {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()}
    other = pool_worker.CONFIG.model_copy(update={"samples": 16})
    generator = TransformersGenerator.from_pretrained(tiny_model_dir)
    with pytest.raises(PoolMismatch, match="another configuration"):
        RolloutPool(directory).collect(
            other,
            pool_worker.INPUTS,
            pool_worker.problems(),
            generator,
            ProposerMarginScorer.from_pretrained(tiny_model_dir),
            SearchSettings(),
        )
    with pytest.raises(PoolMismatch, match="another configuration"):
        RolloutPool(directory).holds(pool_worker.CONFIG, PoolInputs("other", "x", "y", "z"))
    assert {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()} == before
    stranger = tmp_path / "not-a-pool"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(PoolMismatch, match="not empty"):
        RolloutPool(stranger).collect(
            other,
            pool_worker.INPUTS,
            pool_worker.problems(),
            generator,
            ProposerMarginScorer.from_pretrained(tiny_model_dir),
            SearchSettings(),
        )
    assert (stranger / "notes.txt").read_text() == "mine"


def test_evaluation_of_every_baseline_on_a_real_pool(full_pool):
    report = evaluate_allocators(RolloutPool(full_pool), BaselinesConfig(bins=2, bootstrap=20))
    names = {p.allocator for p in report.points}
    assert {"best_of_n_weighted", "beam_search(M=2)", "revisions(L=2)", "per-question oracle"} <= names
    assert "compute-optimal (predicted bins), estimation charged" in names
    by = {(p.allocator, p.budget, p.view): p for p in report.points}
    for budget in (2, 4):
        oracle = by["per-question oracle", budget, 0].accuracy
        assert all(p.accuracy <= oracle + 1e-9 for p in report.points if p.budget == budget and p.view == 0)
        plain = by["compute-optimal (oracle bins)", budget, 0]
        paid = by["compute-optimal (oracle bins), estimation charged", budget, 0]
        assert paid.accuracy == plain.accuracy and paid.flops > plain.flops
        assert paid.generations == plain.generations + 8
    assert [c.n for c in report.curve] == [1, 2, 4, 8]
    text = format_report(report)
    assert "efficiency (FLOPs)" in text and "arm per bin" in text


def test_the_paper_k_of_2048_runs(tiny_model_dir, tmp_path):
    from ttc_runtime.evaluation.allocators import best_of_n_curve
    from ttc_runtime.generation.base import SamplingParams
    from ttc_runtime.generation.hf import TransformersGenerator
    from ttc_runtime.scoring import ProposerMarginScorer
    from ttc_runtime.strategies import SearchSettings

    config = PoolConfig(levels=[3], problems_per_level=1, budgets=[64], grid=[BON], samples=2048, resamples=2)
    pool = RolloutPool(tmp_path / "pool")
    pool.collect(
        config,
        pool_worker.INPUTS,
        pool_worker.problems()[3:4],
        TransformersGenerator.from_pretrained(tiny_model_dir),
        ProposerMarginScorer.from_pretrained(tiny_model_dir),
        SearchSettings(sampling=SamplingParams(temperature=1.0, max_new_tokens=4)),
    )
    samples = pool.samples()
    assert samples["sample"].tolist() == list(range(2048))
    curve = best_of_n_curve(samples, config, pool.manifest()["proposer_params"])
    assert [c.n for c in curve] == [2**i for i in range(12)]
    assert curve[-1].generations == 2048


@pytest.mark.slow
def test_two_processes_under_torchrun_collect_the_single_process_pool(tiny_model_dir, full_pool, tmp_path):
    import os
    import shutil
    import subprocess
    import sys

    directory = tmp_path / "pool"
    worker = Path(pool_worker.__file__)
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = {**os.environ, "PYTHONPATH": str(worker.parent.parent), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "--master_port", "29541", str(worker), str(tiny_model_dir), str(directory)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rank 0/2" in result.stderr and "rank 1/2" in result.stderr  # both took shards
    assert _tables(directory) == _tables(full_pool)
    assert json.loads((directory / "manifest.json").read_text()) == json.loads(
        (full_pool / "manifest.json").read_text()
    )
