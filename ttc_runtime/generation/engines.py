"""Which engine samples from a saved model: one config, one loader for every caller (the
experiment's stages, the ``Solver``, the server)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from ..config import StrictModel
from .base import Generator


class GenerationConfig(StrictModel):
    """The generation back end and its settings; each setting applies to one back end only."""

    backend: Literal["transformers", "vllm"] = Field(
        "transformers",
        description="transformers (any device, the default) or vllm (GPUs; the `vllm` extra, imported only here).",
    )
    max_batch_rows: int = Field(512, ge=1, description="transformers: sequences (prompts x samples) decoded together.")
    tensor_parallel_size: int = Field(1, ge=1, description="vllm: GPUs one model is split over.")
    gpu_memory_utilization: float = Field(
        0.4,
        gt=0,
        le=1,
        description="vllm: share of device memory each engine reserves for weights and KV cache; the "
        "proposer's and the revision model's engines and the PRM share the device.",
    )
    kv_cache_gb: float | None = Field(
        None,
        gt=0,
        description="vllm: KV cache per engine in GiB, instead of what gpu_memory_utilization leaves (a fixed "
        "size is predictable when several engines share a device).",
    )
    enforce_eager: bool = Field(False, description="vllm: no CUDA graphs or compilation (faster start, slower decode).")
    dtype: str = Field(
        "auto",
        description="vllm: weight and activation dtype ('auto': vLLM's choice, half precision for float32 checkpoints).",
    )


def load_generator(path: str | Path, config: GenerationConfig, device: str | None = None) -> Generator:
    """A ``Generator`` over the model saved at ``path`` (``device``: transformers only; vLLM places
    the model itself, over ``tensor_parallel_size`` GPUs)."""
    if config.backend == "vllm":
        try:
            from .vllm_engine import VLLMGenerator
        except ImportError as error:
            raise ImportError(
                f"generation.backend is vllm but vllm cannot be imported ({error}); install the vllm "
                "extra (pip install 'ttc-allocator[vllm]') or use backend: transformers"
            ) from error
        return VLLMGenerator(
            path,
            tensor_parallel_size=config.tensor_parallel_size,
            gpu_memory_utilization=config.gpu_memory_utilization,
            kv_cache_gb=config.kv_cache_gb,
            enforce_eager=config.enforce_eager,
            dtype=config.dtype,
        )
    from .hf import TransformersGenerator

    return TransformersGenerator.from_pretrained(path, device=device, max_batch_rows=config.max_batch_rows)
