"""Shared fixtures: a tiny randomly initialised model saved the Hugging Face way, and a small
rollout pool collected with it."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM

from ttc_runtime.models import TinyLMConfig, build_embedded_tokenizer, build_tiny_causal_lm, tiny_llama_config


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """Directory of a freshly initialised 2-layer Llama and the embedded tokenizer."""
    path = tmp_path_factory.mktemp("tiny-model")
    tokenizer = build_embedded_tokenizer()
    model = build_tiny_causal_lm(
        TinyLMConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=256), tokenizer
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def biased_model(token_bias: dict[str, float]):
    """A plain 1-layer Llama whose next-token logits ignore context: exactly ``token_bias`` (other
    tokens 0). Used to make EOS or blank lines as likely as a test needs.

    Every embedding is the unit vector e0 and the attention and MLP outputs are zeroed, so the
    final norm always sees e0 and emits ``scale * e0``; the untied head's row for a token holds its
    bias / scale in column 0. Nothing beyond a standard ``LlamaForCausalLM`` is needed, so the model
    saves and loads anywhere (vLLM included)."""
    tokenizer = build_embedded_tokenizer()
    config = tiny_llama_config(TinyLMConfig(hidden_size=32, num_layers=1, num_heads=1, intermediate_size=16), tokenizer)
    config.tie_word_embeddings = False
    model = LlamaForCausalLM(config)
    scale = 1.0 / math.sqrt(1.0 / config.hidden_size + config.rms_norm_eps)
    with torch.no_grad():
        model.model.embed_tokens.weight.zero_()
        model.model.embed_tokens.weight[:, 0] = 1.0
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.lm_head.weight.zero_()
        for token, bias in token_bias.items():
            model.lm_head.weight[tokenizer.convert_tokens_to_ids(token), 0] = bias / scale
    return model.eval(), tokenizer


def collect_pool(model_dir, pool_dir) -> subprocess.Popen:
    """Start ``tests/pool_worker.py`` collecting a small pool in a child process."""
    worker = Path(__file__).with_name("pool_worker.py")
    env = {**os.environ, "PYTHONPATH": str(worker.parent.parent)}
    return subprocess.Popen(
        [sys.executable, str(worker), str(model_dir), str(pool_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.fixture(scope="session")
def full_pool(tiny_model_dir, tmp_path_factory):
    """A small pool of the tiny model collected without interruption, in a child process."""
    directory = tmp_path_factory.mktemp("pool-full") / "pool"
    process = collect_pool(tiny_model_dir, directory)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err.decode()
    return directory
