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
from transformers import AutoConfig, AutoModelForTokenClassification, PreTrainedTokenizerBase

from ..models import ModelLoadError, load_tokenizer, require_dir
from ..prompts import PromptConfig
from ..tasks.grading import STEP_SEPARATOR
from .base import BatchedModelScorer


def encode_steps(tokenizer: PreTrainedTokenizerBase, prompt: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
    """Token ids of ``prompt`` + each step + separator, and the index of each step's last token."""
    ids = list(tokenizer(prompt)["input_ids"])
    positions = []
    for step in steps:
        ids.extend(tokenizer(step + STEP_SEPARATOR, add_special_tokens=False)["input_ids"])
        positions.append(len(ids) - 1)
    return ids, positions


class TokenClassificationPRM(BatchedModelScorer):
    """``StepScorer`` over a Hugging Face token-classification model with a single output label
    (a fine-tuned ``*ForTokenClassification`` or the margin PRM of ``scoring.margin``)."""

    @classmethod
    def from_pretrained(
        cls, path: str | Path, prompt: PromptConfig = PromptConfig(), device: str | None = None, batch_size: int = 64
    ) -> TokenClassificationPRM:
        """Load a PRM saved with ``save_pretrained``; it must be a one-label token classifier."""
        path = cls.check_dir(path)
        model = AutoModelForTokenClassification.from_pretrained(str(path))
        if device is not None:
            model.to(device)
        return cls(model, load_tokenizer(path), prompt, batch_size)

    @staticmethod
    def check_dir(path: str | Path) -> Path:
        """``path`` if it holds a one-label token-classification model (read from its config only)."""
        path = require_dir(path, "PRM", saved_model=True)
        config = AutoConfig.from_pretrained(str(path))
        architectures = config.architectures or []
        if not any(name.endswith("ForTokenClassification") for name in architectures) or config.num_labels != 1:
            raise ModelLoadError(
                f"PRM directory {str(path)!r} holds {architectures or 'an unknown architecture'} with "
                f"{config.num_labels} labels; expected a token-classification model with one label"
            )
        return path

    def encode(self, prompt: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
        return encode_steps(self.tokenizer, prompt, steps)

    def probabilities(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, solution_start: torch.Tensor
    ) -> torch.Tensor:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if getattr(self.model, "needs_solution_start", False):
            inputs["solution_start"] = solution_start
        logits = self.model(**inputs).logits  # (B, T, 1)
        return torch.sigmoid(logits[..., 0].float())
