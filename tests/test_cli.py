"""The ``ttc`` console command: bad input exits 2 with a clear message and writes nothing."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ttc_runtime.cli import main

DATA = Path(__file__).parent / "data"


def ttc(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "ttc_runtime.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_missing_model_directory(tmp_path):
    result = ttc("sample", "Evaluate left to right: 1+2", "--model", tmp_path / "nope")
    assert result.returncode == 2
    assert "model directory" in result.stderr and "does not exist" in result.stderr


def test_empty_question(tiny_model_dir):
    result = ttc("sample", "   ", "--model", tiny_model_dir)
    assert result.returncode == 2
    assert "the question is empty" in result.stderr


def test_sample_prints_json(tiny_model_dir):
    result = ttc("sample", "1+2", "--model", tiny_model_dir, "-n", "3", "--max-new-tokens", "5", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert len(payload["completions"]) == 3
    assert payload["usage"]["generated_tokens"] == sum(c["num_tokens"] for c in payload["completions"])


def test_unknown_config_key(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(f"run_dir: {tmp_path / 'run'}\nsampling:\n  temprature: 0.5\n")
    result = ttc("run", config)
    assert result.returncode == 2
    assert f"{config}: sampling.temprature: unknown key" in result.stderr
    assert not (tmp_path / "run").exists()


def test_malformed_jsonl_reports_line(tmp_path, tiny_model_dir):
    config = tmp_path / "math.yaml"
    config.write_text(
        f"run_dir: {tmp_path / 'run'}\n"
        f"task:\n  name: math\n  math:\n    test: {DATA / 'math_bad.jsonl'}\n"
        f"proposer:\n  model: {tiny_model_dir}\n"
    )
    result = ttc("run", config)
    assert result.returncode == 2
    assert "math_bad.jsonl:2: malformed JSON" in result.stderr
    assert not (tmp_path / "run" / "proposer_eval.json").exists()


def test_unknown_stage(tmp_path):
    config = tmp_path / "ok.yaml"
    config.write_text(f"run_dir: {tmp_path / 'run'}\n")
    result = ttc("run", config, "--from", "everything")
    assert result.returncode == 2
    assert "unknown stage 'everything'" in result.stderr


def test_run_refuses_a_directory_it_did_not_make_and_leaves_it_as_it_was(tmp_path):
    run_dir = tmp_path / "shared"
    for name in ("proposer/weights.bin", "prm/config.json", "prm_labels/labels.jsonl", "proposer_eval.json"):
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / name).write_text(f"someone's {name}")
    before = {p: p.read_bytes() if p.is_file() else None for p in run_dir.rglob("*")}
    config = tmp_path / "ok.yaml"
    config.write_text(f"run_dir: {run_dir}\n")
    for args in ((), ("--from", "proposer")):
        result = ttc("run", config, *args)
        assert result.returncode == 2
        assert result.stderr.splitlines() == [
            f"ttc: error: run_dir {run_dir} holds files that no run wrote (it has no .ttc-run): give a new or "
            f"empty run_dir, or create {run_dir / '.ttc-run'} if runs may write and delete there"
        ]
    assert {p: p.read_bytes() if p.is_file() else None for p in run_dir.rglob("*")} == before

    result = ttc("run", config, "--run-dir", run_dir / "proposer_eval.json")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"ttc: error: run_dir {run_dir / 'proposer_eval.json'} is a file, not a directory"
    ]


def test_run_with_a_given_model_on_math_jsonl(tmp_path, tiny_model_dir):
    config = tmp_path / "math.yaml"
    config.write_text(
        f"run_dir: {tmp_path / 'run'}\n"
        f"task:\n  name: math\n  math:\n    test: {DATA / 'math_small.jsonl'}\n"
        f"proposer:\n  model: {tiny_model_dir}\n"
        "sampling:\n  max_new_tokens: 8\n"
    )
    result = ttc("run", config)
    assert result.returncode == 2
    assert "prm_labels: the task has no training problems to label" in result.stderr
    result = ttc("run", config, "--to", "proposer_eval")
    assert result.returncode == 0, result.stderr
    assert "no training" in result.stdout
    report = json.loads((tmp_path / "run" / "proposer_eval.json").read_text())
    assert [(row["level"], row["problems"]) for row in report["levels"]] == [(1, 1), (2, 1), (5, 1)]
    assert not (tmp_path / "run" / "proposer").exists()


def _prm_config(tmp_path, **prm):
    config = tmp_path / "prm.yaml"
    lines = "".join(f"  {key}: {value}\n" for key, value in prm.items())
    config.write_text(f"run_dir: {tmp_path / 'run'}\nprm:\n{lines}")
    return config


def _stepwise_file(tmp_path, second_row):
    path = tmp_path / "steps.jsonl"
    good = {"prompt": "Evaluate left to right:\n1+2", "completions": ["3", "\\boxed{3}"], "labels": [True, True]}
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, **second_row}) + "\n")
    return path


def test_stepwise_dataset_with_mismatched_labels(tmp_path):
    data = _stepwise_file(tmp_path, {"labels": [True]})
    result = ttc("run", _prm_config(tmp_path, dataset=data))
    assert result.returncode == 2
    assert f"{data}: row 2: 2 completions but 1 labels" in result.stderr
    assert not (tmp_path / "run").exists()


def test_stepwise_dataset_with_a_label_outside_the_unit_interval(tmp_path):
    data = _stepwise_file(tmp_path, {"labels": [True, 2]})
    result = ttc("run", _prm_config(tmp_path, dataset=data))
    assert result.returncode == 2
    assert f"{data}: row 2: labels must lie in [0, 1], got 2" in result.stderr
    assert not (tmp_path / "run").exists()


def test_prm_directory_without_a_token_classification_head(tmp_path, tiny_model_dir):
    result = ttc("run", _prm_config(tmp_path, model=tiny_model_dir))
    assert result.returncode == 2
    assert f"PRM directory '{tiny_model_dir}' holds ['LlamaForCausalLM']" in result.stderr
    assert "expected a token-classification model with one label" in result.stderr
    assert not (tmp_path / "run").exists()


def test_causal_verifier_needs_a_given_prm(tmp_path):
    config = tmp_path / "causal.yaml"
    config.write_text(f"run_dir: {tmp_path / 'run'}\nverifier:\n  kind: causal_lm\n")
    result = ttc("run", config)
    assert result.returncode == 2
    assert "verifier.kind 'causal_lm' needs prm.model" in result.stderr


def test_margin_verifier_needs_no_labels_and_no_prm(tmp_path, tiny_model_dir):
    config = tmp_path / "margin.yaml"
    config.write_text(
        f"run_dir: {tmp_path / 'run'}\n"
        "task:\n  name: synthetic\n  synthetic: {train_per_level: 4, validation_per_level: 2, test_per_level: 3}\n"
        f"proposer:\n  model: {tiny_model_dir}\n"
        "sampling:\n  max_new_tokens: 24\n"
        "proposer_eval:\n  problems_per_level: 2\n"
        "verifier:\n  kind: proposer_margin\n"
        "prm_eval: {problems_per_level: 2, n: 2, label_problems_per_level: 1}\n"
        "search_eval: {problems_per_level: 1, max_budget: 2, budget_factor: 2, pool: 2, resamples: 2,"
        " bootstrap: 10, strategies: [{name: best_of_n_weighted}, {name: beam_search, beam_width: 2, max_rounds: 2}]}\n"
    )
    result = ttc("run", config, "--to", "search_eval")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("not needed: the verifier reads the proposer's margins") == 2
    report = json.loads((tmp_path / "run" / "prm_eval.json").read_text())
    assert [row["level"] for row in report["levels"]] == [1, 2, 3, 4, 5]
    assert report["compute"]["verifier_prompt_tokens"] > 0
    assert not (tmp_path / "run" / "prm").exists() and not (tmp_path / "run" / "prm_labels").exists()


@pytest.mark.slow
def test_bench_prints_every_path_against_the_baseline(tiny_model_dir):
    result = ttc(
        "bench",
        "--model",
        tiny_model_dir,
        "--verifier-kind",
        "proposer_margin",
        "--per-level",
        "1",
        "-n",
        "4",
        "--beam-width",
        "2",
        "--max-new-tokens",
        "12",
        "--repeats",
        "1",
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    names = [row.split(" | ")[0][2:] for row in rows]
    assert names == [
        "hf_generate",
        "sample",
        "best_of_n",
        "beam_search(M=2)",
        "beam_search(M=2), full re-scoring",
        "lookahead(M=2,k=1)",
        "prm_scoring",
    ]
    assert rows[0].split(" | ")[3] == "1.00x"  # the baseline against itself
    assert "beam search wall time / best-of-N wall time:" in result.stdout
    assert "same answer on " in result.stdout


QUESTION = "Evaluate left to right:\n4-2"


@pytest.fixture
def solver_config(tmp_path, tiny_model_dir, monkeypatch):
    """A solver YAML over the tiny model, whose models must never load: every refusal tested with
    it comes before any model does."""
    config = tmp_path / "solver.yaml"
    config.write_text(json.dumps({"proposer": str(tiny_model_dir), "verifier": {"kind": "proposer_margin"}}))

    def never(config):
        raise AssertionError("a model loaded before the input was checked")

    monkeypatch.setattr("ttc_runtime.solver.Solver.load", never)
    return config


def in_process(capsys, *args):
    """``ttc ARGS`` in this process: its exit status and its lines on stderr."""
    status = main([str(arg) for arg in args])
    return status, capsys.readouterr().err.splitlines()


def test_solve_refuses_to_write_its_answers_over_its_input(tmp_path, solver_config, capsys):
    source = tmp_path / "questions.jsonl"
    source.write_text(json.dumps({"question": QUESTION}) + "\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.jsonl").symlink_to(source)
    for output in (source, tmp_path / "sub" / ".." / "questions.jsonl", tmp_path / "link.jsonl"):
        assert in_process(capsys, "solve", "--input", source, "--output", output, "--config", solver_config) == (
            2,
            [f"ttc: error: --output {output} is the --input file; write the solutions to another file"],
        )
    assert source.read_text() == json.dumps({"question": QUESTION}) + "\n"


@pytest.mark.parametrize(
    "line, error",
    [
        (json.dumps({"question": QUESTION, "seed": "3"}), "seed must be an integer, got '3'"),
        (json.dumps({"question": QUESTION, "seed": 3.5}), "seed must be an integer, got 3.5"),
        (json.dumps({"question": QUESTION, "seed": True}), "seed must be an integer, got True"),
        (json.dumps({"question": QUESTION, "budget": "4"}), "budget must be an integer, got '4'"),
        ('{"question": "Evaluate \\ud800"}', "the question is not valid text (a lone surrogate at character 10)"),
        (b'{"question": "Evaluate\xff"}', "not UTF-8 text (byte 23 of the line)"),
    ],
    ids=["seed-string", "seed-float", "seed-bool", "budget-string", "lone-surrogate", "bad-utf8"],
)
def test_solve_names_the_line_of_a_bad_question_before_any_model_loads(tmp_path, solver_config, capsys, line, error):
    source = tmp_path / "questions.jsonl"
    good = json.dumps({"question": QUESTION}).encode() + b"\n"
    source.write_bytes(good + (line if isinstance(line, bytes) else line.encode()) + b"\n")
    output = tmp_path / "out.jsonl"
    assert in_process(capsys, "solve", "--input", source, "--output", output, "--config", solver_config) == (
        2,
        [f"ttc: error: {source}:2: {error}"],
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["questions.jsonl", "solver.yaml"]


def test_solve_refuses_an_output_or_a_question_it_cannot_take_before_solving(tmp_path, solver_config, capsys):
    source = tmp_path / "questions.jsonl"
    source.write_text(json.dumps({"question": QUESTION}) + "\n")
    missing = tmp_path / "absent" / "out.jsonl"
    for output, error in (
        (missing, f"--output {missing}: {missing.parent} is not an existing folder"),
        (tmp_path, f"--output {tmp_path} is a directory; give a file path"),
    ):
        assert in_process(capsys, "solve", "--input", source, "--output", output, "--config", solver_config) == (
            2,
            [f"ttc: error: {error}"],
        )
    assert in_process(capsys, "solve", "Evaluate \udcff", "--config", solver_config) == (
        2,
        ["ttc: error: the question is not valid text (a lone surrogate at character 10)"],
    )
    assert in_process(capsys, "solve", QUESTION, "--output", tmp_path / "one.jsonl", "--config", solver_config) == (
        2,
        ["ttc: error: --output is for --input FILE.jsonl; one question's solution goes to stdout"],
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["questions.jsonl", "solver.yaml"]
    assert not Path(f"{tmp_path}.tmp").exists()


def test_a_device_torch_does_not_know_or_this_machine_lacks_is_refused_in_one_line(solver_config, capsys):
    unknown = "is not a torch device (cpu, cuda, cuda:N, mps, ...)"
    assert in_process(capsys, "solve", QUESTION, "--device", "bogus", "--config", solver_config) == (
        2,
        [f"ttc: error: device 'bogus' {unknown}"],
    )
    status, err = in_process(capsys, "solve", QUESTION, "--device", "cuda:99", "--config", solver_config)
    assert status == 2 and len(err) == 1 and err[0].startswith("ttc: error: device 'cuda:99': this machine has ")
    solver_config.write_text(solver_config.read_text()[:-1] + ', "device": "gpu"}')
    assert in_process(capsys, "solve", QUESTION, "--config", solver_config) == (
        2,
        [f"ttc: error: device 'gpu' {unknown}"],
    )


def test_serve_refuses_a_port_in_use_before_any_model_loads(solver_config, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert in_process(capsys, "serve", "--config", solver_config, "--port", port) == (
            2,
            [f"ttc: error: cannot listen on 127.0.0.1:{port}: Address already in use"],
        )
    assert in_process(capsys, "serve", "--config", solver_config, "--port", 70000) == (
        2,
        ["ttc: error: ttc serve: port: Input should be less than or equal to 65535"],
    )


def test_loadtest_refuses_a_comparison_it_cannot_make_before_any_server_starts(tmp_path, capsys):
    missing, rowless, broken = tmp_path / "absent.jsonl", tmp_path / "rowless.jsonl", tmp_path / "broken.jsonl"
    rowless.write_text('{"question": "1+1"}\n')
    broken.write_text('{"max_batch": 16, "question": "1+1", "correct": true}\nnot json\n')
    for path, error in (
        (missing, "cannot read it (No such file or directory)"),
        (rowless, "not an answers file of ttc loadtest --answers (no answer rows)"),
        (broken, "line 2 is not JSON (write it with --answers)"),
    ):
        assert in_process(capsys, "loadtest", "--against", path) == (2, [f"ttc: error: --against {path}: {error}"])
    assert in_process(capsys, "loadtest", "--seeds", "0") == (2, ["ttc: error: --seeds must be at least 1, got 0"])


def test_paired_accuracy_averages_each_question_over_its_seeds_and_needs_the_same_questions():
    from ttc_runtime.loadtest import paired_accuracy

    def rows(correct: dict[str, list[bool]]) -> list[dict]:
        return [
            {"max_batch": 16, "question": q, "seed": s, "correct": c}
            for q, cs in correct.items()
            for s, c in enumerate(cs)
        ]

    ours = rows({"a": [True, False], "b": [True, True], "c": [False, False]})
    theirs = rows({"a": [False], "b": [True], "c": [True]})
    difference = paired_accuracy(ours, theirs)
    value, median, low, high = difference.value, difference.median, difference.low, difference.high
    assert value == pytest.approx((0.5 + 0.0 - 1.0) / 3)
    assert -1.0 <= low <= median <= high <= 0.5  # resamples of the questions' differences +0.5, 0, -1
    with pytest.raises(ValueError, match="answered different questions"):
        paired_accuracy(ours, rows({"a": [True], "b": [True]}))
