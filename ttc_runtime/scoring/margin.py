"""Step scores from the proposer's own confidence in what it wrote, with no verifier model.

For every solution token ``x_t`` the proposer's margin is ``log p(x_t | x_<t) - max_v log p(v | x_<t)``
(0 when the sampled token is the one the model prefers, negative otherwise). A step's score is
``exp`` of the smallest margin over the non-blank solution tokens up to the end of that step: a
solution is as trustworthy as its least-preferred choice so far. Blank tokens (spaces, newlines)
are left out because layout choices such as padding length vary without changing the content.

On the embedded task the proposer's errors at temperature 0.8 are sampling slips, tokens drawn
against its own preference, which is what this score catches; a token-classification PRM
reading the end of a step has to learn the same comparison from labels (see the README).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import torch

from ..models import load_causal_lm, load_tokenizer
from ..prompts import PromptConfig
from .base import BatchedModelScorer
from .prm import encode_steps


class ProposerMarginScorer(BatchedModelScorer):
    """``StepScorer`` over the proposer itself (a causal LM): one forward pass per batch."""

    @cached_property
    def blank(self) -> torch.Tensor:
        """(vocabulary,) True for tokens that decode to whitespace only; their margins never count."""
        vocab = self.model.get_output_embeddings().weight.shape[0]
        blank = torch.zeros(vocab, dtype=torch.bool, device=self.device)
        blank[[i for i in range(min(vocab, len(self.tokenizer))) if not self.tokenizer.decode([i]).strip()]] = True
        return blank

    @classmethod
    def from_pretrained(
        cls, path: str | Path, prompt: PromptConfig = PromptConfig(), device: str | None = None, batch_size: int = 64
    ) -> ProposerMarginScorer:
        """Score with the causal LM saved at ``path`` (normally the proposer that sampled the solutions)."""
        return cls(load_causal_lm(path, device=device), load_tokenizer(path), prompt, batch_size)

    def encode(self, prompt: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
        return encode_steps(self.tokenizer, prompt, steps)

    def probabilities(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, solution_start: torch.Tensor
    ) -> torch.Tensor:
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
        log_probs = torch.log_softmax(logits[:, :-1], dim=-1)  # predictions for tokens 1..T-1
        tokens = input_ids[:, 1:]
        margin = log_probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - log_probs.max(dim=-1).values
        position = torch.arange(1, input_ids.shape[1], device=input_ids.device)
        counted = (position >= solution_start[:, None]) & attention_mask[:, 1:].bool() & ~self.blank[tokens]
        margin = torch.where(counted, margin, torch.zeros_like(margin))
        running = torch.cummin(margin, dim=1).values
        first = torch.zeros_like(running[:, :1])  # position 0 is a prompt token: nothing to score yet
        return torch.exp(torch.cat([first, running], dim=1))
