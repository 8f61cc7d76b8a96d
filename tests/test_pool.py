"""The rollout pool: its configuration, layout and outcome table, resuming after a kill, refusing
another configuration, the paper's 2048 samples, and collection under torchrun."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests import pool_worker
from tests.conftest import BON
from tests.conftest import collect_pool as _collect
from ttc_runtime.config import ConfigError, parse_config
from ttc_runtime.outcomes import ArmOutcomes, arm_outcomes
from ttc_runtime.pool import PoolConfig, PoolInputs, PoolMismatch, RolloutPool, TrainPoolConfig
from ttc_runtime.strategies import Arm, StrategyConfig


def test_the_training_pool_config_is_the_evaluation_pool_on_another_split():
    evaluation = PoolConfig(budgets=[4, 16], samples=32)
    config = TrainPoolConfig(problems_per_level=7).pool_config(evaluation)
    assert (config.split, config.problems_per_level, config.samples) == ("validation", 7, 32)
    assert config.grid == evaluation.grid and config.budgets == evaluation.budgets
    assert TrainPoolConfig(problems_per_level=7, samples=64).pool_config(evaluation).samples == 64
    assert not TrainPoolConfig().enabled
    with pytest.raises(ValueError, match="evaluation pool's split"):
        TrainPoolConfig(problems_per_level=7, split="test").pool_config(evaluation)


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


def test_the_pool_holds_each_strategy_once_per_budget():
    # The default grid at budgets 1-16: at N = 1 every strategy is one sample (majority's arm holds
    # it); beam search with M = sqrt(N) is best-of-N weighted at N = 2 (M = 1 prunes nothing) and
    # beam search with M = 4 at N = 16; revisions of L = 4 and lookahead run from 4.
    config = PoolConfig(budgets=[1, 2, 4, 8, 16], samples=16)
    labels = [arm.label for arm in config.arms()]
    assert [label for label in labels if label.endswith("@1")] == ["majority@1"]
    assert "beam_search(M=sqrt)@2" not in labels and "best_of_n_weighted@2" in labels
    assert "beam_search(M=sqrt)@16" not in labels and "beam_search(M=4)@16" in labels
    assert "beam_search(M=sqrt)@4" in labels and "beam_search(M=sqrt)@8" in labels
    assert [arm.label for arm in config.run_arms()] == [
        "beam_search(M=4)@4",
        "beam_search(M=4)@8",
        "beam_search(M=4)@16",
        "beam_search(M=sqrt)@4",
        "beam_search(M=sqrt)@8",
        "lookahead(M=4,k=1)@4",
        "lookahead(M=4,k=1)@8",
        "lookahead(M=4,k=1)@16",
    ]
    # Revisions are stored as chains (twice the four chains of N = 16) and drawn at every budget.
    assert "revisions(L=4)@8" in labels and "revisions(L=4)@16" in labels
    assert [arm.label for arm in config.chain_arms()] == ["revisions(L=4)@4"]
    assert config.runs_of(config.chain_arms()[0]) == 8 and config.runs_of(config.run_arms()[0]) == 4
    assert PoolConfig(budgets=[4, 16], samples=16, chains=5).runs_of(config.chain_arms()[0]) == 5
    with pytest.raises(
        ValueError, match=r"chains: 3 chains of 4 attempts are fewer than revisions\(L=4\)@16 draws \(4\)"
    ):
        PoolConfig(budgets=[4, 16], samples=16, chains=3)
    # A table asked for a left-out arm answers with the arm that runs the same strategy.
    arms = config.arms()
    table = ArmOutcomes(
        arms, np.ones(1), ["q"], np.zeros((1, len(arms))), np.ones((1, len(arms))), np.ones((1, len(arms)))
    )
    sqrt16 = Arm(StrategyConfig(name="beam_search", beam_width="sqrt"), 16)
    assert table.arms[table.column(sqrt16)].label == "beam_search(M=4)@16"
    assert table.arms[table.column(Arm(BON, 1))].label == "majority@1"
    with pytest.raises(ValueError, match="dvts"):
        table.column(Arm(StrategyConfig(name="dvts", beam_width=4), 16))


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
    assert run_arms == ["beam_search(M=2)@2", "beam_search(M=2)@4", "revisions(L=2)@2"]
    # Three runs per question below the largest budget, two at it; runs of one question differ.
    # Revisions: four chains of two attempts (twice the two chains of N = 4), as runs at N = 2.
    sizes = {"beam_search(M=2)@2": 6 * 3, "beam_search(M=2)@4": 6 * 2, "revisions(L=2)@2": 6 * 4}
    assert runs.groupby("arm").size().to_dict() == sizes
    assert sorted(set(runs[runs["arm"] == "beam_search(M=2)@2"]["run"])) == [0, 1, 2]
    assert (runs["generations"] == runs["budget"]).all()
    assert all(len(c) == 2 for c in runs[runs["arm"] == "revisions(L=2)@2"]["candidates"])
    beams = runs[runs["arm"] == "beam_search(M=2)@2"]
    texts = beams.groupby("question")["candidates"].apply(lambda c: len({x[0]["text"] for x in c}))
    assert (texts > 1).any()
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
    # A run arm's outcome is the mean of its stored runs, which the table keeps; a chained arm's
    # the mean of its draws of the chains: at N = 2 the four chains, at N = 4 five seeded draws
    # of two (resamples: 5, fewer than the six pairs), each charged its two chains less a prompt.
    assert sorted(table.stored) == [2, 3, 4, 5]
    assert table.stored[2].correct.shape == (6, 3) and table.stored[3].correct.shape == (6, 2)
    assert table.stored[4].correct.shape == (6, 4) and table.stored[5].correct.shape == (6, 5)
    chain_flops = runs[runs["arm"] == "revisions(L=2)@2"].pivot(index="question", columns="run", values="flops")
    prompt = 2 * manifest["proposer_params"] * samples.groupby("question")["prompt_tokens"].first().to_numpy()
    pairs = chain_flops.to_numpy()[:, :, None] + chain_flops.to_numpy()[:, None, :] - prompt[:, None, None]
    for q in range(6):
        assert set(table.stored[5].flops[q].tolist()) <= set(pairs[q].ravel().tolist())
    for a, runs_of_arm in table.stored.items():
        assert table.correct[:, a].tolist() == pytest.approx(runs_of_arm.correct.mean(axis=1).tolist())
        assert table.flops[:, a].tolist() == pytest.approx(runs_of_arm.flops.mean(axis=1).tolist())
    mine = runs[runs["arm"] == "revisions(L=2)@2"]
    assert table.correct[:, 4].tolist() == pytest.approx(mine.groupby("question")["correct"].mean().tolist())


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


def test_samples_are_scored_and_charged_as_best_of_n_scores_them(stepwise_pair, tmp_path):
    from dataclasses import replace

    from ttc_runtime.generation.base import SamplingParams
    from ttc_runtime.scoring.margin import fuse
    from ttc_runtime.strategies import SearchSettings

    generator, prm = stepwise_pair
    head = fuse(prm, generator, SearchSettings().prompt).head_params
    config = PoolConfig(levels=[1, 3], problems_per_level=1, budgets=[4], grid=[BON], samples=8, resamples=2)
    settings = SearchSettings(sampling=SamplingParams(max_new_tokens=48))
    problems = pool_worker.problems()[2:4]
    tables = {}
    for name, fused in (("fused", True), ("full", False)):
        pool = RolloutPool(tmp_path / name)
        pool.collect(config, pool_worker.INPUTS, problems, generator, prm, replace(settings, fused_scoring=fused))
        tables[name] = pool.samples()
    fused, full = tables["fused"], tables["full"]
    assert (fused["generated_tokens"] == full["generated_tokens"]).all()  # the same samples
    assert fused["score"].to_numpy() == pytest.approx(full["score"].to_numpy(), abs=1e-5)
    assert fused["last_score"].to_numpy() == pytest.approx(full["last_score"].to_numpy(), abs=1e-5)
    # Fused: one head read per scored step; full: a pass over the prompt and the sample, none for a
    # sample without a step.
    steps = fused["verifier_tokens"]
    assert steps.max() >= 3
    assert (fused["verifier_flops"] == steps * 2 * head).all()
    assert (full["verifier_flops"] == 2 * prm.flop_params * full["verifier_tokens"]).all()
    assert (full["verifier_tokens"][steps > 0] > full["prompt_tokens"][steps > 0]).all()
    assert (full["verifier_tokens"][steps == 0] == 0).all()


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
