"""The runner on fake stages (skipping, ``--from``, ``--to``, resuming, wandb), and end to end: ``ttc run``
trains real (tiny) models with TRL and evaluates them."""

import json
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from ttc_runtime.trainers.prm import load_stepwise

from ttc_runtime import Solver
from ttc_runtime.compute import training_flops
from ttc_runtime.config import ConfigError
from ttc_runtime.experiment import Experiment, ExperimentConfig, load_experiment
from ttc_runtime.models import flop_params
from ttc_runtime.pool import RolloutPool
from ttc_runtime.scoring import TokenClassificationPRM
from ttc_runtime.stages import STAGES, RunContext, Stage
from ttc_runtime.stages.base import RUN_MARKER, fingerprint
from ttc_runtime.stages.report import Report


class Counted(Stage):
    """A fake stage: its record holds the config value it was keyed on, and it counts its runs."""

    tracked = True
    title = None

    def __init__(self, name: str, fail: bool = False) -> None:
        self.name, self.record, self.runs, self.fail = name, f"{name}.json", 0, fail

    def key(self, ctx: RunContext) -> str:
        return fingerprint(ctx.config.proposer_eval, self.name)

    def run(self, ctx: RunContext, force: bool) -> dict[str, object]:
        self.runs += 1
        if self.fail:
            raise RuntimeError(f"{self.name} failed")
        (ctx.run_dir / f"{self.name}.md").write_text(f"{self.name} ran {self.runs} times")
        return {"runs": self.runs, "forced": force}


class Reported(Counted):
    title = "Counted"
    outputs = ("reported.md",)


def fake_pipeline(tmp_path, monkeypatch, seed=0, failing=None):
    """An ``Experiment`` of three fake stages and a real report over them; wandb calls recorded."""
    logged = []
    monkeypatch.setattr(
        "ttc_runtime.experiment.log_stage", lambda config, run_dir, name, path, params: logged.append(name) or "w"
    )
    stages = [Counted("a", fail=failing == "a"), Reported("reported", fail=failing == "reported"), Counted("c")]
    config = ExperimentConfig.model_validate(
        {
            "run_dir": str(tmp_path / "run"),
            "task": {
                "name": "synthetic",
                "synthetic": {"train_per_level": 1, "validation_per_level": 1, "test_per_level": 1},
            },
            "proposer_eval": {"seed": seed},
        }
    )
    return Experiment(config, [*stages, Report()]), stages, logged


def test_runner_runs_each_stage_once_then_skips_it_until_its_inputs_change(tmp_path, monkeypatch, capsys):
    experiment, (a, reported, c), logged = fake_pipeline(tmp_path, monkeypatch)
    records = experiment.run()
    assert [a.runs, reported.runs, c.runs] == [1, 1, 1]
    assert records["a"] == json.loads((tmp_path / "run" / "a.json").read_text())
    assert records["a"]["fingerprint"] == a.key(experiment.context) and records["a"]["forced"] is False
    assert logged == ["a", "reported", "c"]  # one wandb run per stage that did work (the report is untracked)
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Counted" in report and "reported ran 1 times" in report

    out = capsys.readouterr().out
    assert "[1/4] a" in out and "[4/4] report" in out
    experiment.run()
    assert [a.runs, reported.runs, c.runs] == [1, 1, 1] and logged == ["a", "reported", "c"]
    assert capsys.readouterr().out.count(": up to date") == 4

    (tmp_path / "run" / "reported.md").unlink()  # an output gone: that stage runs again, the others not
    experiment.run()
    assert [a.runs, reported.runs, c.runs] == [1, 2, 1]

    changed, (a2, reported2, c2), _ = fake_pipeline(tmp_path, monkeypatch, seed=1)
    changed.run()
    assert [a2.runs, reported2.runs, c2.runs] == [1, 1, 1]  # new inputs: every stage keyed on them runs


def test_runner_from_forces_the_rest_and_to_stops(tmp_path, monkeypatch):
    experiment, (a, reported, c), logged = fake_pipeline(tmp_path, monkeypatch)
    records = experiment.run(to_stage="reported")
    assert [a.runs, reported.runs, c.runs] == [1, 1, 0] and set(records) == {"a", "reported"}
    assert not (tmp_path / "run" / "c.json").exists()
    records = experiment.run(from_stage="reported")
    assert [a.runs, reported.runs, c.runs] == [1, 2, 1]
    assert records["reported"]["forced"] is True and records["c"]["forced"] is True
    with pytest.raises(ValueError, match="unknown stage 'b'; stages are a, reported, c, report"):
        experiment.run(from_stage="b")
    with pytest.raises(ValueError, match="unknown training stage 'a'"):
        experiment.train("a")


def test_runner_resumes_at_the_stage_that_failed(tmp_path, monkeypatch):
    broken, (a, reported, c), logged = fake_pipeline(tmp_path, monkeypatch, failing="reported")
    with pytest.raises(RuntimeError, match="reported failed"):
        broken.run()
    assert (tmp_path / "run" / "a.json").is_file() and not (tmp_path / "run" / "reported.json").exists()
    assert logged == ["a"]

    fixed, (a2, reported2, c2), logged = fake_pipeline(tmp_path, monkeypatch)
    fixed.run()
    assert [a2.runs, reported2.runs, c2.runs] == [0, 1, 1] and logged == ["reported", "c"]


def test_only_the_first_process_writes_records(tmp_path, monkeypatch):
    experiment, (a, _, _), logged = fake_pipeline(tmp_path, monkeypatch)
    monkeypatch.setenv("RANK", "1")
    record = experiment.run_stage("a")
    assert a.runs == 1 and record["runs"] == 1
    assert not (tmp_path / "run" / "a.json").exists() and logged == []


def tree(directory: Path) -> dict[str, bytes | None]:
    """Every path under ``directory`` with its bytes (None for a folder)."""
    return {str(p.relative_to(directory)): None if p.is_dir() else p.read_bytes() for p in directory.rglob("*")}


def test_a_run_marks_the_directory_it_makes_and_works_in_a_marked_or_empty_one(tmp_path, monkeypatch):
    experiment, (a, _, _), _ = fake_pipeline(tmp_path, monkeypatch)
    experiment.run()
    assert (tmp_path / "run" / RUN_MARKER).is_file() and a.runs == 1
    (tmp_path / "run" / "notes.txt").write_text("mine")  # a marked directory is the run's: other files allowed
    experiment.run(from_stage="a")
    assert a.runs == 2

    (tmp_path / "run").rename(tmp_path / "old")
    (tmp_path / "run").mkdir()
    fresh, (a, _, _), _ = fake_pipeline(tmp_path, monkeypatch)
    fresh.run()
    assert (tmp_path / "run" / RUN_MARKER).is_file() and a.runs == 1


def test_a_run_directory_made_before_the_marker_is_taken_as_a_run_and_stays_up_to_date(tmp_path, monkeypatch):
    experiment, (a, reported, c), _ = fake_pipeline(tmp_path, monkeypatch)
    experiment.run()
    (tmp_path / "run" / RUN_MARKER).unlink()
    again, (a, reported, c), _ = fake_pipeline(tmp_path, monkeypatch)
    again.run()
    assert [a.runs, reported.runs, c.runs] == [0, 0, 0]
    assert (tmp_path / "run" / RUN_MARKER).is_file()


def test_a_run_refuses_a_directory_of_other_files_and_touches_none_of_them(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    for name in ("proposer/model.safetensors", "prm/config.json", "prm_labels/shard.jsonl", "pool/data.parquet"):
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / name).write_text(f"the user's {name}")
    (run_dir / "a.json").write_text('{"fingerprint": "not a hash"}')
    before = tree(run_dir)
    experiment, (a, _, _), _ = fake_pipeline(tmp_path, monkeypatch)
    refusal = f"run_dir {run_dir} holds files that no run wrote (it has no {RUN_MARKER})"
    with pytest.raises(ConfigError, match=re.escape(refusal)):
        experiment.run()
    with pytest.raises(ConfigError, match=re.escape(refusal)):
        experiment.run_stage("a", force=True)
    real = Experiment(experiment.config)
    for work in (lambda: real.run(from_stage="proposer"), lambda: real.train("proposer"), real.collect_pool):
        with pytest.raises(ConfigError, match=re.escape(refusal)):
            work()
    assert a.runs == 0 and tree(run_dir) == before

    run_dir.rename(tmp_path / "elsewhere")
    run_dir.write_text("a file")
    with pytest.raises(ConfigError, match=f"run_dir {run_dir} is a file, not a directory"):
        experiment.run()
    assert run_dir.read_text() == "a file"


def test_every_pipeline_stage_is_named_once_and_configured_under_its_name():
    names = [stage.name for stage in STAGES]
    assert len(set(names)) == len(names) and names[-1] == "report"
    assert [s.name for s in STAGES if s.trains] == ["proposer", "prm", "revision"]
    fields = ExperimentConfig.model_fields
    for stage in STAGES:
        assert stage.record is None or stage.record.endswith(".json"), stage.name
        assert stage.title is None or stage.record is not None, stage.name
    # every stage-specific section of the config is named as a stage
    shared = {"run_dir", "device", "processes", "task", "sampling", "generation", "verifier", "wandb", "train_pool"}
    assert set(fields) - shared <= set(names)


def test_the_readme_example_stage_joins_a_pipeline(tmp_path, capsys):
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    code = readme.split("A real example", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    module = types.ModuleType("ttc_runtime.stages.task_stats")
    module.__package__ = "ttc_runtime.stages"
    exec(compile(code, "README.md", "exec"), module.__dict__)
    config = ExperimentConfig.model_validate(
        {
            "run_dir": str(tmp_path / "run"),
            "task": {
                "name": "synthetic",
                "synthetic": {"train_per_level": 3, "validation_per_level": 1, "test_per_level": 2},
            },
        }
    )
    experiment = Experiment(config, [module.TaskStats(), Report()])
    record = experiment.run()["task_stats"]
    assert record["problems"] == {"train": 15, "validation": 5, "test": 10}
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Task: problems per split and level" in report and "| train | 3 | 3 | 3 | 3 | 3 |" in report
    capsys.readouterr()
    experiment.run()
    assert capsys.readouterr().out.count(": up to date") == 2


def test_a_missing_deepspeed_config_stops_a_run_before_its_first_stage_unless_nothing_trains_with_it(tmp_path):
    missing = tmp_path / "zero2.json"
    base = {
        "run_dir": str(tmp_path / "run"),
        "task": {
            "name": "synthetic",
            "synthetic": {"train_per_level": 1, "validation_per_level": 1, "test_per_level": 1},
        },
    }
    for section in ("proposer", "prm", "revision"):
        config = ExperimentConfig.model_validate({**base, section: {"training": {"deepspeed": str(missing)}}})
        with pytest.raises(ConfigError, match=f"{section}.training.deepspeed: {missing} is not a file"):
            Experiment(config).run()
        assert not (tmp_path / "run").exists()
    given = {"model": str(tmp_path / "revision"), "training": {"deepspeed": str(missing)}}
    Experiment(ExperimentConfig.model_validate({**base, "revision": given})).check_inputs(STAGES)
    margins = {**base, "verifier": {"kind": "proposer_margin"}, "prm": {"training": {"deepspeed": str(missing)}}}
    Experiment(ExperimentConfig.model_validate(margins)).check_inputs(STAGES)


def test_renamed_config_keys_name_their_new_key(tmp_path):
    for old, new in (("evaluation", "proposer_eval"), ("labels", "prm_labels"), ("verifier_eval", "prm_eval")):
        path = tmp_path / f"{old}.yaml"
        path.write_text(f"{old}: {{}}\n")
        with pytest.raises(ConfigError, match=f"{old}: unknown key \\('{old}' is now '{new}'\\)"):
            load_experiment(path)


def test_a_run_killed_in_training_after_a_checkpoint_resumes_from_it(tmp_path, monkeypatch):
    """The runner keeps a killed training's checkpoints (``proposer.partial/``) and the next run
    resumes from the last one, with a checkpoint interval that is not part of the stage's key."""
    from transformers import Trainer

    tiny = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64, "max_positions": 256}
    config = ExperimentConfig.model_validate(
        {
            "run_dir": str(tmp_path / "run"),
            "task": {
                "name": "synthetic",
                "synthetic": {"train_per_level": 8, "validation_per_level": 1, "test_per_level": 1},
            },
            "proposer": {
                "architecture": tiny,
                "training": {"max_steps": 6, "batch_size": 4, "logging_steps": 1, "save_steps": 2},
            },
            "wandb": {"enabled": False},
        }
    )
    original, steps = Trainer.training_step, []

    def killed_in_step_5(self, *args, **kwargs):
        steps.append(self.state.global_step)
        if self.state.global_step == 4:
            raise KeyboardInterrupt  # as a run stopped in the middle of its fifth step
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", killed_in_step_5)
    with pytest.raises(KeyboardInterrupt):
        Experiment(config).run(to_stage="proposer")
    staged = tmp_path / "run" / "proposer.partial" / "trainer"
    assert sorted(p.name for p in staged.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]

    steps.clear()

    def counted(self, *args, **kwargs):
        steps.append(self.state.global_step)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", counted)
    training = config.proposer.training.model_copy(update={"save_steps": 3})  # another interval, same key
    resumed = config.model_copy(update={"proposer": config.proposer.model_copy(update={"training": training})})
    record = Experiment(resumed).run(to_stage="proposer")["proposer"]
    assert steps == [4, 5] and record["steps"] == 6  # only the steps after the last checkpoint ran again
    assert record["fingerprint"] == STAGES[0].key(RunContext(config, STAGES))
    assert not (tmp_path / "run" / "proposer.partial").exists()


TINY = """
run_dir: {run_dir}
task:
  name: synthetic
  synthetic:
    train_per_level: 40
    validation_per_level: 5
    test_per_level: 10
proposer:
  architecture: {{hidden_size: 32, num_layers: 2, num_heads: 2, intermediate_size: 64, max_positions: 256}}
  training: {{max_steps: 6, batch_size: 8, logging_steps: 2}}
sampling:
  max_new_tokens: 48
proposer_eval:
  problems_per_level: 4
  samples_per_problem: 2
prm_labels: {{problems_per_level: 3, samples_per_problem: 2, rollouts: 2, shard_size: 4}}
prm:
  training: {{max_steps: 4, batch_size: 8, logging_steps: 2}}
prm_eval: {{problems_per_level: 2, n: 4, label_problems_per_level: 1}}
search_eval:
  problems_per_level: 1
  max_budget: 4
  budget_factor: 2
  pool: 4
  resamples: 5
  bootstrap: 20
  strategies:
    - {{name: majority}}
    - {{name: best_of_n_weighted}}
    - {{name: beam_search, beam_width: 2, max_rounds: 3}}
    - {{name: lookahead, beam_width: 2, lookahead: 1, max_rounds: 3}}
    - {{name: dvts, beam_width: 4, max_rounds: 3}}
revision:
  model: {run_dir}/proposer
revision_eval:
  problems_per_level: 1
  attempts_per_problem: 4
  cases_per_problem: 1
  ratio_problems_per_level: 1
  budgets: [2, 4]
  resamples: 2
  bootstrap: 20
pool:
  problems_per_level: 2
  budgets: [2, 4]
  samples: 8
  resamples: 5
  runs: 2
  questions_per_shard: 4
  grid:
    - {{name: majority}}
    - {{name: best_of_n_weighted}}
    - {{name: beam_search, beam_width: 2, max_rounds: 3}}
    - {{name: revisions, chain_length: 2}}
baselines: {{bins: 2, bootstrap: 20}}
allocator:
  training: {{updates: 40, envs: 16}}
  reinforce_lambdas: [0.0, 0.3]
  adaptive_target: 3
counterpart:
  enabled: true
  architecture: {{hidden_size: 64, num_layers: 2, num_heads: 2, intermediate_size: 128, max_positions: 256}}
  samples: 2
  ratios: [0.16, 22]
  resamples: 5
"""


def ttc(*args):
    return subprocess.run(
        [sys.executable, "-m", "ttc_runtime.cli", *map(str, args)], capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_run_trains_evaluates_and_skips_what_is_done(tmp_path):
    run_dir = tmp_path / "run"
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY.format(run_dir=run_dir))

    first = ttc("run", config)
    assert first.returncode == 0, first.stderr
    assert "[1/14] proposer" in first.stdout and "[14/14] report" in first.stdout

    model_dir = run_dir / "proposer"
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert tokenizer.eos_token == "</s>"
    stage = json.loads((model_dir / "ttc_stage.json").read_text())
    assert stage["steps"] == 6 and stage["train_tokens"] > 0
    assert stage["train_flops"] == training_flops(flop_params(model), stage["train_tokens"])
    assert not list(tmp_path.rglob("*.partial"))

    report = json.loads((run_dir / "proposer_eval.json").read_text())
    assert [row["level"] for row in report["levels"]] == [1, 2, 3, 4, 5]
    assert all(row["problems"] == 4 and row["samples"] == 8 for row in report["levels"])
    assert all(0.0 <= row["pass_at_1"] <= 1.0 for row in report["levels"])
    assert report["generated_tokens"] > 0

    labels = load_stepwise(run_dir / "prm_labels" / "dataset")
    assert len(labels) == 5 * 3 * 2 and sorted(set(labels["level"])) == [1, 2, 3, 4, 5]
    prm = TokenClassificationPRM.from_pretrained(run_dir / "prm")
    assert json.loads((run_dir / "prm" / "ttc_stage.json").read_text())["steps"] == 4
    verifier = json.loads((run_dir / "prm_eval.json").read_text())
    assert [(row["level"], row["problems"], row["n"]) for row in verifier["levels"]] == [
        (lv, 2, 4) for lv in range(1, 6)
    ]
    for row in verifier["levels"]:
        assert row["coverage"] >= max(row["majority"], row["best_of_n_weighted"], row["best_of_n_naive"])
    assert verifier["compute"]["generations"] == 5 * 2 * 4
    assert verifier["compute"]["verifier_flops"] == 2 * prm.flop_params * verifier["compute"]["verifier_prompt_tokens"]
    assert set(verifier["mc_labels"]["levels"]) == {"1", "2", "3", "4", "5"}
    assert "weighted@4" in (run_dir / "prm_eval.md").read_text()
    assert "PRM vs MC hard" in (run_dir / "prm_eval.md").read_text()

    search = json.loads((run_dir / "search_eval.json").read_text())
    labels_run = {(p["strategy"], p["budget"]) for p in search["points"]}
    assert labels_run == {(s, n) for s in ("majority", "best_of_n_weighted") for n in (1, 2, 4)} | {
        ("beam_search(M=2)", 2),
        ("beam_search(M=2)", 4),
        ("lookahead(M=2,k=1)", 2),
        ("lookahead(M=2,k=1)", 4),
        ("dvts(M=4)", 4),
    }
    assert set(search["skipped"]) == {"beam_search(M=2)@1", "lookahead(M=2,k=1)@1", "dvts(M=4)@1", "dvts(M=4)@2"}
    assert all(p["questions"] == 5 for p in search["points"] if p["level"] == 0)
    assert (run_dir / "search_eval.png").read_bytes()[:4] == b"\x89PNG"
    assert "**Accuracy, all levels**" in (run_dir / "search_eval.md").read_text()

    assert "not needed: the revision model is given" in first.stdout
    revision = json.loads((run_dir / "revision_eval.json").read_text())
    assert [row["level"] for row in revision["one_revision"]] == [1, 2, 3, 4, 5]
    for row in revision["one_revision"]:
        assert 1 <= row["incorrect_revised"] + row["correct_revised"] <= 2  # one case of each kind at most
    chains = {(p["strategy"], p["budget"]) for p in revision["points"]}
    assert chains == {
        (f"revisions(L={length}{how})", n)
        for how in ("", ",majority")
        for n in (2, 4)
        for length in (1, 2, 4)
        if length <= n
    }
    assert (run_dir / "revision_eval.png").read_bytes()[:4] == b"\x89PNG"
    assert "**Best chain length L**" in (run_dir / "revision_eval.md").read_text()

    pool = RolloutPool(run_dir / "pool")
    assert pool.complete() and len(pool.manifest()["questions"]) == 10
    assert sorted(set(pool.runs()["arm"])) == [
        "beam_search(M=2)@2",
        "beam_search(M=2)@4",
        "revisions(L=2)@2",
    ]
    baselines = json.loads((run_dir / "baselines.json").read_text())
    allocators = {p["allocator"] for p in baselines["points"]}
    assert {"best_of_n_weighted", "compute-optimal (oracle bins)", "per-question oracle"} <= allocators
    assert baselines["samples"] == 8 and sum(baselines["bin_sizes"]["oracle"]) == 10
    assert (run_dir / "baselines.png").read_bytes()[:4] == b"\x89PNG"
    assert "Matched-accuracy efficiency (FLOPs)" in (run_dir / "baselines.md").read_text()
    assert {"feature table (level), adaptive budget", "expected-rate oracle, adaptive budget"} <= allocators

    allocator = json.loads((run_dir / "allocator.json").read_text())
    names = {p["allocator"] for p in allocator["points"]}
    assert {
        "REINFORCE, fixed budget (proposer_embeddings)",
        "REINFORCE, adaptive budget (proposer_embeddings)",
        "supervised, fixed budget (proposer_embeddings)",
        "outcome model, fixed budget (proposer_embeddings)",
        "outcome model, adaptive budget (proposer_embeddings)",
        "outcome model, fixed budget (proposer_hidden)",
        "outcome model, adaptive budget (ngrams)",
        "feature table (level), fixed budget",
        "best fixed strategy, fitted",
        "per-question oracle",
    } <= names
    assert allocator["trainer"] == "outcomes" and allocator["feature_flops_mean"] > 0
    for kind in ("fixed", "adaptive"):
        assert (run_dir / "allocator" / kind / "policy.json").is_file()
    wandb_runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    logged = {"proposer", "proposer_eval", "prm", "prm_eval", "search_eval", "revision_eval", "baselines", "allocator"}
    logged |= {"counterpart"}
    assert len(wandb_runs) == len(logged) + 1  # and the allocator's training curves
    assert first.stdout.count("logged to wandb") == len(logged)
    assert (run_dir / "allocator.png").read_bytes()[:4] == b"\x89PNG"
    assert (run_dir / "allocator_choices.png").read_bytes()[:4] == b"\x89PNG"
    assert (run_dir / "allocator_choices_levels.png").read_bytes()[:4] == b"\x89PNG"
    record = json.loads((run_dir / "allocator.json").read_text())
    assert set(record["choices_by_level"]) == set(record["choices_by_oracle_bin"])
    for by_level in record["choices_by_level"].values():
        assert all(sum(shares.values()) == pytest.approx(1.0) for shares in by_level.values())
    report_md = (run_dir / "report.md").read_text()
    plots = ("search_eval.png", "revision_eval.png", "baselines.png", "allocator.png", "allocator_choices.png")
    for plot in (*plots, "allocator_choices_levels.png"):
        assert f"]({plot})" in report_md
    assert "Not run yet" not in report_md and "weighted@4" in report_md

    question = "Evaluate left to right:\n4+5+3      "
    matched = json.loads((run_dir / "counterpart.json").read_text())
    larger = AutoModelForCausalLM.from_pretrained(run_dir / "counterpart")
    assert matched["scale"] == flop_params(larger) / flop_params(model) and matched["scale"] > 1
    assert json.loads((run_dir / "counterpart" / "ttc_stage.json").read_text())["steps"] == 6
    # The larger model's learning rate is the proposer's (3e-3, width 32) scaled by width (64).
    larger_args = torch.load(run_dir / "counterpart" / "training_args.bin", weights_only=False)
    assert larger_args.learning_rate == pytest.approx(3e-3 * 32 / 64)
    first_row, last_row = matched["rows"]
    assert first_row["multiplier"] == pytest.approx(matched["scale"] + 3 * (matched["scale"] - 1) / 0.16)
    assert (first_row["generations"], first_row["capped"]) == (8, True)  # more than the pool's K = 8
    assert last_row["generations"] == int(matched["scale"] + 3 * (matched["scale"] - 1) / 22)
    assert first_row["small_by_bin"] and set(first_row["small_by_bin"]) <= {"1", "2"} and 0 <= first_row["large"] <= 1
    assert (run_dir / "counterpart.png").read_bytes()[:4] == b"\x89PNG"
    assert "FLOPs-matched" in report_md and "](counterpart.png)" in report_md

    solutions = {}
    for policy, chosen_by in (("fixed", "allocator"), ("adaptive", "allocator"), ("none", "default")):
        solved = ttc("solve", question, "--experiment", config, "--policy", policy, "--json")
        assert solved.returncode == 0, solved.stderr
        solutions[policy] = solution = json.loads(solved.stdout)
        assert solution["chosen_by"] == chosen_by and solution["compute"]["generations"] >= 1
        assert solution["decision_flops"] > 0 if chosen_by == "allocator" else solution["decision_flops"] == 0
    library = Solver.from_experiment(config).solve(question).to_dict()
    timing = ("decision_ms", "strategy_ms")
    assert {k: v for k, v in library.items() if k not in timing} == {
        k: v for k, v in solutions["fixed"].items() if k not in timing
    }
    over = ttc("solve", question, "--experiment", config, "--budget", "8")
    assert over.returncode == 2 and "budget must be an integer from 1 to 4" in over.stderr
    answers = tmp_path / "answers.jsonl"
    load = ttc(
        "loadtest",
        "--experiment",
        config,
        "--requests",
        "6",
        "--concurrency",
        "3",
        "--batch-sizes",
        "3,1",
        "--answers",
        str(answers),
    )
    assert load.returncode == 0, load.stdout + load.stderr
    assert "| 3 | 6 | 3 | 0 |" in load.stdout and "| 1 | 6 | 3 | 0 |" in load.stdout
    assert load.stdout.count("| 6/6 |") == 2  # batched or not, the same answers
    rows = [json.loads(line) for line in answers.read_text().splitlines()]
    assert [(r["max_batch"], r["index"]) for r in rows] == [(b, i) for b in (3, 1) for i in range(6)]
    assert [r["answer"] for r in rows[:6]] == [r["answer"] for r in rows[6:]]
    right = sum(r["correct"] for r in rows[:6])
    assert load.stdout.count(f"| {right / 6:.3f} | 6/6 |") == 2
    # Each question twice (seeds 0 and 1), compared question by question with the run above.
    seeded = tmp_path / "answers-seeded.jsonl"
    load = ttc(
        "loadtest",
        *("--experiment", config, "--requests", "6", "--concurrency", "3", "--batch-sizes", "3"),
        *("--seeds", "2", "--answers", str(seeded), "--against", str(answers)),
    )
    assert load.returncode == 0, load.stdout + load.stderr
    twice = [json.loads(line) for line in seeded.read_text().splitlines()]
    assert [r["seed"] for r in twice] == [0] * 6 + [1] * 6
    assert [r["question"] for r in twice] == [r["question"] for r in rows[:6]] * 2
    assert [r["answer"] for r in twice[:6]] == [r["answer"] for r in rows[:6]]  # the default seed is 0
    difference = sum(a["correct"] + b["correct"] for a, b in zip(twice[:6], twice[6:])) / 12 - right / 6
    assert f"the same 6 questions (each the mean of its 2 seed(s)): {difference:+.3f} [" in load.stdout

    # the pool again, collected by two processes under torchrun: the same rows. Sample scores are
    # compared to 1e-6: fused scores come from the sampling log-probabilities, whose last bits depend
    # on the number of threads (one per process under torchrun, the default in the first run).
    scored = ("score", "last_score")

    def rows(path: Path) -> tuple[list[dict], list[list[float]]]:
        table = pq.read_table(path).to_pylist()
        exact = [{k: v for k, v in row.items() if k not in scored} for row in table]
        return exact, [[row[k] for k in scored if k in row] for row in table]

    before = {str(p.relative_to(run_dir)): rows(p) for p in sorted(run_dir.glob("pool/**/*.parquet"))}
    shutil.rmtree(run_dir / "pool")
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [torchrun, "--nproc_per_node", "2", "--master_port", "29547", "-m", "ttc_runtime.cli", "pool", config]
    shared = subprocess.run(list(map(str, command)), capture_output=True, text=True, timeout=600, env=env)
    assert shared.returncode == 0, shared.stderr[-3000:]
    after = {str(p.relative_to(run_dir)): rows(p) for p in sorted(run_dir.glob("pool/**/*.parquet"))}
    assert after.keys() == before.keys() and "rank 1/2" in shared.stderr
    for path, (exact, scores) in after.items():
        assert exact == before[path][0], path
        assert np.allclose(np.array(scores, dtype=float), np.array(before[path][1], dtype=float), atol=1e-6), path

    marker_time = (model_dir / "ttc_stage.json").stat().st_mtime_ns
    counterpart_time = (run_dir / "counterpart" / "ttc_stage.json").stat().st_mtime_ns
    second = ttc("run", config)
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("up to date") == 12  # all but the two revision stages (the model is given)
    assert "logged to wandb" not in second.stdout
    assert sorted((run_dir / "wandb").glob("offline-run-*")) == wandb_runs
    assert (model_dir / "ttc_stage.json").stat().st_mtime_ns == marker_time
    assert json.loads((run_dir / "proposer_eval.json").read_text()) == report
    assert json.loads((run_dir / "prm_eval.json").read_text()) == verifier
    assert json.loads((run_dir / "search_eval.json").read_text()) == search
    assert json.loads((run_dir / "revision_eval.json").read_text()) == revision
    assert json.loads((run_dir / "baselines.json").read_text()) == baselines

    third = ttc("run", config, "--from", "prm")
    assert third.returncode == 0, third.stderr
    assert third.stdout.count("up to date") == 3  # and --from never retrains the larger model:
    assert (run_dir / "counterpart" / "ttc_stage.json").stat().st_mtime_ns == counterpart_time
    assert json.loads((run_dir / "prm_eval.json").read_text())["levels"] == verifier["levels"]

    # A training pool on the validation split: the fitted allocators learn from it and answer the
    # evaluation pool's questions; the earlier stages and the evaluation pool stay up to date.
    trained_config = tmp_path / "trained.yaml"
    trained_config.write_text(TINY.format(run_dir=run_dir) + "train_pool: {problems_per_level: 1}\n")
    fourth = ttc("run", trained_config, "--to", "allocator")
    assert fourth.returncode == 0, fourth.stderr
    assert "pool: up to date" in fourth.stdout and "train_pool: 5 validation problems" in fourth.stdout
    assert RolloutPool(run_dir / "train_pool").complete()
    protocol = re.compile(r"fitted on (\d) validation questions of the training pool, tested on the 10 pool questions")
    for stage in ("baselines", "allocator"):
        record = json.loads((run_dir / f"{stage}.json").read_text())
        found = protocol.fullmatch(record["protocol"])
        assert found and 1 <= int(found.group(1)) <= 5, record["protocol"]
        assert all(p["questions"] == 10 for p in record["points"] if p["view"] == 0)
        assert record["protocol"] in (run_dir / f"{stage}.md").read_text()
    assert "cross-validation" in baselines["protocol"]
    for kind in ("fixed", "adaptive"):
        assert (run_dir / "allocator" / kind / "policy.json").is_file()


@pytest.mark.slow
def test_run_shares_the_labels_and_the_pools_among_processes_of_its_own(tmp_path):
    """With ``processes: 2``, ``ttc run`` labels the PRM's steps and collects the pools with two
    processes of its own, each taking every other shard, into the same labels and pools one
    process collects; a second run finds every stage up to date and starts no process."""
    shared, single = tmp_path / "shared", tmp_path / "single"
    pools = "train_pool: {problems_per_level: 1}\n"
    (tmp_path / "shared.yaml").write_text("processes: 2\n" + pools + TINY.format(run_dir=shared))
    (tmp_path / "single.yaml").write_text(pools + TINY.format(run_dir=single))

    alone = ttc("run", tmp_path / "single.yaml", "--to", "prm_labels")
    assert alone.returncode == 0, alone.stderr[-3000:]
    shutil.copytree(single, shared)  # the same proposer, so that the labels can be compared
    shutil.rmtree(shared / "prm_labels")
    first = ttc("run", tmp_path / "shared.yaml", "--to", "pool")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "labelled by 2 processes" in first.stdout and "collected by 2 processes" in first.stdout
    assert "PRM labels, rank 1/2" in first.stderr and "rollout pool, rank 1/2" in first.stderr
    summaries = [json.loads((run / "prm_labels" / "summary.json").read_text()) for run in (single, shared)]
    assert summaries[0]["steps"] == summaries[1]["steps"] and summaries[0]["flops"] == summaries[1]["flops"] > 0
    assert load_stepwise(shared / "prm_labels" / "dataset")[:] == load_stepwise(single / "prm_labels" / "dataset")[:]
    shards = {name: RolloutPool(shared / name).shard_count() for name in ("pool", "train_pool")}
    assert all(RolloutPool(shared / name).complete() for name in shards)
    assert f"pool: {shards['pool']} shards written (10 questions)" in first.stdout
    assert f"train_pool: {shards['train_pool']} shards written (5 questions)" in first.stdout

    again = ttc("run", tmp_path / "shared.yaml", "--to", "pool")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "processes" not in again.stdout and "rank 1/2" not in again.stderr
    assert "pool: up to date (10 questions); train_pool: up to date (5 questions)" in again.stdout
