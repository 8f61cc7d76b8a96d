"""PRM training: a token-classification model scored at the end of every step.

Two kinds (``PRMConfig.reads``): ``margins`` (the default) keeps the proposer frozen and trains a
small head over its token margins (``scoring.margin``); ``hidden_states`` fine-tunes a
``*ForTokenClassification`` model, started from the proposer's weights or from scratch, on the
hidden state at each step's end. The README gives the measurements behind the default.

TRL removed its PRM trainer in 1.14, so this is a small subclass of transformers' ``Trainer`` whose
loss is binary cross-entropy at the step positions (``scoring.encode_steps``), on soft Monte Carlo
labels by default or on hard labels. Any dataset in TRL's stepwise-supervision layout (``prompt``:
the question, ``completions``: the steps, ``labels``: one per step) trains through it, from the
Monte Carlo labeller or from disk (``load_stepwise``); ``soft_labels`` is used when present and
asked for. The question is formatted with the proposer's prompt template, as the scorer does; a
conversational prompt (TRL's list of ``{"role", "content"}`` messages) gives its last user message
as the question (``stepwise_question``). Errors name a bad row by its number counted from 1.
DeepSpeed comes through ``TrainSettings.deepspeed`` (a JSON config path), as for the SFT trainers.

**Context length.** A row longer than ``training.max_length`` tokens keeps its prompt and the
longest prefix of its steps that fits, and loses the later steps (``cut_to_length``): a step's
label depends only on the steps up to it, so every kept label stays valid. A row in which not even
the first step fits is left out. Both counts are reported, so nothing is cut silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from datasets import Dataset, load_from_disk
from pydantic import Field, model_validator
from transformers import (
    AutoModelForTokenClassification,
    LlamaForTokenClassification,
    PreTrainedTokenizerBase,
    Trainer,
    TrainingArguments,
)

from ttc_runtime.config import StrictModel
from ttc_runtime.models import TinyLMConfig, load_causal_lm, load_tokenizer, tiny_llama_config
from ttc_runtime.prompts import PromptConfig
from ttc_runtime.scoring.margin import MarginPRMForTokenClassification
from ttc_runtime.scoring.prm import encode_steps
from ttc_runtime.tasks import DataError

from .common import TrainResult, TrainSettings, prepare_staging, quiet_libraries, train_and_save, trainer_arguments

IGNORE = -100.0
"""Target value of positions that carry no label."""


class PRMConfig(StrictModel):
    """How the PRM is initialised, which labels it learns and how it is trained."""

    reads: Literal["margins", "hidden_states"] = Field(
        "margins",
        description="margins: frozen proposer plus a head over its token margins; hidden_states: a "
        "fine-tuned token classifier.",
    )
    head_size: int = Field(16, ge=1, description="Hidden units of the margin head (reads: margins).")
    token_evidence: bool = Field(
        True,
        description="The margin head also reads a learned evidence per token, pooled over the solution "
        "(scoring.margin.EVIDENCE_FEATURES): what was written, besides how surely (reads: margins).",
    )
    init: Literal["proposer", "scratch"] = Field(
        "proposer",
        description="Start from the proposer's weights (as the paper does) or from scratch (reads: hidden_states).",
    )
    targets: Literal["soft", "hard"] = Field("soft", description="Soft MC fractions or hard any-correct labels.")
    architecture: TinyLMConfig = Field(TinyLMConfig(), description="Shape when init is scratch.")
    training: TrainSettings = Field(
        TrainSettings(max_steps=400, learning_rate=1e-3),
        description="max_length bounds the prompt and the steps kept, in tokens (see cut_to_length).",
    )
    model: str | None = Field(None, description="A trained PRM to use as is: no labelling, no training.")
    dataset: str | None = Field(
        None,
        description="A stepwise dataset (saved datasets directory, .jsonl or .parquet) to train on instead of MC labels.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> PRMConfig:
        if self.model is not None and self.dataset is not None:
            raise ValueError("give either model (a trained PRM) or dataset (to train one on), not both")
        if self.reads == "margins" and self.init == "scratch":
            raise ValueError("init: scratch needs reads: hidden_states (a margin PRM reads the proposer's own margins)")
        return self


STEPWISE_COLUMNS = ("prompt", "completions", "labels")


def load_stepwise(path: str | Path) -> Dataset:
    """A checked stepwise-supervision dataset from a ``save_to_disk`` directory or a
    .jsonl/.json/.parquet file; errors name the file and, for a bad row, the row (``row 1`` is the
    first row: the first record of a JSONL file)."""
    path = Path(path)
    if path.is_dir():
        dataset = load_from_disk(str(path))
    elif not path.is_file():
        raise DataError(f"{path}: no such stepwise dataset")
    elif path.suffix in (".jsonl", ".json"):
        dataset = Dataset.from_json(str(path))
    elif path.suffix == ".parquet":
        dataset = Dataset.from_parquet(str(path))
    else:
        raise DataError(f"{path}: expected a datasets directory or a .jsonl, .json or .parquet file")
    if not isinstance(dataset, Dataset):
        raise DataError(f"{path}: holds several splits ({', '.join(dataset)}); point at one")
    try:
        check_stepwise(dataset)
    except DataError as error:
        raise DataError(f"{path}: {error}") from None
    return dataset


def stepwise_question(prompt: object, row: int) -> str:
    """The question of a stepwise row's ``prompt``: the text itself or, for a conversational prompt
    (a list of ``{"role", "content"}`` messages), the content of its last user message. Other
    messages (a system prompt, earlier turns) are not used: the PRM is trained and used on the
    question formatted with the proposer's prompt template. ``row`` (from 1) is named in errors."""
    if isinstance(prompt, list):
        users = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        if not users:
            raise DataError(f"row {row}: the conversational prompt has no user message")
        content = users[-1].get("content")
        if not isinstance(content, str) or not content.strip():
            raise DataError(f"row {row}: the last user message of the prompt is empty or not text")
        return content
    if not isinstance(prompt, str) or not prompt.strip():
        raise DataError(f"row {row}: empty or missing prompt")
    return prompt


def check_stepwise(dataset: Dataset) -> None:
    """Every row has a question (``stepwise_question``), at least one step, steps that are text, one
    label per step (soft labels too, when present) and labels in [0, 1]. A row without steps is an
    error rather than skipped: it carries no label, so it comes from a fault upstream (the Monte
    Carlo labeller never writes one). Errors number rows from 1."""
    missing = [column for column in STEPWISE_COLUMNS if column not in dataset.column_names]
    if missing:
        raise DataError(f"stepwise dataset lacks column(s) {', '.join(missing)}")
    label_columns = [c for c in ("labels", "soft_labels") if c in dataset.column_names]
    for number, row in enumerate(dataset, start=1):
        stepwise_question(row["prompt"], number)
        steps = row["completions"]
        if not steps:
            raise DataError(f"row {number}: no completions (a row needs at least one step)")
        wrong = [step for step in steps if not isinstance(step, str)]
        if wrong:
            raise DataError(f"row {number}: completions must be strings, got {wrong[0]!r}")
        for column in label_columns:
            labels = row[column]
            if labels is None or len(labels) != len(steps):
                count = "no" if labels is None else len(labels)
                raise DataError(f"row {number}: {len(steps)} completions but {count} {column}")
            for label in labels:
                if label is None or isinstance(label, str) or not 0.0 <= float(label) <= 1.0:
                    raise DataError(f"row {number}: {column} must lie in [0, 1], got {label!r}")


def step_targets(
    tokenizer: PreTrainedTokenizerBase, prompt: str, completions: Sequence[str], labels: Sequence[float | bool]
) -> dict[str, list]:
    """Token ids, per-token targets (a label at each step's last token, ``IGNORE`` elsewhere) and
    the index of the first solution token; ``prompt`` is the formatted prompt, ``labels`` one per
    step (``check_stepwise`` checks rows)."""
    ids, positions = encode_steps(tokenizer, prompt, completions)
    per_token = [IGNORE] * len(ids)
    for position, label in zip(positions, labels, strict=True):
        per_token[position] = float(label)
    return {"input_ids": ids, "labels": per_token, "solution_start": len(tokenizer(prompt)["input_ids"])}


def cut_to_length(example: dict[str, list], max_length: int) -> dict[str, list] | None:
    """``example`` (from ``step_targets``) ending at the last token of its last step that ends within
    ``max_length`` tokens, or None when not even its first step does. The prompt and the kept steps
    are whole: a cut falls only between steps."""
    inside = [i for i, target in enumerate(example["labels"][:max_length]) if target != IGNORE]
    if not inside:
        return None
    end = inside[-1] + 1
    return {**example, "input_ids": example["input_ids"][:end], "labels": example["labels"][:end]}


@dataclass(frozen=True)
class StepFeatures:
    """Training features of a stepwise dataset, and what fitting them to ``max_length`` cost."""

    features: list[dict]
    rows_cut: int
    """Rows that kept only their first steps."""
    rows_dropped: int
    """Rows left out: not even their first step fits."""


def prm_features(
    dataset: Dataset, tokenizer: PreTrainedTokenizerBase, prompt: PromptConfig, targets: str, max_length: int
) -> StepFeatures:
    """Training features of a stepwise dataset, each at most ``max_length`` tokens long
    (``cut_to_length``). The dataset is checked first (errors name the bad row); a dataset with no
    row, or with no row whose first step fits, is an error: there would be nothing to train on."""
    check_stepwise(dataset)
    if len(dataset) == 0:
        raise DataError("stepwise dataset has no rows: nothing to train on")
    column = "soft_labels" if targets == "soft" and "soft_labels" in dataset.column_names else "labels"
    features, cut, dropped = [], 0, 0
    for number, row in enumerate(dataset, start=1):
        text = prompt.format(stepwise_question(row["prompt"], number))
        example = step_targets(tokenizer, text, row["completions"], row[column])
        fitted = cut_to_length(example, max_length)
        if fitted is None:
            dropped += 1
            continue
        cut += len(fitted["input_ids"]) < len(example["input_ids"])
        features.append(fitted)
    if not features:
        raise DataError(
            f"no row fits in max_length {max_length} tokens: in all {dropped} rows the prompt and first step "
            "are longer; raise training.max_length"
        )
    return StepFeatures(features, cut, dropped)


class _Collator:
    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(item["input_ids"]) for item in batch)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE)
        for row, item in enumerate(batch):
            n = len(item["input_ids"])
            input_ids[row, :n] = torch.tensor(item["input_ids"])
            attention[row, :n] = 1
            labels[row, :n] = torch.tensor(item["labels"])
        starts = torch.tensor([item["solution_start"] for item in batch])
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels, "solution_start": starts}


class PRMTrainer(Trainer):
    """``Trainer`` with binary cross-entropy at the labelled step positions."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        solution_start = inputs.pop("solution_start")
        if getattr(self.model, "needs_solution_start", False):
            inputs["solution_start"] = solution_start
        outputs = model(**inputs)
        logits = outputs.logits[..., 0]  # (B, T)
        mask = labels != IGNORE
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits[mask].float(), labels[mask].float())
        return (loss, outputs) if return_outputs else loss


def _build_model(config: PRMConfig, proposer_dir: Path, tokenizer: PreTrainedTokenizerBase):
    torch.manual_seed(config.training.seed)
    if config.reads == "margins":
        return MarginPRMForTokenClassification.from_proposer(
            load_causal_lm(proposer_dir), tokenizer, config.head_size, config.token_evidence
        )
    if config.init == "proposer":
        return AutoModelForTokenClassification.from_pretrained(str(proposer_dir), num_labels=1)
    llama = tiny_llama_config(config.architecture, tokenizer)
    llama.num_labels = 1
    return LlamaForTokenClassification(llama)


def train_prm(
    config: PRMConfig,
    dataset: Dataset,
    proposer_dir: str | Path,
    output_dir: str | Path,
    prompt: PromptConfig = PromptConfig(),
) -> tuple[TrainResult, StepFeatures]:
    """Train a PRM on a stepwise dataset, each row cut to ``training.max_length`` tokens; the
    proposer's tokenizer is reused, and its weights unless ``init`` is 'scratch'. The model is saved
    through a staging directory renamed into place. Returns the run and the features it trained on
    (with the counts of rows cut and dropped to fit)."""
    proposer_dir, output_dir = Path(proposer_dir), Path(output_dir)
    tokenizer = load_tokenizer(proposer_dir)
    fitted = prm_features(dataset, tokenizer, prompt, config.targets, config.training.max_length)
    with quiet_libraries():
        model = _build_model(config, proposer_dir, tokenizer)
        prepare_staging(output_dir, config.training, len(fitted.features))
        args = TrainingArguments(**trainer_arguments(config.training, output_dir), remove_unused_columns=False)
        trainer = PRMTrainer(
            model=model, args=args, train_dataset=fitted.features, data_collator=_Collator(tokenizer.pad_token_id)
        )
        return train_and_save(trainer, tokenizer, output_dir), fitted
