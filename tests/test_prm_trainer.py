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
from ttc_runtime.scoring.prm import encode_steps
from ttc_runtime.stages.prm import Prm
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
        prm_features(out_of_range, build_embedded_tokenizer(), PromptConfig(), "soft", 256)
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
    features = prm_features(load_stepwise(path), build_embedded_tokenizer(), PromptConfig(), "soft", 256).features
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
        prm_features(empty, build_embedded_tokenizer(), PromptConfig(), "soft", 256)
    long = Dataset.from_list([{"prompt": "Q" * 40, "completions": ["1"], "labels": [True]}] * 2)
    with pytest.raises(DataError, match="no row fits in max_length 16 tokens: in all 2 rows"):
        prm_features(long, build_embedded_tokenizer(), PromptConfig(), "soft", 16)


def test_rows_longer_than_max_length_keep_the_prompt_and_the_steps_that_fit():
    tokenizer, prompt = build_embedded_tokenizer(), PromptConfig()
    steps, labels = ["12+3=15", "15*2=30", "\\boxed{30}"], [1.0, 0.5, 0.0]
    ids, positions = encode_steps(tokenizer, prompt.format("12+3"), steps)
    max_length = positions[1] + 1  # the second step ends on the last token allowed, the third runs past it
    _, short_positions = encode_steps(tokenizer, prompt.format("1+1"), ["2"])
    assert short_positions[-1] < max_length
    long_question = "1+" * max_length
    assert len(tokenizer(prompt.format(long_question))["input_ids"]) > max_length
    rows = [
        {"prompt": "12+3", "completions": steps, "labels": labels},
        {"prompt": "1+1", "completions": ["2"], "labels": [1.0]},
        {"prompt": long_question, "completions": ["2"], "labels": [1.0]},
    ]
    fitted = prm_features(Dataset.from_list(rows), tokenizer, prompt, "hard", max_length)
    assert (fitted.rows_cut, fitted.rows_dropped, len(fitted.features)) == (1, 1, 2)
    cut, whole = fitted.features
    assert len(cut["input_ids"]) == max_length and cut["input_ids"] == ids[:max_length]
    assert [x for x in cut["labels"] if x != IGNORE] == labels[:2]
    assert len(whole["input_ids"]) == short_positions[-1] + 1
    # One token fewer and the second step no longer fits: only the first is kept.
    shorter = prm_features(Dataset.from_list(rows[:1]), tokenizer, prompt, "hard", max_length - 1)
    assert len(shorter.features[0]["input_ids"]) == positions[0] + 1 and shorter.rows_cut == 1


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
    loaded = prm_features(load_stepwise(path), tokenizer, PromptConfig(), "hard", 256).features
    plain = Dataset.from_list([{**rows[0], "prompt": "12+3"}])
    assert loaded == prm_features(plain, tokenizer, PromptConfig(), "hard", 256).features
    no_user = {**rows[0], "prompt": [{"role": "system", "content": "Be brief."}]}
    path.write_text("".join(json.dumps(r) + "\n" for r in [rows[0], no_user]))
    with pytest.raises(DataError, match="chat.jsonl: row 2: the conversational prompt has no user message"):
        load_stepwise(path)


def test_the_prm_stage_line_counts_the_solutions_cut_and_dropped():
    record = {"model": "runs/x/prm", "seconds": 12.3, "final_loss": 0.25}
    fitted = {**record, "solutions_cut_to_fit": 3, "solutions_dropped_to_fit": 1}
    assert Prm().describe(fitted) == (
        "runs/x/prm, trained in 12 s, final loss 0.25; 3 solutions cut to their first steps and 1 dropped to fit "
        "the context"
    )
    assert Prm().describe(record).endswith("; 0 solutions cut to their first steps and 0 dropped to fit the context")


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
    result, fitted = train_prm(config, stepwise_rows(), tiny_model_dir, tmp_path / "prm")
    assert result.steps == 120 and result.train_tokens > 0 and result.final_loss is not None
    assert (fitted.rows_cut, fitted.rows_dropped, len(fitted.features)) == (0, 0, len(stepwise_rows()))
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
    result, _ = train_prm(config, rows, tiny_model_dir, tmp_path / "prm")
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
