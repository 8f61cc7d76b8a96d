"""The rollout pool: every strategy configuration of a grid run on every question of a split, and a
large pool of independent scored samples per question, stored as Parquet shards.

**What is stored.** Under the pool directory:

- ``manifest.json``: the hash of everything the pool depends on (its config, the models, the
  task, the prompts and sampling), the questions (index, id, level, question, gold answer) and the
  proposer's FLOP parameter count. Written before any shard; a directory whose manifest has another
  hash is refused (``PoolMismatch``), so nothing of another run is overwritten or mixed in.
- ``samples/NNNNN.parquet``: ``samples`` (K) independent proposer samples per question with their
  answer, correctness, verifier score (steps aggregated as the strategies do), last-step score,
  generated tokens, the question's prompt tokens, and the verifier's tokens and FLOPs. The samples
  are scored as best-of-N scores them: where the verifier is a margin PRM over the proposer's own
  model and ``SearchSettings.fused_scoring`` is on, each step's score is read from the sample's
  log-probabilities and the verifier's tokens and FLOPs are one head read per scored step (tokens =
  steps, FLOPs = steps x 2 x head weights); otherwise they are the full scorer's pass over the sample.
- ``runs/<arm>/NNNNN.parquet``: for each search or revision configuration at each budget (an
  *arm*), ``runs`` independent runs per question (``runs_at_largest`` at the largest budget), one
  row each: the run number, the candidates (text, answer, score), the selected answer, whether it
  is right, and the compute record (``Compute.to_dict`` columns). Several runs make a run arm's
  outcome an expected rate, as the parallel arms' are, instead of whichever run happened to be
  lucky.

Parallel strategies of the grid (``majority``, ``best_of_n_weighted``, ``best_of_n_naive``) are not
run: ``outcomes.arm_outcomes`` resamples them from the samples, as the search evaluation (``evaluation.search``) does.
Revisions with a chain length L are not run at each budget either: a run at N is N/L independent
chains, so the pool stores ``chains`` chains per question (as runs of the arm at N = L) and
``outcomes.arm_outcomes`` draws the arm at every N from them. Twice the chains the largest budget
takes cost fewer generations than 4 runs at each budget (at budgets 4-16 and L = 4: 8 chains, 32
generations per question, against 80), and every draw of them is a run the strategy could have made.

**Shards and resuming.** Work is cut into units: one chunk of ``questions_per_shard`` questions for
the samples or for one arm. A unit is written to a temporary file and renamed into place, so a
shard is either absent or complete. A collection killed at any moment (SIGKILL included) and started
again skips the shards that exist, removes stray temporary files, and redoes only the unit it was
in. Each run's seed is derived from the pool seed, the question's index in the pool, the arm and
the run number (``arm_seed``), and a unit always holds the same questions and runs, so a resumed
pool is identical to an uninterrupted one, with one process or several.

**Questions.** A pool takes the first ``problems_per_level`` questions of each level of its split,
each question text once (``tasks.per_level`` with ``distinct``): a split that holds a question twice would put it
in two cross-validation folds, on both sides of the fit.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field, model_validator
from tqdm.auto import tqdm

from .config import StrictModel
from .files import write_text_atomic
from .generation.base import Completion, Generator
from .generation.sampling import derive_seed
from .scoring import StepScorer
from .scoring.margin import FusedMarginScorer
from .selection import aggregate_steps
from .strategies import Arm, SearchSettings, StrategyConfig, default_grid
from .strategies.base import Ledger, answer_of, fused_verifier, score_samples
from .tasks import LEVELS, Problem, answers_match, check_levels


def _default_grid() -> list[StrategyConfig]:
    return [s for s in default_grid() if s.name not in ("best_of_n_naive", "dvts")]


class PoolConfig(StrictModel):
    """What the pool holds (see the module docstring)."""

    split: str = Field("test", pattern="^(train|validation|test)$")
    levels: list[int] = Field(list(LEVELS), min_length=1)
    problems_per_level: int = Field(40, ge=1, description="Questions per level: the first ones of the split.")
    budgets: list[int] = Field(
        [1, 2, 4, 8, 16, 32, 64],
        min_length=1,
        description="Budgets N (generations) of every arm: from 1, so an allocator can give one sample to a "
        "question where one is enough or where nothing helps.",
    )
    grid: list[StrategyConfig] = Field(default_factory=_default_grid, min_length=1)
    samples: int = Field(
        2048, ge=1, description="K: independent scored samples per question (the paper's 2048 for difficulty)."
    )
    resamples: int = Field(200, ge=1, description="N-subsets of the samples drawn per question for parallel arms.")
    runs: int = Field(
        4, ge=1, description="Independent stored runs per question of a run arm below the largest budget."
    )
    runs_at_largest: int = Field(2, ge=1, description="Independent stored runs per question at the largest budget.")
    chains: int | None = Field(
        None,
        ge=1,
        description="Independent revision chains stored per question for each revisions entry of the grid, its "
        "arms at every budget drawn from them; None: twice what its largest budget takes (N/L), at least runs.",
    )
    questions_per_shard: int = Field(8, ge=1, description="Questions per unit of work and per shard file.")
    batch_rows: int = Field(1024, ge=1, description="Most samples per generator call.")
    seed: int = 0

    @model_validator(mode="after")
    def _usable(self) -> PoolConfig:
        check_levels(self.levels)
        for n in self.budgets:
            if n < 1:
                raise ValueError(f"budgets: {n} is not a positive number of generations")
        if max(self.budgets) > self.samples and any(s.parallel for s in self.grid):
            raise ValueError(f"samples ({self.samples}) must be at least the largest budget ({max(self.budgets)})")
        labels = [s.label for s in self.grid]
        if len(set(labels)) != len(labels):
            raise ValueError(f"grid: entries are listed twice: {labels}")
        for index, strategy in enumerate(self.grid):
            reasons = [strategy.unusable(n) for n in self.budgets]
            if all(reasons):
                raise ValueError(f"grid.{index} ({strategy.label}) fits no budget of {self.budgets}: {reasons[0]}")
        for arm in self.arms():
            if arm.strategy.chain and self.chains is not None and self.chains * arm.strategy.chain < arm.budget:
                raise ValueError(
                    f"chains: {self.chains} chains of {arm.strategy.chain} attempts are fewer than "
                    f"{arm.label} draws ({arm.budget // arm.strategy.chain})"
                )
        return self

    def arms(self) -> list[Arm]:
        """Every (grid entry, budget) that can run, grid order then budget order, each strategy
        once per budget: an entry that runs at N what an earlier entry runs (``StrategyConfig
        .behaviour``: beam search with M = sqrt(N) at N = 16 is M = 4; any strategy at N = 1 is one
        sample) is left out there, so a duplicate is neither collected nor offered as a second,
        differently lucky arm."""
        seen: set[tuple] = set()
        arms = []
        for strategy in self.grid:
            for n in sorted(self.budgets):
                key = (strategy.behaviour(n), n)
                if strategy.unusable(n) is None and key not in seen:
                    seen.add(key)
                    arms.append(Arm(strategy, n))
        return arms

    def run_arms(self) -> list[Arm]:
        """The arms that are run and stored as they are: not the parallel ones (resampled from the
        samples), nor the chained ones (drawn from the chains of ``chain_arms``)."""
        return [arm for arm in self.arms() if not arm.strategy.parallel and not arm.strategy.chain]

    def chain_arms(self) -> list[Arm]:
        """For each chained strategy with an arm in the pool (revisions of a fixed L), the arm of
        one chain, ``Arm(strategy, L)``: its ``chains_of`` stored runs are independent chains,
        from which the strategy's arm at N draws N/L (``outcomes.chained_outcome``)."""
        found: list[Arm] = []
        for arm in self.arms():
            chain = Arm(arm.strategy, arm.strategy.chain) if arm.strategy.chain else None
            if chain is not None and chain not in found:
                found.append(chain)
        return found

    def stored_arms(self) -> list[Arm]:
        """Every arm whose runs the pool stores: the run arms, then the chain arms."""
        return self.run_arms() + self.chain_arms()

    def chains_of(self, strategy: StrategyConfig) -> int:
        """Chains stored per question for a chained ``strategy``: ``chains``, or twice what its
        largest arm draws, at least ``runs``."""
        if self.chains is not None:
            return self.chains
        largest = max(arm.budget for arm in self.arms() if arm.strategy == strategy)
        return max(self.runs, 2 * largest // strategy.chain)

    def runs_of(self, arm: Arm) -> int:
        """Stored runs per question of a stored arm (``stored_arms``)."""
        if arm.strategy.chain:
            return self.chains_of(arm.strategy)
        return self.runs_at_largest if arm.budget == max(self.budgets) else self.runs


class TrainPoolConfig(StrictModel):
    """A second pool, on questions of another split, for the allocators fitted on outcomes (the
    compute-optimal tables and the learned allocator) to learn from; the evaluation pool then only
    tests them. It runs the evaluation pool's grid and budgets, so the two share one action space.
    Off by default: the fitted allocators are cross-validated on the evaluation pool, as in the
    paper."""

    problems_per_level: int = Field(
        0, ge=0, description="Questions per level (the first ones of the split); 0: no training pool."
    )
    split: str = Field("validation", pattern="^(train|validation|test)$")
    samples: int | None = Field(None, ge=1, description="K for its questions; None: the evaluation pool's K.")

    @property
    def enabled(self) -> bool:
        return self.problems_per_level > 0

    def pool_config(self, evaluation: PoolConfig) -> PoolConfig:
        """The training pool's config: ``evaluation``'s, on this split, size and K."""
        if not self.enabled:
            raise ValueError("train_pool.problems_per_level is 0: there is no training pool")
        if self.split == evaluation.split:
            raise ValueError(
                f"train_pool.split: {self.split!r} is the evaluation pool's split too; "
                "choose another, so no question is trained on and tested"
            )
        return PoolConfig.model_validate(
            {
                **evaluation.model_dump(),
                "split": self.split,
                "problems_per_level": self.problems_per_level,
                "samples": self.samples or evaluation.samples,
            }
        )


class PoolMismatch(ValueError):
    """A pool directory that holds another configuration's pool."""


@dataclass(frozen=True)
class PoolInputs:
    """Everything a pool depends on besides its config, as strings for the hash: model identities,
    the task, prompt and sampling settings."""

    proposer: str
    verifier: str
    reviser: str
    settings: str


def pool_hash(config: PoolConfig, inputs: PoolInputs) -> str:
    payload = json.dumps([config.model_dump(mode="json"), vars(inputs)], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9=,@]+", "_", label).strip("_")


def _write_shard(path: Path, rows: list[dict], schema: pa.Schema) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)
    os.replace(tmp, path)


SAMPLE_SCHEMA = pa.schema(
    [
        ("question", pa.int32()),
        ("sample", pa.int32()),
        ("answer", pa.string()),
        ("correct", pa.bool_()),
        ("score", pa.float64()),
        ("last_score", pa.float64()),
        ("generated_tokens", pa.int64()),
        ("prompt_tokens", pa.int64()),
        ("verifier_tokens", pa.int64()),
        ("verifier_flops", pa.int64()),
    ]
)

CANDIDATE = pa.struct([("text", pa.string()), ("answer", pa.string()), ("score", pa.float64())])

RUN_SCHEMA = pa.schema(
    [
        ("question", pa.int32()),
        ("run", pa.int32()),
        ("arm", pa.string()),
        ("strategy", pa.string()),
        ("budget", pa.int32()),
        ("answer", pa.string()),
        ("correct", pa.bool_()),
        ("candidates", pa.list_(CANDIDATE)),
        ("proposer_prompt_tokens", pa.int64()),
        ("proposer_generated_tokens", pa.int64()),
        ("proposer_flops", pa.int64()),
        ("verifier_prompt_tokens", pa.int64()),
        ("verifier_generated_tokens", pa.int64()),
        ("verifier_flops", pa.int64()),
        ("generations", pa.int64()),
        ("flops", pa.int64()),
    ]
)


@dataclass(frozen=True)
class Workers:
    """This process's place among the processes that collect one pool together: its rank, their
    number, and a barrier that waits for all of them. ``from_env`` reads what a launcher
    (``torchrun``, ``accelerate launch``) sets; one process needs none of it."""

    rank: int = 0
    world_size: int = 1
    barrier: Callable[[], None] = field(default=lambda: None, compare=False)

    @classmethod
    def from_env(cls) -> Workers:
        """The launcher's ``RANK`` and ``WORLD_SIZE``, with torch.distributed's gloo group (CPU
        only: it carries nothing but the barriers) for the barrier."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1:
            return cls()
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")
        return cls(dist.get_rank(), dist.get_world_size(), dist.barrier)


class RolloutPool:
    """A pool directory: collect into it, or read it back."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    @property
    def manifest_path(self) -> Path:
        return self.directory / "manifest.json"

    def manifest(self) -> dict:
        if not self.manifest_path.is_file():
            raise FileNotFoundError(f"{self.directory} holds no pool (no manifest.json)")
        return json.loads(self.manifest_path.read_text())

    def holds(self, config: PoolConfig, inputs: PoolInputs) -> bool:
        """Whether the directory holds this pool complete; ``PoolMismatch`` when it holds another."""
        if not self.manifest_path.is_file():
            return False
        self._check_hash(pool_hash(config, inputs))
        return self.complete()

    def _check_hash(self, digest: str) -> None:
        found = self.manifest().get("hash")
        if found != digest:
            raise PoolMismatch(
                f"{self.directory} holds a pool of another configuration (hash {found}, this one is {digest}); "
                "nothing was written: choose another directory or delete that one"
            )

    def _claim(self, config: PoolConfig, inputs: PoolInputs, problems: Sequence[Problem], params: int) -> None:
        """Write the manifest of a new pool, or check that an existing one is this pool."""
        digest = pool_hash(config, inputs)
        if self.manifest_path.is_file():
            self._check_hash(digest)
            return
        if self.directory.exists() and any(self.directory.iterdir()):
            raise PoolMismatch(f"{self.directory} is not empty and holds no pool manifest; nothing was written")
        self.directory.mkdir(parents=True, exist_ok=True)
        manifest = {
            "hash": digest,
            "config": config.model_dump(mode="json"),
            "inputs": vars(inputs),
            "proposer_params": params,
            "questions": [
                {"index": i, "id": p.id, "level": p.level, "question": p.question, "answer": p.answer}
                for i, p in enumerate(problems)
            ],
        }
        write_text_atomic(self.manifest_path, json.dumps(manifest, indent=1) + "\n")

    def collect(
        self,
        config: PoolConfig,
        inputs: PoolInputs,
        problems: Sequence[Problem],
        generator: Generator,
        scorer: StepScorer,
        settings: SearchSettings,
        workers: Workers = Workers(),
    ) -> dict[str, int]:
        """Fill the pool, skipping finished shards; returns how many units this process did and
        skipped. With several ``workers``, each process takes every ``world_size``-th unit and
        writes its own shards into the shared directory; the first claims the directory (writes
        the manifest, clears stray ``.tmp`` files) before the others start, and every process
        checks at the end that the merged pool is complete."""
        if workers.rank == 0:
            self._claim(config, inputs, problems, generator.flop_params)
            for stray in self.directory.rglob("*.tmp"):
                stray.unlink()
        workers.barrier()
        if workers.rank != 0:
            self._claim(config, inputs, problems, generator.flop_params)
        chunks = [
            range(s, min(s + config.questions_per_shard, len(problems)))
            for s in range(0, len(problems), config.questions_per_shard)
        ]
        units: list[tuple[Arm | None, int]] = [(None, c) for c in range(len(chunks))]
        units += [(arm, c) for arm in config.stored_arms() for c in range(len(chunks))]
        units = units[workers.rank :: workers.world_size]
        done = skipped = 0
        label = "rollout pool" if workers.world_size == 1 else f"rollout pool, rank {workers.rank}/{workers.world_size}"
        with tqdm(total=len(units), desc=label, unit="shard", position=workers.rank) as bar:
            for arm, chunk in units:
                path = self._shard_path(arm, chunk)
                if path.is_file():
                    skipped += 1
                else:
                    batch = [problems[i] for i in chunks[chunk]]
                    if arm is None:
                        rows = sample_rows(batch, chunks[chunk].start, generator, scorer, settings, config)
                        _write_shard(path, rows, SAMPLE_SCHEMA)
                    else:
                        rows = arm_rows(batch, chunks[chunk].start, arm, generator, scorer, settings, config)
                        _write_shard(path, rows, RUN_SCHEMA)
                    done += 1
                bar.set_postfix_str("samples" if arm is None else arm.label)
                bar.update(1)
        workers.barrier()
        if not self.complete():
            raise RuntimeError(f"the pool at {self.directory} is incomplete after every worker finished")
        return {"units_done": done, "units_skipped": skipped}

    def _shard_path(self, arm: Arm | None, chunk: int) -> Path:
        if arm is None:
            return self.directory / "samples" / f"{chunk:05d}.parquet"
        return self.directory / "runs" / _slug(arm.label) / f"{chunk:05d}.parquet"

    def questions(self) -> pd.DataFrame:
        return pd.DataFrame(self.manifest()["questions"])

    def samples(self) -> pd.DataFrame:
        """Every sample, ordered by question and sample index."""
        return _read(sorted((self.directory / "samples").glob("*.parquet")), ["question", "sample"])

    def runs(self) -> pd.DataFrame:
        """Every arm run, ordered by arm label, question and run number."""
        return _read(sorted((self.directory / "runs").glob("*/*.parquet")), ["arm", "question", "run"])

    def shard_count(self) -> int:
        """How many shards (of samples and of runs) the directory holds."""
        return sum(1 for _ in self.directory.glob("samples/*.parquet")) + sum(
            1 for _ in self.directory.glob("runs/*/*.parquet")
        )

    def complete(self) -> bool:
        """Whether every shard of the stored config exists."""
        manifest = self.manifest()
        config = PoolConfig.model_validate_json(json.dumps(manifest["config"]))
        chunks = math.ceil(len(manifest["questions"]) / config.questions_per_shard)
        wanted = [self._shard_path(None, c) for c in range(chunks)]
        wanted += [self._shard_path(arm, c) for arm in config.stored_arms() for c in range(chunks)]
        return all(path.is_file() for path in wanted)


def _read(paths: list[Path], order: list[str]) -> pd.DataFrame:
    if not paths:
        raise FileNotFoundError("the pool has no shards of this kind yet")
    frame = pa.concat_tables([pq.read_table(p) for p in paths]).to_pandas()
    return frame.sort_values(order, kind="stable").reset_index(drop=True)


def sample_rows(
    batch: Sequence[Problem],
    first: int,
    generator: Generator,
    scorer: StepScorer,
    settings: SearchSettings,
    config: PoolConfig,
) -> list[dict]:
    """K scored samples for each question of ``batch`` (pool indices from ``first``)."""
    k = config.samples
    part = max(d for d in range(1, min(k, config.batch_rows) + 1) if k % d == 0)
    calls = [(q, p) for q in range(len(batch)) for p in range(k // part)]
    per_call = max(1, config.batch_rows // part)
    questions = [p.question for p in batch]
    fused = fused_verifier(scorer, generator, settings)
    params = replace(settings.sampling, logprobs=fused is not None)
    rows = []
    for start in range(0, len(calls), per_call):
        group = calls[start : start + per_call]
        output = generator.generate(
            [settings.prompt.format(questions[q]) for q, _ in group],
            n=part,
            params=params,
            seed=[derive_seed(config.seed, first + q, p) for q, p in group],
        )
        completions = [c for row in output.completions for c in row]
        owners = [g for g in range(len(group)) for _ in range(part)]
        per_text = _verifier_costs(scorer, fused, [questions[q] for q, _ in group], completions, owners)
        for g, (q, p) in enumerate(group):
            problem = batch[q]
            for j, completion in enumerate(output.completions[g]):
                steps, usage = per_text[g * part + j]
                answer = answer_of(completion.text)
                rows.append(
                    {
                        "question": first + q,
                        "sample": p * part + j,
                        "answer": answer,
                        "correct": answer is not None and answers_match(answer, problem.answer),
                        "score": aggregate_steps(list(steps), settings.aggregation) if steps else 0.0,
                        "last_score": steps[-1] if steps else 0.0,
                        "generated_tokens": completion.num_tokens,
                        "prompt_tokens": output.usages[g].prompt_tokens,
                        "verifier_tokens": usage[0],
                        "verifier_flops": usage[1],
                    }
                )
    return rows


def _verifier_costs(
    scorer: StepScorer,
    fused: FusedMarginScorer | None,
    questions: Sequence[str],
    samples: Sequence[Completion],
    owners: Sequence[int],
) -> list[tuple[tuple[float, ...], tuple[int, int]]]:
    """Each sample's step scores and its own verifier cost (tokens, FLOPs), fused or full as
    ``score_samples`` decides: every sample gets its own ledger, so the cost of one sample is known
    apart from the others'."""
    ledgers = [Ledger() for _ in samples]
    scores = score_samples(scorer, fused, [questions[o] for o in owners], samples, list(range(len(samples))), ledgers)
    return [(s, (ledger.verifier.tokens, ledger.verifier.flops)) for s, ledger in zip(scores, ledgers, strict=True)]


def arm_seed(config: PoolConfig, question: int, arm: Arm, run: int = 0) -> int:
    """The seed of ``arm``'s run number ``run`` on the pool's question number ``question``: a live
    run with it reproduces the stored one."""
    return derive_seed(config.seed, question, arm.budget, config.grid.index(arm.strategy), run)


def arm_rows(
    batch: Sequence[Problem],
    first: int,
    arm: Arm,
    generator: Generator,
    scorer: StepScorer,
    settings: SearchSettings,
    config: PoolConfig,
) -> list[dict]:
    """``config.runs_of(arm)`` runs of ``arm`` on each question of ``batch``, in one call."""
    jobs = [(q, run) for run in range(config.runs_of(arm)) for q in range(len(batch))]
    seeds = [arm_seed(config, first + q, arm, run) for q, run in jobs]
    results = arm.strategy.build(arm.budget).run(
        [batch[q].question for q, _ in jobs], generator, scorer, arm.budget, settings, seeds
    )
    rows = []
    for (q, run), result in zip(jobs, results, strict=True):
        problem = batch[q]
        rows.append(
            {
                "question": first + q,
                "run": run,
                "arm": arm.label,
                "strategy": arm.strategy.label,
                "budget": arm.budget,
                "answer": result.answer,
                "correct": result.answer is not None and answers_match(result.answer, problem.answer),
                "candidates": [{"text": c.text, "answer": c.answer, "score": c.score} for c in result.candidates],
                **result.compute.to_dict(),
            }
        )
    return rows
