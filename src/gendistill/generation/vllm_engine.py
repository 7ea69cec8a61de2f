"""The vLLM sampling engine (`engine: vllm`): vLLM's offline engine (continuous batching, paged KV cache) continues
the same prompts as the Hugging Face path, one seeded request each. vLLM is an optional extra for GPU machines, so
it is imported only where it is used."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gendistill.errors import ConfigError
from gendistill.generation.sampling import Prompt

if TYPE_CHECKING:
    from gendistill.sources.generate import GenerateSource


def vllm_requests(
    prompts: list[Prompt], sampling: GenerateSource, *, seed: int, eos_token_id: int, max_positions: int
) -> list[tuple[dict, dict]]:
    """(prompt, SamplingParams keyword arguments) per prompt for vLLM's offline engine: the same prompts and
    sampling settings as the HF path, one seed per request (derived from the shard seed and the row) so a shard
    is reproducible whatever else the engine batches with it. Pure: unit-tested without vLLM."""
    requests = []
    for row, prompt in enumerate(prompts):
        params = {
            "n": 1,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "top_k": sampling.top_k or -1,  # vLLM: -1 disables top-k
            "max_tokens": max(1, min(sampling.max_new_tokens, max_positions - len(prompt.ids))),
            "seed": (seed * 1_000_003 + row) % 2**31,
            "stop_token_ids": [eos_token_id],
            "skip_special_tokens": True,
        }
        requests.append(({"prompt_token_ids": list(prompt.ids)}, params))
    return requests


@dataclass(frozen=True)
class VLLMEngine:
    """A vLLM `LLM` over the fine-tuned generator folder (on this process's GPU)."""

    llm: Any
    tokenizer: Any
    sampling: GenerateSource

    @classmethod
    def load(cls, path: Path, sampling: GenerateSource, *, seed: int, trust_remote_code: bool = False) -> VLLMEngine:
        try:
            from vllm import LLM
        except ImportError:
            raise ConfigError(
                "engine: vllm needs the vllm package on a GPU machine (pip install 'gendistill[vllm]'); or use "
                "engine: hf"
            ) from None
        # transformers takes seconds to import, and the config imports every source: only a run that samples pays
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        llm = LLM(model=str(path), seed=seed, trust_remote_code=trust_remote_code, enforce_eager=False)
        return cls(llm, tokenizer, sampling)

    def continue_prompts(self, prompts: list[Prompt], seed: int) -> list[list[int]]:
        from vllm import SamplingParams

        positions = self.llm.llm_engine.model_config.max_model_len
        requests = vllm_requests(
            prompts, self.sampling, seed=seed, eos_token_id=self.tokenizer.eos_token_id, max_positions=positions
        )
        outputs = self.llm.generate(
            [prompt for prompt, _ in requests], [SamplingParams(**params) for _, params in requests], use_tqdm=False
        )
        return [list(output.outputs[0].token_ids) for output in outputs]  # vLLM answers in request order
