"""Stage `generator`: fine-tune the causal LM that the `generate` source samples (only when a source needs it)."""

from __future__ import annotations

from typing import Any

from gendistill.config import RunConfig
from gendistill.generation.causal_lm import train_generator
from gendistill.loading import (
    check_model,
    check_model_folder,
    check_tokenizer_vocabulary,
    check_weights_match_config,
)
from gendistill.pipeline.context import StageContext
from gendistill.pipeline.graph import Stage, register


def run_generator(ctx: StageContext) -> dict[str, Any]:
    return train_generator(ctx.config.generator, ctx.fit_context(ctx.layout.generator))


def _pretrained(config: RunConfig) -> list[str]:
    return [] if config.generator.model == "scratch" else [config.generator.model]


def _check(config: RunConfig) -> None:
    for model in _pretrained(config):
        check_model_folder(model, config.generator.allow_pickle_weights, "generator")
        check_model(model, "generator model", config.generator.trust_remote_code)
        check_weights_match_config(model, "generator", config.generator.trust_remote_code)
        check_tokenizer_vocabulary(model, "generator", config.generator.trust_remote_code)


STAGE = register(
    Stage(
        name="generator",
        body=run_generator,
        upstream=("data",),
        key_fields=lambda config: {"generator": config.generator, "seed": config.seed},
        inputs=_pretrained,
        check=_check,
        applies=lambda config: config.uses_generator(),
        outputs=lambda layout: layout.trained_model("generator"),
        processes="all",
        command="train-generator",
        help="Fine-tune the generator LM on the training texts.",
    )
)
