"""Verifiers: step scorers that give each solution step a probability of being on a correct path."""

from .base import BatchedModelScorer, ScoreOutput, StepScorer
from .causal import CausalLMPRM, CausalPRMFormat, VerdictTokenPRM, VerdictTokens
from .chat import ChatTurnFormat, ChatTurnPRM, StepSeparatorFormat, StepSeparatorPRM
from .load import VerifierConfig, check_verifier, load_verifier
from .margin import MarginPRMConfig, MarginPRMForTokenClassification, ProposerMarginScorer
from .outcome import OutcomeScorer
from .prm import TokenClassificationPRM, encode_steps

__all__ = [
    "BatchedModelScorer",
    "CausalLMPRM",
    "CausalPRMFormat",
    "ChatTurnFormat",
    "ChatTurnPRM",
    "MarginPRMConfig",
    "MarginPRMForTokenClassification",
    "OutcomeScorer",
    "ProposerMarginScorer",
    "ScoreOutput",
    "StepScorer",
    "StepSeparatorFormat",
    "StepSeparatorPRM",
    "TokenClassificationPRM",
    "VerdictTokenPRM",
    "VerdictTokens",
    "VerifierConfig",
    "check_verifier",
    "encode_steps",
    "load_verifier",
]
