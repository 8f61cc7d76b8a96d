"""Question-only features for the learned allocator, pluggable by config (``proposer_embeddings`` by
default).

- ``proposer_hidden``: the proposer's own last hidden states over the question's
  prompt, mean-pooled and joined with the last position's. The prompt is encoded anyway when the
  proposer answers, so in a serving system these are free; they are charged here all the same,
  as one forward pass over the prompt (``2 x params x prompt tokens`` FLOPs).
- ``proposer_embeddings``: the mean of the proposer's input embeddings over the prompt's tokens:
  which tokens the question holds, in the proposer's own embedding space, with no forward pass.
  Charged its additions (hidden size x tokens), next to nothing. On the embedded task it carries
  the level as well as the hidden states do (the chain's length and its numbers' sizes are its
  tokens), at none of their cost: the hidden states cost a forward pass over the prompt, about a
  third of one sample's FLOPs there, where prompts are as long as solutions.
- ``encoder``: the same read-out from another Hugging Face model given by path (a small sentence
  encoder, or any causal LM), charged the same way with that model's parameter count.
- ``ngrams``: hashed character n-grams (scikit-learn's ``HashingVectorizer``), the cheapest
  baseline: no model, no FLOPs.

Every featurizer maps a batch of question texts to a float32 matrix and reports the FLOPs each
question cost.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from ttc_runtime.config import StrictModel
from ttc_runtime.models import flop_params, load_tokenizer
from ttc_runtime.prompts import PromptConfig


class FeatureConfig(StrictModel):
    """Which question features the allocator reads."""

    kind: Literal["proposer_embeddings", "proposer_hidden", "encoder", "ngrams"] = "proposer_embeddings"
    encoder: str | None = Field(None, description="Model directory for kind 'encoder'.")
    ngram_features: int = Field(1024, ge=16, description="Hash buckets for kind 'ngrams'.")
    ngram_max: int = Field(3, ge=1, description="Longest character n-gram for kind 'ngrams'.")
    batch_size: int = Field(64, ge=1, description="Questions per forward pass.")


class Featurizer(ABC):
    """Question texts in, one feature row per question out."""

    dim: int

    @abstractmethod
    def __call__(self, questions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Features ``(len(questions), dim)`` float32, and each question's cost in FLOPs."""


class NgramFeatures(Featurizer):
    """L2-normalised counts of hashed character n-grams (within word boundaries)."""

    def __init__(self, buckets: int, longest: int) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        self.vectorizer = HashingVectorizer(
            analyzer="char_wb", ngram_range=(1, longest), n_features=buckets, alternate_sign=False, norm="l2"
        )
        self.dim = buckets

    def __call__(self, questions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        matrix = self.vectorizer.transform(list(questions)).toarray().astype(np.float32)
        return matrix, np.zeros(len(questions))


class HiddenStateFeatures(Featurizer):
    """A model's last hidden states over the formatted prompt: their mean and the last one."""

    def __init__(self, model_dir: str, prompt: PromptConfig, batch_size: int, device: str = "cpu") -> None:
        from transformers import AutoModel

        self.tokenizer = load_tokenizer(model_dir)
        self.model = AutoModel.from_pretrained(model_dir).to(device).eval()
        self.prompt = prompt
        self.batch_size = batch_size
        self.device = device
        self.params = flop_params(self.model)
        self.dim = 2 * self.model.config.hidden_size

    @torch.inference_mode()
    def __call__(self, questions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        rows, costs = [], []
        for start in range(0, len(questions), self.batch_size):
            texts = [self.prompt.format(q) for q in questions[start : start + self.batch_size]]
            encoded = self.tokenizer(texts, return_tensors="pt", padding=True).to(self.device)
            mask = encoded["attention_mask"]
            hidden = self.model(**encoded).last_hidden_state
            lengths = mask.sum(dim=1)
            mean = (hidden * mask.unsqueeze(-1)).sum(dim=1) / lengths.unsqueeze(-1)
            if self.tokenizer.padding_side == "left":
                last = hidden[:, -1]
            else:
                last = hidden[torch.arange(len(texts)), lengths - 1]
            rows.append(torch.cat([mean, last], dim=-1).float().cpu().numpy())
            costs += [2 * self.params * int(n) for n in lengths]
        return np.concatenate(rows), np.asarray(costs, dtype=float)


class EmbeddingFeatures(Featurizer):
    """A model's input embeddings over the formatted prompt, mean-pooled, and the log of the
    prompt's length in tokens: no forward pass. The mean forgets how many tokens it averaged, and
    the length is what tells chains of three operations from chains of five; with it the
    nearest-neighbour outcome policy saved 0.07 more of the oracle's compute saving at
    best-of-N's accuracy at N = 16 on the family task."""

    def __init__(self, model_dir: str, prompt: PromptConfig, device: str = "cpu") -> None:
        from transformers import AutoModel

        self.tokenizer = load_tokenizer(model_dir)
        self.embeddings = AutoModel.from_pretrained(model_dir).get_input_embeddings().to(device).eval()
        self.prompt = prompt
        self.device = device
        self.dim = self.embeddings.embedding_dim + 1

    @torch.inference_mode()
    def __call__(self, questions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        rows, costs = [], []
        for question in questions:
            ids = self.tokenizer(self.prompt.format(question), return_tensors="pt")["input_ids"].to(self.device)
            pooled = self.embeddings(ids)[0].mean(dim=0).float().cpu().numpy()
            rows.append(np.append(pooled, np.log(ids.shape[1])).astype(np.float32))
            costs.append(float(self.embeddings.embedding_dim * ids.shape[1]))
        return np.stack(rows), np.asarray(costs)


def build_featurizer(config: FeatureConfig, proposer_dir: str, prompt: PromptConfig, device: str = "cpu") -> Featurizer:
    """The featurizer ``config`` names; ``proposer_dir`` serves ``proposer_hidden``."""
    if config.kind == "ngrams":
        return NgramFeatures(config.ngram_features, config.ngram_max)
    if config.kind == "proposer_embeddings":
        return EmbeddingFeatures(proposer_dir, prompt, device)
    if config.kind == "encoder":
        if config.encoder is None:
            raise ValueError("features.encoder: a model directory is needed for kind 'encoder'")
        return HiddenStateFeatures(config.encoder, prompt, config.batch_size, device)
    return HiddenStateFeatures(proposer_dir, prompt, config.batch_size, device)
