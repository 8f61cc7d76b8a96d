"""Verifiers: step scorers that give each solution step a probability of being on a correct path."""

from .base import ScoreOutput, StepScorer
from .prm import TokenClassificationPRM, encode_steps

__all__ = ["ScoreOutput", "StepScorer", "TokenClassificationPRM", "encode_steps"]
