"""Run by ``torchrun`` or ``accelerate launch`` in tests: trains a tiny PRM, then a tiny revision model, under a DeepSpeed
config, each process on its share of the batches."""

import json
import sys

import deepspeed
from datasets import Dataset
from ttc_runtime.trainers.common import TrainSettings
from ttc_runtime.trainers.prm import PRMConfig, train_prm
from ttc_runtime.trainers.revision import RevisionConfig, train_revision

from ttc_runtime.prompts import PromptConfig, RevisionPromptConfig

base_dir, out_dir, revision_dir, ds_config, report = sys.argv[1:6]
rows = []
for a in range(1, 9):
    for b in range(1, 9):
        steps = [f"{a + b}", f"\\boxed{{{a + b}}}"]
        rows.append({"prompt": f"{a}+{b}", "completions": steps, "labels": [True, True]})
        rows.append({"prompt": f"{a}+{b}", "completions": [f"{a + b + 1}", "x"], "labels": [False, False]})
config = PRMConfig(
    init="proposer",
    targets="hard",
    training=TrainSettings(max_steps=6, batch_size=8, learning_rate=3e-3, logging_steps=3, deepspeed=ds_config),
)
result, _ = train_prm(config, Dataset.from_list(rows), base_dir, out_dir)

examples = []
for a in range(1, 9):
    for b in range(1, 9):
        attempts = [f"{a + b + 1}\n\n\\boxed{{{a + b + 1}}}"][: (a + b) % 2]
        prompt = RevisionPromptConfig().format(PromptConfig(), f"{a}+{b}", attempts)
        completion = f"{a + b}\n\n\\boxed{{{a + b}}}"
        examples.append({"prompt": prompt, "completion": completion, "question": f"{a}+{b}", "attempt_texts": attempts})
settings = TrainSettings(
    max_steps=4, batch_size=8, learning_rate=3e-3, logging_steps=2, max_length=128, deepspeed=ds_config
)
revision, _ = train_revision(RevisionConfig(training=settings), Dataset.from_list(examples), base_dir, revision_dir)

rank = deepspeed.comm.get_rank()
with open(f"{report}.{rank}", "w") as handle:
    json.dump(
        {
            "world_size": deepspeed.comm.get_world_size(),
            "steps": result.steps,
            "loss": result.final_loss,
            "revision_steps": revision.steps,
            "revision_loss": revision.final_loss,
        },
        handle,
    )
