import pytest
import torch
from transformers import LlamaConfig, LlamaForTokenClassification

from ttc_runtime.compute import inference_flops
from ttc_runtime.models import ModelLoadError, build_embedded_tokenizer
from ttc_runtime.scoring import StepScorer, TokenClassificationPRM, encode_steps

QUESTIONS = ["Evaluate left to right:\n3+4*2", "Evaluate left to right:\n9-1"]
SOLUTIONS = [["7*2", "14", "\\boxed{14}"], ["8", "\\boxed{8}"]]


@pytest.fixture(scope="module")
def prm_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("prm")
    tokenizer = build_embedded_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForTokenClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_encode_steps_marks_the_last_token_of_each_step():
    tokenizer = build_embedded_tokenizer()
    ids, positions = encode_steps(tokenizer, "Q\n\n", ["12+3", "15"])
    pieces = [tokenizer.decode([i]) for i in ids]
    assert pieces == ["Q", "\n", "\n", "12", "+", "3", "\n", "\n", "15", "\n", "\n"]
    assert positions == [7, 10]


def test_scores_every_step_in_batches(prm_dir):
    prm = TokenClassificationPRM.from_pretrained(prm_dir)
    assert isinstance(prm, StepScorer)
    out = prm.score(QUESTIONS, SOLUTIONS)
    assert [len(s) for s in out.step_scores] == [3, 2]
    assert all(0.0 < x < 1.0 for row in out.step_scores for x in row)
    tokens = sum(len(encode_steps(prm.tokenizer, prm.prompt.format(q), s)[0]) for q, s in zip(QUESTIONS, SOLUTIONS))
    assert out.usage.prompt_tokens == tokens and out.usage.generated_tokens == 0
    assert out.usage.flops == inference_flops(prm.flop_params, tokens)
    one_by_one = TokenClassificationPRM(prm.model, prm.tokenizer, batch_size=1).score(QUESTIONS, SOLUTIONS)
    for a, b in zip(out.step_scores, one_by_one.step_scores):
        assert a == pytest.approx(b, abs=1e-5)


def test_a_step_score_depends_only_on_the_prefix(prm_dir):
    prm = TokenClassificationPRM.from_pretrained(prm_dir)
    full = prm.score(QUESTIONS[:1], SOLUTIONS[:1]).step_scores[0]
    prefix = prm.score(QUESTIONS[:1], [SOLUTIONS[0][:2]]).step_scores[0]
    assert prefix == pytest.approx(full[:2], abs=1e-5)


def test_directory_without_a_token_classification_head(tiny_model_dir, tmp_path):
    with pytest.raises(ModelLoadError, match="expected a token-classification model with one label"):
        TokenClassificationPRM.from_pretrained(tiny_model_dir)
    with pytest.raises(ModelLoadError, match="does not exist"):
        TokenClassificationPRM.from_pretrained(tmp_path / "absent")


def test_mismatched_inputs(prm_dir):
    prm = TokenClassificationPRM.from_pretrained(prm_dir)
    with pytest.raises(ValueError, match="1 solutions for 2 questions"):
        prm.score(QUESTIONS, SOLUTIONS[:1])
