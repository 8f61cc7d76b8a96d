"""Revision training data: edit-distance pairing, the examples and their builder, and the
revision stages that build the data and train on it."""

import random

import pytest
from ttc_runtime.trainers.revision_data import (
    RevisionDataConfig,
    build_revision_data,
    closest_incorrect,
    distinct_examples,
    revision_examples,
)

from tests.conftest import HalfRight
from ttc_runtime.compute import Usage
from ttc_runtime.generation.base import Completion, GenerationOutput, SamplingParams
from ttc_runtime.prompts import PromptConfig, RevisionPromptConfig
from ttc_runtime.tasks import SyntheticTask, SyntheticTaskConfig

PROMPT, REVISION = PromptConfig(), RevisionPromptConfig()


def test_closest_incorrect_by_character_edit_distance_closest_last():
    wrong = ["99+9", "12+4", "13+3", "12+3x"]  # distances to "12+3": 3, 1, 1, 1
    assert closest_incorrect("12+3", wrong, 2) == ["13+3", "12+4"]  # ties keep order; closest last
    assert closest_incorrect("12+3", wrong, 4) == ["99+9", "12+3x", "13+3", "12+4"]
    assert closest_incorrect("12+3", wrong, 0) == []


def test_one_example_per_correct_solution_with_up_to_four_close_attempts():
    problem = SyntheticTask(SyntheticTaskConfig(train_per_level=2)).problems("train")[0]
    solutions = ["good A", "bad 1", "good B", "bad 2", "bad 3", "bad 4", "bad 5"]
    correct = [s.startswith("good") for s in solutions]
    examples = revision_examples(problem, solutions, correct, PROMPT, REVISION, 4, random.Random(0))
    assert [e["completion"] for e in examples] == ["good A", "good B"]
    for example in examples:
        assert 0 <= example["attempts"] <= 4
        assert sum(f"bad {i}" in example["prompt"] for i in range(1, 6)) == example["attempts"]
    only_right = revision_examples(problem, ["good"], [True], PROMPT, REVISION, 4, random.Random(0))
    assert only_right[0]["attempts"] == 0
    # A wrong text sampled four times is one attempt: a context never holds the same attempt twice.
    repeated = revision_examples(
        problem, ["good", *["bad"] * 4], [True] + [False] * 4, PROMPT, REVISION, 4, random.Random(1)
    )
    assert all(e["attempts"] <= 1 and e["prompt"].count("bad") == e["attempts"] for e in repeated)


def test_an_example_records_only_the_attempts_its_prompt_keeps():
    # Drawn up to four, shown up to one: the example holds the closest attempt, the one the prompt keeps.
    problem = SyntheticTask(SyntheticTaskConfig(train_per_level=2)).problems("train")[0]
    solutions = ["good", "bad 1", "bad 22", "bad 333"]
    one = REVISION.model_copy(update={"max_attempts": 1})
    examples = [
        e
        for seed in range(20)
        for e in revision_examples(problem, solutions, [True, False, False, False], PROMPT, one, 4, random.Random(seed))
    ]
    assert {e["attempts"] for e in examples} == {0, 1}
    for example in examples:
        assert example["attempts"] == len(example["attempt_texts"]) == example["prompt"].count("<attempt>")
        assert example["attempt_texts"] in ([], ["bad 1"])


def test_build_revision_data_is_seeded_and_independent_of_the_batching():
    task = SyntheticTask(SyntheticTaskConfig(train_per_level=3))
    problems = task.problems("train")[:6]
    config = RevisionDataConfig(samples_per_problem=6, batch_prompts=4, dedupe=False)
    data = build_revision_data(HalfRight(task), task, problems, PROMPT, REVISION, SamplingParams(), config)
    assert len(data) == 6 * 3  # three correct samples per problem
    assert set(data.column_names) == {
        "prompt",
        "completion",
        "question",
        "attempt_texts",
        "problem_id",
        "level",
        "attempts",
    }
    assert all(0 <= a <= 3 for a in data["attempts"])
    rebatched = config.model_copy(update={"batch_prompts": 1})
    again = build_revision_data(HalfRight(task), task, problems, PROMPT, REVISION, SamplingParams(), rebatched)
    assert again.to_list() == data.to_list()


def test_repeated_examples_are_kept_once_in_first_seen_order():
    rows = [
        {"prompt": "p1", "completion": "c", "problem_id": "a"},
        {"prompt": "p2", "completion": "c", "problem_id": "a"},
        {"prompt": "p1", "completion": "c", "problem_id": "b"},
        {"prompt": "p1", "completion": "d", "problem_id": "a"},
    ]
    assert [r["problem_id"] + r["prompt"] + r["completion"] for r in distinct_examples(rows)] == [
        "ap1c",
        "ap2c",
        "ap1d",
    ]


def test_the_builder_drops_copies_of_one_correct_solution():
    task = SyntheticTask(SyntheticTaskConfig(train_per_level=3))
    problems = task.problems("train")[:6]
    params = SamplingParams()
    copies = build_revision_data(
        HalfRight(task),
        task,
        problems,
        PROMPT,
        REVISION,
        params,
        RevisionDataConfig(samples_per_problem=8, dedupe=False),
    )
    kept = build_revision_data(
        HalfRight(task), task, problems, PROMPT, REVISION, params, RevisionDataConfig(samples_per_problem=8)
    )
    pairs = list(zip(copies["prompt"], copies["completion"]))
    assert len(copies) == 6 * 4  # four identical correct samples per problem
    assert list(zip(kept["prompt"], kept["completion"])) == list(dict.fromkeys(pairs))
    assert len(set(pairs)) < len(pairs)  # the copies share attempt counts, so some examples repeat


class AllWrong(HalfRight):
    def generate(self, prompts, n=1, params=SamplingParams(), seed=0):
        rows = [[Completion("\\boxed{-1}", 3, "eos")] * n for _ in prompts]
        return GenerationOutput(rows, [Usage.inference(1, 1, 3 * n)] * len(prompts))


@pytest.mark.slow
def test_the_revision_stages_sample_train_and_skip_when_up_to_date(tiny_model_dir, tmp_path, monkeypatch):
    from ttc_runtime.experiment import Experiment, ExperimentConfig
    from ttc_runtime.models import load_causal_lm

    config = ExperimentConfig.model_validate(
        {
            "run_dir": str(tmp_path / "run"),
            "task": {
                "name": "synthetic",
                "synthetic": {"train_per_level": 3, "validation_per_level": 1, "test_per_level": 1},
            },
            "proposer": {"model": str(tiny_model_dir)},
            "revision_data": {"problems_per_level": 2, "samples_per_problem": 4, "dedupe": False},
            "revision": {"training": {"max_steps": 2, "batch_size": 4, "logging_steps": 1, "max_length": 256}},
            "wandb": {"enabled": False},
        }
    )
    experiment = Experiment(config)
    context = experiment.context
    monkeypatch.setattr(context, "generator", lambda: AllWrong(context.task))
    with pytest.raises(ValueError, match="no revision example; train the proposer longer"):
        experiment.run_stage("revision_data")
    assert not (tmp_path / "run" / "revision_data").exists()

    monkeypatch.setattr(context, "generator", lambda: HalfRight(context.task))
    data = experiment.run_stage("revision_data")
    assert data["problems"] == 10 and data["examples"] == 10 * 2  # two correct samples of four each
    trained = experiment.run_stage("revision")
    assert trained["steps"] == 2 and trained["examples"] + trained["examples_dropped_to_fit"] == 20
    load_causal_lm(tmp_path / "run" / "revision")
    monkeypatch.setattr(context, "generator", lambda: pytest.fail("an up-to-date stage sampled again"))
    assert experiment.run_stage("revision_data") == data
    assert experiment.run_stage("revision") == trained
