"""Run by ``torchrun`` in tests: trains a tiny PRM under a DeepSpeed config on this process's share."""

import json
import sys

import deepspeed
from datasets import Dataset
from ttc_runtime.trainers.common import TrainSettings
from ttc_runtime.trainers.prm import PRMConfig, train_prm

base_dir, out_dir, ds_config, report = sys.argv[1:5]
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
result = train_prm(config, Dataset.from_list(rows), base_dir, out_dir)
rank = deepspeed.comm.get_rank()
with open(f"{report}.{rank}", "w") as handle:
    json.dump({"world_size": deepspeed.comm.get_world_size(), "steps": result.steps, "loss": result.final_loss}, handle)
