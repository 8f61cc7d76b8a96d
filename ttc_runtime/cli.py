"""The ``ttc`` command.

``ttc run CONFIG`` runs the experiment's stages; ``ttc pool CONFIG`` collects the rollout pool
alone, across the processes of a launcher; ``ttc train STAGE CONFIG`` trains one model (proposer,
PRM, revision model) alone, with every process of a launcher; ``ttc solve`` answers questions with a strategy
picked per question; ``ttc serve`` serves the same over an OpenAI-compatible HTTP API; ``ttc
loadtest`` measures the server under concurrent load; ``ttc sample`` draws solutions from a
proposer; ``ttc bench`` measures the generation paths against plain transformers ``generate``;
``ttc bench-engines`` compares the vLLM back end's sampling throughput with the transformers one.
Bad input (a missing model directory, a malformed data line, an unknown config key, an empty
question, a budget over the limit, a run directory of other files, an output path that is the
input, an unknown device, a port in use) ends with a one-line error on stderr and exit status 2,
found before any model loads wherever it can be.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .config import ConfigError
from .models import ModelLoadError, check_device
from .tasks import DataError

EXIT_BAD_INPUT = 2


def _run_config(path: str, run_dir: str | None):
    """The experiment config at ``path``, in ``run_dir`` when given."""
    from .experiment_config import load_experiment

    config = load_experiment(path)
    return config if not run_dir else config.model_copy(update={"run_dir": run_dir})


def _experiment(args: argparse.Namespace):
    """The ``Experiment`` of ``args.config``, in ``args.run_dir`` when given."""
    from .experiment import Experiment

    return Experiment(_run_config(args.config, args.run_dir))


def _cmd_run(args: argparse.Namespace) -> int:
    _experiment(args).run(from_stage=args.from_stage, to_stage=args.to_stage)
    return 0


def _cmd_pool(args: argparse.Namespace) -> int:
    from .pool import Workers
    from .processes import leave_process_group

    try:
        _experiment(args).collect_pool(Workers.from_env())
    finally:
        leave_process_group()
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .processes import leave_process_group

    try:
        _experiment(args).train(args.stage, force=args.force)
    finally:
        leave_process_group()
    return 0


def _solver_config(args: argparse.Namespace):
    """The solver ``--config`` (a solver YAML) or ``--experiment`` (a finished run) describes."""
    from .config import load_config
    from .solver import SolverConfig

    if args.config is not None:
        config = load_config(SolverConfig, args.config)
    else:
        run = _run_config(args.experiment, args.run_dir)
        config = SolverConfig.from_run(run, None if args.policy == "none" else args.policy)
    if args.device:
        config = config.model_copy(update={"device": args.device})
    if config.device:
        check_device(config.device)
    return config


def _requested_strategy(args: argparse.Namespace):
    """The strategy ``--strategy`` and its knob flags name, or None."""
    from .config import parse_config
    from .strategies import StrategyConfig

    knobs = {k: getattr(args, k) for k in ("beam_width", "lookahead", "chain_length") if getattr(args, k) is not None}
    if args.strategy is None:
        if knobs:
            raise ValueError(f"--{next(iter(knobs)).replace('_', '-')} needs --strategy")
        return None
    return parse_config(StrategyConfig, {"name": args.strategy, **knobs}, "--strategy")


def _check_text(text: str, where: str) -> None:
    """Refuse a question that is not valid Unicode (a lone surrogate, from a JSON escape or from
    bytes that are not UTF-8 on the command line): the tokenizer would fail on it mid-batch."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise DataError(f"{where} is not valid text (a lone surrogate at character {error.start + 1})") from None


def _read_queries(path: str):
    """Queries from a JSONL file: one object per line with ``question`` and optionally ``id``,
    ``budget``, ``strategy`` (a name or an object) and ``seed``. Every line is checked here, before
    any model loads: a wrong type is named with its line, not found mid-solve."""
    from .config import parse_config
    from .solver import Query
    from .strategies import StrategyConfig
    from .tasks import jsonl_objects

    rows = []
    for number, row in jsonl_objects(path):
        where = f"{path}:{number}"
        if not isinstance(row.get("question"), str):
            raise DataError(f"{where}: each line must be an object with a 'question' string")
        unknown = set(row) - {"id", "question", "budget", "strategy", "seed"}
        if unknown:
            raise DataError(f"{where}: unknown field(s) {sorted(unknown)}")
        _check_text(row["question"], f"{where}: the question")
        for field in ("budget", "seed"):
            value = row.get(field)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise DataError(f"{where}: {field} must be an integer, got {value!r}")
        strategy = row.get("strategy")
        if strategy is not None:
            fields = {"name": strategy} if isinstance(strategy, str) else strategy
            strategy = parse_config(StrategyConfig, fields, f"{where}: strategy")
        rows.append((row.get("id", number), Query(row["question"], row.get("budget"), strategy, row.get("seed"))))
    return rows


def _cmd_solve(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .files import write_text_atomic
    from .solver import Query, Solver

    if (args.question is None) == (args.input is None):
        raise ValueError("give a question, or --input FILE.jsonl (not both)")
    if args.output and args.input is None:
        raise ValueError("--output is for --input FILE.jsonl; one question's solution goes to stdout")
    strategy = _requested_strategy(args)
    if args.question is not None:
        _check_text(args.question, "the question")
    else:
        rows = _read_queries(args.input)
        if args.output:
            _check_output(Path(args.output), Path(args.input))
    with contextlib.redirect_stdout(sys.stderr):  # libraries' import-time notices must not mix with the output
        solver = Solver.load(_solver_config(args))
    if args.question is not None:
        solution = solver.solve(args.question, args.budget, strategy, args.seed)
        if args.json:
            print(json.dumps(solution.to_dict()))
        else:
            knobs = ", ".join(f"{k}={v}" for k, v in solution.knobs().items())
            print(solution.text)
            print(
                f"answer: {solution.answer}  (strategy {solution.strategy.name}"
                f"{' ' + knobs if knobs else ''}, budget {solution.budget}, chosen by {solution.chosen_by}, "
                f"{solution.flops:.3g} FLOPs)"
            )
            if solution.note:
                print(f"note: {solution.note}")
        return 0
    queries = [
        Query(
            q.question,
            q.budget if q.budget is not None else args.budget,
            q.strategy or strategy,
            q.seed if q.seed is not None else args.seed,
        )
        for _, q in rows
    ]
    for query in queries:
        solver.check(query)
    lines = []
    for start in tqdm(range(0, len(queries), args.batch_size), desc="solve", unit="batch"):
        batch = queries[start : start + args.batch_size]
        for (key, _), solution in zip(rows[start : start + args.batch_size], solver.solve_batch(batch)):
            lines.append(json.dumps({"id": key, **solution.to_dict(candidates=args.candidates)}))
    text = "\n".join(lines) + "\n"
    if args.output:
        write_text_atomic(Path(args.output), text)
        print(f"wrote {len(lines)} solutions to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _check_output(output: Path, source: Path) -> None:
    """Refuse an ``--output`` the answers could not be written to, before any model loads rather
    than after every question is solved: the input file itself, a directory, or a path in a
    folder that does not exist."""
    if output.exists() and os.path.samefile(output, source):
        raise ValueError(f"--output {output} is the --input file; write the solutions to another file")
    if output.is_dir():
        raise ValueError(f"--output {output} is a directory; give a file path")
    if not output.parent.is_dir():
        raise ValueError(f"--output {output}: {output.parent} is not an existing folder")


def _cmd_serve(args: argparse.Namespace) -> int:
    import os

    from .config import parse_config
    from .processes import PARENT_PID, die_with_parent
    from .server import ServerConfig, listen, serve
    from .solver import Solver

    if os.environ.get(PARENT_PID):
        die_with_parent(int(os.environ[PARENT_PID]))
    settings = {
        "host": args.host,
        "port": args.port,
        "model_name": args.model_name,
        "api_key": os.environ.get("TTC_API_KEY") or None,
        "max_prompt_tokens": args.max_prompt_tokens,
        "request_timeout_s": args.timeout,
        "max_batch": args.max_batch,
        "batch_wait_ms": args.batch_wait_ms,
        "max_body_bytes": args.max_body_bytes,
        "max_queue": args.max_queue,
        "read_timeout_s": args.read_timeout,
    }
    config = parse_config(ServerConfig, settings, "ttc serve")
    sock = listen(config)
    serve(Solver.load(_solver_config(args)), config, sock)
    return 0


def _cmd_loadtest(args: argparse.Namespace) -> int:
    from .files import write_text_atomic
    from .loadtest import answer_rows, benchmark_server, format_benchmark, paired_accuracy
    from .probes import format_probes, probe_server

    if args.probes:
        source = ["--config", args.config] if args.config else ["--experiment", args.experiment]
        results = probe_server([*source, "--policy", args.policy])
        print(format_probes(results))
        return 0 if all(r.answered for r in results) else 1
    if args.config:
        raise ValueError("--config serves no test questions: the load test needs --experiment (or use --probes)")
    if args.seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {args.seeds}")
    against = _answer_file(args.against) if args.against else None
    task = _run_config(args.experiment, None).task.build()
    by_level: dict[int, list] = {}
    for problem in task.problems("test"):
        by_level.setdefault(problem.level, []).append(problem)
    problems = [p for group in zip(*by_level.values()) for p in group][: args.requests]
    # Every question with seed 0, then every question with seed 1, ...: each pass is one draw of
    # the whole set, so a run cut short still covers the questions evenly.
    requests = [(seed, p) for seed in range(args.seeds) for p in problems]
    questions, gold = [p.question for _, p in requests], [p.answer for _, p in requests]
    seeds = [seed for seed, _ in requests]
    serve_args = ["--experiment", args.experiment, "--policy", args.policy]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    runs = benchmark_server(serve_args, questions, args.concurrency, args.budget, batch_sizes, seeds)
    print(format_benchmark(runs, gold, args.concurrency))
    rows = answer_rows(runs, questions, gold, seeds)
    if args.answers:
        write_text_atomic(Path(args.answers), "".join(json.dumps(row) + "\n" for row in rows))
        print(f"  answers per question in {args.answers}")
    if against is not None:
        difference = paired_accuracy(rows, against)
        print(
            f"Accuracy minus {args.against}'s on the same {len(problems)} questions (each the mean of its "
            f"{args.seeds} seed(s)): {difference.value:+.3f} [{difference.low:+.3f}, {difference.high:+.3f}] "
            "(90% paired bootstrap interval)"
        )
    return 1 if any(run.load.failures for run in runs) else 0


def _answer_file(path: str) -> list[dict]:
    """The rows of an answers file written by ``ttc loadtest --answers``, read before any server
    starts so that a wrong path fails at once."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as error:
        raise ValueError(f"--against {path}: cannot read it ({error.strerror})") from error
    rows = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"--against {path}: line {number} is not JSON (write it with --answers)") from error
    if not rows or any(
        not isinstance(row, dict) or not {"max_batch", "question", "correct"} <= row.keys() for row in rows
    ):
        raise ValueError(f"--against {path}: not an answers file of ttc loadtest --answers (no answer rows)")
    return rows


def _solver_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--experiment", default="configs/embedded.yaml", help="a finished run's experiment YAML (default embedded)"
    )
    source.add_argument("--config", help="a solver YAML (SolverConfig) instead of an experiment")
    parser.add_argument("--run-dir", help="override the experiment's run_dir")
    parser.add_argument(
        "--policy",
        choices=["fixed", "adaptive", "none"],
        default="fixed",
        help="the run's allocator: fixed budget (default), adaptive budget, or none (the default strategy)",
    )
    parser.add_argument("--device", help="torch device (default: cuda when available)")


def _cmd_sample(args: argparse.Namespace) -> int:
    from .generation.base import SamplingParams
    from .generation.hf import TransformersGenerator
    from .prompts import PromptConfig

    prompt = PromptConfig() if args.template is None else PromptConfig(template=args.template)
    text = prompt.format(args.question)
    generator = TransformersGenerator.from_pretrained(args.model, device=args.device)
    params = SamplingParams(temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens)
    output = generator.generate([text], n=args.n, params=params, seed=args.seed)
    if args.json:
        rows = [
            {"text": c.text, "num_tokens": c.num_tokens, "finish_reason": c.finish_reason}
            for c in output.completions[0]
        ]
        print(json.dumps({"completions": rows, "usage": vars(output.usage)}))
    else:
        for i, completion in enumerate(output.completions[0]):
            print(f"--- sample {i} ({completion.num_tokens} tokens, {completion.finish_reason})")
            print(completion.text)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .benchmark import format_benchmark, run_benchmark
    from .generation.hf import TransformersGenerator
    from .prompts import PromptConfig
    from .scoring import VerifierConfig, load_verifier

    torch_threads(args.threads)
    generator = TransformersGenerator.from_pretrained(args.model, device=args.device)
    verifier = VerifierConfig(kind=args.verifier_kind)
    scorer = load_verifier(
        verifier, args.prm if args.verifier_kind != "proposer_margin" else args.model, PromptConfig(), args.device
    )
    measurements, peak, agreement = run_benchmark(
        generator, scorer, args.per_level, args.n, args.beam_width, args.lookahead, args.max_new_tokens, args.repeats
    )
    print(format_benchmark(measurements, peak, agreement, args.n))
    return 0


def _cmd_bench_engines(args: argparse.Namespace) -> int:
    import torch

    from .benchmark import compare_engines, format_engines
    from .generation.engines import GenerationConfig, load_generator

    torch_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else None)
    engines = {}
    for name in args.engines.split(","):
        if name not in ("transformers", "vllm"):
            raise ConfigError(f"--engines: unknown engine {name!r}; engines are transformers and vllm")
        config = GenerationConfig(
            backend=name,
            gpu_memory_utilization=args.gpu_memory_utilization,
            tensor_parallel_size=args.tensor_parallel_size,
        )
        engines[name] = load_generator(args.model, config, device=device)
    measurements, questions = compare_engines(
        Path(args.model).name, engines, args.per_level, args.n, args.max_new_tokens, args.repeats
    )
    print(format_engines(measurements, questions, args.n))
    return 0


def torch_threads(threads: int | None) -> None:
    """Pin torch's intra-op threads (benchmarks compare paths under the same setting)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ttc", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run an experiment's stages from a YAML config")
    run.add_argument("config", help="experiment YAML, e.g. configs/embedded.yaml")
    run.add_argument("--run-dir", help="override the config's run_dir")
    run.add_argument("--from", dest="from_stage", help="rerun from this stage on, even if up to date")
    run.add_argument("--to", dest="to_stage", help="stop after this stage (an unknown name is answered with the list)")
    run.set_defaults(func=_cmd_run)

    pool = sub.add_parser(
        "pool",
        help="collect the rollout pool only, shared among a launcher's processes "
        "(torchrun --nproc_per_node K -m ttc_runtime.cli pool CONFIG)",
    )
    pool.add_argument("config", help="experiment YAML whose earlier stages have run")
    pool.add_argument("--run-dir", help="override the config's run_dir")
    pool.set_defaults(func=_cmd_pool)

    train = sub.add_parser(
        "train",
        help="run one training stage alone, its model trained by all of a launcher's processes "
        "(accelerate launch -m ttc_runtime.cli train prm CONFIG)",
    )
    train.add_argument("stage", help="a stage that trains one model (an unknown name is answered with the list)")
    train.add_argument("config", help="experiment YAML whose earlier stages have run")
    train.add_argument("--run-dir", help="override the config's run_dir")
    train.add_argument("--force", action="store_true", help="train even when the stage is up to date")
    train.set_defaults(func=_cmd_train)

    solve = sub.add_parser("solve", help="answer a question (or a JSONL file of them) within a budget")
    solve.add_argument("question", nargs="?", help="the question (or use --input)")
    solve.add_argument("--input", help="JSONL of questions: {question, id?, budget?, strategy?, seed?} per line")
    solve.add_argument("--output", help="JSONL to write (default: stdout); written whole or not at all")
    _solver_arguments(solve)
    solve.add_argument("--budget", type=int, help="generations per question (default: the solver's)")
    solve.add_argument("--strategy", help="override the allocator: majority, best_of_n_weighted, beam_search, ...")
    solve.add_argument("--beam-width", type=int, help="M for beam_search, lookahead, dvts")
    solve.add_argument("--lookahead", type=int, help="k for lookahead")
    solve.add_argument("--chain-length", type=int, help="L for revisions")
    solve.add_argument("--seed", type=int, help="seed (default: the solver's)")
    solve.add_argument("--batch-size", type=int, default=16, help="questions per batch with --input")
    solve.add_argument("--candidates", action="store_true", help="with --input: keep every candidate in the JSONL")
    solve.add_argument("--json", action="store_true", help="print the solution as JSON")
    solve.set_defaults(func=_cmd_solve)

    serve = sub.add_parser("serve", help="OpenAI-compatible HTTP server (bearer token from $TTC_API_KEY)")
    _solver_arguments(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--model-name", default="ttc-allocator", help="the model id clients send")
    serve.add_argument("--max-prompt-tokens", type=int, help="longest question prompt accepted, in tokens")
    serve.add_argument("--timeout", type=float, default=600.0, help="seconds a request may wait for its answer")
    serve.add_argument("--max-batch", type=int, default=16, help="requests answered together (1: one at a time)")
    serve.add_argument("--batch-wait-ms", type=float, default=10.0, help="how long a batch waits to fill")
    serve.add_argument(
        "--max-body-bytes", type=int, default=1_000_000, help="largest request body, in bytes (more: 413)"
    )
    serve.add_argument("--max-queue", type=int, default=256, help="requests waiting for a batch at most (more: 503)")
    serve.add_argument(
        "--read-timeout", type=float, default=10.0, help="seconds a client has to send its headers, and its body"
    )
    serve.set_defaults(func=_cmd_serve)

    load = sub.add_parser("loadtest", help="throughput of the server batched against one request at a time")
    load_source = load.add_mutually_exclusive_group()
    load_source.add_argument("--experiment", default="configs/embedded.yaml", help="a finished run's experiment YAML")
    load_source.add_argument("--config", help="a solver YAML (SolverConfig) instead of an experiment; --probes only")
    load.add_argument("--policy", choices=["fixed", "adaptive", "none"], default="fixed")
    load.add_argument(
        "--requests", type=int, default=200, help="test questions, levels interleaved (each sent --seeds times)"
    )
    load.add_argument("--concurrency", type=int, default=16, help="requests in flight at most")
    load.add_argument("--budget", type=int, help="budget of every request (default: the server's)")
    load.add_argument("--batch-sizes", default="16,1", help="server max batch per run, comma-separated")
    load.add_argument(
        "--answers", help="write each question's answer and whether it is right here (JSON lines), per batch size"
    )
    load.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="send each question this many times, with seeds 0 .. S-1: accuracy becomes the expected rate "
        "over the solver's randomness rather than one run's",
    )
    load.add_argument(
        "--against",
        help="an earlier run's --answers file on the same questions: print this run's accuracy minus that "
        "one's, question by question, with a 90%% paired bootstrap interval",
    )
    load.add_argument(
        "--probes",
        action="store_true",
        help="instead of the load: hostile and faulty requests (oversized, slow, malformed, overflow, abandoned, "
        "half-open), each with the answer expected, in a table; exit 1 if any gets another answer (a right answer "
        "outside the expected time is marked late)",
    )
    load.set_defaults(func=_cmd_loadtest)

    sample = sub.add_parser("sample", help="sample solutions to one question from a proposer")
    sample.add_argument("question")
    sample.add_argument("--model", required=True, help="directory of a Hugging Face causal LM")
    sample.add_argument("-n", type=int, default=4, help="number of samples (default 4)")
    sample.add_argument("--temperature", type=float, default=0.8)
    sample.add_argument("--top-p", type=float, default=1.0)
    sample.add_argument("--max-new-tokens", type=int, default=160)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--template", help="prompt template containing {question}")
    sample.add_argument("--device", help="torch device (default cpu)")
    sample.add_argument("--json", action="store_true", help="print JSON")
    sample.set_defaults(func=_cmd_sample)

    bench = sub.add_parser("bench", help="generation speed of every path against transformers generate")
    bench.add_argument("--model", default="runs/embedded/proposer", help="proposer directory")
    bench.add_argument("--prm", default="runs/embedded/prm", help="PRM directory")
    bench.add_argument(
        "--verifier-kind", default="token_classification", choices=["token_classification", "proposer_margin"]
    )
    bench.add_argument("--per-level", type=int, default=3, help="test questions per level (default 3)")
    bench.add_argument("-n", type=int, default=64, help="samples per question, the budget N (default 64)")
    bench.add_argument("--beam-width", type=int, default=4)
    bench.add_argument("--lookahead", type=int, default=1)
    bench.add_argument("--max-new-tokens", type=int, default=160)
    bench.add_argument("--repeats", type=int, default=2, help="timed runs per path; the fastest counts")
    bench.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    bench.add_argument("--device", help="torch device (default cpu)")
    bench.set_defaults(func=_cmd_bench)

    engines = sub.add_parser(
        "bench-engines", help="sampling throughput of the vLLM back end against the transformers one"
    )
    engines.add_argument("--model", default="runs/embedded/proposer", help="model directory")
    engines.add_argument("--engines", default="transformers,vllm", help="comma-separated; the first is the baseline")
    engines.add_argument("--per-level", type=int, default=3, help="test questions per level (default 3)")
    engines.add_argument("-n", type=int, default=64, help="samples per question (default 64)")
    engines.add_argument("--max-new-tokens", type=int, default=160)
    engines.add_argument("--repeats", type=int, default=2, help="timed runs per engine; the fastest counts")
    engines.add_argument("--gpu-memory-utilization", type=float, default=0.4, help="vLLM's share of device memory")
    engines.add_argument("--tensor-parallel-size", type=int, default=1)
    engines.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    engines.add_argument("--device", help="torch device of the transformers engine (default: cuda when available)")
    engines.set_defaults(func=_cmd_bench_engines)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "device", None):
            check_device(args.device)
        return args.func(args)
    except (ConfigError, ModelLoadError, DataError, ValueError) as error:
        print(f"ttc: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
