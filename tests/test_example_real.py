"""The real-model path of ``configs/example-real.yaml`` on models of real architectures, built here.

A Qwen2 proposer (``Qwen2ForCausalLM``) with a byte-level BPE tokenizer of Qwen's own layout
(``Qwen2Tokenizer``: its pre-tokenizer, no BOS, ``<|endoftext|>`` as EOS and padding, the chat
markers ``<|im_start|>`` and ``<|im_end|>`` as special tokens, Qwen2.5-Math-Instruct's chat
template and generation config), a Math-Shepherd-style PRM (a Mistral, as the published one, with
a SentencePiece-style tokenizer whose step tag " ки" and verdicts "+" and "-" are single tokens)
and MATH-format JSONL files (the MATH layout for training, the MATH-500 layout for test) are
written to temporary directories; nothing is downloaded. The models are tiny and their weights
random, except that the proposer is fitted for a few seconds on the problems' reference solutions
in the chat layout: a random model neither boxes an answer nor ends its turn, so every sample
would run to ``max_new_tokens`` and be wrong, and the stages after sampling would see no right
answer at all.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import openai
import pytest
import torch
import yaml
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2Tokenizer,
)
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

from tests.conftest import save_math_shepherd_style_prm
from tests.test_server import LiveServer
from ttc_runtime.config import ConfigError
from ttc_runtime.experiment import Experiment, load_experiment
from ttc_runtime.generation.hf import TransformersGenerator
from ttc_runtime.models import flop_params
from ttc_runtime.pool import RolloutPool
from ttc_runtime.server import ServerConfig
from ttc_runtime.solver import Solver
from ttc_runtime.stages import STAGES
from ttc_runtime.tasks.grading import extract_boxed, normalize_answer

EXAMPLE = Path(__file__).parent.parent / "configs" / "example-real.yaml"
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Qwen2.5-Math-Instruct's chat template without its tool-calling branch: the default system
# message asks for the answer in \boxed{}, as the example config's prompt does.
QWEN_CHAT_TEMPLATE = r"""{%- if messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
{%- else %}
    {{- '<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant") %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""


def math_problem(number: int, level: int, split: str) -> dict[str, object]:
    """A MATH-style problem whose answer is a remainder, 0 or 1: a tiny model that has learned the
    solutions' layout boxes one of the two, so it is right on some samples and wrong on others
    whatever the problem. Larger numbers make higher levels. MATH's training lines have ``level``
    "Level N" and the answer boxed in the solution only; MATH-500's test lines add ``answer``, an
    integer ``level`` and ``unique_id``."""
    remainder = number % 2
    record: dict[str, object] = {
        "problem": f"What is the remainder when ${number}$ is divided by $2$?",
        "solution": f"We divide ${number}$ by $2$.\n\nThe answer is $\\boxed{{{remainder}}}$.",
    }
    if split == "train":
        return {**record, "level": f"Level {level}", "type": "Number Theory"}
    return {**record, "answer": str(remainder), "subject": "Number Theory", "level": level, "unique_id": f"{number}"}


def write_math_files(directory: Path) -> tuple[Path, Path, list[dict]]:
    """MATH-format training and test files, four and three problems per level; returns both paths
    and every record."""
    rows = {
        split: [
            math_problem(10 ** (level - 1) + 7 * i + offset, level, split)
            for level in range(1, 6)
            for i in range(count)
        ]
        for split, count, offset in (("train", 4, 0), ("test", 3, 3))
    }
    paths = directory / "MATH" / "train.jsonl", directory / "MATH-500" / "test.jsonl"
    for path, split in zip(paths, ("train", "test")):
        path.parent.mkdir(parents=True)
        path.write_text("".join(json.dumps(row) + "\n" for row in rows[split]))
    return *paths, rows["train"] + rows["test"]


def qwen_tokenizer(corpus: list[str]) -> Qwen2Tokenizer:
    """A byte-level BPE trained on ``corpus`` with Qwen2's normaliser and pre-tokenizer, wrapped as
    Qwen's own tokenizer class with Qwen's special tokens and chat template."""
    backend = Tokenizer(models.BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=SPECIAL,
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer)
    bpe = json.loads(backend.to_str())["model"]
    tokenizer = Qwen2Tokenizer(
        vocab=bpe["vocab"],
        merges=[tuple(pair) for pair in bpe["merges"]],
        unk_token=None,
        extra_special_tokens=SPECIAL[1:],
    )
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer


def qwen_lm(tokenizer: Qwen2Tokenizer, seed: int = 0) -> Qwen2ForCausalLM:
    """A randomly initialised two-layer Qwen2 with grouped-query attention, tied embeddings and
    Qwen2.5-Math's context of 4,096 positions. Its config ends text at ``<|endoftext|>``, as the
    tokenizer does; its generation config, like Qwen2.5-Math-Instruct's, also stops at the turn's
    end ``<|im_end|>``, which is what a chat model writes after its answer."""
    torch.manual_seed(seed)
    end_of_text, end_of_turn = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=end_of_text,
        eos_token_id=end_of_text,
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=end_of_text, eos_token_id=[end_of_turn, end_of_text], pad_token_id=end_of_text
    )
    return model


def fit(model: Qwen2ForCausalLM, tokenizer: Qwen2Tokenizer, texts: list[str], steps: int = 100) -> None:
    """A few full-batch AdamW steps on ``texts``, enough for samples that end their turn with a
    boxed answer, right on some problems and wrong on others. On one thread: a 32-wide model gains
    nothing from more, and threads that wait on cores busy with other work slow it several times."""
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model.train()
    try:
        for _ in range(steps):
            model(**batch, labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    finally:
        torch.set_num_threads(threads)
    model.eval()


@pytest.fixture(scope="module")
def real_setup(tmp_path_factory):
    """The data files, the proposer and the PRM directories, and the chat prompt template of the
    example config."""
    root = tmp_path_factory.mktemp("real")
    train, test, records = write_math_files(root / "data")
    template = yaml.safe_load(EXAMPLE.read_text())["proposer"]["prompt"]["template"]
    chats = [template.replace("{question}", r["problem"]) + r["solution"] + "<|im_end|>" for r in records]
    tokenizer = qwen_tokenizer(chats)
    proposer = qwen_lm(tokenizer)
    fit(proposer, tokenizer, chats)
    setup = {
        "train": train,
        "test": test,
        "proposer": root / "qwen2",
        "prm": root / "math-shepherd",
        "template": template,
    }
    proposer.save_pretrained(setup["proposer"])
    tokenizer.save_pretrained(setup["proposer"])
    tagged = [f"{r['problem']} " + " ки\n".join(str(r["solution"]).split("\n\n")) + " ки" for r in records]
    save_math_shepherd_style_prm(setup["prm"], tagged + ["+ -"] * 8, seed=1)
    return setup


def with_paths(setup: dict, run_dir: Path) -> dict:
    """The example config with only its paths changed: the models, the data files and ``run_dir``
    those of ``setup``, and the DeepSpeed config this repository's own, whatever the directory the
    tests run from."""
    config = yaml.safe_load(EXAMPLE.read_text())
    config["run_dir"] = str(run_dir)
    config["task"]["math"] = {"train": str(setup["train"]), "test": str(setup["test"])}
    config["proposer"]["model"] = str(setup["proposer"])
    config["prm"]["model"] = str(setup["prm"])
    training = config["revision"]["training"]
    training["deepspeed"] = str(EXAMPLE.parent.parent / training["deepspeed"])
    return config


def test_the_proposer_is_qwens_and_the_example_prompt_is_its_chat_template(real_setup):
    generator = TransformersGenerator.from_pretrained(real_setup["proposer"])
    tokenizer = generator.tokenizer
    assert type(tokenizer).__name__ == "Qwen2Tokenizer" and tokenizer.bos_token is None
    assert tokenizer.eos_token == tokenizer.pad_token == "<|endoftext|>"
    assert set(generator.eos_ids.tolist()) == set(tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"]))
    question = "What is the remainder when $7$ is divided by $2$?"
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    assert chat == real_setup["template"].replace("{question}", question)
    ids = tokenizer(chat)["input_ids"]
    assert ids.count(tokenizer.convert_tokens_to_ids("<|im_start|>")) == 3  # markers are single tokens
    prm_tokenizer = AutoTokenizer.from_pretrained(real_setup["prm"])
    for text in (" ки", "+", "-"):
        assert len(prm_tokenizer(text, add_special_tokens=False)["input_ids"]) == 1


def test_example_real_config_passes_the_pre_run_checks_with_local_paths(real_setup, tmp_path, monkeypatch):
    """The shipped config, paths aside, loads and passes every check the runner makes before its
    first stage. It names cuda and vLLM; none of the checks needs either, so they run here."""
    path = tmp_path / "example-real.yaml"
    path.write_text(yaml.safe_dump(with_paths(real_setup, tmp_path / "run")))
    config = load_experiment(path)
    assert (config.device, config.generation.backend) == ("cuda", "vllm")
    Experiment(config).check_inputs(STAGES)
    assert not (tmp_path / "run").exists() and not torch.cuda.is_initialized()

    split = with_paths(real_setup, tmp_path / "run")
    split["verifier"]["causal_lm"]["good_token"] = "good"  # not one token for the PRM's tokenizer
    path.write_text(yaml.safe_dump(split))
    with pytest.raises(ValueError, match="good_token 'good' is .* tokens for this tokenizer"):
        Experiment(load_experiment(path)).check_inputs(STAGES)

    shipped = with_paths(real_setup, tmp_path / "run")
    shipped["revision"]["training"]["deepspeed"] = "configs/deepspeed/zero2.json"  # relative, as shipped
    path.write_text(yaml.safe_dump(shipped))
    monkeypatch.chdir(tmp_path)  # run from elsewhere than the repository
    with pytest.raises(ConfigError, match="revision.training.deepspeed: configs/deepspeed/zero2.json is not a file"):
        Experiment(load_experiment(path)).check_inputs(STAGES)


# The example's stages at sizes that run in seconds: a few problems per level, a few samples, budgets
# 2 and 4, the revision model trained for two steps (without DeepSpeed), counterpart off as shipped.
TINY_STAGES = {
    "sampling": {"temperature": 0.8, "max_new_tokens": 32},
    "proposer_eval": {"problems_per_level": 2, "samples_per_problem": 2},
    "prm_eval": {"problems_per_level": 1, "n": 4, "label_problems_per_level": 0},
    "search_eval": {
        "problems_per_level": 1,
        "max_budget": 4,
        "budget_factor": 2,
        "pool": 4,
        "resamples": 5,
        "bootstrap": 20,
        "strategies": [
            {"name": "majority"},
            {"name": "best_of_n_weighted"},
            {"name": "beam_search", "beam_width": 2, "max_rounds": 3},
        ],
    },
    "revision_data": {"problems_per_level": 2, "samples_per_problem": 4},
    "revision": {"training": {"max_steps": 2, "batch_size": 4, "logging_steps": 1, "max_length": 512}},
    "revision_eval": {
        "problems_per_level": 1,
        "attempts_per_problem": 4,
        "cases_per_problem": 1,
        "ratio_problems_per_level": 1,
        "budgets": [2, 4],
        "resamples": 2,
        "bootstrap": 20,
    },
    "pool": {
        "problems_per_level": 2,
        "budgets": [2, 4],
        "samples": 8,
        "resamples": 5,
        "questions_per_shard": 5,
        "grid": [
            {"name": "majority"},
            {"name": "best_of_n_weighted"},
            {"name": "beam_search", "beam_width": 2, "max_rounds": 3},
            {"name": "revisions", "chain_length": 2},
        ],
    },
    "train_pool": {"problems_per_level": 0},
    "baselines": {"bins": 2, "bootstrap": 20},
    "allocator": {"training": {"updates": 20, "envs": 8}, "reinforce_lambdas": [0.0, 0.3], "adaptive_target": 3},
    "wandb": {"enabled": False},
}


def ttc(*args):
    return subprocess.run(
        [sys.executable, "-m", "ttc_runtime.cli", *map(str, args)], capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_a_qwen_proposer_and_a_causal_lm_prm_run_the_pipeline_solve_and_serve(real_setup, tmp_path, monkeypatch):
    """The example config on CPU with the transformers engine and tiny sizes: every stage runs on the
    given models, ``ttc solve`` answers from the command line and the server answers the official
    client, and every prompt the models saw was Qwen's chat prompt."""
    run_dir = tmp_path / "run"
    config = with_paths(real_setup, run_dir)
    config.update(device="cpu", generation={"backend": "transformers"}, **TINY_STAGES)
    path = tmp_path / "qwen.yaml"
    path.write_text(yaml.safe_dump(config))

    prompts = []
    generate = TransformersGenerator.generate

    def recorded(self, batch, *args, **kwargs):
        prompts.extend(batch)
        return generate(self, batch, *args, **kwargs)

    monkeypatch.setattr(TransformersGenerator, "generate", recorded)
    experiment = Experiment(load_experiment(path))
    records = experiment.run()

    given = {"proposer", "prm_labels", "prm", "counterpart"}  # models given, no labels, no larger model
    for stage in STAGES:
        if stage.name in given:
            assert records[stage.name] == {}, stage.name
        if stage.name in given or stage.record is None:  # the pool keeps its own manifest
            continue
        written = json.loads((run_dir / stage.record).read_text())["fingerprint"]
        assert written == records[stage.name]["fingerprint"] == stage.key(experiment.context), stage.name
    assert not (run_dir / "proposer").exists() and not (run_dir / "prm").exists()

    chat = real_setup["template"].split("{question}")
    assert prompts and all(chat[0] in p and chat[1] in p for p in prompts)
    assert any(p.startswith("<attempt>") for p in prompts)  # revision prompts: attempts, then the chat prompt
    tokenizer = Qwen2Tokenizer.from_pretrained(real_setup["proposer"])
    assert tokenizer(prompts[0])["input_ids"].count(tokenizer.convert_tokens_to_ids("<|im_start|>")) == 3

    levels = records["proposer_eval"]["levels"]
    assert [(row["level"], row["problems"], row["samples"]) for row in levels] == [(lv, 2, 4) for lv in range(1, 6)]
    verifier = records["prm_eval"]
    prm_params = flop_params(AutoModelForCausalLM.from_pretrained(real_setup["prm"]))
    assert verifier["compute"]["verifier_flops"] == 2 * prm_params * verifier["compute"]["verifier_prompt_tokens"]
    assert {(p["strategy"], p["budget"]) for p in records["search_eval"]["points"]} == {
        (s, n) for s in ("majority", "best_of_n_weighted") for n in (1, 2, 4)
    } | {("beam_search(M=2)", 2), ("beam_search(M=2)", 4)}

    assert records["revision_data"]["examples"] > 0 and records["revision"]["steps"] == 2
    stops = GenerationConfig.from_pretrained(run_dir / "revision").eos_token_id
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in stops  # the turn's end still stops the revision model

    pool = RolloutPool(run_dir / "pool")
    assert pool.complete() and len(pool.manifest()["questions"]) == 10
    samples = pool.samples()
    assert len(samples) == 10 * 8 and 0 < samples["correct"].mean() < 1  # right and wrong answers both
    assert sorted(set(pool.runs()["arm"])) == [
        "beam_search(M=2)@2",
        "beam_search(M=2)@4",
        "revisions(L=2)@2",
    ]
    assert records["baselines"]["samples"] == 8
    for kind in ("fixed", "adaptive"):
        assert (run_dir / "allocator" / kind / "policy.json").is_file()
    assert "Not run yet" not in (run_dir / "report.md").read_text()

    question = "What is the remainder when $12345$ is divided by $2$?"
    solved = ttc("solve", question, "--experiment", path, "--json")
    assert solved.returncode == 0, solved.stderr
    solution = json.loads(solved.stdout)
    assert solution["question"] == question and solution["chosen_by"] == "allocator" and solution["budget"] == 4
    assert solution["label"] in {"majority", "best_of_n_weighted", "beam_search(M=2)", "revisions(L=2)"}
    assert solution["answer"] == normalize_answer(extract_boxed(solution["text"]))  # the text's boxed answer
    assert "<|im_end|>" not in solution["text"] and solution["compute"]["generations"] == 4
    assert solution["decision_flops"] > 0 and len(solution["candidates"]) >= 1

    solver = Solver.from_experiment(path)
    with LiveServer(solver, ServerConfig(api_key="key")) as live:
        client = openai.OpenAI(base_url=f"{live.url}/v1", api_key="key", max_retries=0)
        reply = client.chat.completions.create(model="ttc-allocator", messages=[{"role": "user", "content": question}])
    record = reply.model_extra["ttc"]
    assert reply.object == "chat.completion" and reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == solution["text"] and reply.choices[0].finish_reason == "stop"
    assert (record["strategy"], record["knobs"], record["chosen_by"]) == (
        solution["strategy"],
        solution["knobs"],
        "allocator",
    )
    assert record["answer"] == solution["answer"] and record["compute"] == solution["compute"]
    assert reply.usage.prompt_tokens == solution["compute"]["proposer_prompt_tokens"] > 0
