"""Full solutions sampled for many problems, a batch of prompts per call, with a progress bar."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from tqdm.auto import tqdm

from ..prompts import PromptConfig
from ..tasks import Problem
from .base import GenerationOutput, Generator, SamplingParams
from .sampling import derive_seed


def sample_in_batches(
    generator: Generator,
    problems: Sequence[Problem],
    prompt: PromptConfig,
    params: SamplingParams,
    n: int,
    seed: int,
    batch_prompts: int,
    desc: str,
) -> Iterator[tuple[Sequence[Problem], GenerationOutput]]:
    """``n`` full solutions per problem, ``batch_prompts`` problems per call, with a progress bar.

    Each problem's seed is derived from ``seed`` and its position in ``problems``, so the samples do
    not depend on the batching.
    """
    with tqdm(total=len(problems), desc=desc, unit="problem") as bar:
        for start in range(0, len(problems), batch_prompts):
            batch = problems[start : start + batch_prompts]
            yield (
                batch,
                generator.generate(
                    [prompt.format(p.question) for p in batch],
                    n=n,
                    params=params,
                    seed=[derive_seed(seed, start + i) for i in range(len(batch))],
                ),
            )
            bar.update(len(batch))
