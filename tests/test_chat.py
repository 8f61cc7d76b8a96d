"""The chat layouts of published PRMs (``ttc_runtime/scoring/chat.py``), on tiny models whose scores
are known by hand.

Each model is a random Llama or Qwen2 of the published model's shape with every attention output
and MLP down projection zeroed, so that the hidden state at a position is the normalised embedding
of its token. One token, the one at the read position, has the embedding e1 and no other token has
anything in that dimension; the two output rows that are compared differ only there, by 2 over the
norm's scale. A step's score is therefore sigmoid(2) where it is read and exactly 0.5 at any other
position: a score read one token off, or at a wrong token, shows.
"""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch
from pydantic import ValidationError
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForTokenClassification,
    dynamic_module_utils,
)

from ttc_runtime.compute import inference_flops
from ttc_runtime.models import CHAR_ALPHABET, ModelLoadError
from ttc_runtime.prompts import PromptConfig
from ttc_runtime.scoring import (
    ChatTurnFormat,
    ChatTurnPRM,
    OutcomeScorer,
    StepScorer,
    StepSeparatorFormat,
    StepSeparatorPRM,
    VerifierConfig,
    check_verifier,
    load_verifier,
)

GOOD = 1.0 / (1.0 + math.exp(-2.0))
"""P(good) at every read position of the tiny models: sigmoid(2)."""

QUESTIONS = ["What is 3+4*2?", "What is 9-1?", "Add 2 and 2."]
SOLUTIONS = [["4*2 = 8", "3+8 = 11", "The answer is 11."], ["9-1 = 8"], ["2+2 = 4", "So the answer is 4."]]

LLAMA3_SPECIALS = {
    "bos_token": "<|begin_of_text|>",
    "eos_token": "<|eot_id|>",
    "additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>"],
}
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{{ message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
QWEN_SPECIALS = {
    "eos_token": "<|im_end|>",
    "pad_token": "<|endoftext|>",
    "additional_special_tokens": ["<|im_start|>", "<extra_0>"],
}
QWEN_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def chat_tokenizer(specials: dict, template: str) -> PreTrainedTokenizerFast:
    """A character tokenizer (a blank line is one token, as in the byte-level BPEs of Llama 3 and
    Qwen) with a model family's special tokens and a chat template like the family's."""
    vocab = {token: i for i, token in enumerate(["<unk>", "\n\n", *sorted(set(CHAR_ALPHABET))])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"\n\n|[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", **specials)
    tokenizer.chat_template = template
    return tokenizer


def read_only_at(model, base, chosen: int, rows: torch.Tensor, good: int, bad: int) -> None:
    """Make ``softmax(rows[good], rows[bad])`` of the final hidden state sigmoid(2) at token
    ``chosen`` and 0.5 at every other token (see the module docstring)."""
    with torch.no_grad():
        for layer in base.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embedding = base.embed_tokens.weight
        embedding[:, 1] = 0.0
        embedding[chosen] = 0.0
        embedding[chosen, 1] = 1.0
        base.norm.weight.fill_(1.0)
        scale = 1.0 / math.sqrt(1.0 / model.config.hidden_size + model.config.rms_norm_eps)
        rows[bad] = rows[good]
        rows[good, 1] += 2.0 / scale


def chat_turn_model(tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    """A tiny random Llama whose "+" against "-" is sigmoid(2) after a blank line, 0.5 elsewhere."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=32,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    good, bad, blank = tokenizer.convert_tokens_to_ids(["+", "-", "\n\n"])
    read_only_at(model, model.model, blank, model.lm_head.weight, good, bad)
    return model.eval()


def step_separator_model(tokenizer: PreTrainedTokenizerFast, num_labels: int = 2) -> Qwen2ForTokenClassification:
    """A tiny random Qwen2 with a two-class head whose class 1 is sigmoid(2) at ``<extra_0>``, 0.5 elsewhere."""
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=32,
        num_labels=num_labels,
    )
    model = Qwen2ForTokenClassification(config)
    if num_labels == 2:
        read_only_at(model, model.model, tokenizer.convert_tokens_to_ids("<extra_0>"), model.score.weight, 1, 0)
        with torch.no_grad():
            model.score.bias[0] = model.score.bias[1]
    return model.eval()


@pytest.fixture(scope="module")
def llama3_tokenizer():
    return chat_tokenizer(LLAMA3_SPECIALS, LLAMA3_TEMPLATE)


@pytest.fixture(scope="module")
def qwen_tokenizer():
    return chat_tokenizer(QWEN_SPECIALS, QWEN_TEMPLATE)


@pytest.fixture(scope="module")
def chat_turn_dir(tmp_path_factory, llama3_tokenizer):
    path = tmp_path_factory.mktemp("chat-turn-prm")
    chat_turn_model(llama3_tokenizer).save_pretrained(path)
    llama3_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def step_separator_dir(tmp_path_factory, qwen_tokenizer):
    path = tmp_path_factory.mktemp("step-separator-prm")
    step_separator_model(qwen_tokenizer).save_pretrained(path)
    qwen_tokenizer.save_pretrained(path)
    return path


def assert_batched_equals_one_at_a_time(batched, alone) -> None:
    """Scores of a padded batch of solutions of different lengths are those of each alone."""
    assert batched.batch_size >= len(QUESTIONS) and alone.batch_size == 1
    together = batched.score(QUESTIONS, SOLUTIONS).step_scores
    for a, b in zip(together, alone.score(QUESTIONS, SOLUTIONS).step_scores):
        assert a == pytest.approx(b, abs=1e-6)


def test_chat_turn_reads_each_step_just_before_its_verdict(llama3_tokenizer):
    tokenizer = llama3_tokenizer
    scorer = ChatTurnPRM(chat_turn_model(tokenizer), tokenizer, batch_size=4)
    assert isinstance(scorer, StepScorer)
    ids, positions = scorer.encode(QUESTIONS[0], SOLUTIONS[0])
    text = tokenizer.decode(ids)
    assert text.startswith(
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is 3+4*2? 4*2 = 8<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n+<|eot_id|><|start_header_id|>user<|end_header_id|>"
    )
    assert text.count("<|start_header_id|>user") == len(positions) == 3
    plus, blank, end = tokenizer.convert_tokens_to_ids(["+", "\n\n", "<|eot_id|>"])
    assert all(ids[p] == blank and ids[p + 1] == plus and ids[p + 2] == end for p in positions)
    out = scorer.score(QUESTIONS, SOLUTIONS)
    assert out.step_scores == [pytest.approx([GOOD] * len(steps), abs=1e-6) for steps in SOLUTIONS]
    assert out.usage.prompt_tokens == sum(len(scorer.encode(q, s)[0]) for q, s in zip(QUESTIONS, SOLUTIONS))
    assert out.usage.flops == inference_flops(scorer.flop_params, out.usage.prompt_tokens)
    # The two head rows give exactly what the full head gives; one token off is 0.5.
    with torch.no_grad():
        logits = scorer.model(input_ids=torch.tensor([ids])).logits[0]
    full = torch.softmax(logits[:, [plus, tokenizer.convert_tokens_to_ids("-")]], dim=-1)[:, 0]
    assert full[positions].tolist() == pytest.approx([GOOD] * 3, abs=1e-6)
    assert full[[p + 1 for p in positions]].tolist() == pytest.approx([0.5] * 3, abs=1e-6)
    assert full[[p - 1 for p in positions]].tolist() == pytest.approx([0.5] * 3, abs=1e-6)
    assert_batched_equals_one_at_a_time(scorer, ChatTurnPRM(scorer.model, tokenizer, batch_size=1))


def test_chat_turn_first_turn_and_verdict_are_configurable(llama3_tokenizer):
    layout = ChatTurnFormat(first_turn="Problem: {question}\nStep: {step}", verdict="+")
    scorer = ChatTurnPRM(chat_turn_model(llama3_tokenizer), llama3_tokenizer, layout=layout)
    messages = scorer.conversation("Q {step}", ["a", "b"], "+")
    assert messages == [
        {"role": "user", "content": "Problem: Q {step}\nStep: a"},
        {"role": "assistant", "content": "+"},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": "+"},
    ]
    assert scorer.conversation("Q", [], "+") == [{"role": "user", "content": "Problem: Q\nStep: "}]
    assert scorer.score(["Q"], [[]]).step_scores == [[]]
    assert scorer.score(["Q"], [["a", "b"]]).step_scores[0] == pytest.approx([GOOD, GOOD], abs=1e-6)


def test_chat_turn_loads_as_configured(chat_turn_dir, step_separator_dir):
    scorer = load_verifier(VerifierConfig(kind="chat_turn", batch_size=2), chat_turn_dir, PromptConfig())
    assert isinstance(scorer, ChatTurnPRM) and scorer.prompt.template == "{question}"
    assert scorer.score(QUESTIONS, SOLUTIONS).step_scores[2] == pytest.approx([GOOD, GOOD], abs=1e-6)
    outcome = load_verifier(VerifierConfig(kind="chat_turn", outcome=True), chat_turn_dir, PromptConfig())
    assert isinstance(outcome, OutcomeScorer) and isinstance(outcome.scorer, ChatTurnPRM)
    with pytest.raises(ModelLoadError, match=r"holds \['Qwen2ForTokenClassification'\]; expected a causal LM"):
        check_verifier(VerifierConfig(kind="chat_turn"), step_separator_dir)


def test_chat_turn_rejects_verdicts_it_cannot_read(llama3_tokenizer):
    model = chat_turn_model(llama3_tokenizer)
    with pytest.raises(ValueError, match=r"good_token '\+\+' is 2 tokens .* set good_token_id"):
        ChatTurnPRM(model, llama3_tokenizer, layout=ChatTurnFormat(good_token="++"))
    with pytest.raises(ValueError, match=r"bad_token 'no' is 2 tokens .* set bad_token_id"):
        ChatTurnPRM(model, llama3_tokenizer, layout=ChatTurnFormat(bad_token="no"))
    plus = llama3_tokenizer.convert_tokens_to_ids("+")
    ChatTurnPRM(model, llama3_tokenizer, layout=ChatTurnFormat(good_token="++", good_token_id=plus))
    wrong = ChatTurnPRM(model, llama3_tokenizer, layout=ChatTurnFormat(verdict="-"))
    with pytest.raises(ValueError, match=r"step 1's verdict '-' begins with token \d+, not the good token"):
        wrong.encode("Q", ["a"])
    with pytest.raises(ValidationError, match="first_turn must contain '{step}' exactly once"):
        ChatTurnFormat(first_turn="{question}")
    with pytest.raises(ValueError, match="contains '\\\\x00'"):
        ChatTurnPRM(model, llama3_tokenizer).encode("Q\x00", ["a"])
    merging = chat_tokenizer(LLAMA3_SPECIALS, LLAMA3_TEMPLATE)
    merging.add_tokens(["\n\n+"])  # as a BPE that merged a blank line with the verdict would
    with pytest.raises(ValueError, match="step 1's verdict '\\+' does not start a token"):
        ChatTurnPRM(model, merging).encode("Q", ["a"])
    untemplated = chat_tokenizer(LLAMA3_SPECIALS, LLAMA3_TEMPLATE)
    untemplated.chat_template = None
    with pytest.raises(ValueError, match="has no chat template"):
        ChatTurnPRM(model, untemplated)


def test_step_separator_reads_each_step_at_its_separator(qwen_tokenizer):
    tokenizer = qwen_tokenizer
    scorer = StepSeparatorPRM(step_separator_model(tokenizer), tokenizer, batch_size=4)
    assert isinstance(scorer, StepScorer)
    ids, positions = scorer.encode(QUESTIONS[0], SOLUTIONS[0])
    assert tokenizer.decode(ids) == (
        "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
        "<|im_start|>user\nWhat is 3+4*2?<|im_end|>\n"
        "<|im_start|>assistant\n4*2 = 8<extra_0>3+8 = 11<extra_0>The answer is 11.<extra_0><|im_end|>\n"
    )
    separator = tokenizer.convert_tokens_to_ids("<extra_0>")
    assert len(positions) == 3 and all(ids[p] == separator for p in positions)
    out = scorer.score(QUESTIONS, SOLUTIONS)
    assert out.step_scores == [pytest.approx([GOOD] * len(steps), abs=1e-6) for steps in SOLUTIONS]
    assert out.usage.flops == inference_flops(scorer.flop_params, out.usage.prompt_tokens)
    row = torch.tensor([ids])
    with torch.no_grad():
        probabilities = scorer.probabilities(row, torch.ones_like(row), torch.tensor([0]))[0]
    assert probabilities[positions].tolist() == pytest.approx([GOOD] * 3, abs=1e-6)
    others = [p for p in range(len(ids)) if p not in positions]
    assert probabilities[others].tolist() == pytest.approx([0.5] * len(others), abs=1e-6)
    assert_batched_equals_one_at_a_time(scorer, StepSeparatorPRM(scorer.model, tokenizer, batch_size=1))


def test_step_separator_layout_is_configurable(qwen_tokenizer):
    model = step_separator_model(qwen_tokenizer)
    layout = StepSeparatorFormat(system_prompt=None, good_class=0)
    scorer = StepSeparatorPRM(model, qwen_tokenizer, layout=layout)
    assert qwen_tokenizer.decode(scorer.encode("Q", ["a"])[0]).startswith(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nQ<|im_end|>"
    )
    assert scorer.score(["Q"], [["a", "b"]]).step_scores[0] == pytest.approx([1.0 - GOOD] * 2, abs=1e-6)
    assert scorer.score(["Q"], [[]]).step_scores == [[]]
    with pytest.raises(ValueError, match="separator '<extra_1>' is 9 tokens for this tokenizer; expected one"):
        StepSeparatorPRM(model, qwen_tokenizer, layout=StepSeparatorFormat(separator="<extra_1>"))
    with pytest.raises(ValueError, match="holds 2 separators '<extra_0>' for 1 steps"):
        StepSeparatorPRM(model, qwen_tokenizer).encode("Q<extra_0>", ["a"])
    three = StepSeparatorPRM(step_separator_model(qwen_tokenizer, num_labels=3), qwen_tokenizer)
    with pytest.raises(ValueError, match=r"outputs of shape \(1, \d+, 3\); expected \(batch, length, 2\)"):
        three.score(["Q"], [["a"]])


def test_step_separator_loads_a_two_label_token_classifier(step_separator_dir, chat_turn_dir, tmp_path, qwen_tokenizer):
    scorer = load_verifier(VerifierConfig(kind="step_separator"), step_separator_dir, PromptConfig())
    assert isinstance(scorer, StepSeparatorPRM) and scorer.prompt.template == "{question}"
    assert scorer.score(QUESTIONS, SOLUTIONS).step_scores[0] == pytest.approx([GOOD] * 3, abs=1e-6)
    with pytest.raises(ModelLoadError, match=r"holds \['LlamaForCausalLM'\]; expected a token-classification model"):
        check_verifier(VerifierConfig(kind="step_separator"), chat_turn_dir)
    step_separator_model(qwen_tokenizer, num_labels=1).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match=r"holds \['Qwen2ForTokenClassification'\] with 1 labels; expected a two"):
        StepSeparatorPRM.from_pretrained(tmp_path)


CUSTOM_CODE = '''
from transformers import Qwen2ForTokenClassification


class TinyProcessRewardModel(Qwen2ForTokenClassification):
    """A two-class head that answers with a plain tuple, as a custom-code PRM may."""

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        return (super().forward(input_ids=input_ids, attention_mask=attention_mask).logits,)
'''


def test_step_separator_runs_a_custom_code_prm_only_when_trusted(step_separator_dir, tmp_path, monkeypatch):
    path = tmp_path / "custom-prm"
    path.mkdir()
    for file in step_separator_dir.iterdir():
        (path / file.name).write_bytes(file.read_bytes())
    (path / "modeling_tiny_prm.py").write_text(CUSTOM_CODE)
    config = json.loads((path / "config.json").read_text())
    config["architectures"] = ["TinyProcessRewardModel"]
    config["auto_map"] = {"AutoModel": "modeling_tiny_prm.TinyProcessRewardModel"}
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=r"set verifier.step_separator.trust_remote_code: true to run it"):
        check_verifier(VerifierConfig(kind="step_separator"), path)
    # The directory's code is copied into a modules cache of this test's own.
    monkeypatch.setattr(dynamic_module_utils, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    trusted = VerifierConfig(kind="step_separator", step_separator=StepSeparatorFormat(trust_remote_code=True))
    check_verifier(trusted, path)
    scorer = load_verifier(trusted, path, PromptConfig())
    assert type(scorer.model).__name__ == "TinyProcessRewardModel"
    assert scorer.score(QUESTIONS, SOLUTIONS).step_scores == [
        pytest.approx([GOOD] * len(steps), abs=1e-6) for steps in SOLUTIONS
    ]
