"""The paper's FLOPs-matched comparison: the proposer with test-time compute against a model of the
same family about 14x larger, trained on the same data (the "pretraining" side).

**Exchange rule.** Pretraining a model of N parameters on D_pretrain tokens costs 6·N·D_pretrain
FLOPs and answering D_inference tokens costs 2·N·D_inference. With R = D_inference / D_pretrain, a
model M times larger costs, pretraining and inference together, as much as the small model run
with a test-time multiplier of

    X = M + 3 · (M − 1) / R

generations per question. R << 1 (few queries for the training spent) buys many generations;
R >> 1 (a model answering far more tokens than it was trained on) buys about M.

**The comparison**, per question of the rollout pool and by its oracle difficulty bin: the larger
model's pass@1 (the mean correctness of ``samples`` samples: what one answer of it gets right on
average) against the small proposer's best-of-N weighted with N = X generations, resampled from the
pool's K samples with the pool's verifier scores (the paper's test-time side; N is capped at K, and
the table says so). The multiplier counts generations, as the paper's does: the verifier's FLOPs on
the small side are not traded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from ttc_runtime.config import StrictModel, positive
from ttc_runtime.models import TinyLMConfig
from ttc_runtime.outcomes import parallel_outcome


class CounterpartConfig(StrictModel):
    """The larger model and the exchange ratios of the comparison (stage ``counterpart``)."""

    enabled: bool = Field(False, description="Run the stage: it trains a model about 14x the proposer.")
    model: str | None = Field(None, description="A ready larger model of the proposer's family, used as is.")
    architecture: TinyLMConfig = Field(
        TinyLMConfig(hidden_size=384, num_layers=7, num_heads=6, intermediate_size=1152),
        description="Shape of the larger model trained from scratch (with the proposer's data and training "
        "settings but the learning rate); the default is about 14x the default proposer's FLOP parameters.",
    )
    learning_rate: float | None = Field(
        None,
        gt=0,
        description="Peak learning rate of the larger model; None: the proposer's times the proposer's width over "
        "the larger model's (Adam's per-weight update stays matched as the width grows, the muP rule). The "
        "proposer's own 3e-3 is too high at 3x the width: the 13.8x model ended at a training loss of 0.27 "
        "against the proposer's 0.086, with pass@1 0.079.",
    )
    save_steps: int = Field(
        50, ge=1, description="Checkpoint the larger model's training this often, so that a killed run resumes."
    )
    samples: int = Field(8, ge=1, description="Samples per pool question for the larger model's pass@1.")
    ratios: list[float] = Field([0.16, 0.79, 22.0], min_length=1, description="R = D_inference / D_pretrain.")
    resamples: int = Field(50, ge=1, description="N-subsets of the pool's samples drawn per question.")

    @field_validator("ratios")
    @classmethod
    def _positive(cls, ratios: list[float]) -> list[float]:
        return positive(ratios, "ratios")


def multiplier(scale: float, ratio: float) -> float:
    """Generations per question the small model may spend for the cost of one answer of a model
    ``scale`` times larger, at ``ratio`` = D_inference / D_pretrain (the module docstring's X)."""
    if scale < 1 or ratio <= 0:
        raise ValueError(f"need scale >= 1 and ratio > 0, got {scale} and {ratio}")
    return scale + 3 * (scale - 1) / ratio


@dataclass(frozen=True)
class MatchedRow:
    """One ratio R: the budget it buys and both sides' accuracy, overall and per bin, beside the
    proposer's own pass@1 (one sample, no verifier): the reference that says whether the larger
    model is the better sampler at all."""

    ratio: float
    multiplier: float
    generations: int
    capped: bool
    small: float
    large: float
    small_by_bin: dict[int, float]
    large_by_bin: dict[int, float]
    proposer_pass: float
    proposer_pass_by_bin: dict[int, float]


def compare(
    samples: pd.DataFrame,
    small_params: int,
    large_pass: np.ndarray,
    bins: np.ndarray,
    scale: float,
    config: CounterpartConfig,
    seed: int = 0,
) -> list[MatchedRow]:
    """The comparison at every ratio of ``config``: ``samples`` are the pool's (K per question, in
    question order, as ``large_pass`` and ``bins``)."""
    available = int(samples.groupby("question").size().min())
    proposer_pass = samples.groupby("question", sort=True)["correct"].mean().to_numpy(dtype=float)
    rows = []
    for ratio in config.ratios:
        x = multiplier(scale, ratio)
        n = min(available, max(1, math.floor(x)))
        draws = 1 if n == available else config.resamples
        small, _ = parallel_outcome(samples, "weighted", n, draws, seed, small_params)
        levels = sorted(set(bins.tolist()))
        rows.append(
            MatchedRow(
                ratio,
                x,
                n,
                n < math.floor(x),
                float(small.mean()),
                float(large_pass.mean()),
                {int(b): float(small[bins == b].mean()) for b in levels},
                {int(b): float(large_pass[bins == b].mean()) for b in levels},
                float(proposer_pass.mean()),
                {int(b): float(proposer_pass[bins == b].mean()) for b in levels},
            )
        )
    return rows


def format_matched(rows: Sequence[MatchedRow], scale: float, large_params: int, small_params: int) -> str:
    """The comparison as Markdown: one table per ratio's budget, bins as columns."""
    bins = sorted(rows[0].small_by_bin)
    head = " | ".join(f"bin {b}" for b in bins)
    lines = [
        f"Larger model: {large_params:,} FLOP parameters, {scale:.1f}x the proposer's {small_params:,}. "
        "Small side: best-of-N weighted with the pool's verifier at N = X generations; large side: pass@1.",
        "",
        f"| R | X (generations) | N used | side | all | {head} |",
        "|---|---|---|---|---|" + "---|" * len(bins),
    ]
    for row in rows:
        used = f"{row.generations}" + (" (capped at K)" if row.capped else "")
        small = " | ".join(f"{row.small_by_bin[b]:.3f}" for b in bins)
        large = " | ".join(f"{row.large_by_bin[b]:.3f}" for b in bins)
        lines.append(
            f"| {row.ratio:g} | {row.multiplier:.1f} | {used} | proposer + test-time | {row.small:.3f} | {small} |"
        )
        lines.append(f"| | | | {scale:.0f}x model, pass@1 | {row.large:.3f} | {large} |")
    reference = " | ".join(f"{rows[0].proposer_pass_by_bin[b]:.3f}" for b in bins)
    lines.append(f"| - | 1 | 1 | proposer, pass@1 (reference) | {rows[0].proposer_pass:.3f} | {reference} |")
    lines.append("")
    ahead = [b for b in bins if rows[0].large_by_bin[b] > rows[0].proposer_pass_by_bin[b]]
    behind = [b for b in bins if rows[0].large_by_bin[b] < rows[0].proposer_pass_by_bin[b]]
    lines.append(
        f"- Per sample, the larger model is ahead of the proposer on bins {ahead or 'none'} and behind on bins "
        f"{behind or 'none'}."
    )
    for row in rows:
        wins = [b for b in bins if row.small_by_bin[b] > row.large_by_bin[b]]
        losses = [b for b in bins if row.small_by_bin[b] < row.large_by_bin[b]]
        lines.append(
            f"- R = {row.ratio:g}: test-time compute ahead on bins {wins or 'none'}, the larger model ahead on "
            f"bins {losses or 'none'}."
        )
    return "\n".join(lines) + "\n"


def plot_matched(rows: Sequence[MatchedRow], scale: float, path: str | Path) -> None:
    """Bars per oracle bin: the proposer with test-time compute at each R, and the larger model;
    a grey line marks the proposer's own pass@1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ttc_runtime.files import save_figure

    bins = sorted(rows[0].small_by_bin)
    width = 0.8 / (len(rows) + 1)
    figure, axis = plt.subplots(figsize=(8.5, 3.6))
    x = np.arange(len(bins))
    for k, row in enumerate(rows):
        axis.bar(
            x + k * width,
            [row.small_by_bin[b] for b in bins],
            width,
            label=f"proposer, best-of-{row.generations} (R = {row.ratio:g})",
        )
    axis.bar(
        x + len(rows) * width,
        [rows[0].large_by_bin[b] for b in bins],
        width,
        color="black",
        label=f"{scale:.0f}x model, pass@1",
    )
    axis.hlines(
        [rows[0].proposer_pass_by_bin[b] for b in bins],
        x - width / 2,
        x + width * (len(rows) + 0.5),
        color="grey",
        linewidth=2,
        zorder=3,
        label="proposer, pass@1",
    )
    axis.set_xticks(x + width * len(rows) / 2, [f"bin {b}" for b in bins])
    axis.set_ylabel("accuracy")
    axis.set_ylim(0, 1.05)
    axis.set_title("FLOPs-matched: test-time compute against a larger model")
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    save_figure(figure, path)
