"""Training the revision model: examples fitted to the context, and fine-tuning the proposer."""

import pytest
from ttc_runtime.trainers.revision_data import RevisionDataConfig, build_revision_data

from tests.conftest import HalfRight
from ttc_runtime.generation.base import SamplingParams
from ttc_runtime.prompts import PromptConfig, RevisionPromptConfig
from ttc_runtime.tasks import SyntheticTask, SyntheticTaskConfig

PROMPT, REVISION = PromptConfig(), RevisionPromptConfig()


def test_examples_over_the_context_lose_their_oldest_attempts_first(tmp_path):
    from datasets import Dataset
    from ttc_runtime.trainers.revision import fit_to_length

    from ttc_runtime.models import build_embedded_tokenizer

    tokenizer = build_embedded_tokenizer()  # one token per character here (no digits)
    prompt = RevisionPromptConfig()
    row = {"question": "Q", "completion": "xxxx", "attempt_texts": ["aaaaaaaaaa", "bbbbbbbbbb"]}
    full = len(tokenizer(prompt.format(PROMPT, "Q", row["attempt_texts"]))["input_ids"]) + 4
    one = len(tokenizer(prompt.format(PROMPT, "Q", ["bbbbbbbbbb"]))["input_ids"]) + 4
    none = len(tokenizer(prompt.format(PROMPT, "Q", []))["input_ids"]) + 4
    data = Dataset.from_list([{**row, "prompt": "unused"}])
    fitted = fit_to_length(data, tokenizer, PROMPT, prompt, full)
    assert fitted.dataset["prompt"] == [prompt.format(PROMPT, "Q", row["attempt_texts"])]
    fitted = fit_to_length(data, tokenizer, PROMPT, prompt, one)
    assert fitted.dataset["prompt"] == [prompt.format(PROMPT, "Q", ["bbbbbbbbbb"])] and fitted.attempts_dropped == 1
    fitted = fit_to_length(data, tokenizer, PROMPT, prompt, none - 1)
    assert len(fitted.dataset) == 0 and fitted.examples_dropped == 1 and fitted.attempts_dropped == 2


@pytest.mark.slow
def test_train_revision_fine_tunes_the_proposer(tiny_model_dir, tmp_path):
    from ttc_runtime.trainers.common import TrainSettings
    from ttc_runtime.trainers.revision import RevisionConfig, train_revision

    from ttc_runtime.models import load_causal_lm

    task = SyntheticTask(SyntheticTaskConfig(train_per_level=3))
    problems = task.problems("train")[:6]
    data = build_revision_data(
        HalfRight(task),
        task,
        problems,
        PROMPT,
        REVISION,
        SamplingParams(),
        RevisionDataConfig(samples_per_problem=6),
    )
    config = RevisionConfig(training=TrainSettings(max_steps=4, batch_size=4, logging_steps=2, max_length=256))
    result, fitted = train_revision(config, data, tiny_model_dir, tmp_path / "revision")
    assert result.steps == 4 and result.final_loss is not None and result.train_tokens > 0
    assert len(fitted.dataset) + fitted.examples_dropped == len(data)
    load_causal_lm(tmp_path / "revision")
    assert not (tmp_path / "revision.partial").exists()
