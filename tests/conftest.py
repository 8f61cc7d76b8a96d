"""Shared fixtures: a tiny randomly initialised model saved the Hugging Face way, and a small
rollout pool collected with it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ttc_runtime.models import TinyLMConfig, build_embedded_tokenizer, build_tiny_causal_lm


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
    """A 1-layer model whose next-token distribution ignores context: softmax of ``token_bias``
    (other tokens get 0). Used to make EOS or blank lines as likely as a test needs."""
    tokenizer = build_embedded_tokenizer()
    model = build_tiny_causal_lm(
        TinyLMConfig(hidden_size=16, num_layers=1, num_heads=1, intermediate_size=16), tokenizer
    )
    head = torch.nn.Linear(16, len(tokenizer), bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        for token, bias in token_bias.items():
            head.bias[tokenizer.convert_tokens_to_ids(token)] = bias
    model.lm_head = head
    return model, tokenizer


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
