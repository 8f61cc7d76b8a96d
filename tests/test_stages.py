"""Stage keys cover the content of what each stage reads: rewriting an input (a data file, a
stepwise dataset, a given model directory, a DeepSpeed config) changes the keys of exactly the
stages that read it, so exactly those run again; touching a file without changing it changes none."""

import json
import os

import pytest

from ttc_runtime.experiment_config import ExperimentConfig
from ttc_runtime.stages import STAGES, RunContext
from ttc_runtime.stages.pool import pool_inputs, pools

KEYED = ("proposer", "proposer_eval", "prm_labels", "prm", "prm_eval", "search_eval", "revision_data", "revision")
KEYED += ("revision_eval",)
"""The stages whose keys need no earlier stage's output (the pool's are checked through its inputs)."""


def math_rows(offset: int) -> str:
    rows = [
        {"problem": f"What is {level}+{offset}?", "solution": f"\\boxed{{{level + offset}}}", "level": f"Level {level}"}
        for level in range(1, 6)
    ]
    return "".join(json.dumps(row) + "\n" for row in rows)


def rewrite(path, text: str) -> None:
    """Rewrite ``path`` and move its modification time a second on, as a later edit would."""
    later = path.stat().st_mtime_ns + 10**9
    path.write_text(text)
    os.utime(path, ns=(later, later))


@pytest.fixture
def inputs(tmp_path):
    files = {
        "train": tmp_path / "train.jsonl",
        "test": tmp_path / "test.jsonl",
        "stepwise": tmp_path / "stepwise.jsonl",
        "deepspeed": tmp_path / "zero2.json",
    }
    files["train"].write_text(math_rows(0))
    files["test"].write_text(math_rows(100))
    files["stepwise"].write_text(json.dumps({"prompt": "1+1", "completions": ["\\boxed{2}"], "labels": [True]}) + "\n")
    files["deepspeed"].write_text('{"zero_optimization": {"stage": 2}}\n')
    for name in ("proposer", "prm"):
        model = tmp_path / name
        model.mkdir()
        (model / "config.json").write_text("{}")
        (model / "model.safetensors").write_bytes(b"weights")
        files[name] = model / "model.safetensors"
    return tmp_path, files


def config(root, prm_given: bool = False) -> ExperimentConfig:
    prm = {"model": str(root / "prm")} if prm_given else {"dataset": str(root / "stepwise.jsonl")}
    return ExperimentConfig.model_validate(
        {
            "run_dir": str(root / "run"),
            "task": {"name": "math", "math": {"train": str(root / "train.jsonl"), "test": str(root / "test.jsonl")}},
            "proposer": {"model": str(root / "proposer")},
            "prm": prm,
            "revision": {"training": {"deepspeed": str(root / "zero2.json")}},
            "train_pool": {"problems_per_level": 1, "split": "train"},
        }
    )


def keys(config: ExperimentConfig) -> dict[str, str]:
    """Every key a fresh run of ``config`` would compare with its records."""
    ctx = RunContext(config, STAGES)
    found = {stage.name: stage.key(ctx) for stage in STAGES if stage.name in KEYED}
    for name, _, pool_config in pools(ctx):
        found[name] = json.dumps(vars(pool_inputs(ctx, pool_config.split)))
    return found


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {name for name in before if before[name] != after[name]}


READS_PROPOSER = {"proposer_eval", "prm_labels", "prm", "prm_eval", "search_eval", "revision_data", "revision"}
READS_PROPOSER |= {"revision_eval", "pool", "train_pool"}


@pytest.mark.parametrize(
    "what, stages",
    [
        ("train", {"proposer", "prm_labels", "revision_data", "revision", "train_pool"}),
        ("test", {"proposer_eval", "prm_eval", "search_eval", "revision_eval", "pool"}),
        ("stepwise", {"prm"}),
        ("deepspeed", {"revision"}),
        ("proposer", READS_PROPOSER),
    ],
)
def test_rewriting_an_input_reruns_exactly_the_stages_that_read_it(inputs, what, stages):
    root, files = inputs
    before = keys(config(root))
    assert keys(config(root)) == before
    rewrite(files[what], files[what].read_text(errors="replace") + "\n" if what != "proposer" else "other weights")
    assert changed(before, keys(config(root))) == stages


def test_a_given_prm_rewritten_reruns_the_stages_that_score_with_it(inputs):
    root, files = inputs
    before = keys(config(root, prm_given=True))
    rewrite(files["prm"], "other weights")
    assert changed(before, keys(config(root, prm_given=True))) == {
        "prm_eval",
        "search_eval",
        "revision_eval",
        "pool",
        "train_pool",
    }


def test_touching_inputs_without_changing_them_reruns_nothing(inputs):
    root, files = inputs
    before = keys(config(root))
    for path in files.values():
        rewrite(path, path.read_bytes().decode(errors="surrogateescape"))
    assert keys(config(root)) == before


def test_a_generated_task_is_keyed_by_its_own_section_only(tmp_path):
    def key(**task):
        return RunContext(ExperimentConfig(run_dir=str(tmp_path), task=task), STAGES).data_key("train")

    chains = key(name="synthetic")
    assert chains == key(name="synthetic", families={"seed": 5}, math={"train": "x.jsonl"})
    assert chains != key(name="synthetic", synthetic={"seed": 5}) and chains != key()
    assert key() == key(name="families", synthetic={"seed": 5}) != key(families={"seed": 5})
    ctx = RunContext(ExperimentConfig(run_dir=str(tmp_path)), STAGES)
    assert ctx.training_files(ctx.config.revision.training) == ()


def test_a_task_section_without_its_name_is_refused():
    with pytest.raises(ValueError, match="task.synthetic is set but task.name is not"):
        ExperimentConfig.model_validate({"task": {"synthetic": {"seed": 1}}})
    assert ExperimentConfig.model_validate({"task": {"families": {"seed": 1}}}).task.families.seed == 1
