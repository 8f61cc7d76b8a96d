"""Shared fixtures: a tiny randomly initialised model saved the Hugging Face way, and a small
rollout pool collected with it; a Math-Shepherd-style PRM of the published layout; and the
hand-made tables and scripted models that more than one test file uses.

The tests mirror the package: ``tests/test_<module>.py`` tests one module, named by its short name
(``test_pool.py`` for ``ttc_runtime/pool.py``, ``test_difficulty.py`` for
``ttc_runtime/evaluation/difficulty.py``). Where two tested modules share a name, the evaluation
one is ``test_<name>_eval.py`` and the trainer one ``test_<name>_trainer.py``
(``test_revision_eval.py`` for ``evaluation/revisions.py`` beside ``test_revisions.py`` for
``strategies/revisions.py``). A subpackage whose modules implement one interface is tested in
``test_<subpackage>.py`` (generation, scoring, strategies, tasks), its modules with a file of their
own aside. The pipeline's runner and stages are tested in ``test_experiment.py``, the revision
stages beside their data in ``test_revision_data.py``, and the pipeline on real model
architectures with ``configs/example-real.yaml`` in ``test_example_real.py``."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaForCausalLM, MistralConfig, MistralForCausalLM, PreTrainedTokenizerFast

from ttc_runtime.compute import Usage
from ttc_runtime.generation.base import Completion, GenerationOutput, PromptTooLong, SamplingParams
from ttc_runtime.models import TinyLMConfig, build_embedded_tokenizer, build_tiny_causal_lm, tiny_llama_config
from ttc_runtime.outcomes import ArmOutcomes
from ttc_runtime.prompts import PromptConfig
from ttc_runtime.scoring import ScoreOutput
from ttc_runtime.strategies import Arm, StrategyConfig


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """Directory of a freshly initialised 2-layer Llama and the embedded tokenizer."""
    path = tmp_path_factory.mktemp("tiny-model")
    tokenizer = build_embedded_tokenizer()
    model = build_tiny_causal_lm(
        TinyLMConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=256), tokenizer
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def biased_model(token_bias: dict[str, float]):
    """A plain 1-layer Llama whose next-token logits ignore context: exactly ``token_bias`` (other
    tokens 0). Used to make EOS or blank lines as likely as a test needs.

    Every embedding is the unit vector e0 and the attention and MLP outputs are zeroed, so the
    final norm always sees e0 and emits ``scale * e0``; the untied head's row for a token holds its
    bias / scale in column 0. Nothing beyond a standard ``LlamaForCausalLM`` is needed, so the model
    saves and loads anywhere (vLLM included)."""
    tokenizer = build_embedded_tokenizer()
    config = tiny_llama_config(TinyLMConfig(hidden_size=32, num_layers=1, num_heads=1, intermediate_size=16), tokenizer)
    config.tie_word_embeddings = False
    model = LlamaForCausalLM(config)
    scale = 1.0 / math.sqrt(1.0 / config.hidden_size + config.rms_norm_eps)
    with torch.no_grad():
        model.model.embed_tokens.weight.zero_()
        model.model.embed_tokens.weight[:, 0] = 1.0
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.lm_head.weight.zero_()
        for token, bias in token_bias.items():
            model.lm_head.weight[tokenizer.convert_tokens_to_ids(token), 0] = bias / scale
    return model.eval(), tokenizer


@pytest.fixture(scope="session")
def stepwise_pair():
    """A proposer that writes several short steps and a margin PRM over its own weights, in memory:
    ``(TransformersGenerator, TokenClassificationPRM)``, so that ``scoring.margin.fuse`` pairs them.

    The proposer is ``biased_model`` towards letters, spaces, newlines and the end of sequence,
    with its attention and MLP given small random weights so that its probabilities depend on the
    context. It writes no digits, so the tokenizer encodes a sampled text back into the tokens
    sampled and the full PRM reads what the proposer wrote. The PRM's head and its tokens'
    evidence are random, so that every feature counts (token counts included: a step score read a
    token early or late differs)."""
    from ttc_runtime.generation.hf import TransformersGenerator
    from ttc_runtime.scoring import MarginPRMForTokenClassification, TokenClassificationPRM

    model, tokenizer = biased_model({"a": 12.0, "b": 11.0, " ": 11.0, "\n": 11.5, "</s>": 9.0})
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.normal_(0.0, 0.3, generator=generator)
            layer.mlp.down_proj.weight.normal_(0.0, 0.3, generator=generator)
    prm = MarginPRMForTokenClassification.from_proposer(model, tokenizer, head_size=4, token_evidence=True)
    with torch.no_grad():
        for weight in [*prm.head.parameters(), *prm.linear.parameters(), *prm.evidence.parameters()]:
            weight.normal_(generator=generator)
    return TransformersGenerator(model, tokenizer), TokenClassificationPRM(prm, tokenizer)


def save_math_shepherd_style_prm(path: Path, corpus: list[str], seed: int = 0) -> None:
    """Save at ``path`` a tiny random ``MistralForCausalLM`` with a SentencePiece-style tokenizer
    trained on ``corpus``: the shape of the published Math-Shepherd PRM (a Mistral). Word
    boundaries are "▁" and a text starts with one, characters outside the vocabulary fall back to
    byte tokens, BOS is added and there is no pad token; with " ки", "+" and "-" in the corpus they
    are the single tokens "▁ки", "▁+" and "▁-", as in the published tokenizer. Newlines are kept out
    of training so that, as in Mistral's vocabulary, a newline is always its own byte token."""
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{byte:02X}>" for byte in range(256)]
    backend = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    backend.decoder = decoders.Sequence(
        [decoders.Metaspace(replacement="▁", prepend_scheme="first"), decoders.ByteFallback(), decoders.Fuse()]
    )
    trainer = trainers.BpeTrainer(vocab_size=len(specials) + 300, special_tokens=specials, show_progress=False)
    backend.train_from_iterator([text.replace("\n", " ") for text in corpus], trainer)
    bos = backend.token_to_id("<s>")
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(seed)
    config = MistralConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        bos_token_id=bos,
        eos_token_id=tokenizer.eos_token_id,
    )
    MistralForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)


def collect_pool(model_dir, pool_dir) -> subprocess.Popen:
    """Start ``tests/pool_worker.py`` collecting a small pool in a child process."""
    worker = Path(__file__).with_name("pool_worker.py")
    env = {**os.environ, "PYTHONPATH": str(worker.parent.parent)}
    return subprocess.Popen(
        [sys.executable, str(worker), str(model_dir), str(pool_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.fixture(scope="session")
def full_pool(tiny_model_dir, tmp_path_factory):
    """A small pool of the tiny model collected without interruption, in a child process."""
    directory = tmp_path_factory.mktemp("pool-full") / "pool"
    process = collect_pool(tiny_model_dir, directory)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err.decode()
    return directory


# Outcome tables written by hand, for the allocators and their evaluation (test_outcomes.py,
# test_allocators.py, test_allocator_eval.py, test_pool.py).

BON = StrategyConfig(name="best_of_n_weighted")
BEAM = StrategyConfig(name="beam_search", beam_width=2)


def outcomes(correct, flops, arms=None) -> ArmOutcomes:
    correct = np.asarray(correct, dtype=float)
    arms = arms or [Arm(BON, 4), Arm(BEAM, 4)]
    return ArmOutcomes(
        arms,
        np.ones(len(correct), dtype=int),
        [f"q{i}" for i in range(len(correct))],
        correct,
        np.full(correct.shape, 4.0),
        np.asarray(flops, dtype=float),
    )


# The arms of the allocation environment and tables over them (test_actions.py,
# test_allocation.py, test_allocator_trainer.py, test_learned.py).

BEAM4 = StrategyConfig(name="beam_search", beam_width=4)
BEAM16 = StrategyConfig(name="beam_search", beam_width=16)
REV = StrategyConfig(name="revisions", chain_length=4)
ARMS = [Arm(s, n) for n in (4, 16) for s in (BON, BEAM4, BEAM16, REV) if not (s == BEAM16 and n == 4)]


def table(correct: np.ndarray, flops: np.ndarray | None = None) -> ArmOutcomes:
    count = len(correct)
    return ArmOutcomes(
        ARMS,
        np.ones(count, dtype=int),
        [f"question {i}" for i in range(count)],
        correct,
        np.array([[arm.budget for arm in ARMS]] * count, dtype=float),
        np.ones_like(correct) if flops is None else flops,
    )


def learnable(count: int = 64, seed: int = 0):
    """Features where the first coordinate says which strategy is right: beam search on questions
    with x > 0, revisions otherwise, at both budgets."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(count, 4)).astype(np.float32)
    correct = np.zeros((count, len(ARMS)))
    for a, arm in enumerate(ARMS):
        correct[:, a] = np.where(features[:, 0] > 0, float(arm.strategy == BEAM4), float(arm.strategy == REV))
    return features, correct


# Scripted models for sequential revisions (test_revisions.py, test_revision_eval.py).


class Proposer:
    """Sample j of every prompt answers ``answers[j]``; a prompt costs 1 token, a sample 3."""

    flop_params = 2

    def __init__(self, answers="ab"):
        self.answers = answers

    def generate(self, prompts, n=1, params=SamplingParams(), seed=0):
        rows = [[Completion(f"p\n\n\\boxed{{{self.answers[j]}}}", 3, "eos") for j in range(n)] for _ in prompts]
        return GenerationOutput(rows, [Usage.inference(self.flop_params, 1, 3 * n)] * len(prompts))


class Reviser:
    """Answers the number k of attempts in its prompt's context: ``\\boxed{k}``. A prompt costs
    k + 1 tokens, a revision 2. With ``fits``, prompts holding more attempts are refused."""

    flop_params = 7

    def __init__(self, fits=None):
        self.fits, self.prompts = fits, []

    def generate(self, prompts, n=1, params=SamplingParams(), seed=0):
        counts = [p.count("<attempt>") for p in prompts]
        over = [i for i, count in enumerate(counts) if self.fits is not None and count > self.fits]
        if over:
            raise PromptTooLong(over, f"{len(over)} prompts too long")
        self.prompts.extend(prompts)
        rows = [[Completion(f"r\n\n\\boxed{{{count}}}", 2, "eos")] * n for count in counts]
        return GenerationOutput(rows, [Usage.inference(self.flop_params, c + 1, 2 * n) for c in counts])


class ByAnswer:
    """Scores a solution's last step by its answer; each scored solution costs 2 tokens."""

    flop_params = 1

    def __init__(self, values):
        self.values = values

    def score(self, questions, solutions):
        return ScoreOutput([[0.5, self.values[s[-1][7]]] for s in solutions], [Usage.inference(1, 2)] * len(solutions))


SCORES = ByAnswer({"a": 0.2, "b": 0.6, "1": 0.3, "2": 0.9, "3": 0.1, "4": 0.5})


# A scripted proposer for revision data (test_revision_data.py, test_revision_trainer.py).


class HalfRight:
    """Sample j of every prompt is the reference solution when j is even, else a wrong answer."""

    flop_params = 1

    def __init__(self, task):
        self.by_prompt = {PromptConfig().format(p.question): p for p in task.problems("train")}

    def generate(self, prompts, n=1, params=SamplingParams(), seed=0):
        rows = []
        for prompt in prompts:
            reference = self.by_prompt[prompt].solution
            rows.append(
                [Completion(reference if j % 2 == 0 else f"{j}\n\n\\boxed{{-{j}}}", 3, "eos") for j in range(n)]
            )
        return GenerationOutput(rows, [Usage.inference(1, 1, 3 * n)] * len(prompts))
