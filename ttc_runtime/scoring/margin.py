"""Step scores from the proposer's own confidence in what it wrote.

For every solution token ``x_t`` the proposer's margin is ``log p(x_t | x_<t) - max_v log p(v | x_<t)``
(0 when the sampled token is the one the model prefers, negative otherwise). Blank tokens (spaces,
newlines) are left out because layout choices such as padding length vary without changing the
content. Two verifiers read these margins:

- ``ProposerMarginScorer``, untrained: a step's score is ``exp`` of the smallest margin over the
  solution tokens up to the end of that step (a solution is as trustworthy as its least-preferred
  choice so far).
- ``MarginPRMForTokenClassification``, the embedded default PRM: the proposer, frozen, plus a small
  head trained on the Monte Carlo step labels that maps running statistics of the margins
  (``MARGIN_FEATURES``) to the probability that the step is on a correct path. It is a one-label
  token-classification model like any other PRM here, saved as one directory. With
  ``token_evidence`` it also reads *what* was written, not only how surely: one learned number
  per vocabulary token, summed over the solution so far (``EVIDENCE_FEATURES``). A solution can
  be wrong with every token written confidently (a guess whose own check says ``16 != 17``); its
  tokens say so, its margins cannot.

Where the margin PRM's proposer is the generator's own model (``fuse``), its scores need no forward
pass of their own: the generator returns each sampled token's log-probability and the top one, and
``FusedMarginScorer`` turns them into the same running statistics (``MarginState``) and reads the
head. Every strategy then scores this way (``SearchSettings.fused_scoring``): search one new step
at a time, best-of-N and the rollout pool's samples at the end of each step of a whole solution
(``FusedMarginScorer.step_scores``). The verifier is charged the head alone, ``2 x head weights``
FLOPs per scored step, on every path; the proposer's forward pass is paid once, by sampling.

On the embedded task the proposer's errors at temperature 0.8 are sampling slips, tokens drawn
against its own preference, which is what the margins expose; a PRM fine-tuned on the hidden state
at the end of a step has to learn the same comparison from labels and, at this data size, does not
(see the README).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForTokenClassification,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.modeling_outputs import TokenClassifierOutput

from ..generation.base import Completion
from ..models import load_causal_lm, load_tokenizer
from ..prompts import PromptConfig
from ..tasks.grading import STEP_SEPARATOR
from .base import BatchedModelScorer
from .prm import encode_steps

SLIP = math.log(0.5)
"""A token is a slip when the proposer gave it less than half the probability of its favourite."""

FLOOR = -10.0
"""Margins and log-probabilities below this many nats read as this: the head needs to know that a
step holds a slip, not how improbable the slip was, and bounded inputs keep its training stable."""

MARGIN_FEATURES = (
    "exp(running minimum margin): the untrained scorer's score",
    "running minimum margin / |FLOOR|",
    "exp(running minimum log-probability of the sampled token)",
    "exp(mean margin so far)",
    "log(1 + slips so far)",
    "log(1 + solution tokens so far)",
)
"""What the margin PRM's head reads at every position, over the non-blank solution tokens up to it;
all but the counts lie in [-1, 1]."""

EVIDENCE_FEATURES = ("running sum of the tokens' evidence",)
"""What a margin PRM with ``token_evidence`` reads besides ``MARGIN_FEATURES``: each token's learned
evidence (0 until trained), summed over the non-blank solution tokens up to the position. A sum
passes every token its gradient, so the head learns what each token says as a bag of words does;
a running maximum and minimum, tried first, passed it to one token per position and left the
family task's ``!`` (a guess whose check fails) at 0.01 after training."""

EVIDENCE_SCALE = 10.0
"""A token's evidence is its embedding times this: the PRM trainer's learning rate, sized for the
head, then moves a token's evidence by up to a hundredth a step, so a few hundred steps can bring
a telling token to the scale of the margin features."""


def blank_tokens(tokenizer: PreTrainedTokenizerBase, vocabulary: int) -> torch.Tensor:
    """(vocabulary,) True for tokens that decode to whitespace only; their margins never count."""
    blank = torch.zeros(vocabulary, dtype=torch.bool)
    blank[[i for i in range(min(vocabulary, len(tokenizer))) if not tokenizer.decode([i]).strip()]] = True
    return blank


def token_margins(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    solution_start: torch.Tensor,
    blank: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Margins, log-probabilities of the tokens present and which of them count, each (B, T - 1)
    for tokens 1..T-1; uncounted positions (prompt, padding, blank tokens) hold 0."""
    log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    tokens = input_ids[:, 1:]
    chosen = log_probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    margin = chosen - log_probs.max(dim=-1).values
    position = torch.arange(1, input_ids.shape[1], device=input_ids.device)
    counted = (position >= solution_start[:, None]) & attention_mask[:, 1:].bool() & ~blank[tokens]
    zero = torch.zeros_like(margin)
    return torch.where(counted, margin, zero), torch.where(counted, chosen, zero), counted


def evidence_features(evidence: torch.Tensor, counted: torch.Tensor) -> torch.Tensor:
    """(B, T, len(EVIDENCE_FEATURES)) from per-token evidence (B, T - 1) for tokens 1..T-1 and
    which of them count; position 0 (a prompt token) gets that of an empty solution (0)."""
    running = torch.cumsum(torch.where(counted, evidence, torch.zeros_like(evidence)), dim=1)[..., None]
    return torch.cat([torch.zeros_like(running[:, :1]), running], dim=1)


def margin_features(margin: torch.Tensor, chosen: torch.Tensor, counted: torch.Tensor) -> torch.Tensor:
    """(B, T, len(MARGIN_FEATURES)) running statistics from ``token_margins``' outputs; position 0
    (a prompt token) gets the statistics of an empty solution."""
    running_min = torch.cummin(margin, dim=1).values.clamp(min=FLOOR)
    tokens = torch.cumsum(counted.float(), dim=1)
    slips = torch.cumsum((counted & (margin < SLIP)).float(), dim=1)
    features = torch.stack(
        [
            torch.exp(running_min),
            running_min / -FLOOR,
            torch.exp(torch.cummin(chosen, dim=1).values.clamp(min=FLOOR)),
            torch.exp(torch.cumsum(margin, dim=1) / tokens.clamp(min=1)),
            torch.log1p(slips),
            torch.log1p(tokens),
        ],
        dim=-1,
    )
    empty = torch.zeros_like(features[:, :1])
    empty[..., [0, 2, 3]] = 1.0
    return torch.cat([empty, features], dim=1)


class MarginPRMConfig(PretrainedConfig):
    """Configuration of ``MarginPRMForTokenClassification``: the proposer's own configuration, the
    width of the head, and whether it reads the tokens' evidence (off in PRMs saved before it)."""

    model_type = "ttc_margin_prm"
    sub_configs = {"proposer": AutoConfig}

    def __init__(
        self,
        proposer: PretrainedConfig | dict | None = None,
        head_size: int = 16,
        token_evidence: bool = False,
        **kwargs,
    ) -> None:
        if isinstance(proposer, dict):
            proposer = AutoConfig.for_model(**proposer)
        self.proposer = proposer
        self.head_size = head_size
        self.token_evidence = token_evidence
        kwargs["num_labels"] = 1
        super().__init__(**kwargs)


class MarginPRMForTokenClassification(PreTrainedModel):
    """A PRM made of the frozen proposer and a head over its margins: one logit per token, a linear
    term plus a small MLP over ``MARGIN_FEATURES``.

    ``forward`` needs ``solution_start`` (B,), the index of each row's first solution token, since
    only solution tokens count. Training updates the head alone (``from_proposer`` freezes the
    proposer): the margins must stay those of the model that sampled the solutions.
    """

    config_class = MarginPRMConfig
    base_model_prefix = "proposer"
    needs_solution_start = True
    """Read by the scorer and the trainer, which pass ``solution_start`` to models that set it."""

    def __init__(self, config: MarginPRMConfig) -> None:
        super().__init__(config)
        self.proposer = AutoModelForCausalLM.from_config(config.proposer)
        width = len(MARGIN_FEATURES) + (len(EVIDENCE_FEATURES) if config.token_evidence else 0)
        self.linear = nn.Linear(width, 1)
        self.head = nn.Sequential(nn.Linear(width, config.head_size), nn.SiLU(), nn.Linear(config.head_size, 1))
        self.evidence = nn.Embedding(config.proposer.vocab_size, 1) if config.token_evidence else None
        self.register_buffer("blank", torch.zeros(config.proposer.vocab_size, dtype=torch.bool))
        self.post_init()

    @classmethod
    def from_proposer(
        cls,
        proposer: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        head_size: int = 16,
        token_evidence: bool = False,
    ) -> MarginPRMForTokenClassification:
        """A PRM around a copy of ``proposer``'s weights, proposer frozen, head as
        ``start_from_running_minimum`` sets it."""
        model = cls(MarginPRMConfig(proposer=proposer.config, head_size=head_size, token_evidence=token_evidence))
        model.proposer.load_state_dict(proposer.state_dict())
        model.blank.copy_(blank_tokens(tokenizer, model.blank.shape[0]))
        model.start_from_running_minimum()
        model.proposer.requires_grad_(False)
        return model

    @torch.no_grad()
    def start_from_running_minimum(self) -> None:
        """Make the untrained head ``sigmoid(4 exp(running minimum margin) - 2)``, from 0.12 to
        0.88: it ranks steps as the untrained ``ProposerMarginScorer`` does, and training corrects
        from there rather than from noise (the non-linear part and every token's evidence start at
        zero, the evidence in logit units)."""
        self.linear.weight.zero_()
        if self.evidence is not None:
            # Evidence in logit units: every token's evidence lowers the logit of the steps from its
            # own on one for one (e < 0 raises it), so each token's evidence learns from the first step.
            self.evidence.weight.zero_()
            self.linear.weight[0, len(MARGIN_FEATURES) :] = -1.0
        self.linear.weight[0, 0] = 4.0
        self.linear.bias.fill_(-2.0)
        self.head[-1].weight.zero_()
        self.head[-1].bias.zero_()

    def get_input_embeddings(self) -> nn.Module:
        return self.proposer.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module:
        return self.proposer.get_output_embeddings()

    def forward(
        self, input_ids: torch.Tensor, solution_start: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> TokenClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        logits = self.proposer(input_ids=input_ids, attention_mask=attention_mask).logits
        margin, chosen, counted = token_margins(logits, input_ids, attention_mask, solution_start, self.blank)
        features = margin_features(margin, chosen, counted)
        if self.evidence is not None:
            evidence = EVIDENCE_SCALE * self.evidence(input_ids[:, 1:])[..., 0].float()
            features = torch.cat([features, evidence_features(evidence, counted)], dim=-1)
        features = features.to(self.linear.weight.dtype)
        return TokenClassifierOutput(logits=self.linear(features) + self.head(features))


AutoConfig.register(MarginPRMConfig.model_type, MarginPRMConfig)
AutoModelForTokenClassification.register(MarginPRMConfig, MarginPRMForTokenClassification)


@dataclass(frozen=True)
class MarginState:
    """The running statistics behind ``MARGIN_FEATURES`` after some solution tokens: what a search
    carries from a prefix to its children, so that scoring a new step reads only the new tokens."""

    min_margin: float = 0.0
    min_logprob: float = 0.0
    sum_margin: float = 0.0
    slips: int = 0
    tokens: int = 0
    sum_evidence: float = 0.0

    def extend(
        self,
        completion: Completion,
        skip: torch.Tensor,
        start: int = 0,
        stop: int | None = None,
        evidence: Sequence[float] | None = None,
    ) -> MarginState:
        """The statistics after ``completion``'s tokens ``start:stop``, all of them by default (it
        must carry ``logprobs``); tokens marked in ``skip`` (blank tokens, end of sequence) do not
        count, as in ``token_margins``; ``evidence`` is the per-token evidence of a PRM that reads
        it."""
        if len(completion.logprobs) != len(completion.token_ids):
            raise ValueError("fused margin scoring needs completions sampled with logprobs=True")
        state = self
        window = slice(start, stop)
        for token, logprob, top in zip(
            completion.token_ids[window], completion.logprobs[window], completion.top_logprobs[window]
        ):
            if skip[token]:
                continue
            margin = logprob - top
            weight = 0.0 if evidence is None else evidence[token]
            state = MarginState(
                min(state.min_margin, margin),
                min(state.min_logprob, logprob),
                state.sum_margin + margin,
                state.slips + (margin < SLIP),
                state.tokens + 1,
                state.sum_evidence + weight,
            )
        return state

    def features(self, evidence: bool = False) -> list[float]:
        """``MARGIN_FEATURES`` at the position these statistics end at, then ``EVIDENCE_FEATURES``
        with ``evidence``."""
        running_min = max(self.min_margin, FLOOR)
        margins = [
            math.exp(running_min),
            running_min / -FLOOR,
            math.exp(max(self.min_logprob, FLOOR)),
            math.exp(self.sum_margin / max(self.tokens, 1)),
            math.log1p(self.slips),
            math.log1p(self.tokens),
        ]
        return [*margins, self.sum_evidence] if evidence else margins


@functools.lru_cache(maxsize=4)
def token_texts(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Every token of the vocabulary decoded alone, special tokens as "" (computed once a tokenizer)."""
    return tokenizer.batch_decode([[token] for token in range(len(tokenizer))], skip_special_tokens=True)


def step_ends(tokenizer: PreTrainedTokenizerBase, completion: Completion) -> list[int]:
    """For each step of ``completion``'s text (``split_steps``), the number of its tokens that
    reach the end of that step: the first ``k`` tokens whose decoded text covers the step and
    everything before it. The full margin PRM reads a step's score at the last token of the step
    and its separator (``encode_steps``); the separator's tokens are blank, so the statistics after
    these ``k`` tokens are the ones it reads. A token that runs across the end of a step (".\n\n")
    belongs to that step, as it does when the step is encoded with its separator.

    Where the tokens decoded one by one spell the text (the embedded tokenizer; byte-level BPE on
    whole characters), their lengths place every token; otherwise (a token the tokenizer does not
    list, a decoder that joins tokens otherwise) the first tokens are decoded together for each step
    end sought."""
    ids = list(completion.token_ids)
    texts = token_texts(tokenizer)
    pieces = [texts[token] for token in ids if token < len(texts)]
    if len(pieces) == len(ids) and "".join(pieces).startswith(completion.text):
        reached = [0, *itertools.accumulate(len(piece) for piece in pieces)]
        covered = reached.__getitem__
    else:

        def covered(count: int) -> int:  # characters fully decoded from the first ``count`` tokens
            return len(tokenizer.decode(ids[:count], skip_special_tokens=True).rstrip("\ufffd"))

    ends, position, low = [], 0, 0
    for piece in completion.text.split(STEP_SEPARATOR):
        if piece.strip():
            low = bisect.bisect_left(range(len(ids) + 1), position + len(piece), lo=low, key=covered)
            ends.append(min(low, len(ids)))
        position += len(piece) + len(STEP_SEPARATOR)
    return ends


class FusedMarginScorer:
    """Scores steps from the log-probabilities the generator returned while sampling them, with the
    head of a margin PRM whose proposer is the generator's own model: no forward pass, only the
    new tokens read. It gives the margin PRM's scores for the tokens as sampled (the full scorer
    re-tokenizes the text, which for a model that samples its own canonical tokenization is the
    same sequence). Its cost is the head's: ``2 x head weights`` FLOPs per scored step."""

    def __init__(
        self, model: MarginPRMForTokenClassification, skip: torch.Tensor, tokenizer: PreTrainedTokenizerBase
    ) -> None:
        self.model = model
        self.skip = skip.cpu()
        self.tokenizer = tokenizer
        self.evidence = (
            None
            if model.evidence is None
            else (EVIDENCE_SCALE * model.evidence.weight[:, 0].detach().float().cpu()).tolist()
        )
        self.head_params = sum(p.numel() for p in [*model.linear.parameters(), *model.head.parameters()])

    def step_states(self, completion: Completion) -> list[MarginState]:
        """The margin statistics at the end of each step of a sampled solution (``step_ends``)."""
        states, state, start = [], MarginState(), 0
        for end in step_ends(self.tokenizer, completion):
            state = state.extend(completion, self.skip, start, end, self.evidence)
            states.append(state)
            start = end
        return states

    def step_scores(self, completions: Sequence[Completion]) -> list[tuple[float, ...]]:
        """Each sampled solution's step scores, one per step of its text: the margin PRM's score at
        the end of the step, read from the log-probabilities the solution was sampled with."""
        states = [self.step_states(completion) for completion in completions]
        flat = iter(self.probabilities([state for row in states for state in row]))
        return [tuple(next(flat) for _ in row) for row in states]

    @torch.inference_mode()
    def probabilities(self, states: Sequence[MarginState]) -> list[float]:
        """The head's step probability at the end of each state."""
        if not states:
            return []
        weight = self.model.linear.weight
        reads = self.evidence is not None
        features = torch.tensor([s.features(reads) for s in states], dtype=weight.dtype, device=weight.device)
        logits = self.model.linear(features) + self.model.head(features)
        return torch.sigmoid(logits[:, 0].float()).tolist()


def fuse(scorer: object, generator: object, prompt: PromptConfig) -> FusedMarginScorer | None:
    """A ``FusedMarginScorer`` when ``scorer`` is a margin PRM reading ``prompt`` whose proposer has
    exactly the weights of ``generator``'s model (checked tensor by tensor), else None."""
    model = getattr(scorer, "model", None)
    gen_model = getattr(generator, "model", None)
    if not isinstance(model, MarginPRMForTokenClassification) or gen_model is None:
        return None
    if getattr(scorer, "prompt", None) != prompt:
        return None
    mine, theirs = model.proposer.state_dict(), gen_model.state_dict()
    if mine.keys() != theirs.keys() or any(
        mine[k].shape != theirs[k].shape or not torch.equal(mine[k], theirs[k].to(mine[k].device)) for k in mine
    ):
        return None
    skip = model.blank.clone().cpu()
    for token in getattr(generator, "eos_ids", torch.tensor([], dtype=torch.long)).tolist():
        skip[token] = True  # the end of sequence is not part of the text
    return FusedMarginScorer(model, skip, generator.tokenizer)


class ProposerMarginScorer(BatchedModelScorer):
    """``StepScorer`` over the proposer itself (a causal LM): one forward pass per batch."""

    @cached_property
    def blank(self) -> torch.Tensor:
        vocabulary = self.model.get_output_embeddings().weight.shape[0]
        return blank_tokens(self.tokenizer, vocabulary).to(self.device)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, prompt: PromptConfig = PromptConfig(), device: str | None = None, batch_size: int = 64
    ) -> ProposerMarginScorer:
        """Score with the causal LM saved at ``path`` (normally the proposer that sampled the solutions)."""
        return cls(load_causal_lm(path, device=device), load_tokenizer(path), prompt, batch_size)

    def encode(self, prompt: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
        return encode_steps(self.tokenizer, prompt, steps)

    def probabilities(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, solution_start: torch.Tensor
    ) -> torch.Tensor:
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
        margin, _, _ = token_margins(logits, input_ids, attention_mask, solution_start, self.blank)
        running = torch.cummin(margin, dim=1).values
        first = torch.zeros_like(running[:, :1])  # position 0 is a prompt token: nothing to score yet
        return torch.exp(torch.cat([first, running], dim=1))
