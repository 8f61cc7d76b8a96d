"""Hugging Face native tokenizer and models for the embedded default, and loading of any model.

The embedded default builds a tokenizer with ``tokenizers`` (one token per number up to 999, one per
other character) and a tiny Llama-style
causal LM from scratch; both are saved with ``save_pretrained``. Loading goes through the ``Auto``
classes only, so a real model (a Qwen2.5-Math proposer, say) is a path away.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch
from pydantic import Field
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from .config import StrictModel

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
CHAR_ALPHABET = "".join(sorted(set(string.printable) - set("\t\r\x0b\x0c")))
"""Printable ASCII plus newline: what the synthetic task and hand-written questions use."""


class ModelLoadError(FileNotFoundError):
    """A model or tokenizer directory that is missing or incomplete."""


def build_embedded_tokenizer(alphabet: str = CHAR_ALPHABET) -> PreTrainedTokenizerFast:
    """The embedded tokenizer: numbers of up to three digits are one token, everything else a character.

    A longer number splits into groups of three digits from the left. Whole-number tokens turn
    each arithmetic step into a lookup a tiny model can learn in minutes, and make larger operands
    harder (more distinct facts), which is the difficulty lever of the synthetic task. Characters
    outside ``alphabet`` map to ``<unk>``.
    """
    specials = list(SPECIAL_TOKENS.values())
    numbers = [str(i) for i in range(10)] + [f"{i:02d}" for i in range(100)] + [f"{i:03d}" for i in range(1000)]
    numbers += [str(i) for i in range(10, 1000)]
    tokens = specials + sorted(set(alphabet)) + numbers
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"\d{1,3}|[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=backend, **SPECIAL_TOKENS)


class TinyLMConfig(StrictModel):
    """Shape of the tiny Llama-style model trained from scratch (about 0.9M parameters by default)."""

    hidden_size: int = Field(128, ge=8)
    num_layers: int = Field(4, ge=1)
    num_heads: int = Field(4, ge=1)
    intermediate_size: int = Field(384, ge=8)
    max_positions: int = Field(512, ge=16, description="Longest sequence in tokens (prompt + solution).")


def tiny_llama_config(config: TinyLMConfig, tokenizer: PreTrainedTokenizerBase) -> LlamaConfig:
    """The Llama configuration of the tiny model for ``tokenizer``'s vocabulary."""
    if config.hidden_size % config.num_heads:
        raise ValueError(f"hidden_size {config.hidden_size} is not divisible by num_heads {config.num_heads}")
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        intermediate_size=config.intermediate_size,
        max_position_embeddings=config.max_positions,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )


def build_tiny_causal_lm(config: TinyLMConfig, tokenizer: PreTrainedTokenizerBase, seed: int = 0) -> LlamaForCausalLM:
    """A freshly initialised Llama-style causal LM sized by ``config`` for ``tokenizer``'s vocabulary."""
    torch.manual_seed(seed)
    return LlamaForCausalLM(tiny_llama_config(config, tokenizer))


def torch_device(name: str) -> torch.device:
    """``name`` as a torch device, or a one-line ``ValueError`` (torch's own error for a misspelt
    name lists every device type it knows)."""
    try:
        return torch.device(name)
    except RuntimeError:
        raise ValueError(f"device {name!r} is not a torch device (cpu, cuda, cuda:N, mps, ...)") from None


def check_device(name: str) -> None:
    """Raise a one-line ``ValueError`` unless ``name`` is a torch device this machine has (for CUDA,
    a GPU of that index), before any model loads: loading would fail deep inside torch."""
    device = torch_device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise ValueError(f"device {name!r}: this machine has no CUDA device")
        if device.index is not None and device.index >= count:
            raise ValueError(f"device {name!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")


def require_dir(path: str | Path, what: str, saved_model: bool = False) -> Path:
    """``path`` as a ``Path`` if it is a directory (holding a ``config.json`` when ``saved_model``);
    otherwise a ``ModelLoadError`` that names ``what`` and the path."""
    path = Path(path)
    if not path.is_dir():
        raise ModelLoadError(f"{what} directory {str(path)!r} does not exist")
    if saved_model and not (path / "config.json").is_file():
        raise ModelLoadError(f"{what} directory {str(path)!r} has no config.json (not a saved model)")
    return path


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """Load a tokenizer saved with ``save_pretrained``; a pad token falls back to EOS."""
    tokenizer = AutoTokenizer.from_pretrained(str(require_dir(path, "tokenizer")))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(path: str | Path, dtype: torch.dtype | str = "auto", device: str | None = None) -> PreTrainedModel:
    """Load any Hugging Face causal LM from a local directory, in eval mode."""
    model = AutoModelForCausalLM.from_pretrained(str(require_dir(path, "model", saved_model=True)), dtype=dtype)
    if device is not None:
        model.to(device)
    return model.eval()


def flop_params(model: torch.nn.Module, trained_only: bool = False) -> int:
    """Parameters that cost FLOPs per token (of them, with ``trained_only``, those that train): all
    but embedding lookups (the input embedding, the margin PRM's token evidence).

    An embedding lookup is a gather, not a matrix product; when input and output embeddings are
    tied the shared matrix still costs FLOPs as the output head, so it stays counted.
    """
    get_output = getattr(model, "get_output_embeddings", None)
    head = get_output() if get_output else None
    tied = {id(head.weight)} if head is not None else set()
    lookups = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding) and id(m.weight) not in tied}
    return sum(p.numel() for p in model.parameters() if id(p) not in lookups and (p.requires_grad or not trained_only))
