"""Reproducible token sampling with per-row seeds.

Each batch row carries its own 63-bit seed. The random number for row ``b``, decoding position
``t`` and vocabulary entry ``v`` is a counter-based hash of ``(seed_b, t, v)`` (SplitMix64's
finaliser), and a token is drawn by the Gumbel-max trick: ``argmax(logits / T + Gumbel noise)``,
which samples exactly from ``softmax(logits / T)``. A row's samples therefore depend only on its
seed and its own logits, never on which other rows share the batch, how the batch was padded, or
whether finished rows were dropped: a fast path and a slow path give the same tokens.
"""

from __future__ import annotations

import torch

_MASK64 = (1 << 64) - 1


def _signed(value: int) -> int:
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


_GOLDEN = _signed(0x9E3779B97F4A7C15)
_MIX1 = _signed(0xBF58476D1CE4E5B9)
_MIX2 = _signed(0x94D049BB133111EB)


def _splitmix_int(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (e.g. a call seed, a prompt index, a sample index)."""
    x = 0
    for part in parts:
        x = _splitmix_int(x ^ (part & _MASK64))
    return x >> 1


def _shr(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's ``>>`` is arithmetic)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def _splitmix(x: torch.Tensor) -> torch.Tensor:
    # int64 arithmetic wraps modulo 2**64, which is what the hash needs.
    x = x + _GOLDEN
    x = (x ^ _shr(x, 30)) * _MIX1
    x = (x ^ _shr(x, 27)) * _MIX2
    return x ^ _shr(x, 31)


def uniform_noise(seeds: torch.Tensor, position: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Uniform numbers in (0, 1), shape (B, V), a pure function of (seed_b, position_b, v).

    ``seeds`` and ``position`` are int64 of shape (B,).
    """
    vocab = torch.arange(vocab_size, device=seeds.device, dtype=torch.int64)
    row = _splitmix(seeds ^ _splitmix(position))  # (B,)
    bits = _splitmix(row[:, None] + vocab[None, :] * _GOLDEN)  # (B, V)
    # 24 high bits -> float32 in (0, 1) without reaching either end.
    return (_shr(bits, 40).to(torch.float32) + 0.5) / float(1 << 24)


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Set to -inf every token outside the smallest set whose probability reaches ``top_p``."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    before = torch.cumsum(probs, dim=-1) - probs  # mass of strictly better tokens
    remove_sorted = before >= top_p  # the best token always stays
    remove = torch.zeros_like(remove_sorted).scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


def sample_tokens(
    logits: torch.Tensor, seeds: torch.Tensor, position: torch.Tensor, temperature: float, top_p: float
) -> torch.Tensor:
    """One token per row from ``logits`` (B, V); greedy when ``temperature`` is 0."""
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = top_p_filter(logits / temperature, top_p)
    gumbel = -torch.log(-torch.log(uniform_noise(seeds, position, logits.shape[-1])))
    return (logits + gumbel).argmax(dim=-1)
