"""`generate`: texts sampled from the fine-tuned generator LM (the paper's transfer set).

Sampling settings live here, not in the `generator` section: they change what this source writes and nothing the
generator stage trains, so tuning `top_p` never retrains the LM. `batch_size` is part of the key too: batched
sampling draws a different random stream for another batch size, so it changes the texts.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from gendistill.generation.sampling import Engine, HFEngine, TextSampler
from gendistill.generation.vllm_engine import VLLMEngine
from gendistill.sources.base import SourceConfig, SourceContext, SourceSummary, fill_by_sampling

SAMPLING_FIELDS = ("prompt", "top_k", "top_p", "temperature", "max_new_tokens", "batch_size", "engine")


class GenerateSource(SourceConfig):
    """Sample `n` texts (after cleaning) from the fine-tuned generator."""

    type: Literal["generate"] = "generate"
    n: Annotated[int, Field(ge=1)] = Field(description="texts to keep after the filters")
    prompt: Literal["bos", "first_word"] = Field(
        default="bos", description="bos: start from BOS; first_word: BOS + a first word drawn from the labeled texts"
    )
    top_k: Annotated[int, Field(ge=0)] = Field(default=0, description="0: off")
    top_p: Annotated[float, Field(gt=0, le=1)] = 0.95
    temperature: Annotated[float, Field(gt=0)] = 1.0
    max_new_tokens: Annotated[int, Field(ge=1)] = 64
    batch_size: Annotated[int, Field(ge=1)] = Field(default=32, description="prompts sampled at once")
    engine: Literal["hf", "vllm"] = Field(
        default="hf", description="hf: transformers' generate; vllm: vLLM's offline engine (a GPU and the vllm extra)"
    )

    needs_generator = True
    needs_labeled_texts = True
    parallel = True

    def build(self, ctx: SourceContext) -> SourceSummary:
        path, trust = ctx.layout.generator, ctx.config.generator.trust_remote_code
        if self.engine == "vllm":
            engine: Engine = VLLMEngine.load(path, self, seed=ctx.seed, trust_remote_code=trust)
        else:
            engine = HFEngine.load(path, self, device=ctx.device, trust_remote_code=trust)
        sampler = TextSampler(
            engine=engine,
            prompt=self.prompt,
            first_words=[text.split()[0] for text in ctx.task.train.texts if text.split()],
            label_names=ctx.task.label_names,
            conditional=ctx.config.generator.conditional,
        )
        return fill_by_sampling(ctx, self, sampler)


def migrate_generator_sampling(raw: dict[str, Any]) -> list[str]:
    """Configs written before sampling moved into the source kept it under `generator`: move those keys into every
    `generate` source that does not set them (`sample_batch_size` becomes `batch_size`). Returns notes."""
    generator = raw.get("generator")
    if not isinstance(generator, dict):
        return []
    renamed = {"sample_batch_size": "batch_size"}
    sampling_only = [key for key in SAMPLING_FIELDS if key != "batch_size"] + ["sample_batch_size"]
    moved = {key: generator.pop(key) for key in sampling_only if key in generator}  # generator.batch_size trains
    if not moved:
        return []
    transfer = raw.get("transfer") if isinstance(raw.get("transfer"), dict) else {}
    sources = transfer.get("sources") if isinstance(transfer, dict) else None
    targets = [
        s for s in (sources if isinstance(sources, list) else []) if isinstance(s, dict) and s.get("type") == "generate"
    ]
    for source in targets:
        for key, value in moved.items():
            source.setdefault(renamed.get(key, key), value)
    names = ", ".join(f"generator.{key}" for key in moved)
    where = "moved there" if targets else "ignored: there is no generate source"
    return [f"{names}: sampling settings belong to the generate source (transfer.sources[i].KEY); {where}"]
