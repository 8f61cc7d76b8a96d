"""The transformers back end: any Hugging Face causal LM, batched, with a KV cache.

Each distinct prompt is encoded once and its cache is shared by its ``n`` samples; finished rows
leave the batch so that long samples do not make short ones pay. Sampling uses per-row seeds
(``sampling``), so results are reproducible and independent of batch composition.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..compute import Usage
from ..models import flop_params, load_causal_lm, load_tokenizer
from .base import Completion, GenerationOutput, SamplingParams, completion_from_tokens, encode_call
from .kv_cache import growing_cache
from .sampling import derive_seed, sample_tokens


class TransformersGenerator:
    """``Generator`` over a transformers causal LM.

    ``max_batch_rows`` bounds how many sequences decode together (prompts x samples); larger
    batches run faster until memory runs out. ``context`` is the model's
    ``max_position_embeddings``: a prompt with fewer than ``max_new_tokens`` positions left after it
    is refused (``PromptTooLong``) rather than run past the positions the model was trained on.
    """

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, max_batch_rows: int = 512) -> None:
        if max_batch_rows < 1:
            raise ValueError(f"max_batch_rows must be >= 1, got {max_batch_rows}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_batch_rows = max_batch_rows
        self.flop_params = flop_params(model)
        self.device = next(model.parameters()).device
        self.context: int | None = getattr(model.config, "max_position_embeddings", None)
        eos = {tokenizer.eos_token_id}
        config_eos = getattr(model.generation_config, "eos_token_id", None)
        eos.update(config_eos if isinstance(config_eos, list) else [config_eos])
        eos.discard(None)
        self.eos_ids = torch.tensor(sorted(eos), device=self.device)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos)
        # Text of each token alone, to watch for stop strings without decoding whole sequences.
        self._token_text = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        # transformers renamed the cache argument from past_key_values to cache in 5.x.
        forward_args = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in forward_args else "past_key_values"

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | None = None, max_batch_rows: int = 512):
        """Load model and tokenizer from one directory saved with ``save_pretrained``."""
        return cls(load_causal_lm(path, device=device), load_tokenizer(path), max_batch_rows)

    def generate(
        self,
        prompts: Sequence[str],
        n: int = 1,
        params: SamplingParams = SamplingParams(),
        seed: int | Sequence[int] = 0,
    ) -> GenerationOutput:
        encoded, prompt_seeds = encode_call(self.tokenizer, prompts, n, params, seed, self.context)
        completions: list[list[Completion]] = []
        usages: list[Usage] = []
        per_chunk = max(1, self.max_batch_rows // n)
        for start in range(0, len(prompts), per_chunk):
            chunk = encoded[start : start + per_chunk]
            rows, chunk_usages = self._generate_chunk(chunk, n, params, prompt_seeds[start : start + per_chunk])
            completions.extend(rows[i * n : (i + 1) * n] for i in range(len(chunk)))
            usages.extend(chunk_usages)
        return GenerationOutput(completions, usages)

    @torch.inference_mode()
    def _generate_chunk(
        self, encoded: list[list[int]], n: int, params: SamplingParams, prompt_seeds: list[int]
    ) -> tuple[list[Completion], list[Usage]]:
        width = max(len(ids) for ids in encoded)
        # Left padding, so that every row's next token sits in the last column.
        input_ids = torch.full((len(encoded), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(encoded), width), dtype=torch.long)
        for i, ids in enumerate(encoded):
            input_ids[i, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention[i, width - len(ids) :] = 1
        input_ids, attention = input_ids.to(self.device), attention.to(self.device)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)

        cache = growing_cache(self.model.config)
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_arg: cache},
        )
        # Share each prompt's cache among its n samples: (P, ...) -> (P * n, ...). The cache object
        # is updated in place by every forward call.
        if n > 1:
            cache.batch_repeat_interleave(n)
        logits = out.logits[:, -1].repeat_interleave(n, dim=0)  # (R, V)
        attention = attention.repeat_interleave(n, dim=0)  # (R, T)
        next_position = positions[:, -1].repeat_interleave(n, dim=0) + 1  # (R,)
        seeds = torch.tensor(
            [derive_seed(prompt_seeds[i], j) for i in range(len(encoded)) for j in range(n)],
            dtype=torch.int64,
            device=self.device,
        )

        total = len(encoded) * n
        active = torch.arange(total, device=self.device)  # original row of each live batch row
        tokens: list[list[int]] = [[] for _ in range(total)]
        logprobs: list[list[float]] = [[] for _ in range(total)]
        top_logprobs: list[list[float]] = [[] for _ in range(total)]
        texts = [""] * total
        stops_seen = [0] * total
        search_from = [0] * total
        finish: list[str | None] = [None] * total
        stop = params.stop
        for step in range(params.max_new_tokens):
            step_tensor = torch.full_like(seeds, step)
            chosen = sample_tokens(logits, seeds, step_tensor, params.temperature, params.top_p)
            is_eos = torch.isin(chosen, self.eos_ids).tolist()
            if params.logprobs:
                log_probs = torch.log_softmax(logits.float(), dim=-1)
                for row, value, top in zip(
                    active.tolist(),
                    log_probs.gather(1, chosen[:, None])[:, 0].tolist(),
                    log_probs.max(dim=-1).values.tolist(),
                ):
                    logprobs[row].append(value)
                    top_logprobs[row].append(top)
            keep = []
            for b, (row, token, eos) in enumerate(zip(active.tolist(), chosen.tolist(), is_eos)):
                tokens[row].append(token)
                if eos:
                    finish[row] = "eos"
                    continue
                if stop is not None:
                    texts[row] += self._token_text[token]
                    # Occurrences are counted without overlap, left to right.
                    found = texts[row].find(stop, search_from[row])
                    while found >= 0 and stops_seen[row] < params.stop_count:
                        stops_seen[row] += 1
                        search_from[row] = found + len(stop)
                        found = texts[row].find(stop, search_from[row])
                    if stops_seen[row] >= params.stop_count:
                        finish[row] = "stop"
                        continue
                if step == params.max_new_tokens - 1:
                    finish[row] = "length"
                    continue
                keep.append(b)
            if not keep:
                break
            if len(keep) < len(active):
                index = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(index)
                active, chosen = active[index], chosen[index]
                attention, next_position, seeds = attention[index], next_position[index], seeds[index]
            attention = torch.cat([attention, attention.new_ones((len(active), 1))], dim=1)
            out = self.model(
                input_ids=chosen[:, None],
                attention_mask=attention,
                position_ids=next_position[:, None],
                use_cache=True,
                **{self._cache_arg: cache},
            )
            logits = out.logits[:, -1]
            next_position = next_position + 1

        completions = [
            completion_from_tokens(
                self.tokenizer, tokens[r], finish[r] or "length", params, logprobs[r], top_logprobs[r]
            )
            for r in range(total)
        ]
        usages = [
            Usage.inference(self.flop_params, len(ids), sum(len(t) for t in tokens[i * n : (i + 1) * n]))
            for i, ids in enumerate(encoded)
        ]
        return completions, usages
