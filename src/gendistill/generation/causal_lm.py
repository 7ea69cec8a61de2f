"""The causal-LM generator: build one (a Hub/local model, or a small GPT-2 from scratch) and fine-tune it on the
labeled texts with label prefixes. Sampling it back is `gendistill.generation.sampling`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from accelerate.utils import set_seed
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from gendistill.generation.generator_config import GeneratorConfig, prefix_for
from gendistill.loading import from_pretrained
from gendistill.training.budget import steps_for_epochs
from gendistill.training.finetune import FitContext, fine_tune

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"


PAD = "<pad>"


def train_bpe_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    from transformers import (
        PreTrainedTokenizerFast,
    )  # transformers loads in ~1.5 s: imported on use, so the CLI starts fast

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
    from transformers import (  # transformers loads in ~1.5 s: imported on use, so the CLI starts fast
        AutoModelForCausalLM,
        AutoTokenizer,
        GPT2Config,
        GPT2LMHeadModel,
    )

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
    safetensors_only = None if config.allow_pickle_weights else True
    model = from_pretrained(
        AutoModelForCausalLM.from_pretrained,
        config.model,
        "generator model",
        use_safetensors=safetensors_only,
        **kwargs,
    )
    if tokenizer.eos_token is None:
        tokenizer.eos_token = tokenizer.bos_token or tokenizer.sep_token
    if tokenizer.bos_token is None:
        tokenizer.bos_token = tokenizer.eos_token
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


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


def train_generator(config: GeneratorConfig, ctx: FitContext) -> dict:
    """Fine-tune the causal LM on the training texts (label-name prefixed when conditional); save it."""
    set_seed(ctx.seed)  # the model's init must not depend on what ran before (e.g. starting the process group)
    texts = ctx.train.texts
    model, tokenizer = build_generator(config, texts)
    prefixes = [prefix_for(ctx.label_names[label] if config.conditional else None) for label in ctx.train.labels]
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
    steps = steps_for_epochs(epochs, len(sequences), config.batch_size)
    result = fine_tune(
        ctx,
        model,
        tokenizer,
        name="generator",
        examples=sequences,
        collate=collate,
        loss_fn=lm_loss_sum,
        batch_size=config.batch_size,
        steps=steps,
        recipe={
            "learning_rate": learning_rate,
            "warmup_ratio": 0.1,
            "max_warmup_steps": 100,
            "decay_norms_and_biases": True,
        },
        hparams={"generator": config.model_dump(mode="json"), "examples": len(sequences)},
    )
    return {
        "steps": result.steps,
        "learning_rate": learning_rate,
        "final_loss": result.history[-1]["loss"],
        "resumed_from_epoch": result.resumed_from_epoch,
    }
