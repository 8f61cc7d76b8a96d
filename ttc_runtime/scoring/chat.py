"""Published PRMs that read a solution as a conversation written by their tokenizer's chat template.

Two layouts:

* Chat turns (the RLHFlow PRMs, e.g. ``RLHFlow/Llama3.1-8B-PRM-Deepseek-Data``): a causal LM
  fine-tuned on conversations in which every step is a user turn (the first one holds the question,
  a space, then the first step) answered by an assistant turn holding the verdict, "+" for a good
  step and "-" for a bad one. A step's score is ``softmax(logit_good, logit_bad)[good]`` at the
  position that predicts its verdict; every verdict is written as "+", as in the model's use.
* Step separators with a two-class head (``Qwen/Qwen2.5-Math-PRM-7B``): a system turn, the question
  as the user turn, and the steps, each closed by a separator token (``<extra_0>``), as the
  assistant turn. A reward head gives two logits at every token; a step's score is the good class's
  softmax probability at its separator.

Both render the whole conversation with the chat template and tokenize it as one text, as the
models were trained, rather than tokenizing the pieces apart: the score positions are then read in
exactly the token sequence the model expects, whatever the template writes around each turn.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, field_validator
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForTokenClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from ..config import StrictModel
from ..models import ModelLoadError, load_causal_lm, load_tokenizer, require_dir
from ..prompts import PromptConfig
from .base import BatchedModelScorer
from .causal import VerdictTokenPRM, VerdictTokens

Message = dict[str, str]

_MARK = "\x00"
"""Stands in for every verdict in a first rendering of a conversation: where the template writes it
is where the verdicts are, whatever the template writes around the turns."""


def _require_chat_template(tokenizer: PreTrainedTokenizerBase) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("the PRM's tokenizer has no chat template; its layout is written by one")


class ChatTurnFormat(VerdictTokens):
    """How a chat-turn PRM reads a solution and which tokens carry its verdict."""

    verdict: str = Field(
        "+", min_length=1, description="The assistant turn after every step; the score is read just before it."
    )
    first_turn: str = Field(
        "{question} {step}",
        description="The first user turn: how the question and the first step are joined "
        "('{question}' and '{step}' once each).",
    )

    @field_validator("first_turn")
    @classmethod
    def _has_both_fields(cls, first_turn: str) -> str:
        for field in ("{question}", "{step}"):
            if first_turn.count(field) != 1:
                raise ValueError(f"first_turn must contain '{field}' exactly once")
        return first_turn


class ChatTurnPRM(VerdictTokenPRM):
    """``StepScorer`` over a causal LM that answers every step, given as a user turn, with a verdict
    in an assistant turn.

    The verdicts are located by rendering the conversation once with a marker in their place; the
    conversation as given is then tokenized with character offsets, and each verdict must start a
    token (a tokenizer that merged it with the text before it would leave no position predicting
    it), and that token must be the good token, the one the model was trained to predict there.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        prompt: PromptConfig = PromptConfig(template="{question}"),
        layout: ChatTurnFormat = ChatTurnFormat(),
        batch_size: int = 16,
    ) -> None:
        _require_chat_template(tokenizer)
        if not tokenizer.is_fast:
            raise ValueError("a chat-turn PRM needs a fast tokenizer: verdicts are found by character offsets")
        super().__init__(model, tokenizer, prompt, layout, batch_size)
        self.layout = layout

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        prompt: PromptConfig = PromptConfig(template="{question}"),
        layout: ChatTurnFormat = ChatTurnFormat(),
        device: str | None = None,
        batch_size: int = 16,
    ) -> ChatTurnPRM:
        """Load a chat-turn PRM saved with ``save_pretrained``."""
        path = cls.check_dir(path)
        return cls(load_causal_lm(path, device=device), load_tokenizer(path), prompt, layout, batch_size)

    def conversation(self, prompt: str, steps: Sequence[str], verdict: str) -> list[Message]:
        """One user turn per step, each answered by ``verdict``; with no step, the question alone."""
        parts = {"{question}": prompt, "{step}": steps[0] if steps else ""}
        first = re.sub(r"\{question\}|\{step\}", lambda match: parts[match.group()], self.layout.first_turn)
        messages = []
        for turn in [first, *steps[1:]]:
            messages.append({"role": "user", "content": turn})
            if steps:
                messages.append({"role": "assistant", "content": verdict})
        return messages

    def _render(self, prompt: str, steps: Sequence[str], verdict: str) -> str:
        return self.tokenizer.apply_chat_template(self.conversation(prompt, steps, verdict), tokenize=False)

    def encode(self, prompt: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
        verdict = self.layout.verdict
        pieces = self._render(prompt, steps, _MARK).split(_MARK)
        if len(pieces) != len(steps) + 1:
            raise ValueError(f"the question or a step contains {_MARK!r}, which stands in for the verdicts")
        text = self._render(prompt, steps, verdict)
        if verdict.join(pieces) != text:
            raise ValueError(f"the chat template does not write the verdict {verdict!r} as given")
        encoding = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(encoding["input_ids"])
        token_at: dict[int, int] = {}
        for index, (start, end) in enumerate(encoding["offset_mapping"]):
            if end > start:
                token_at.setdefault(start, index)
        good = int(self.verdict_ids[0])
        positions = []
        start = 0
        for number, piece in enumerate(pieces[:-1], start=1):
            start += len(piece)
            index = token_at.get(start)
            if index is None:
                context = text[max(0, start - 12) : start + len(verdict)]
                raise ValueError(
                    f"step {number}'s verdict {verdict!r} does not start a token in {context!r}: the tokenizer "
                    "merges it with the text before it, so no position predicts it"
                )
            if ids[index] != good:
                raise ValueError(
                    f"step {number}'s verdict {verdict!r} begins with token {ids[index]}, not the good token "
                    f"{good}: set verdict or good_token_id to agree"
                )
            positions.append(index - 1)
            start += len(verdict)
        return ids, positions


class StepSeparatorFormat(StrictModel):
    """How a step-separator PRM with a two-class head reads a solution, and how it is loaded."""

    separator: str = Field(
        "<extra_0>", min_length=1, description="Closes every step; one token, where the step's score is read."
    )
    system_prompt: str | None = Field(
        "Please reason step by step, and put your final answer within \\boxed{}.",
        description="The system turn; None: no system turn (the chat template may write its own).",
    )
    good_class: Literal[0, 1] = Field(1, description="Which of the head's two classes is a good step.")
    trust_remote_code: bool = Field(
        False,
        description="Run the modelling code that ships in the PRM's directory (auto_map in its config.json), "
        "as Qwen2.5-Math-PRM needs; a *ForTokenClassification model with two labels needs none.",
    )


def _runs_own_code(path: Path, trust_remote_code: bool) -> bool:
    """Whether the PRM at ``path`` is a custom-code model (else a two-label token classifier);
    any other model is a ``ModelLoadError`` naming the directory (read from its config only)."""
    config = AutoConfig.from_pretrained(str(path))
    architectures = config.architectures or []
    if any(name.endswith("ForTokenClassification") for name in architectures):
        if config.num_labels != 2:
            raise ModelLoadError(
                f"PRM directory {str(path)!r} holds {architectures} with {config.num_labels} labels; "
                "expected a two-class head (2 labels)"
            )
        return False
    if "AutoModel" in (getattr(config, "auto_map", None) or {}):
        if not trust_remote_code:
            raise ModelLoadError(
                f"PRM directory {str(path)!r} holds {architectures or 'a model'} with its own modelling code "
                "(auto_map in config.json); set verifier.step_separator.trust_remote_code: true to run it"
            )
        return True
    raise ModelLoadError(
        f"PRM directory {str(path)!r} holds {architectures or 'an unknown architecture'}; expected a "
        "token-classification model with two labels, or a model with its own code (auto_map in config.json)"
    )


class StepSeparatorPRM(BatchedModelScorer):
    """``StepScorer`` over a model with a two-class head read at the separator closing each step.

    The head's output is taken from ``.logits`` or, for custom code returning a tuple, the first
    output; it must be (batch, length, 2).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        prompt: PromptConfig = PromptConfig(template="{question}"),
        layout: StepSeparatorFormat = StepSeparatorFormat(),
        batch_size: int = 16,
    ) -> None:
        _require_chat_template(tokenizer)
        super().__init__(model, tokenizer, prompt, batch_size)
        self.layout = layout
        ids = tokenizer(layout.separator, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(
                f"separator {layout.separator!r} is {len(ids)} tokens for this tokenizer; expected one "
                "(a special token of the PRM's tokenizer)"
            )
        self.separator_id = ids[0]

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        prompt: PromptConfig = PromptConfig(template="{question}"),
        layout: StepSeparatorFormat = StepSeparatorFormat(),
        device: str | None = None,
        batch_size: int = 16,
    ) -> StepSeparatorPRM:
        """Load a two-label token classifier, or a custom-code PRM when ``layout.trust_remote_code``."""
        path = require_dir(path, "PRM", saved_model=True)
        if _runs_own_code(path, layout.trust_remote_code):
            model = AutoModel.from_pretrained(str(path), dtype="auto", trust_remote_code=True)
        else:
            model = AutoModelForTokenClassification.from_pretrained(str(path), dtype="auto")
        if device is not None:
            model.to(device)
        return cls(model, load_tokenizer(path), prompt, layout, batch_size)

    @staticmethod
    def check_dir(path: str | Path, trust_remote_code: bool = False) -> Path:
        """``path`` if it holds a two-label token classifier, or a custom-code model that
        ``trust_remote_code`` allows to run (read from its config only)."""
        path = require_dir(path, "PRM", saved_model=True)
        _runs_own_code(path, trust_remote_code)
        return path

    def conversation(self, prompt: str, steps: Sequence[str]) -> list[Message]:
        """The system turn, the question, and the steps each closed by the separator."""
        system = [] if self.layout.system_prompt is None else [{"role": "system", "content": self.layout.system_prompt}]
        solution = "".join(step + self.layout.separator for step in steps)
        return [*system, {"role": "user", "content": prompt}, {"role": "assistant", "content": solution}]

    def encode(self, prompt: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
        text = self.tokenizer.apply_chat_template(self.conversation(prompt, steps), tokenize=False)
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        positions = [index for index, token in enumerate(ids) if token == self.separator_id]
        if len(positions) != len(steps):
            raise ValueError(
                f"the conversation holds {len(positions)} separators {self.layout.separator!r} for "
                f"{len(steps)} steps: the question or a step contains one"
            )
        return ids, positions

    def probabilities(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, solution_start: torch.Tensor
    ) -> torch.Tensor:
        output = self.model(input_ids=input_ids, attention_mask=attention_mask)
        logits = output.logits if getattr(output, "logits", None) is not None else output[0]
        if logits.dim() != 3 or logits.shape[-1] != 2:
            raise ValueError(f"the PRM gave outputs of shape {tuple(logits.shape)}; expected (batch, length, 2)")
        return torch.softmax(logits.float(), dim=-1)[..., self.layout.good_class]
