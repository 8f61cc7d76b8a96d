import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ttc_runtime.models import CHAR_ALPHABET, TinyLMConfig, build_embedded_tokenizer, build_tiny_causal_lm, flop_params

TEXT = "Evaluate left to right: 12+7*3-5\n\n19*3-5\n\n57-5\n\n\\boxed{52}"


def test_numbers_up_to_999_are_one_token_everything_else_a_character():
    tokenizer = build_embedded_tokenizer()
    pieces = [tokenizer.decode([i]) for i in tokenizer("12+7*345-1234 x")["input_ids"]]
    assert pieces == ["12", "+", "7", "*", "345", "-", "123", "4", " ", "x"]


def test_tokenizer_round_trip(tmp_path):
    tokenizer = build_embedded_tokenizer()
    ids = tokenizer(TEXT)["input_ids"]
    assert tokenizer.decode(ids) == TEXT
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded(TEXT)["input_ids"] == ids
    assert loaded.decode(ids) == TEXT
    assert loaded.eos_token == "</s>" and loaded.pad_token == "<pad>"
    # specials, characters (digits included), then "00".."99" and "000".."999"
    assert len(loaded) == len(tokenizer) == 4 + len(set(CHAR_ALPHABET)) + 100 + 1000


def test_unknown_characters_map_to_unk():
    tokenizer = build_embedded_tokenizer()
    assert tokenizer("é")["input_ids"] == [tokenizer.unk_token_id]


def test_model_round_trip_gives_identical_outputs(tmp_path):
    tokenizer = build_embedded_tokenizer()
    model = build_tiny_causal_lm(
        TinyLMConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64), tokenizer
    )
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    ids = torch.tensor([tokenizer(TEXT)["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model.eval()(ids).logits, loaded.eval()(ids).logits)


def test_same_seed_same_initialisation():
    tokenizer = build_embedded_tokenizer()
    a = build_tiny_causal_lm(TinyLMConfig(), tokenizer, seed=3)
    b = build_tiny_causal_lm(TinyLMConfig(), tokenizer, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_flop_params_counts_a_tied_embedding_once():
    tokenizer = build_embedded_tokenizer()
    model = build_tiny_causal_lm(TinyLMConfig(), tokenizer)
    assert model.get_input_embeddings().weight is model.get_output_embeddings().weight
    assert flop_params(model) == sum(p.numel() for p in model.parameters())
    h, i, layers, vocab = 128, 384, 4, len(tokenizer)
    per_layer = 4 * h * h + 3 * h * i + 2 * h  # q, k, v, o; gate, up, down; two RMSNorms
    assert flop_params(model) == layers * per_layer + vocab * h + h  # + tied embedding/head, final norm
