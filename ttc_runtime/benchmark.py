"""Generation-speed benchmark: every generation path on the same questions, in one invocation.

Paths, all at the same N samples per question on the same held-out questions:

- ``hf_generate``: plain batched ``model.generate`` of transformers (the baseline): every question's
  prompt repeated N times, sampling at the same temperature, rows padded to the longest;
- ``sample``: this project's generator drawing the same N solutions per question;
- ``best_of_n``: the same sampling plus verifier scoring of every solution (best-of-N weighted);
- ``beam_search`` and ``lookahead``: the search strategies at the same N, beam search also with
  fused scoring turned off (every prefix re-read by the PRM each round), the slower path;
- ``prm_scoring``: verifier scoring alone, of the solutions ``sample`` drew.

Speeds are reported as ratios to the baseline's generated tokens per second, measured in the same
process minutes apart, never as absolute claims (the machine is shared and noisy). The FLOP rate
counts useful FLOPs (2 x parameters x tokens read or generated, the compute record's rule) per
second of wall time and compares it with a measured matrix-multiply rate of the same device.
Each path runs ``repeats`` times after a warm-up; the fastest run counts.

``compare_engines`` is the back-end comparison: the same sampling call on the transformers and the
vLLM generators, as a ratio of generated tokens per second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from .generation.base import Generator, SamplingParams
from .generation.hf import TransformersGenerator
from .prompts import PromptConfig
from .scoring import StepScorer
from .strategies import BeamSearch, BestOfN, SearchSettings
from .tasks import SyntheticTask, SyntheticTaskConfig, per_level, split_steps


@dataclass(frozen=True)
class Measurement:
    """One path: its fastest wall time, the proposer tokens it generated and its useful FLOPs."""

    name: str
    seconds: float
    generated_tokens: int
    flops: int

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.seconds


def matmul_rate(device: str = "cpu", size: int = 1024, repeats: int = 10) -> float:
    """FLOP/s of a float32 ``size`` x ``size`` matrix product on ``device``: the practical limit."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    torch.matmul(a, b)
    _sync(device)
    started = time.perf_counter()
    for _ in range(repeats):
        torch.matmul(a, b)
    _sync(device)
    return 2 * size**3 * repeats / (time.perf_counter() - started)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _fastest(name: str, work: Callable[[], tuple[int, int]], repeats: int, device: str) -> Measurement:
    work()  # warm-up: first-call allocations and kernel selection do not count
    best = None
    for _ in range(repeats):
        _sync(device)
        started = time.perf_counter()
        tokens, flops = work()
        _sync(device)
        seconds = time.perf_counter() - started
        if best is None or seconds < best.seconds:
            best = Measurement(name, seconds, tokens, flops)
    return best


@torch.inference_mode()
def hf_generate(generator: TransformersGenerator, prompts: list[str], n: int, params: SamplingParams, seed: int):
    """The baseline: ``model.generate`` on the left-padded prompts, ``n`` return sequences each.
    Returns (generated tokens up to and including each row's end of sequence, useful FLOPs)."""
    tokenizer, model = generator.tokenizer, generator.model
    torch.manual_seed(seed)
    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    width = max(len(ids) for ids in encoded)
    pad = generator.pad_id
    input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in encoded], device=generator.device)
    attention = (torch.arange(width) >= torch.tensor([width - len(ids) for ids in encoded])[:, None]).long()
    output = model.generate(
        input_ids=input_ids,
        attention_mask=attention.to(generator.device),
        do_sample=True,
        temperature=params.temperature,
        top_p=params.top_p,
        max_new_tokens=params.max_new_tokens,
        num_return_sequences=n,
        pad_token_id=pad,
        eos_token_id=generator.eos_ids.tolist(),
    )
    new = output[:, width:]
    is_eos = torch.isin(new, generator.eos_ids)
    ended = is_eos.any(dim=1)
    first_eos = torch.where(
        ended, is_eos.float().argmax(dim=1) + 1, torch.full_like(ended, new.shape[1], dtype=torch.long)
    )
    generated = int(first_eos.sum())
    prompt_tokens = sum(len(ids) for ids in encoded) * n
    return generated, 2 * generator.flop_params * (prompt_tokens + generated)


def run_benchmark(
    generator: TransformersGenerator,
    scorer: StepScorer,
    per_level_questions: int = 3,
    n: int = 64,
    beam_width: int = 4,
    lookahead: int = 1,
    max_new_tokens: int = 160,
    repeats: int = 2,
    seed: int = 0,
) -> tuple[list[Measurement], float, dict[str, int]]:
    """Measure every path; returns the measurements, the device's matrix-multiply FLOP/s, and how
    often fused and fully re-scored beam search agree (answers, candidate texts)."""
    problems = per_level(SyntheticTask(SyntheticTaskConfig()).problems("test"), per_level_questions)
    questions = [p.question for p in problems]
    settings = SearchSettings(PromptConfig(), SamplingParams(temperature=0.8, max_new_tokens=max_new_tokens))
    prompts = [settings.prompt.format(q) for q in questions]
    device = str(generator.device)
    samples = generator.generate(prompts, n=n, params=settings.sampling, seed=seed)
    steps = [split_steps(c.text) for row in samples.completions for c in row]
    owners = [q for q in questions for _ in range(n)]
    kept = [i for i, s in enumerate(steps) if s]

    def sample():
        out = generator.generate(prompts, n=n, params=settings.sampling, seed=seed)
        return out.usage.generated_tokens, out.usage.flops

    outputs: dict[str, list] = {}

    def strategy(name, runner, run_settings=settings):
        def work():
            results = runner.run(questions, generator, scorer, n, run_settings, seed)
            outputs[name] = results
            total = sum((r.compute for r in results[1:]), results[0].compute)
            return total.proposer.generated_tokens, total.flops

        return name, work

    def score():
        out = scorer.score([owners[i] for i in kept], [steps[i] for i in kept])
        return samples.usage.generated_tokens, out.usage.flops

    full = replace(settings, fused_scoring=False)
    paths = [
        ("hf_generate", lambda: hf_generate(generator, prompts, n, settings.sampling, seed)),
        ("sample", sample),
        strategy("best_of_n", BestOfN("weighted")),
        strategy(f"beam_search(M={beam_width})", BeamSearch(beam_width)),
        strategy(f"beam_search(M={beam_width}), full re-scoring", BeamSearch(beam_width), full),
        strategy(f"lookahead(M={beam_width},k={lookahead})", BeamSearch(beam_width, lookahead)),
        ("prm_scoring", score),
    ]
    measurements = [_fastest(name, work, repeats, device) for name, work in paths]
    fast, slow = outputs[paths[3][0]], outputs[paths[4][0]]
    agreement = {
        "questions": len(questions),
        "same_answer": sum(a.answer == b.answer for a, b in zip(fast, slow)),
        "same_candidates": sum(
            [c.text for c in a.candidates] == [c.text for c in b.candidates] for a, b in zip(fast, slow)
        ),
    }
    return measurements, matmul_rate(device), agreement


def format_benchmark(measurements: list[Measurement], peak: float, agreement: dict[str, int], n: int) -> str:
    """The benchmark table: wall time, tokens, speed against the baseline, FLOP rate against the limit."""
    baseline = measurements[0]
    by_name = {m.name: m for m in measurements}
    lines = [
        f"{agreement['questions']} questions x N = {n}; matrix-multiply limit {peak:.3g} FLOP/s",
        "",
        "| path | wall s (ratio) | generated tokens | tokens/s vs hf_generate | FLOP/s | of the limit |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in measurements:
        ratio = m.tokens_per_second / baseline.tokens_per_second
        rate = m.flops / m.seconds
        lines.append(
            f"| {m.name} | {m.seconds:.2f} ({m.seconds / baseline.seconds:.2f}x) | {m.generated_tokens:,} "
            f"| {ratio:.2f}x | {rate:.3g} | {rate / peak:.1%} |"
        )
    beam = next(m for m in measurements if m.name.startswith("beam_search"))
    lines += [
        "",
        f"beam search wall time / best-of-N wall time: {beam.seconds / by_name['best_of_n'].seconds:.2f}",
        f"beam search fused against full re-scoring, same seed: same answer on {agreement['same_answer']}/"
        f"{agreement['questions']} questions, same candidates on {agreement['same_candidates']}/{agreement['questions']}",
    ]
    lines.append("(prm_scoring's token column is the scored solutions' generated tokens)")
    return "\n".join(lines)


def compare_engines(
    model: str,
    engines: dict[str, Generator],
    per_level_questions: int = 3,
    n: int = 64,
    max_new_tokens: int = 160,
    repeats: int = 2,
    seed: int = 0,
) -> tuple[list[Measurement], int]:
    """The same sampling call (``n`` solutions to each of the same test questions, one seed) on
    every engine in ``engines``, fastest of ``repeats`` runs after a warm-up; the first engine is
    the baseline of ``format_engines``. ``model`` only labels the table. Returns the measurements
    and the number of questions."""
    problems = per_level(SyntheticTask(SyntheticTaskConfig()).problems("test"), per_level_questions)
    prompts = [PromptConfig().format(p.question) for p in problems]
    params = SamplingParams(temperature=0.8, max_new_tokens=max_new_tokens)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    measurements = []
    for name, generator in engines.items():

        def work(generator=generator):
            out = generator.generate(prompts, n=n, params=params, seed=seed)
            return out.usage.generated_tokens, out.usage.flops

        measurements.append(_fastest(f"{name} ({model})", work, repeats, device))
    return measurements, len(prompts)


def format_engines(measurements: list[Measurement], questions: int, n: int) -> str:
    """Throughput of each engine as a ratio to the first one's, in generated tokens per second."""
    baseline = measurements[0]
    lines = [
        f"{questions} questions x N = {n} samples, the same seed on every engine",
        "",
        "| engine | wall s | generated tokens | tokens/s | vs the first |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for m in measurements:
        lines.append(
            f"| {m.name} | {m.seconds:.2f} | {m.generated_tokens:,} | {m.tokens_per_second:,.0f} "
            f"| {m.tokens_per_second / baseline.tokens_per_second:.2f}x |"
        )
    return "\n".join(lines)
