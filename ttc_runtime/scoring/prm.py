"""The token-classification PRM: one logit at the end of every step, read as P(step on a correct path).

Encoding is defined once, in ``encode_steps``, and shared by training and scoring: the prompt and
then each step followed by the step separator are tokenized as separate chunks, and a step's score
is read at the last token of its chunk. Chunking keeps the score positions exact for any tokenizer
(BPE merges never cross a step boundary).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForTokenClassification, PreTrainedModel, PreTrainedTokenizerBase

from ..compute import Usage
from ..models import ModelLoadError, flop_params, load_tokenizer, require_dir
from ..prompts import PromptConfig
from ..tasks.grading import STEP_SEPARATOR
from .base import ScoreOutput


def encode_steps(tokenizer: PreTrainedTokenizerBase, prompt: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
    """Token ids of ``prompt`` + each step + separator, and the index of each step's last token."""
    ids = list(tokenizer(prompt)["input_ids"])
    positions = []
    for step in steps:
        ids.extend(tokenizer(step + STEP_SEPARATOR, add_special_tokens=False)["input_ids"])
        positions.append(len(ids) - 1)
    return ids, positions


class TokenClassificationPRM:
    """``StepScorer`` over a Hugging Face token-classification model with a single output label."""

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

    @classmethod
    def from_pretrained(cls, path: str | Path, prompt: PromptConfig = PromptConfig(), device: str | None = None):
        """Load a PRM saved with ``save_pretrained``; it must be a one-label token classifier."""
        path = require_dir(path, "PRM", saved_model=True)
        config = AutoConfig.from_pretrained(str(path))
        architectures = config.architectures or []
        if not any(name.endswith("ForTokenClassification") for name in architectures) or config.num_labels != 1:
            raise ModelLoadError(
                f"PRM directory {str(path)!r} holds {architectures or 'an unknown architecture'} with "
                f"{config.num_labels} labels; expected a token-classification model with one label"
            )
        model = AutoModelForTokenClassification.from_pretrained(str(path))
        if device is not None:
            model.to(device)
        return cls(model, load_tokenizer(path), prompt)

    @torch.inference_mode()
    def score(self, questions: Sequence[str], solutions: Sequence[Sequence[str]]) -> ScoreOutput:
        if len(questions) != len(solutions):
            raise ValueError(f"got {len(solutions)} solutions for {len(questions)} questions")
        encoded = [encode_steps(self.tokenizer, self.prompt.format(q), steps) for q, steps in zip(questions, solutions)]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        scores: list[list[float]] = []
        tokens = 0
        for start in range(0, len(encoded), self.batch_size):
            batch = encoded[start : start + self.batch_size]
            width = max(len(ids) for ids, _ in batch)
            input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            for row, (ids, _) in enumerate(batch):
                input_ids[row, : len(ids)] = torch.tensor(ids)
                attention[row, : len(ids)] = 1
                tokens += len(ids)
            logits = self.model(
                input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device)
            ).logits  # (B, T, 1)
            probs = torch.sigmoid(logits[..., 0].float()).cpu()  # (B, T)
            for row, (_, positions) in enumerate(batch):
                scores.append(probs[row, positions].tolist())
        return ScoreOutput(scores, Usage.inference(self.flop_params, tokens))
