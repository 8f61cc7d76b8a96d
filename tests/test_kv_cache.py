"""The growing key-value cache: the same tokens as transformers' own cache, fewer copies."""

import pytest
import torch
from transformers import DynamicCache, MistralConfig
from transformers.cache_utils import DynamicLayer

import ttc_runtime.generation.hf as hf
from ttc_runtime.generation.base import SamplingParams
from ttc_runtime.generation.kv_cache import GrowingLayer, growing_cache
from ttc_runtime.models import TinyLMConfig, build_embedded_tokenizer, build_tiny_causal_lm

PROMPTS = ["Evaluate left to right: 3+4\n\n", "Evaluate left to right: 12*3-5+1\n\n", "7-2\n\n"]


@pytest.fixture(scope="module")
def generator():
    tokenizer = build_embedded_tokenizer()
    config = TinyLMConfig(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128, max_positions=256)
    return hf.TransformersGenerator(build_tiny_causal_lm(config, tokenizer, seed=5), tokenizer, max_batch_rows=64)


def test_generation_matches_transformers_cache(generator, monkeypatch):
    """Rows stop at their fourth ``+``, at different steps (rows leave the batch:
    ``batch_select_indices``), prompts of different lengths share a call (left padding), samples
    share their prompt's cache (``batch_repeat_interleave``), and the longest rows outgrow the first
    buffer (``MIN_SPARE`` positions past the prompt at least): every path of the layer, against
    ``DynamicCache`` token for token."""
    params = SamplingParams(temperature=1.0, max_new_tokens=120, stop="+", stop_count=4, logprobs=True)
    ours = generator.generate(PROMPTS, n=4, params=params, seed=11)
    monkeypatch.setattr(hf, "growing_cache", lambda config: DynamicCache())
    theirs = generator.generate(PROMPTS, n=4, params=params, seed=11)
    lengths = {len(c.token_ids) for row in ours.completions for c in row}
    assert len(lengths) > 1, "every row ran to the same length: the test would not exercise row removal"
    longest_prompt = max(len(generator.tokenizer(p)["input_ids"]) for p in PROMPTS)
    assert max(lengths) > max(GrowingLayer.MIN_SPARE, (longest_prompt + 1) // 2) + 1
    for mine, reference in zip(ours.completions, theirs.completions):
        assert [c.token_ids for c in mine] == [c.token_ids for c in reference]
        for a, b in zip(mine, reference):
            assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)


def test_layer_keeps_the_prompt_as_it_comes_and_grows_in_place():
    """The prompt's states are stored without a copy; the first decoded position moves them into a
    buffer with spare room, which later positions fill in place until it is full."""
    layer = GrowingLayer()
    layer.MIN_SPARE = 2
    keys = torch.randn(2, 1, 3, 4)
    layer.update(keys, keys.clone())
    assert layer.keys is keys
    step = torch.randn(2, 1, 1, 4)
    layer.update(step, step.clone())  # 4 positions: a buffer of 4 + max(2, 4 // 2) = 6
    buffer = layer.keys.untyped_storage().data_ptr()
    for _ in range(2):
        step = torch.randn(2, 1, 1, 4)
        out_keys, _ = layer.update(step, step.clone())
        assert torch.equal(out_keys[:, :, -1:], step)
    assert layer.get_seq_length() == 6 and layer.keys.untyped_storage().data_ptr() == buffer
    layer.update(torch.randn(2, 1, 1, 4), torch.randn(2, 1, 1, 4))
    assert layer.get_seq_length() == 7 and layer.keys.untyped_storage().data_ptr() != buffer
    assert torch.equal(layer.keys[:, :, :3], keys)
    layer.batch_select_indices(torch.tensor([1]))
    assert layer.keys.shape == (1, 1, 7, 4) and torch.equal(layer.keys[:, :, :3], keys[1:])
    layer.crop(-2)
    assert layer.get_seq_length() == 5


def test_sliding_window_models_keep_transformers_cache():
    """Only plain full-attention layers are replaced: a sliding-window model keeps its own layers."""
    full = growing_cache(MistralConfig(num_hidden_layers=2, sliding_window=None))
    assert [type(layer) for layer in full.layers] == [GrowingLayer, GrowingLayer]
    sliding = growing_cache(MistralConfig(num_hidden_layers=2, sliding_window=16))
    assert all(type(layer) is not GrowingLayer for layer in sliding.layers)
    assert all(type(layer) is not DynamicLayer for layer in sliding.layers)
