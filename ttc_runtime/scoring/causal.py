"""A Math-Shepherd-style PRM: a causal LM that, after a step tag, predicts a "good" or a "bad" token.

Published PRMs of this shape (``peiyi9979/math-shepherd-mistral-7b-prm`` and its kin) take the
question, then the steps each closed by a step tag (" ки"), joined by newlines. A step's score is
``softmax(logit_good, logit_bad)[good]`` read at the tag's last token, so nothing but two rows of
the output head matters. The layout below is the published one by default and configurable for
PRMs that use another tag or other label tokens. ``VerdictTokenPRM`` is what every PRM that answers
with a good or a bad token shares, whatever its layout; the chat-turn layout of ``scoring.chat`` is
another.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from pydantic import Field
from transformers import AutoConfig, PreTrainedModel, PreTrainedTokenizerBase

from ..config import StrictModel
from ..models import ModelLoadError, load_causal_lm, load_tokenizer, require_dir
from ..prompts import PromptConfig
from .base import BatchedModelScorer


class VerdictTokens(StrictModel):
    """The two tokens a causal-LM PRM chooses between after a step: the step's score is the good
    token's share of the two. Ids override the texts for tokenizers in which a text is not one token."""

    good_token: str = Field("+", description="The token whose probability is the step score.")
    bad_token: str = Field("-", description="The competing token.")
    good_token_id: int | None = Field(None, ge=0, description="Overrides good_token's id when its text is ambiguous.")
    bad_token_id: int | None = Field(None, ge=0, description="Overrides bad_token's id.")


class CausalPRMFormat(VerdictTokens):
    """How steps are laid out for a step-tag PRM and which tokens carry its verdict."""

    step_tag: str = Field(" ки", description="Appended to every step; the score is read at its last token.")
    step_separator: str = Field("\n", description="Between one tagged step and the next.")


def _single_token_id(tokenizer: PreTrainedTokenizerBase, text: str, field: str) -> int:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"{field} {text!r} is {len(ids)} tokens for this tokenizer; set {field}_id to its id")
    return ids[0]


def verdict_ids(tokenizer: PreTrainedTokenizerBase, tokens: VerdictTokens, vocab: int) -> tuple[int, int]:
    """The ids of ``tokens``' good and bad tokens for ``tokenizer``, checked against a head of
    ``vocab`` rows: a verdict that is not one token, lies outside the head or is the other one is an
    error naming the field to set."""
    good, bad = tokens.good_token_id, tokens.bad_token_id
    good = _single_token_id(tokenizer, tokens.good_token, "good_token") if good is None else good
    bad = _single_token_id(tokenizer, tokens.bad_token, "bad_token") if bad is None else bad
    for name, value in (("good_token_id", good), ("bad_token_id", bad)):
        if value >= vocab:
            raise ValueError(f"{name} {value} is outside the model's vocabulary of {vocab}")
    if good == bad:
        raise ValueError(f"good and bad tokens are the same token (id {good})")
    return good, bad


class VerdictTokenPRM(BatchedModelScorer):
    """A PRM that is a causal LM choosing a good or a bad token after each step: a step's score is
    ``softmax(logit_good, logit_bad)[good]`` at the position whose next token is the verdict.

    Subclasses define the text layout (``encode`` returns those positions). Only the two verdict
    rows of the output head are applied, so the (batch, length, vocabulary) logits of a large
    vocabulary are never built.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        prompt: PromptConfig,
        tokens: VerdictTokens,
        batch_size: int = 16,
    ) -> None:
        super().__init__(model, tokenizer, prompt, batch_size)
        self.verdict_ids = torch.tensor(verdict_ids(tokenizer, tokens, model.get_output_embeddings().weight.shape[0]))

    @staticmethod
    def check_dir(path: str | Path, tokens: VerdictTokens | None = None) -> Path:
        """``path`` if it holds a causal LM and, given ``tokens``, its tokenizer and vocabulary have
        those verdict tokens: what loading would reject, found from the config and the tokenizer
        without the weights, so that a run fails before its first stage rather than at the first
        one that scores."""
        path = require_dir(path, "PRM", saved_model=True)
        config = AutoConfig.from_pretrained(str(path))
        architectures = config.architectures or []
        if not any(name.endswith("ForCausalLM") for name in architectures):
            raise ModelLoadError(
                f"PRM directory {str(path)!r} holds {architectures or 'an unknown architecture'}; "
                "expected a causal LM (a ...ForCausalLM model)"
            )
        if tokens is not None:
            verdict_ids(load_tokenizer(path), tokens, config.get_text_config().vocab_size)
        return path

    def probabilities(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, solution_start: torch.Tensor
    ) -> torch.Tensor:
        hidden = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        head = self.model.get_output_embeddings()
        verdict = head.weight[self.verdict_ids.to(head.weight.device)]  # (2, hidden)
        logits = hidden @ verdict.T  # only the two verdict rows of the output head: (B, T, 2)
        if getattr(head, "bias", None) is not None:
            logits = logits + head.bias[self.verdict_ids.to(head.weight.device)]
        return torch.softmax(logits.float(), dim=-1)[..., 0]


class CausalLMPRM(VerdictTokenPRM):
    """``StepScorer`` over a causal LM trained to emit a good or a bad token after each step tag."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        prompt: PromptConfig = PromptConfig(template="{question} "),
        layout: CausalPRMFormat = CausalPRMFormat(),
        batch_size: int = 16,
    ) -> None:
        super().__init__(model, tokenizer, prompt, layout, batch_size)
        self.layout = layout

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        prompt: PromptConfig = PromptConfig(template="{question} "),
        layout: CausalPRMFormat = CausalPRMFormat(),
        device: str | None = None,
        batch_size: int = 16,
    ) -> CausalLMPRM:
        """Load a causal-LM PRM saved with ``save_pretrained``."""
        path = cls.check_dir(path)
        return cls(load_causal_lm(path, device=device), load_tokenizer(path), prompt, layout, batch_size)

    def encode(self, prompt: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
        """The prompt and the tagged steps encoded as one text, as the published PRMs were trained
        and are run, and the position of the token holding each tag's last character. Encoding the
        steps one at a time gives other tokens with a SentencePiece-style tokenizer (Mistral's,
        Llama 2's: Math-Shepherd's own), which starts every text it encodes with a word boundary:
        the PRM would read a stray "▁" before the first step and before every separator."""
        text, ends = prompt, []
        for number, step in enumerate(steps):
            text += (self.layout.step_separator if number else "") + step + self.layout.step_tag
            ends.append(len(text))
        encoded = self.tokenizer(text)
        positions = [encoded.char_to_token(end - 1) for end in ends]
        if None in positions:
            raise ValueError(f"the tokenizer drops the last character of the step tag {self.layout.step_tag!r}")
        return list(encoded["input_ids"]), positions
