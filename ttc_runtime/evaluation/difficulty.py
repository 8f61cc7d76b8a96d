"""Question difficulty from K independent samples, the paper's two notions.

- **Oracle** difficulty: the question's pass@1 over its K samples (uses the gold answer).
- **Predicted** difficulty: the mean of the verifier's final-step score over the same K samples
  (no gold answer: what a deployed system could compute, at the cost of K samples and their
  scoring).

Both are cut into ``bins`` quantile bins over the questions of a pool, bin 1 the easiest (highest
pass@1 or score). Questions with equal values share a bin (average ranks), so bins can differ in
size when many questions tie (e.g. every sample right).

The cost of an estimate is recorded per question like any other generation (``estimation_flops``):
K samples of the proposer with the prompt encoded once, plus, for the predicted estimate, the
verifier's scoring of all K.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


def quantile_bins(values: np.ndarray, bins: int = 5) -> np.ndarray:
    """Bin 1 (highest values: easiest) to ``bins`` (lowest), by quantile of average ranks."""
    if len(values) == 0:
        raise ValueError("no questions to bin")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    share = pd.Series(-np.asarray(values, dtype=float)).rank(method="average", pct=True).to_numpy()
    return np.clip(np.ceil(share * bins), 1, bins).astype(int)


@dataclass(frozen=True)
class Difficulty:
    """Per question of a pool (in pool order): the statistics, their bins and the estimation cost
    in FLOPs, with and without the verifier's part."""

    pass_at_1: np.ndarray
    mean_last_score: np.ndarray
    oracle_bins: np.ndarray
    predicted_bins: np.ndarray
    sampling_flops: np.ndarray
    scoring_flops: np.ndarray
    samples: int

    @property
    def oracle_flops(self) -> np.ndarray:
        """The oracle estimate's cost: K samples (grading needs no model)."""
        return self.sampling_flops

    @property
    def predicted_flops(self) -> np.ndarray:
        """The predicted estimate's cost: K samples and their scoring."""
        return self.sampling_flops + self.scoring_flops


def difficulty(samples: pd.DataFrame, proposer_params: int, bins: int = 5) -> Difficulty:
    """Both difficulty notions from a pool's samples (``RolloutPool.samples``)."""
    grouped = samples.groupby("question", sort=True)
    counts = grouped.size().to_numpy()
    if len(set(counts)) != 1:
        raise ValueError("questions hold different numbers of samples; the pool is incomplete")
    pass_at_1 = grouped["correct"].mean().to_numpy(dtype=float)
    mean_last = grouped["last_score"].mean().to_numpy(dtype=float)
    prompt = grouped["prompt_tokens"].first().to_numpy(dtype=float)
    generated = grouped["generated_tokens"].sum().to_numpy(dtype=float)
    return Difficulty(
        pass_at_1=pass_at_1,
        mean_last_score=mean_last,
        oracle_bins=quantile_bins(pass_at_1, bins),
        predicted_bins=quantile_bins(mean_last, bins),
        sampling_flops=2.0 * proposer_params * (prompt + generated),
        scoring_flops=grouped["verifier_flops"].sum().to_numpy(dtype=float),
        samples=int(counts[0]),
    )
