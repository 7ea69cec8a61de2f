"""Sample transfer texts from the fine-tuned generator. What every engine shares lives here once: a shard's prompts
(drawn from its seed) and how a text is cut from what the engine returns. An engine only continues token ids:
`HFEngine` (Hugging Face `generate`, below) or `VLLMEngine` (`gendistill.generation.vllm_engine`)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import torch

from gendistill.generation.generator_config import prefix_for

if TYPE_CHECKING:
    from gendistill.sources.generate import GenerateSource


class Prompt(NamedTuple):
    ids: list[int]  # BOS, the label prefix, the first word
    keep_from: int  # where the kept text starts: after BOS and the label prefix, which are not part of the text


def build_prompts(
    tokenizer: Any,
    shard_size: int,
    seed: int,
    *,
    prompt: str,
    first_words: list[str],
    label_names: list[str],
    conditional: bool,
) -> list[Prompt]:
    """`shard_size` prompts: BOS (+ a label-name prefix when conditional, the class drawn uniformly) (+ a first word
    drawn from the training texts with `prompt: first_word`, as Tang et al. do). The same for every engine, drawn
    from `random.Random(seed)`."""
    rng = random.Random(seed)
    prompts = []
    for _ in range(shard_size):
        prefix = prefix_for(rng.choice(label_names) if conditional else None)
        prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"] if prefix else []
        word = rng.choice(first_words) if prompt == "first_word" and first_words else ""
        word_ids = tokenizer(word, add_special_tokens=False)["input_ids"] if word else []
        prompts.append(Prompt([tokenizer.bos_token_id, *prefix_ids, *word_ids], 1 + len(prefix_ids)))
    return prompts


def decode_text(tokenizer: Any, tokens: list[int]) -> str:
    """The text of `tokens` up to the first EOS."""
    if tokenizer.eos_token_id in tokens:
        tokens = tokens[: tokens.index(tokenizer.eos_token_id)]
    return tokenizer.decode(tokens, skip_special_tokens=True)


class Engine(Protocol):
    """Continues prompts: the one thing the sampling engines do differently."""

    tokenizer: Any

    def continue_prompts(self, prompts: list[Prompt], seed: int) -> list[list[int]]:
        """The new token ids after each prompt, in prompt order; deterministic for a given seed, so a resumed run
        regenerates exactly the shard it lost."""
        ...


@dataclass(frozen=True, kw_only=True)
class TextSampler:
    """A `generate` source's sampler, (shard_size, seed) -> texts: draws the shard's prompts, has the engine continue
    them and keeps each text from its first word (the label prefix is dropped) to the first EOS."""

    engine: Engine
    prompt: str
    first_words: list[str]
    label_names: list[str]
    conditional: bool

    def __call__(self, shard_size: int, seed: int) -> list[str]:
        tokenizer = self.engine.tokenizer
        prompts = build_prompts(
            tokenizer,
            shard_size,
            seed,
            prompt=self.prompt,
            first_words=self.first_words,
            label_names=self.label_names,
            conditional=self.conditional,
        )
        continuations = self.engine.continue_prompts(prompts, seed)
        return [
            decode_text(tokenizer, [*prompt.ids[prompt.keep_from :], *tokens])
            for prompt, tokens in zip(prompts, continuations, strict=True)
        ]


@dataclass(frozen=True)
class HFEngine:
    """Batched, KV-cached Hugging Face generation on this process's device."""

    model: Any
    tokenizer: Any
    sampling: GenerateSource

    @classmethod
    def load(
        cls, path: Path, sampling: GenerateSource, *, device: str | torch.device, trust_remote_code: bool = False
    ) -> HFEngine:
        """The fine-tuned generator folder on `device`, in eval mode, its tokenizer padding on the left (every prompt
        of a batch then ends where generation starts)."""
        # transformers takes seconds to import, and the config imports every source: only a run that samples pays
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=trust_remote_code).to(device).eval()
        tokenizer.padding_side = "left"
        return cls(model, tokenizer, sampling)

    @torch.inference_mode()
    def continue_prompts(self, prompts: list[Prompt], seed: int) -> list[list[int]]:
        tokenizer, sampling, model = self.tokenizer, self.sampling, self.model
        torch.manual_seed(seed)
        device = next(model.parameters()).device
        positions = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)
        continuations: list[list[int]] = []
        for start in range(0, len(prompts), sampling.batch_size):
            batch = prompts[start : start + sampling.batch_size]
            width = max(len(prompt.ids) for prompt in batch)
            ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, prompt in enumerate(batch):  # left padding: every prompt ends at column `width`
                ids[row, width - len(prompt.ids) :] = torch.tensor(prompt.ids)
                mask[row, width - len(prompt.ids) :] = 1
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
            continuations += output[:, width:].tolist()
        return continuations
