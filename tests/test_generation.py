import pytest

from ttc_runtime.compute import inference_flops
from ttc_runtime.generation.base import Generator, SamplingParams, greedy_continue, sample_next_steps
from ttc_runtime.generation.hf import TransformersGenerator
from ttc_runtime.models import ModelLoadError
from ttc_runtime.tasks import STEP_SEPARATOR

from .conftest import biased_model

PROMPTS = ["Evaluate left to right: 3+4\n\n", "Evaluate left to right: 12*3-5+1\n\n", "7-2\n\n"]


@pytest.fixture(scope="module")
def generator(tiny_model_dir):
    return TransformersGenerator.from_pretrained(tiny_model_dir, max_batch_rows=64)


def test_is_a_generator(generator):
    assert isinstance(generator, Generator)


def test_greedy_matches_transformers_generate(generator):
    out = generator.generate(PROMPTS, n=1, params=SamplingParams(temperature=0.0, max_new_tokens=24))
    for prompt, (completion,) in zip(PROMPTS, out.completions):
        ids = generator.tokenizer(prompt, return_tensors="pt")["input_ids"]
        reference = generator.model.generate(
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
    # Rows split across chunks (max_batch_rows) give the same samples too.
    small = TransformersGenerator(generator.model, generator.tokenizer, max_batch_rows=3)
    assert small.generate(PROMPTS, n=4, params=params, seed=[11, 22, 33]).completions == together.completions


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
            assert (
                c.finish_reason == "length"
                or c.token_ids[-1] in generator.eos_ids.tolist()
                or c.finish_reason == "stop"
            )
            generated += c.num_tokens
    assert out.usage.prompt_tokens == prompt_tokens  # each prompt encoded once for its 5 samples
    assert out.usage.generated_tokens == generated
    assert out.usage.flops == inference_flops(generator.flop_params, prompt_tokens + generated)


def test_length_limit(generator):
    out = generator.generate(PROMPTS[:1], n=2, params=SamplingParams(temperature=1.0, max_new_tokens=3))
    for c in out.completions[0]:
        assert c.num_tokens <= 3


@pytest.fixture(scope="module")
def newline_generator():
    """Emits '\n' about half the time, so steps end often."""
    return TransformersGenerator(*biased_model({"\n": 7.0, "1": 7.0, "</s>": 3.0}))


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
                two_step += 1
    assert two_step > 3


def test_eos_ends_a_sample():
    model, tokenizer = biased_model({"</s>": 10.0})
    out = TransformersGenerator(model, tokenizer).generate(
        ["1+1"], n=2, params=SamplingParams(temperature=0.0, max_new_tokens=10)
    )
    for c in out.completions[0]:
        assert c.finish_reason == "eos" and c.num_tokens == 1 and c.text == ""


def test_greedy_continue_is_deterministic(generator):
    a = greedy_continue(generator, PROMPTS, max_new_tokens=30, steps=1)
    b = greedy_continue(generator, PROMPTS, max_new_tokens=30, steps=1)
    assert a == b


def test_bad_arguments(generator, tmp_path):
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        generator.generate(["x", ""])
    with pytest.raises(ValueError, match="2 seeds for 3 prompts"):
        generator.generate(PROMPTS, seed=[1, 2])
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(temperature=-1)
    with pytest.raises(ModelLoadError, match="does not exist"):
        TransformersGenerator.from_pretrained(tmp_path / "missing")
