"""Sample transfer texts from a fine-tuned generator, with Hugging Face `generate` or vLLM."""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from gendistill.generation.causal_lm import prefix_for

if TYPE_CHECKING:
    from gendistill.sources.generate import GenerateSource


def build_prompts(
    tokenizer, n: int, seed: int, prompt: str, first_words: list[str], label_names: list[str], conditional: bool
) -> list[tuple[list[int], int]]:
    """`n` prompts as (token ids, where the kept text starts): BOS (+ a label-name prefix when conditional, the
    class drawn uniformly) (+ a first word drawn from the training texts with `prompt: first_word`, as Tang et al.
    do). The same for every engine, drawn from `random.Random(seed)`."""
    rng = random.Random(seed)
    prompts = []
    for _ in range(n):
        prefix = prefix_for(rng.choice(label_names) if conditional else None)
        prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"] if prefix else []
        word = rng.choice(first_words) if prompt == "first_word" and first_words else ""
        word_ids = tokenizer(word, add_special_tokens=False)["input_ids"] if word else []
        prompts.append(([tokenizer.bos_token_id, *prefix_ids, *word_ids], 1 + len(prefix_ids)))
    return prompts


def _decode(tokenizer, tokens: list[int]) -> str:
    if tokenizer.eos_token_id in tokens:
        tokens = tokens[: tokens.index(tokenizer.eos_token_id)]
    return tokenizer.decode(tokens, skip_special_tokens=True)


@torch.inference_mode()
def sample_texts(
    model,
    tokenizer,
    sampling: GenerateSource,
    n: int,
    seed: int,
    first_words: list[str],
    label_names: list[str],
    conditional: bool = False,
) -> list[str]:
    """Sample `n` texts with batched, KV-cached HF generation. Deterministic for a given seed, so a resumed run
    regenerates exactly the shard it lost."""
    prompts = build_prompts(tokenizer, n, seed, sampling.prompt, first_words, label_names, conditional)
    torch.manual_seed(seed)
    device = next(model.parameters()).device
    positions = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)
    texts: list[str] = []
    for start in range(0, n, sampling.batch_size):
        batch = prompts[start : start + sampling.batch_size]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (prompt, _) in enumerate(batch):  # left padding: every prompt ends at column `width`
            ids[row, width - len(prompt) :] = torch.tensor(prompt)
            mask[row, width - len(prompt) :] = 1
        output = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            do_sample=True,
            top_k=sampling.top_k or None,
            top_p=sampling.top_p,
            temperature=sampling.temperature,
            # never past the position table: a pretrained LM would fail, a scratch one would read untrained rows
            max_new_tokens=max(1, min(sampling.max_new_tokens, (positions or 10**9) - width)),
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            use_cache=True,
        ).cpu()
        for row, (prompt, keep_from) in enumerate(batch):
            texts.append(_decode(tokenizer, output[row, width - len(prompt) + keep_from :].tolist()))
    return texts


def vllm_requests(
    prompts: list[tuple[list[int], int]], sampling: GenerateSource, seed: int, eos_token_id: int, max_positions: int
) -> list[tuple[dict, dict]]:
    """(prompt, SamplingParams keyword arguments) per prompt for vLLM's offline engine: the same prompts and
    sampling settings as the HF path, one seed per request (derived from the shard seed and the row) so a shard
    is reproducible whatever else the engine batches with it. Pure: unit-tested without vLLM."""
    requests = []
    for row, (ids, _) in enumerate(prompts):
        params = {
            "n": 1,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "top_k": sampling.top_k or -1,  # vLLM: -1 disables top-k
            "max_tokens": max(1, min(sampling.max_new_tokens, max_positions - len(ids))),
            "seed": (seed * 1_000_003 + row) % 2**31,
            "stop_token_ids": [eos_token_id],
            "skip_special_tokens": True,
        }
        requests.append(({"prompt_token_ids": list(ids)}, params))
    return requests


def sample_texts_vllm(
    engine,
    tokenizer,
    sampling: GenerateSource,
    n: int,
    seed: int,
    first_words: list[str],
    label_names: list[str],
    conditional: bool = False,
) -> list[str]:
    """`sample_texts` through a vLLM `LLM` engine (continuous batching, paged KV cache): the same prompts, one
    seeded request each. Only the prefix the prompt itself contributes (label name) is dropped from the text."""
    from vllm import SamplingParams

    prompts = build_prompts(tokenizer, n, seed, sampling.prompt, first_words, label_names, conditional)
    positions = engine.llm_engine.model_config.max_model_len
    requests = vllm_requests(prompts, sampling, seed, tokenizer.eos_token_id, positions)
    outputs = engine.generate(
        [prompt for prompt, _ in requests], [SamplingParams(**params) for _, params in requests], use_tqdm=False
    )
    texts = []
    for (ids, keep_from), output in zip(prompts, outputs, strict=True):  # vLLM returns outputs in request order
        texts.append(_decode(tokenizer, [*ids[keep_from:], *output.outputs[0].token_ids]))
    return texts


def load_vllm(path: Path, seed: int, trust_remote_code: bool = False):
    """A vLLM offline engine over the fine-tuned generator folder (on this process's GPU)."""
    try:
        from vllm import LLM
    except ImportError:
        from gendistill.errors import ConfigError

        raise ConfigError(
            "engine: vllm needs the vllm package on a GPU machine (pip install 'gendistill[vllm]'); or use engine: hf"
        ) from None
    return LLM(model=str(path), seed=seed, trust_remote_code=trust_remote_code, enforce_eager=False)
