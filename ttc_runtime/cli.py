"""The ``ttc`` command.

``ttc run CONFIG`` runs the experiment's stages; ``ttc sample`` draws solutions from a proposer;
``ttc bench`` measures the generation paths against plain transformers ``generate``.
Bad input (a missing model directory, a malformed data line, an unknown config key, an empty
question) ends with a one-line error on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .config import ConfigError
from .models import ModelLoadError
from .tasks import DataError

EXIT_BAD_INPUT = 2


def _cmd_run(args: argparse.Namespace) -> int:
    from .experiment import Experiment, load_experiment

    config = load_experiment(args.config)
    if args.run_dir:
        config = config.model_copy(update={"run_dir": args.run_dir})
    Experiment(config).run(from_stage=args.from_stage, to_stage=args.to_stage)
    return 0


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
    run.add_argument("--to", dest="to_stage", help="stop after this stage")
    run.set_defaults(func=_cmd_run)

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, ModelLoadError, DataError, ValueError) as error:
        print(f"ttc: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
