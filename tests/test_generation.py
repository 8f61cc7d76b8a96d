"""Generator conformance: every back end behind the ``Generator`` protocol passes the same tests.

The transformers back end always runs; the vLLM back end runs wherever ``vllm`` can be imported
(a GPU machine with the ``vllm`` extra, or vLLM's CPU build in its own environment) and is
skipped elsewhere with the reason shown. Models are saved to directories, as a user's would be,
so both back ends load the same weights.
"""

import math

import pytest
import torch

from ttc_runtime.compute import inference_flops
from ttc_runtime.generation.base import Generator, PromptTooLong, SamplingParams, greedy_continue, sample_next_steps
from ttc_runtime.generation.engines import GenerationConfig, load_generator
from ttc_runtime.generation.hf import TransformersGenerator
from ttc_runtime.models import (
    ModelLoadError,
    TinyLMConfig,
    build_embedded_tokenizer,
    build_tiny_causal_lm,
    load_causal_lm,
)
from ttc_runtime.tasks import STEP_SEPARATOR

from .conftest import biased_model

PROMPTS = ["Evaluate left to right: 3+4\n\n", "Evaluate left to right: 12*3-5+1\n\n", "7-2\n\n"]
BACKENDS = ["transformers", "vllm"]
VLLM_KV_CACHE_GB = 0.25
"""KV cache of each test engine: fixed, since several engines live in one process (vLLM would
otherwise size each from what the process already holds). The engines run in float32, as the
transformers reference does (vLLM's ``auto`` runs float32 checkpoints in half precision)."""


def open_generator(backend: str, model_dir) -> Generator:
    """The ``backend``'s generator over ``model_dir``; the vLLM one only where vLLM imports."""
    if backend == "vllm":
        pytest.importorskip("vllm", reason="vLLM is not installed here (the `vllm` extra, for GPU machines)")
        config = GenerationConfig(backend="vllm", kv_cache_gb=VLLM_KV_CACHE_GB, enforce_eager=True, dtype="float32")
        return load_generator(model_dir, config)
    return load_generator(model_dir, GenerationConfig(max_batch_rows=64))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A randomly initialised 2-layer Llama with heads of 32 (a size every vLLM attention back end
    supports) and the embedded tokenizer."""
    path = tmp_path_factory.mktemp("conformance-model")
    tokenizer = build_embedded_tokenizer()
    config = TinyLMConfig(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128, max_positions=256)
    build_tiny_causal_lm(config, tokenizer, seed=3).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def saved_biased_model(tmp_path_factory, token_bias: dict[str, float]):
    path = tmp_path_factory.mktemp("biased-model")
    model, tokenizer = biased_model(token_bias)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module", params=BACKENDS)
def generator(request, model_dir):
    return open_generator(request.param, model_dir)


@pytest.fixture(scope="module", params=BACKENDS)
def newline_generator(request, tmp_path_factory):
    """Emits '\n' about half the time, so steps end often."""
    return open_generator(request.param, saved_biased_model(tmp_path_factory, {"\n": 7.0, "1": 7.0, "</s>": 3.0}))


@pytest.fixture(scope="module", params=BACKENDS)
def eos_generator(request, tmp_path_factory):
    """Ends every sample at once."""
    return open_generator(request.param, saved_biased_model(tmp_path_factory, {"</s>": 10.0}))


def test_is_a_generator(generator):
    assert isinstance(generator, Generator)


def test_greedy_matches_transformers_generate(generator, model_dir):
    out = generator.generate(PROMPTS, n=1, params=SamplingParams(temperature=0.0, max_new_tokens=24))
    reference_model = load_causal_lm(model_dir)
    for prompt, (completion,) in zip(PROMPTS, out.completions):
        ids = generator.tokenizer(prompt, return_tensors="pt")["input_ids"]
        reference = reference_model.generate(
            ids, max_new_tokens=24, do_sample=False, pad_token_id=generator.tokenizer.pad_token_id
        )
        assert list(completion.token_ids) == reference[0, ids.shape[1] :].tolist()[: completion.num_tokens]


def test_same_seed_same_samples_other_seed_other_samples(generator):
    params = SamplingParams(temperature=1.0, max_new_tokens=20)
    a = generator.generate(PROMPTS, n=3, params=params, seed=5)
    b = generator.generate(PROMPTS, n=3, params=params, seed=5)
    c = generator.generate(PROMPTS, n=3, params=params, seed=6)
    assert a == b
    assert a.completions != c.completions


def test_samples_do_not_depend_on_batch_composition(generator):
    params = SamplingParams(temperature=1.0, max_new_tokens=20)
    together = generator.generate(PROMPTS, n=4, params=params, seed=[11, 22, 33])
    alone = generator.generate(PROMPTS[1:2], n=4, params=params, seed=[22])
    assert together.completions[1] == alone.completions[0]


def test_chunking_does_not_change_samples(model_dir):
    params = SamplingParams(temperature=1.0, max_new_tokens=20)
    wide = TransformersGenerator.from_pretrained(model_dir, max_batch_rows=64)
    narrow = TransformersGenerator.from_pretrained(model_dir, max_batch_rows=3)
    seeds = [11, 22, 33]
    assert (
        narrow.generate(PROMPTS, 4, params, seeds).completions == wide.generate(PROMPTS, 4, params, seeds).completions
    )


def test_n_samples_differ_from_each_other(generator):
    out = generator.generate(PROMPTS[:1], n=8, params=SamplingParams(temperature=1.0, max_new_tokens=16))
    assert len(out.completions[0]) == 8
    assert len({c.token_ids for c in out.completions[0]}) > 1


def test_token_counts_are_exact(generator):
    out = generator.generate(PROMPTS, n=5, params=SamplingParams(temperature=1.0, max_new_tokens=12), seed=1)
    prompt_tokens = sum(len(generator.tokenizer(p)["input_ids"]) for p in PROMPTS)
    generated = 0
    for completions in out.completions:
        for c in completions:
            assert c.num_tokens == len(c.token_ids) <= 12
            ended = c.finish_reason in ("length", "stop") or c.token_ids[-1] == generator.tokenizer.eos_token_id
            assert ended
            generated += c.num_tokens
    assert out.usage.prompt_tokens == prompt_tokens  # each prompt encoded once for its 5 samples
    assert out.usage.generated_tokens == generated
    assert out.usage.flops == inference_flops(generator.flop_params, prompt_tokens + generated)
    assert [u.prompt_tokens for u in out.usages] == [len(generator.tokenizer(p)["input_ids"]) for p in PROMPTS]


def test_flop_params_are_the_models(generator, model_dir):
    from ttc_runtime.models import flop_params

    assert generator.flop_params == flop_params(load_causal_lm(model_dir))


def test_length_limit(generator):
    out = generator.generate(PROMPTS[:1], n=2, params=SamplingParams(temperature=1.0, max_new_tokens=3))
    for c in out.completions[0]:
        assert c.num_tokens <= 3


def test_logprobs_are_the_untempered_models(generator, model_dir):
    params = SamplingParams(temperature=1.5, max_new_tokens=10, logprobs=True)
    out = generator.generate(PROMPTS[:2], n=2, params=params, seed=4)
    reference = load_causal_lm(model_dir)
    for prompt, completions in zip(PROMPTS, out.completions):
        prompt_ids = generator.tokenizer(prompt)["input_ids"]
        for c in completions:
            assert len(c.logprobs) == len(c.top_logprobs) == c.num_tokens
            with torch.no_grad():
                logits = reference(input_ids=torch.tensor([prompt_ids + list(c.token_ids)])).logits[0].float()
            log_probs = torch.log_softmax(logits[len(prompt_ids) - 1 : -1], dim=-1)
            chosen = log_probs.gather(1, torch.tensor(c.token_ids)[:, None])[:, 0]
            assert list(c.logprobs) == pytest.approx(chosen.tolist(), abs=1e-4)
            assert list(c.top_logprobs) == pytest.approx(log_probs.max(dim=-1).values.tolist(), abs=1e-4)


def test_stop_string_ends_a_step_and_is_cut(newline_generator):
    generator = newline_generator
    out = sample_next_steps(generator, PROMPTS, SamplingParams(temperature=1.0, max_new_tokens=60), seed=3, n=6)
    stopped = [c for cs in out.completions for c in cs if c.finish_reason == "stop"]
    assert len(stopped) > 6
    for c in stopped:
        full = generator.tokenizer.decode(list(c.token_ids), skip_special_tokens=True)
        assert full.endswith(STEP_SEPARATOR) and STEP_SEPARATOR not in full[: -len(STEP_SEPARATOR)]
        assert c.text == full[: -len(STEP_SEPARATOR)]


def test_stop_count_runs_k_steps(newline_generator):
    generator = newline_generator
    one = generator.generate(
        PROMPTS, n=4, params=SamplingParams(temperature=1.0, max_new_tokens=80, stop=STEP_SEPARATOR), seed=9
    )
    two = generator.generate(
        PROMPTS,
        n=4,
        params=SamplingParams(temperature=1.0, max_new_tokens=80, stop=STEP_SEPARATOR, stop_count=2),
        seed=9,
    )
    two_step = 0
    for row_one, row_two in zip(one.completions, two.completions):
        for a, b in zip(row_one, row_two):
            # Same seed: the two-step sample starts with the one-step sample.
            assert b.token_ids[: a.num_tokens] == a.token_ids
            if a.finish_reason == "stop" and b.finish_reason == "stop":
                assert b.text.startswith(a.text + STEP_SEPARATOR)
                full = generator.tokenizer.decode(list(b.token_ids), skip_special_tokens=True)
                assert full.count(STEP_SEPARATOR) == 2 and full.endswith(STEP_SEPARATOR)
                two_step += 1
    assert two_step > 3


def test_eos_ends_a_sample(eos_generator):
    out = eos_generator.generate(["1+1"], n=2, params=SamplingParams(temperature=0.0, max_new_tokens=10))
    for c in out.completions[0]:
        assert c.finish_reason == "eos" and c.num_tokens == 1 and c.text == ""


def test_greedy_continue_is_deterministic(generator):
    a = greedy_continue(generator, PROMPTS, max_new_tokens=30, steps=1)
    b = greedy_continue(generator, PROMPTS, max_new_tokens=30, steps=1)
    assert a == b


def test_prompt_over_the_context_is_refused(generator):
    from ttc_runtime.generation.base import PromptTooLong

    long_prompt = "1+" * 200 + "1\n\n"
    with pytest.raises(PromptTooLong) as error:
        generator.generate(["7-2\n\n", long_prompt], params=SamplingParams(max_new_tokens=16))
    assert error.value.indices == [1]


def test_bad_arguments(generator, tmp_path):
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        generator.generate(["x", ""])
    with pytest.raises(ValueError, match="2 seeds for 3 prompts"):
        generator.generate(PROMPTS, seed=[1, 2])
    with pytest.raises(ValueError, match="n must be >= 1"):
        generator.generate(PROMPTS, n=0)
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(temperature=-1)
    with pytest.raises(ModelLoadError, match="does not exist"):
        TransformersGenerator.from_pretrained(tmp_path / "missing")


def test_vllm_backend_without_vllm_names_the_extra(model_dir, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "vllm", None)  # what an environment without vLLM sees
    monkeypatch.delitem(sys.modules, "ttc_runtime.generation.vllm_engine", raising=False)
    with pytest.raises(ImportError, match="install the vllm extra"):
        load_generator(model_dir, GenerationConfig(backend="vllm"))


def test_biased_model_logits_are_the_biases():
    model, tokenizer = biased_model({"1": 5.0, "7": 2.0})
    with torch.no_grad():
        logits = model(input_ids=tokenizer("9-8 12", return_tensors="pt")["input_ids"]).logits[0]
    one, seven = tokenizer.convert_tokens_to_ids("1"), tokenizer.convert_tokens_to_ids("7")
    assert logits[:, one].tolist() == pytest.approx([5.0] * logits.shape[0], abs=1e-4)
    assert logits[:, seven].tolist() == pytest.approx([2.0] * logits.shape[0], abs=1e-4)
    assert math.isclose(logits.abs().max().item(), 5.0, abs_tol=1e-4)


def test_the_transformers_generator_refuses_a_prompt_without_room_in_the_context(tiny_model_dir):
    generator = TransformersGenerator.from_pretrained(tiny_model_dir)  # 256 positions
    fits, long = "1+1", "1+1" * 200
    with pytest.raises(PromptTooLong, match="context of 256 tokens") as error:
        generator.generate([fits, long, fits], params=SamplingParams(max_new_tokens=16))
    assert error.value.indices == [1]
    assert len(generator.generate([fits], params=SamplingParams(max_new_tokens=16)).completions) == 1
