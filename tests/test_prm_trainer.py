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


def test_bad_stepwise_rows_are_errors_naming_the_row(tmp_path):
    good = {"prompt": "Q", "completions": ["1"], "labels": [True]}
    mismatched = {"prompt": "Q", "completions": ["1", "2"], "labels": [True]}
    with pytest.raises(DataError, match="row 1: 2 completions but 1 labels"):
        check_stepwise(Dataset.from_list([good, mismatched]))
    out_of_range = Dataset.from_list([{**good, "soft_labels": [1.5]}])
    with pytest.raises(DataError, match=r"row 0: soft_labels must lie in \[0, 1\], got 1.5"):
        prm_features(out_of_range, build_embedded_tokenizer(), PromptConfig(), "soft")
    with pytest.raises(DataError, match="lacks column.s. labels"):
        check_stepwise(Dataset.from_list([{"prompt": "Q", "completions": ["1"]}]))
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "labels": [-0.5]}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl: row 1: labels must lie in \[0, 1\], got -0.5"):
        load_stepwise(path)
    with pytest.raises(DataError, match="no such stepwise dataset"):
        load_stepwise(tmp_path / "absent.jsonl")


def test_a_stepwise_file_loads_like_the_labeller_output(tmp_path):
    rows = [{"prompt": "Q", "completions": ["1", "\\boxed{1}"], "labels": [True, False]}]
    path = tmp_path / "steps.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    features = prm_features(load_stepwise(path), build_embedded_tokenizer(), PromptConfig(), "soft")
    assert [x for x in features[0]["labels"] if x != IGNORE] == [1.0, 0.0]


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
