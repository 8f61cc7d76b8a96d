"""The step-scorer protocol, and the batching every model-backed scorer shares."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..compute import Usage
from ..models import flop_params
from ..prompts import PromptConfig


@dataclass(frozen=True)
class ScoreOutput:
    """One list of step scores (probabilities in [0, 1]) per scored pair, and what scoring each
    pair cost the verifier (``usages[i]``)."""

    step_scores: list[list[float]]
    usages: list[Usage]

    @property
    def usage(self) -> Usage:
        """What the whole call cost."""
        return sum(self.usages, Usage())


@runtime_checkable
class StepScorer(Protocol):
    """Scores every step of many solutions in as few forward passes as the batch size allows.

    ``score(questions, solutions)`` takes the raw questions and, for each, the solution's steps
    (without separators); it returns one score per step. Prompt formatting is the scorer's own.
    """

    flop_params: int

    def score(self, questions: Sequence[str], solutions: Sequence[Sequence[str]]) -> ScoreOutput: ...


class BatchedModelScorer(ABC):
    """A ``StepScorer`` over one Hugging Face model: encode each pair into token ids plus the
    positions where its step scores are read, run the pairs in padded batches (sorted by length,
    so a batch holds sequences of similar length and padding stays small), and read the scores.

    Subclasses define ``encode`` (the text layout the model was trained on; it starts with the
    tokenized prompt) and ``probabilities`` (the model's step score at every position).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        prompt: PromptConfig = PromptConfig(),
        batch_size: int = 64,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.prompt = prompt
        self.batch_size = batch_size
        self.flop_params = flop_params(model)
        self.device = next(model.parameters()).device

    @abstractmethod
    def encode(self, prompt: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
        """Token ids of the formatted prompt and the steps, and the index where each step's score is read."""

    @abstractmethod
    def probabilities(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, solution_start: torch.Tensor
    ) -> torch.Tensor:
        """(batch, length) step-score probabilities at every position; ``solution_start`` (batch,)
        is the index of each row's first token after the prompt."""

    @torch.inference_mode()
    def score(self, questions: Sequence[str], solutions: Sequence[Sequence[str]]) -> ScoreOutput:
        if len(questions) != len(solutions):
            raise ValueError(f"got {len(solutions)} solutions for {len(questions)} questions")
        prompts = [self.prompt.format(q) for q in questions]
        encoded = [self.encode(prompt, steps) for prompt, steps in zip(prompts, solutions)]
        prompt_length = {prompt: len(self.tokenizer(prompt)["input_ids"]) for prompt in set(prompts)}
        starts = [prompt_length[prompt] for prompt in prompts]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        scores: list[list[float]] = [[] for _ in encoded]
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            width = len(encoded[batch[-1]][0])
            input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            for row, index in enumerate(batch):
                ids = encoded[index][0]
                input_ids[row, : len(ids)] = torch.tensor(ids)
                attention[row, : len(ids)] = 1
            start = torch.tensor([starts[index] for index in batch], device=self.device)
            probs = self.probabilities(input_ids.to(self.device), attention.to(self.device), start).float().cpu()
            for row, index in enumerate(batch):
                scores[index] = probs[row, encoded[index][1]].tolist()
        return ScoreOutput(scores, [Usage.inference(self.flop_params, len(ids)) for ids, _ in encoded])
