"""The generator: fine-tune a causal LM on the task's texts, then sample new in-domain texts from it.

`model: scratch` builds a small GPT-2 from a config with a byte-level BPE tokenizer trained on the texts:
the air-gapped setting. Any other value is a Hugging Face causal LM id or path (the paper used GPT-2); the
code path after loading is the same.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from accelerate import Accelerator
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
    get_linear_schedule_with_warmup,
)

from gendistill.config import GeneratorConfig
from gendistill.hub import from_pretrained
from gendistill.training import fit, save_pretrained_atomic

if TYPE_CHECKING:
    from gendistill.sources.generate import GenerateSource

EOS = "<|endoftext|>"
PAD = "<pad>"


def train_bpe_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A GPT-2 style byte-level BPE tokenizer learnt from `texts` (with <|endoftext|> as BOS/EOS)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=EOS, eos_token=EOS, pad_token=PAD)


def build_generator(config: GeneratorConfig, texts: list[str]):
    """(model, tokenizer) ready for fine-tuning: from scratch or from a pretrained causal LM."""
    if config.model == "scratch":
        tokenizer = train_bpe_tokenizer(texts, config.scratch_vocab_size)
        model_config = GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=config.max_length + config.scratch_extra_positions,
            n_embd=config.scratch_dim,
            n_layer=config.scratch_layers,
            n_head=config.scratch_heads,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        return GPT2LMHeadModel(model_config), tokenizer
    kwargs = {"trust_remote_code": config.trust_remote_code}
    tokenizer = from_pretrained(AutoTokenizer.from_pretrained, config.model, "generator tokenizer", **kwargs)
    model = from_pretrained(AutoModelForCausalLM.from_pretrained, config.model, "generator model", **kwargs)
    if tokenizer.eos_token is None:
        tokenizer.eos_token = tokenizer.bos_token or tokenizer.sep_token
    if tokenizer.bos_token is None:
        tokenizer.bos_token = tokenizer.eos_token
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def prefix_for(label_name: str | None) -> str:
    """The class-conditional prefix (label name and a colon), or nothing."""
    return f"{label_name}: " if label_name is not None else ""


def _training_ids(tokenizer, texts: list[str], prefixes: list[str], max_length: int) -> list[list[int]]:
    body = tokenizer(
        [p + t for p, t in zip(prefixes, texts, strict=True)],
        add_special_tokens=False,
        truncation=True,
        max_length=max_length - 2,
    )["input_ids"]
    return [[tokenizer.bos_token_id, *ids, tokenizer.eos_token_id] for ids in body]


def lm_loss_sum(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token cross-entropy and the number of predicted tokens (the loop averages over the tokens of
    the whole batch across processes; a per-process mean would weight the processes' tokens unequally)."""
    labels = batch.pop("labels")
    logits = model(**batch).logits[:, :-1].float()
    targets = labels[:, 1:]
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="sum"
    )
    return loss, (targets != -100).sum()


def train_generator(
    config: GeneratorConfig,
    texts: list[str],
    labels: list[int],
    label_names: list[str],
    out_dir: Path,
    accelerator: Accelerator,
    seed: int,
    checkpoint_dir: Path | None = None,
) -> dict:
    """Fine-tune the causal LM on the training texts (label-name prefixed when conditional); save it."""
    from accelerate.utils import set_seed

    set_seed(seed)  # the model's init must not depend on what ran before (e.g. starting the process group)
    model, tokenizer = build_generator(config, texts)
    prefixes = [prefix_for(label_names[label] if config.conditional else None) for label in labels]
    sequences = _training_ids(tokenizer, texts, prefixes, config.max_length)
    pad = tokenizer.pad_token_id

    def collate(batch: list[list[int]]) -> dict[str, torch.Tensor]:
        width = max(len(ids) for ids in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, seq in enumerate(batch):
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        labels_ = ids.masked_fill(mask == 0, -100)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels_}

    scratch = config.model == "scratch"
    epochs = config.epochs or (30 if scratch else 3)
    learning_rate = config.learning_rate or (1e-3 if scratch else 5e-5)
    steps = max(1, math.ceil(epochs * math.ceil(len(sequences) / config.batch_size)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    scheduler = get_linear_schedule_with_warmup(optimizer, min(100, steps // 10), steps)
    model, result = fit(
        accelerator=accelerator,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        examples=sequences,
        batch_size=config.batch_size,
        collate=collate,
        loss_fn=lm_loss_sum,
        steps=steps,
        seed=seed,
        description="generator: fine-tune",
        name="generator",
        checkpoint_dir=checkpoint_dir,
        hparams={"generator": config.model_dump(mode="json"), "examples": len(sequences)},
    )
    save_pretrained_atomic(accelerator, model, tokenizer, out_dir)
    return {
        "steps": result.steps,
        "learning_rate": learning_rate,
        "final_loss": result.history[-1]["loss"],
        "resumed_from_epoch": result.resumed_from_epoch,
    }


def load_generator(path: Path, device: str | torch.device, trust_remote_code: bool = False):
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=trust_remote_code).to(device).eval()
    tokenizer.padding_side = "left"
    return model, tokenizer


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
