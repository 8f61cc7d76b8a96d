import json

import numpy as np
import pytest
import torch
from datasets import Dataset
from ttc_runtime.trainers.common import TrainSettings
from ttc_runtime.trainers.prm import (
    IGNORE,
    PRMConfig,
    check_stepwise,
    load_stepwise,
    prm_features,
    step_targets,
    train_prm,
)

from ttc_runtime.evaluation.verifier import auroc
from ttc_runtime.models import build_embedded_tokenizer, flop_params, load_causal_lm, load_tokenizer
from ttc_runtime.prompts import PromptConfig
from ttc_runtime.scoring import MarginPRMForTokenClassification, ProposerMarginScorer, TokenClassificationPRM
from ttc_runtime.tasks import DataError, SyntheticTask, SyntheticTaskConfig, split_steps


def test_step_targets_put_each_label_at_its_step_end():
    tokenizer = build_embedded_tokenizer()
    out = step_targets(tokenizer, "Q\n\n", ["12+3", "15"], [0.25, True])
    assert out["labels"] == [IGNORE] * 7 + [0.25] + [IGNORE] * 2 + [1.0]
    assert len(out["input_ids"]) == len(out["labels"])


def test_bad_stepwise_rows_are_errors_naming_the_row_counted_from_one(tmp_path):
    good = {"prompt": "Q", "completions": ["1"], "labels": [True]}
    mismatched = {"prompt": "Q", "completions": ["1", "2"], "labels": [True]}
    with pytest.raises(DataError, match="row 2: 2 completions but 1 labels"):
        check_stepwise(Dataset.from_list([good, mismatched]))
    out_of_range = Dataset.from_list([{**good, "soft_labels": [1.5]}])
    with pytest.raises(DataError, match=r"row 1: soft_labels must lie in \[0, 1\], got 1.5"):
        prm_features(out_of_range, build_embedded_tokenizer(), PromptConfig(), "soft")
    with pytest.raises(DataError, match="lacks column.s. labels"):
        check_stepwise(Dataset.from_list([{"prompt": "Q", "completions": ["1"]}]))
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "labels": [-0.5]}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl: row 2: labels must lie in \[0, 1\], got -0.5"):
        load_stepwise(path)
    with pytest.raises(DataError, match="no such stepwise dataset"):
        load_stepwise(tmp_path / "absent.jsonl")


def test_a_stepwise_file_loads_like_the_labeller_output(tmp_path):
    rows = [{"prompt": "Q", "completions": ["1", "\\boxed{1}"], "labels": [True, False]}]
    path = tmp_path / "steps.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    features = prm_features(load_stepwise(path), build_embedded_tokenizer(), PromptConfig(), "soft")
    assert [x for x in features[0]["labels"] if x != IGNORE] == [1.0, 0.0]


@pytest.mark.parametrize("completions", [[], None])
def test_a_row_without_steps_is_an_error(tmp_path, completions):
    rows = [{"prompt": "Q", "completions": ["1"], "labels": [True]}, {"prompt": "Q", "completions": completions}]
    path = tmp_path / "steps.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"steps.jsonl: row 2: no completions \(a row needs at least one step\)"):
        load_stepwise(path)


def test_steps_that_are_not_text_are_an_error():
    with pytest.raises(DataError, match="row 1: completions must be strings, got 3"):
        check_stepwise(Dataset.from_list([{"prompt": "Q", "completions": [3], "labels": [True]}]))


def test_a_dataset_with_nothing_to_train_on_is_an_error():
    empty = Dataset.from_dict({"prompt": [], "completions": [], "labels": []})
    with pytest.raises(DataError, match="stepwise dataset has no rows: nothing to train on"):
        prm_features(empty, build_embedded_tokenizer(), PromptConfig(), "soft")


def test_a_conversational_prompt_gives_its_last_user_message_as_the_question(tmp_path):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "1+2"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "12+3"},
    ]
    rows = [{"prompt": messages, "completions": ["15", "\\boxed{15}"], "labels": [True, True]}]
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tokenizer = build_embedded_tokenizer()
    loaded = prm_features(load_stepwise(path), tokenizer, PromptConfig(), "hard")
    plain = Dataset.from_list([{**rows[0], "prompt": "12+3"}])
    assert loaded == prm_features(plain, tokenizer, PromptConfig(), "hard")
    no_user = {**rows[0], "prompt": [{"role": "system", "content": "Be brief."}]}
    path.write_text("".join(json.dumps(r) + "\n" for r in [rows[0], no_user]))
    with pytest.raises(DataError, match="chat.jsonl: row 2: the conversational prompt has no user message"):
        load_stepwise(path)


def stepwise_rows():
    task = SyntheticTask(SyntheticTaskConfig(train_per_level=8, validation_per_level=1, test_per_level=1))
    rows = []
    for problem in task.problems("train"):
        steps = split_steps(problem.solution)
        rows.append({"prompt": problem.question, "completions": steps, "labels": [True] * len(steps)})
        wrong = ["0" + s for s in steps]
        rows.append({"prompt": problem.question, "completions": wrong, "labels": [False] * len(steps)})
    return Dataset.from_list(rows)


@pytest.mark.slow
@pytest.mark.parametrize("init", ["proposer", "scratch"])
def test_train_prm_learns_and_saves_a_loadable_scorer(tiny_model_dir, tmp_path, init):
    config = PRMConfig(
        reads="hidden_states",
        init=init,
        targets="hard",
        architecture={"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64},
        training=TrainSettings(max_steps=120, batch_size=16, learning_rate=3e-3, logging_steps=20),
    )
    result = train_prm(config, stepwise_rows(), tiny_model_dir, tmp_path / "prm")
    assert result.steps == 120 and result.train_tokens > 0 and result.final_loss is not None
    assert not (tmp_path / "prm.partial").exists()
    prm = TokenClassificationPRM.from_pretrained(tmp_path / "prm")
    rows = stepwise_rows().select(range(20))
    scores = prm.score([r["prompt"] for r in rows], [r["completions"] for r in rows]).step_scores
    assert [len(s) for s in scores] == [len(r["completions"]) for r in rows]
    good = [x for s, r in zip(scores, rows) if r["labels"][0] for x in s]
    bad = [x for s, r in zip(scores, rows) if not r["labels"][0] for x in s]
    assert sum(good) / len(good) > sum(bad) / len(bad) + 0.2  # it learned the labels


def test_a_margin_prm_cannot_start_from_scratch():
    with pytest.raises(ValueError, match="init: scratch needs reads: hidden_states"):
        PRMConfig(init="scratch")


@pytest.mark.slow
def test_margin_prm_learns_labels_from_the_proposers_margins(tiny_model_dir, tmp_path):
    # Labels the untrained head ranks exactly backwards: a step is good when the proposer
    # disliked it. Only training on the labels can turn that ranking around.
    rows = stepwise_rows()
    proposer = load_causal_lm(tiny_model_dir)
    margins = ProposerMarginScorer(proposer, load_tokenizer(tiny_model_dir))
    scores = margins.score(rows["prompt"], rows["completions"]).step_scores
    threshold = float(np.median([x for s in scores for x in s]))
    rows = Dataset.from_dict(
        {
            "prompt": rows["prompt"],
            "completions": rows["completions"],
            "labels": [[x < threshold for x in s] for s in scores],
        }
    )
    config = PRMConfig(
        targets="hard",
        head_size=8,
        training=TrainSettings(max_steps=1500, batch_size=16, learning_rate=3e-2, logging_steps=500),
    )
    result = train_prm(config, rows, tiny_model_dir, tmp_path / "prm")
    prm = TokenClassificationPRM.from_pretrained(tmp_path / "prm")
    assert isinstance(prm.model, MarginPRMForTokenClassification)
    assert all(
        torch.equal(a, b) for a, b in zip(prm.model.proposer.state_dict().values(), proposer.state_dict().values())
    )
    head = sum(p.numel() for p in [*prm.model.head.parameters(), *prm.model.linear.parameters()])
    assert result.train_flops == 6 * head * result.train_tokens + 2 * flop_params(proposer) * result.train_tokens
    learned = prm.score(rows["prompt"], rows["completions"]).step_scores
    labels = [x for r in rows["labels"] for x in r]
    assert auroc(labels, [x for s in learned for x in s]) > 0.95
