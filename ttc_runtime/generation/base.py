"""The generator protocol: what every strategy calls to sample from a proposer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from pydantic import Field

from ..compute import Usage
from ..config import StrictModel
from ..tasks.grading import STEP_SEPARATOR
from .sampling import derive_seed

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

FinishReason = Literal["eos", "stop", "length"]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample.

    ``temperature`` 0 is greedy decoding. ``stop`` ends a sample when the string has appeared
    ``stop_count`` times in the generated text (one next step: ``stop=STEP_SEPARATOR``; a k-step
    rollout: ``stop_count=k``); the last occurrence is cut from the returned text but its tokens
    are counted. ``max_new_tokens`` bounds each sample. ``logprobs`` also returns, for every
    generated token, its log-probability and the largest log-probability at its position, both
    under the model's untempered distribution (what a verifier reading the proposer's margins needs).
    """

    temperature: float = 0.8
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop: str | None = None
    stop_count: int = 1
    logprobs: bool = False

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.stop is not None and not self.stop:
            raise ValueError("stop must be a non-empty string or None")
        if self.stop_count < 1:
            raise ValueError(f"stop_count must be >= 1, got {self.stop_count}")


class SamplingConfig(StrictModel):
    """How the proposer samples during search and evaluation, as a config file gives it."""

    temperature: float = Field(0.8, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(160, ge=1, description="Longest solution, in tokens.")

    def params(self) -> SamplingParams:
        return SamplingParams(temperature=self.temperature, top_p=self.top_p, max_new_tokens=self.max_new_tokens)


@dataclass(frozen=True)
class Completion:
    """One sample: its text (after the prompt), its exact token count and why it ended; with
    ``SamplingParams.logprobs``, per generated token its log-probability and the top one.

    ``finish_reason`` is ``"eos"`` when the model ended the solution, ``"stop"`` when the stop
    string ended it (a step boundary), ``"length"`` when ``max_new_tokens`` did.
    """

    text: str
    num_tokens: int
    finish_reason: FinishReason
    token_ids: tuple[int, ...] = ()
    logprobs: tuple[float, ...] = ()
    top_logprobs: tuple[float, ...] = ()


def completion_from_tokens(
    tokenizer: PreTrainedTokenizerBase,
    token_ids: Sequence[int],
    finish: FinishReason,
    params: SamplingParams,
    logprobs: Sequence[float] = (),
    top_logprobs: Sequence[float] = (),
) -> Completion:
    """The ``Completion`` of a finished sample, whatever engine drew its tokens: the text is the
    tokens decoded without special tokens and, when the stop string ended the sample, cut at its
    ``stop_count``-th occurrence (counted left to right without overlap)."""
    text = tokenizer.decode(list(token_ids), skip_special_tokens=True)
    if finish == "stop" and params.stop is not None:
        cut, search_from = -1, 0
        for _ in range(params.stop_count):
            cut = text.find(params.stop, search_from)
            if cut < 0:
                break
            search_from = cut + len(params.stop)
        if cut >= 0:
            text = text[:cut]
    return Completion(text, len(token_ids), finish, tuple(token_ids), tuple(logprobs), tuple(top_logprobs))


class PromptTooLong(ValueError):
    """Prompts that do not leave ``max_new_tokens`` of room in the model's context.

    Raised before anything is generated (so nothing is charged), never worked around by truncating
    a prompt: ``indices`` are the offending prompts' positions in the call, so that the caller can
    shorten them by its own rule (the revision strategy drops the oldest attempts) and try again.
    """

    def __init__(self, indices: list[int], message: str) -> None:
        super().__init__(message)
        self.indices = indices


@dataclass(frozen=True)
class GenerationOutput:
    """Samples per prompt (``completions[i][j]``: prompt i, sample j) and what each prompt's
    samples cost (``usages[i]``), so that work batched across questions is charged exactly."""

    completions: list[list[Completion]]
    usages: list[Usage]

    @property
    def usage(self) -> Usage:
        """What the whole call cost."""
        return sum(self.usages, Usage())


@runtime_checkable
class Generator(Protocol):
    """A proposer that samples continuations of prompts.

    Implementations must be reproducible: the same prompts, ``n``, parameters and seed give the
    same samples. ``seed`` is either one integer for the call or one integer per prompt; with
    per-prompt seeds a prompt's samples do not depend on which other prompts share the batch.
    A prompt that cannot take ``max_new_tokens`` more tokens within the model's context is refused
    with ``PromptTooLong``.
    """

    flop_params: int
    """Parameters that cost FLOPs per token (see ``compute``)."""

    tokenizer: PreTrainedTokenizerBase
    """The model's Hugging Face tokenizer: prompts are encoded with it, so its counts are the charged ones."""

    context: int | None
    """The model's context in tokens (prompt plus ``max_new_tokens``), or None when unbounded."""

    def generate(
        self,
        prompts: Sequence[str],
        n: int = 1,
        params: SamplingParams = SamplingParams(),
        seed: int | Sequence[int] = 0,
    ) -> GenerationOutput:
        """``n`` samples for each prompt."""
        ...


def sample_next_steps(
    generator: Generator, prefixes: Sequence[str], params: SamplingParams, seed: int | Sequence[int] = 0, n: int = 1
) -> GenerationOutput:
    """Sample one next step for each prefix (stops at the step separator or the end of the solution)."""
    return generator.generate(prefixes, n=n, params=replace(params, stop=STEP_SEPARATOR, stop_count=1), seed=seed)


def greedy_continue(
    generator: Generator,
    prefixes: Sequence[str],
    max_new_tokens: int,
    steps: int | None = None,
    logprobs: bool = False,
) -> GenerationOutput:
    """Greedy (temperature 0) continuation of each prefix: ``steps`` more steps, or to the end if None."""
    params = SamplingParams(
        temperature=0.0,
        max_new_tokens=max_new_tokens,
        stop=STEP_SEPARATOR if steps is not None else None,
        stop_count=steps or 1,
        logprobs=logprobs,
    )
    return generator.generate(prefixes, n=1, params=params, seed=0)


def encode_call(
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    n: int,
    params: SamplingParams,
    seed: int | Sequence[int],
    context: int | None,
) -> tuple[list[list[int]], list[int]]:
    """Check one ``generate`` call's arguments the same way for every engine and return each
    prompt's token ids and seed (a call seed becomes one seed per prompt index)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if isinstance(seed, int):
        prompt_seeds = [derive_seed(seed, i) for i in range(len(prompts))]
    else:
        prompt_seeds = list(seed)
        if len(prompt_seeds) != len(prompts):
            raise ValueError(f"got {len(prompt_seeds)} seeds for {len(prompts)} prompts")
    for i, prompt in enumerate(prompts):
        if not prompt:
            raise ValueError(f"prompt {i} is empty")
    encoded = [list(tokenizer(p)["input_ids"]) for p in prompts]
    if context is not None:
        over = [i for i, ids in enumerate(encoded) if len(ids) + params.max_new_tokens > context]
        if over:
            raise PromptTooLong(
                over,
                f"{len(over)} prompt(s) leave no room for max_new_tokens {params.max_new_tokens} in the "
                f"model's context of {context} tokens (prompt {over[0]} has {len(encoded[over[0]])} tokens)",
            )
    return encoded, prompt_seeds
