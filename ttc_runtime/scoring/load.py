"""The verifier as configured: which kind of scorer, how it reads solutions, how it aggregates."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from ..config import StrictModel
from ..prompts import PromptConfig
from ..selection import Aggregation
from .base import StepScorer
from .causal import CausalLMPRM, CausalPRMFormat
from .chat import ChatTurnFormat, ChatTurnPRM, StepSeparatorFormat, StepSeparatorPRM
from .margin import ProposerMarginScorer
from .outcome import OutcomeScorer
from .prm import TokenClassificationPRM


class VerifierConfig(StrictModel):
    """How the PRM is loaded and used at inference.

    The sections of the chat layouts are left out of the config's dump while they hold their
    defaults, so that the fingerprints of runs configured before those layouts existed still match.
    """

    kind: Literal["token_classification", "causal_lm", "chat_turn", "step_separator", "proposer_margin"] = Field(
        "token_classification",
        description="token_classification: a PRM trained here (one logit per step); causal_lm: a "
        "Math-Shepherd-style PRM (good/bad token after a step tag); chat_turn: an RLHFlow-style PRM (each "
        "step a user turn answered by a verdict token); step_separator: a Qwen2.5-Math-PRM-style PRM (a "
        "two-class head read at the separator closing each step); proposer_margin: no verifier model, "
        "the proposer's own margins (scoring/margin.py).",
    )
    prompt: PromptConfig | None = Field(
        None,
        description="How the PRM reads the question; None: the proposer's prompt (token_classification, "
        "proposer_margin), '{question} ' (causal_lm, as Math-Shepherd) or the question alone (chat_turn, "
        "step_separator, whose chat template writes the rest).",
    )
    causal_lm: CausalPRMFormat = CausalPRMFormat()
    chat_turn: ChatTurnFormat = Field(ChatTurnFormat(), exclude_if=lambda section: section == ChatTurnFormat())
    step_separator: StepSeparatorFormat = Field(
        StepSeparatorFormat(), exclude_if=lambda section: section == StepSeparatorFormat()
    )
    outcome: bool = Field(False, description="Score finished solutions only (the last step's score).")
    aggregation: Aggregation = Field(
        "last", description="Step scores to answer score: last (the paper's), min, prod, mean."
    )
    batch_size: int = Field(64, ge=1, description="Solutions per PRM forward pass.")

    @property
    def published(self) -> bool:
        """Whether the verifier is a published PRM, used as given: only token-classification PRMs
        are trained here, so a run must be given one (``prm.model``)."""
        return self.kind in ("causal_lm", "chat_turn", "step_separator")


def check_verifier(config: VerifierConfig, path: str | Path) -> None:
    """Fail early, naming the directory, when ``path`` is not the kind of PRM ``config`` asks for, or
    (a PRM answering with verdict tokens) its tokenizer lacks the configured ones; reads the model's
    config and tokenizer, not its weights."""
    if config.kind == "token_classification":
        TokenClassificationPRM.check_dir(path)
    elif config.kind == "step_separator":
        StepSeparatorPRM.check_dir(path, config.step_separator.trust_remote_code)
    elif config.kind == "chat_turn":
        ChatTurnPRM.check_dir(path, config.chat_turn)
    elif config.kind == "causal_lm":
        CausalLMPRM.check_dir(path, config.causal_lm)
    else:
        CausalLMPRM.check_dir(path)  # proposer_margin: the proposer itself, read through its margins


def load_verifier(
    config: VerifierConfig, path: str | Path, proposer_prompt: PromptConfig, device: str | None = None
) -> StepScorer:
    """The scorer ``config`` describes, loaded from ``path`` (the proposer's directory for
    ``proposer_margin``, the PRM's otherwise)."""
    if config.kind == "token_classification":
        prompt = config.prompt or proposer_prompt
        scorer: StepScorer = TokenClassificationPRM.from_pretrained(path, prompt, device, config.batch_size)
    elif config.kind == "proposer_margin":
        prompt = config.prompt or proposer_prompt
        scorer = ProposerMarginScorer.from_pretrained(path, prompt, device, config.batch_size)
    elif config.kind == "causal_lm":
        prompt = config.prompt or PromptConfig(template="{question} ")
        scorer = CausalLMPRM.from_pretrained(path, prompt, config.causal_lm, device, config.batch_size)
    elif config.kind == "chat_turn":
        prompt = config.prompt or PromptConfig(template="{question}")
        scorer = ChatTurnPRM.from_pretrained(path, prompt, config.chat_turn, device, config.batch_size)
    else:
        prompt = config.prompt or PromptConfig(template="{question}")
        scorer = StepSeparatorPRM.from_pretrained(path, prompt, config.step_separator, device, config.batch_size)
    return OutcomeScorer(scorer) if config.outcome else scorer
