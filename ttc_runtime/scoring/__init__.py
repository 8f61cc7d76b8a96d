"""Verifiers: step scorers that give each solution step a probability of being on a correct path."""

from .base import BatchedModelScorer, ScoreOutput, StepScorer
from .causal import CausalLMPRM, CausalPRMFormat
from .load import VerifierConfig, check_verifier, load_verifier
from .margin import MarginPRMConfig, MarginPRMForTokenClassification, ProposerMarginScorer
from .outcome import OutcomeScorer
from .prm import TokenClassificationPRM, encode_steps

__all__ = [
    "BatchedModelScorer",
    "CausalLMPRM",
    "CausalPRMFormat",
    "MarginPRMConfig",
    "MarginPRMForTokenClassification",
    "OutcomeScorer",
    "ProposerMarginScorer",
    "ScoreOutput",
    "StepScorer",
    "TokenClassificationPRM",
    "VerifierConfig",
    "check_verifier",
    "encode_steps",
    "load_verifier",
]
