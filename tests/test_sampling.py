import pytest
import torch

from ttc_runtime.generation.sampling import derive_seed, sample_tokens, top_p_filter, uniform_noise


def test_derive_seed_is_deterministic_and_spread():
    assert derive_seed(1, 2) == derive_seed(1, 2)
    seeds = {derive_seed(0, i) for i in range(1000)} | {derive_seed(1, i) for i in range(1000)}
    assert len(seeds) == 2000
    assert all(0 <= s < 2**63 for s in seeds)


def test_noise_is_a_pure_function_of_seed_position_and_token():
    seeds = torch.tensor([derive_seed(i) for i in range(4)])
    pos = torch.tensor([0, 1, 2, 3])
    full = uniform_noise(seeds, pos, 50)
    assert full.shape == (4, 50)
    assert torch.equal(uniform_noise(seeds[2:3], pos[2:3], 50), full[2:3])
    assert ((full > 0) & (full < 1)).all()
    assert not torch.equal(full[0], full[1])


def test_noise_is_uniform():
    seeds = torch.tensor([derive_seed(7, i) for i in range(2000)])
    u = uniform_noise(seeds, torch.zeros(2000, dtype=torch.int64), 100).flatten()
    assert abs(u.mean().item() - 0.5) < 0.005
    counts = torch.histc(u, bins=10, min=0, max=1)
    assert (counts / u.numel() - 0.1).abs().max().item() < 0.005


def test_gumbel_sampling_matches_softmax():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    rows = 20000
    logits = probs.log().expand(rows, 4)
    seeds = torch.tensor([derive_seed(3, i) for i in range(rows)])
    tokens = sample_tokens(logits, seeds, torch.zeros(rows, dtype=torch.int64), temperature=1.0, top_p=1.0)
    freq = torch.bincount(tokens, minlength=4).float() / rows
    assert torch.allclose(freq, probs, atol=0.015)


def test_temperature_zero_is_argmax_and_low_temperature_sharpens():
    logits = torch.tensor([[0.0, 1.0, 0.5]] * 4000)
    seeds = torch.tensor([derive_seed(i) for i in range(4000)])
    zeros = torch.zeros(4000, dtype=torch.int64)
    assert (sample_tokens(logits, seeds, zeros, 0.0, 1.0) == 1).all()
    hot = (sample_tokens(logits, seeds, zeros, 1.0, 1.0) == 1).float().mean()
    cold = (sample_tokens(logits, seeds, zeros, 0.3, 1.0) == 1).float().mean()
    assert cold > hot


@pytest.mark.parametrize(("top_p", "kept"), [(0.4, {0}), (0.6, {0, 1}), (0.85, {0, 1, 2}), (1.0, {0, 1, 2, 3})])
def test_top_p_keeps_the_smallest_nucleus(top_p, kept):
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    filtered = top_p_filter(logits, top_p)
    assert {i for i in range(4) if filtered[0, i] > float("-inf")} == kept
