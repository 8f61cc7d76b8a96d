"""Seconds per training step of the embedded proposer, eager against ``torch.compile``, and where an
eager step's time goes: the measurement behind the README's note on the job's length.

    python scripts/bench_proposer_step.py configs/embedded.yaml [--steps 30] [--seed 0]

Builds the tiny proposer of the config's ``proposer.architecture`` from scratch and draws batches of
``proposer.training.batch_size`` training examples of the config's task (prompt and solution, loss
on the solution, padded to the batch's longest, as the SFT collator pads). Times STEPS steps
(forward, backward, AdamW) of the eager model after 3 warm-up steps, then the same with
``torch.compile(dynamic=True)``, whose first steps, compiling, are timed apart. Prints seconds per
step of both, their ratio, the compile time and the steps it takes to pay for itself, then the
torch profiler's top operators over 5 eager steps. Both runs are in this process on the same
batches, so the ratio holds on a noisy machine where the seconds do not.
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from ttc_runtime.experiment_config import ExperimentConfig, load_experiment
from ttc_runtime.models import build_embedded_tokenizer, build_tiny_causal_lm
from ttc_runtime.trainers.proposer import sft_examples

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
WARMUP = 3


def batches(config: ExperimentConfig, count: int, seed: int) -> list[Batch]:
    """``count`` padded batches (input ids, attention mask, labels) of the config's training split."""
    tokenizer = build_embedded_tokenizer()
    examples = sft_examples(config.task.build().problems("train"), config.proposer.prompt)
    size = config.proposer.training.batch_size
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        rows = []
        for example in rng.sample(examples, size):
            prompt = tokenizer(example["prompt"])["input_ids"]
            solution = tokenizer(example["completion"])["input_ids"] + [tokenizer.eos_token_id]
            rows.append((prompt, solution))
        width = max(len(p) + len(s) for p, s in rows)
        ids = torch.full((size, width), tokenizer.pad_token_id)
        mask = torch.zeros((size, width), dtype=torch.long)
        labels = torch.full((size, width), -100)
        for i, (prompt, solution) in enumerate(rows):
            end = len(prompt) + len(solution)
            ids[i, :end] = torch.tensor(prompt + solution)
            mask[i, :end] = 1
            labels[i, len(prompt) : end] = torch.tensor(solution)
        out.append((ids, mask, labels))
    return out


def train_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, part: list[Batch]) -> float:
    """Seconds ``part``'s steps (forward, backward, optimizer step) take."""
    started = time.perf_counter()
    for ids, mask, labels in part:
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return time.perf_counter() - started


def fresh_model(config: ExperimentConfig) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The untrained proposer of ``config`` and an AdamW over its weights at the config's rate."""
    model = build_tiny_causal_lm(config.proposer.architecture, build_embedded_tokenizer())
    return model, torch.optim.AdamW(model.parameters(), lr=config.proposer.training.learning_rate)


def timed_steps(config: ExperimentConfig, data: list[Batch], compiled: bool) -> tuple[float, float]:
    """(seconds of the warm-up steps, seconds per step after them) of a fresh model."""
    model, optimizer = fresh_model(config)
    step_model = torch.compile(model, dynamic=True) if compiled else model
    warmup = train_steps(step_model, optimizer, data[:WARMUP])
    return warmup, train_steps(step_model, optimizer, data[WARMUP:]) / (len(data) - WARMUP)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = load_experiment(args.config)
    data = batches(config, args.steps + WARMUP, args.seed)
    tokens = sum(int(mask.sum()) for _, mask, _ in data) / sum(mask.numel() for _, mask, _ in data)
    print(f"{len(data)} batches, {data[0][0].shape[0]} sequences each, {tokens:.2f} of positions are tokens, not padding")
    _, eager = timed_steps(config, data, compiled=False)
    warmup, compiled = timed_steps(config, data, compiled=True)
    compile_seconds = warmup - WARMUP * compiled
    print(f"eager {eager:.3f} s a step; compiled {compiled:.3f} s a step ({eager / compiled:.2f}x)")
    print(f"compiling took {compile_seconds:.0f} s: paid back after {compile_seconds / (eager - compiled):.0f} steps")

    model, optimizer = fresh_model(config)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        train_steps(model, optimizer, data[:5])
    print(profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))


if __name__ == "__main__":
    main()
