"""The vLLM back end: the same ``Generator`` protocol over a vLLM engine (paged attention,
continuous batching, prefix caching, tensor parallelism), for GPUs.

Imported only when a config selects ``generation.backend: vllm`` (the ``vllm`` extra).

How the protocol maps onto vLLM:

- **Prompts** are encoded by the model's Hugging Face tokenizer and handed to vLLM as token ids, so
  the prompt tokens charged are the tokens the engine read.
- **Seeds.** Sample ``j`` of prompt ``i`` is one vLLM request seeded with
  ``derive_seed(seed_i, j)``. vLLM's own ``n`` with a fixed seed gives every child the same seed,
  hence ``n`` identical samples, so the ``n`` samples of a prompt are submitted as ``n`` requests
  instead; with prefix caching on (always, here) they share the prompt's cached blocks, which is
  what vLLM does with ``n`` itself. A request's samples depend on its seed only, not on the other
  requests in the batch, up to the floating-point effects of batched kernels on a GPU.
- **Stop strings.** vLLM ends a request at the first occurrence of a stop string. A k-step
  rollout (``stop_count`` k) therefore runs in rounds: a request that stopped with fewer than k
  occurrences in its text so far continues from its prompt and generated token ids, seeded with
  ``derive_seed(request seed, round)``, within what is left of ``max_new_tokens``. The generated
  tokens of every round are one sample: counted once, decoded and cut as the transformers back
  end does (``completion_from_tokens``), the prompt charged once.
- **Log-probabilities** are vLLM's ``raw_logprobs``: under the model's untempered distribution,
  the chosen token's and the top one's, as the protocol asks.
- **Token counts** come from vLLM's outputs (the generated token ids, end-of-sequence and stop
  tokens included).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from transformers import AutoConfig, PretrainedConfig
from vllm import LLM
from vllm import SamplingParams as VLLMSamplingParams

from ..compute import Usage
from ..models import load_tokenizer, require_dir
from .base import Completion, FinishReason, GenerationOutput, SamplingParams, completion_from_tokens, encode_call
from .sampling import derive_seed


def flop_params_of_config(config: PretrainedConfig) -> int:
    """``models.flop_params`` of a model of ``config``, counted on the meta device (no weights are
    read: vLLM loads them itself)."""
    import torch
    from transformers import AutoModelForCausalLM

    from ..models import flop_params

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return flop_params(model)


class VLLMGenerator:
    """``Generator`` over ``vllm.LLM`` for the model saved at ``path``.

    ``tensor_parallel_size`` splits the model over that many GPUs. ``gpu_memory_utilization`` is
    the share of device memory the engine reserves for weights and KV cache. vLLM's CPU build
    takes it of host memory and sizes the KV cache as that share less what the whole process
    already holds, so there a second engine in one process gets little or nothing;
    ``kv_cache_gb`` fixes the KV cache size in GiB instead. ``enforce_eager`` skips CUDA graphs and compilation: a faster start, a slower
    decode. ``context`` is the model's ``max_position_embeddings``, enforced as the transformers
    back end does (``PromptTooLong``).
    """

    def __init__(
        self,
        path: str | Path,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.4,
        kv_cache_gb: float | None = None,
        enforce_eager: bool = False,
        dtype: str = "auto",
    ) -> None:
        path = require_dir(path, "model", saved_model=True)
        self.tokenizer = load_tokenizer(path)
        model_config = AutoConfig.from_pretrained(str(path))
        self.context: int | None = getattr(model_config, "max_position_embeddings", None)
        self.flop_params = flop_params_of_config(model_config)
        # The engine core runs in this process, so results do not depend on an extra process and
        # tests can run it; on GPUs vLLM's own multiprocessing stays available through the variable.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        self.llm = LLM(
            model=str(path),
            tokenizer=str(path),
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            enforce_eager=enforce_eager,
            dtype=dtype,
            max_model_len=self.context,
            enable_prefix_caching=True,
            logprobs_mode="raw_logprobs",
            kv_cache_memory_bytes=None if kv_cache_gb is None else int(kv_cache_gb * 2**30),
        )

    def generate(
        self,
        prompts: Sequence[str],
        n: int = 1,
        params: SamplingParams = SamplingParams(),
        seed: int | Sequence[int] = 0,
    ) -> GenerationOutput:
        encoded, prompt_seeds = encode_call(self.tokenizer, prompts, n, params, seed, self.context)
        rows = [(i, derive_seed(prompt_seeds[i], j)) for i in range(len(encoded)) for j in range(n)]
        tokens: list[list[int]] = [[] for _ in rows]
        logprobs: list[list[float]] = [[] for _ in rows]
        top_logprobs: list[list[float]] = [[] for _ in rows]
        finish: list[FinishReason | None] = [None] * len(rows)
        live = list(range(len(rows)))
        for round_number in range(params.max_new_tokens):
            requests, settings = [], []
            for r in live:
                prompt, row_seed = rows[r]
                requests.append({"prompt_token_ids": encoded[prompt] + tokens[r]})
                settings.append(
                    VLLMSamplingParams(
                        n=1,
                        temperature=params.temperature,
                        top_p=params.top_p,
                        max_tokens=params.max_new_tokens - len(tokens[r]),
                        seed=row_seed if round_number == 0 else derive_seed(row_seed, round_number),
                        stop=[params.stop] if params.stop is not None else None,
                        logprobs=1 if params.logprobs else None,
                        skip_special_tokens=True,
                    )
                )
            outputs = self.llm.generate(requests, settings, use_tqdm=False)
            still_live = []
            for r, output in zip(live, outputs):
                sample = output.outputs[0]
                tokens[r].extend(sample.token_ids)
                if params.logprobs:
                    for token, candidates in zip(sample.token_ids, sample.logprobs):
                        logprobs[r].append(candidates[token].logprob)
                        top_logprobs[r].append(max(c.logprob for c in candidates.values()))
                finish[r] = self._finish(sample.finish_reason, sample.stop_reason, tokens[r], params)
                if finish[r] is None:
                    still_live.append(r)
            live = still_live
            if not live:
                break
        completions: list[list[Completion]] = [[] for _ in encoded]
        generated = [0] * len(encoded)
        for r, (prompt, _) in enumerate(rows):
            completions[prompt].append(
                completion_from_tokens(
                    self.tokenizer, tokens[r], finish[r] or "length", params, logprobs[r], top_logprobs[r]
                )
            )
            generated[prompt] += len(tokens[r])
        usages = [Usage.inference(self.flop_params, len(ids), generated[i]) for i, ids in enumerate(encoded)]
        return GenerationOutput(completions, usages)

    def _finish(
        self, reason: str | None, stop_reason: int | str | None, tokens: list[int], params: SamplingParams
    ) -> FinishReason | None:
        """Why a sample ended after a round, or None when it must go on (a stop string seen fewer
        than ``stop_count`` times with tokens left)."""
        if reason == "stop" and (stop_reason is None or isinstance(stop_reason, int)):
            return "eos"  # the tokenizer's end of sequence, or an id in the model's generation config
        if params.stop is not None:
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            if text.count(params.stop) >= params.stop_count:
                return "stop"
        if reason == "length" or len(tokens) >= params.max_new_tokens:
            return "length"
        return None
