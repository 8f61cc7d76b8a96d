from ttc_runtime.compute import Compute, Usage, inference_flops, training_flops


def test_paper_flop_rules():
    assert inference_flops(1_000, 7) == 14_000
    assert training_flops(1_000, 7) == 42_000


def test_usage_inference_counts_prompt_and_generated_tokens():
    usage = Usage.inference(params=10, prompt_tokens=3, generated_tokens=4)
    assert (usage.prompt_tokens, usage.generated_tokens, usage.flops, usage.tokens) == (3, 4, 140, 7)


def test_sums_are_exact_at_scale():
    big = Usage.inference(params=7_000_000_000, prompt_tokens=10**9, generated_tokens=3 * 10**9 + 1)
    total = Usage()
    for _ in range(1000):
        total = total + big
    assert total.flops == 1000 * 2 * 7_000_000_000 * (4 * 10**9 + 1)
    assert total.generated_tokens == 1000 * (3 * 10**9 + 1)


def test_compute_keeps_roles_apart_and_adds_fieldwise():
    a = Compute(proposer=Usage(1, 2, 30), verifier=Usage(4, 0, 40), generations=2)
    b = Compute(proposer=Usage(10, 20, 300), generations=1)
    total = a + b
    assert total.proposer == Usage(11, 22, 330)
    assert total.verifier == Usage(4, 0, 40)
    assert total.generations == 3
    assert total.flops == 370
    assert total.to_dict() == {
        "proposer_prompt_tokens": 11,
        "proposer_generated_tokens": 22,
        "proposer_flops": 330,
        "verifier_prompt_tokens": 4,
        "verifier_generated_tokens": 0,
        "verifier_flops": 40,
        "generations": 3,
        "flops": 370,
    }
