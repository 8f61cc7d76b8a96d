"""Compute accounting: tokens and FLOPs, proposer and verifier kept apart.

FLOPs follow the paper's rule (after Kaplan et al.): a forward pass costs ``2 x parameters`` FLOPs
per token and a training step ``6 x parameters`` per token; attention's sequence-length term is
ignored, as there. ``parameters`` is ``models.flop_params`` (all weights but an untied input
embedding). Counts are Python integers, so sums are exact at any scale.

The budget of a strategy is counted in generations, the paper's unit; ``Compute`` records what was
spent in tokens and FLOPs, by one rule on every path, so that equal work costs equal FLOPs whichever
strategy does it:

- **Proposer.** Each token enters the proposer's context once and is charged once: a question's
  prompt once however many samples, beams or subtrees start from it, every sampled token once.
  A prefix that a strategy hands back to the proposer to continue (a beam's partial solution when
  its next steps are sampled, a candidate a lookahead rollout extends) is not charged again: the
  proposer read it when it sampled it, and an engine that keeps its cache (vLLM's prefix caching)
  does not compute it again. The transformers back end does re-encode such prefixes; charging that
  would make beam search at N = 1, which samples its one solution a step per call, cost more than
  the one plain sample it draws (``strategies.base.continued``). A prompt that is a new context,
  such as a revision prompt holding earlier attempts, is charged in full.
- **Verifier.** A model that reads texts is charged its forward pass over every token it reads.
  The margin PRM over the proposer's own model reads nothing itself where scoring is fused
  (``scoring.margin``): its score is its head over margin statistics the sampling already
  produced, charged ``2 x head weights`` per scored step, for a step of a search and for a step of
  a best-of-N or rollout-pool sample alike.

``ACCOUNTING`` names this rule; stored compute records made under another (a rollout pool) are
not mixed with these: the pool's hash includes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

ACCOUNTING = "v2: prompt once, sampled tokens once, continued prefixes free, fused margin head per step"


def inference_flops(params: int, tokens: int) -> int:
    """FLOPs of running ``tokens`` tokens through a model of ``params`` parameters: 2·N·D."""
    return 2 * params * tokens


def training_flops(params: int, tokens: int) -> int:
    """FLOPs of training on ``tokens`` tokens (forward and backward): 6·N·D."""
    return 6 * params * tokens


@dataclass(frozen=True)
class Usage:
    """What one model spent.

    ``prompt_tokens`` are tokens encoded (a prompt shared by N samples is encoded once and counted
    once); ``generated_tokens`` are sampled tokens, end-of-sequence and stop-string tokens included,
    padding and anything after a sequence finished excluded; ``flops`` is
    ``2 x params x (prompt_tokens + generated_tokens)`` for inference.
    """

    prompt_tokens: int = 0
    generated_tokens: int = 0
    flops: int = 0

    @classmethod
    def inference(cls, params: int, prompt_tokens: int, generated_tokens: int = 0) -> Usage:
        """Usage of a forward-only call on a model of ``params`` parameters."""
        return cls(prompt_tokens, generated_tokens, inference_flops(params, prompt_tokens + generated_tokens))

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.generated_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.generated_tokens + other.generated_tokens,
            self.flops + other.flops,
        )


@dataclass(frozen=True)
class Compute:
    """The compute record of a piece of work: the proposer's and the verifier's usage apart.

    ``generations`` counts complete solutions' worth of proposer samples, in the paper's budget
    unit; strategies set it, generators leave it 0.
    """

    proposer: Usage = field(default_factory=Usage)
    verifier: Usage = field(default_factory=Usage)
    generations: int = 0

    @property
    def flops(self) -> int:
        """Total inference FLOPs, proposer and verifier together."""
        return self.proposer.flops + self.verifier.flops

    def __add__(self, other: Compute) -> Compute:
        return Compute(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def to_dict(self) -> dict[str, int]:
        """Flat form for logs and JSON: ``proposer_prompt_tokens``, ..., ``flops``."""
        flat: dict[str, int] = {}
        for role in ("proposer", "verifier"):
            usage: Usage = getattr(self, role)
            flat[f"{role}_prompt_tokens"] = usage.prompt_tokens
            flat[f"{role}_generated_tokens"] = usage.generated_tokens
            flat[f"{role}_flops"] = usage.flops
        flat["generations"] = self.generations
        flat["flops"] = self.flops
        return flat
