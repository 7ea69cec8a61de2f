"""`augment`: rule-based variants of the labeled texts (Tang et al. 2019: masking, same-part-of-speech swaps,
n-gram sampling); the rules themselves are in `gendistill.generation.rule_based`. Defaults are the paper's."""

from __future__ import annotations

import random
from collections import Counter
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, model_validator

from gendistill.errors import ConfigError
from gendistill.generation.rule_based import POS_NEEDS_TEXTBLOB, augment_texts, mask_token_problem, pos_available
from gendistill.sources.base import SourceConfig, SourceContext, SourceSummary, write_all

if TYPE_CHECKING:
    from gendistill.config import RunConfig


class AugmentSource(SourceConfig):
    """Up to `copies` filtered variants per labeled text; a random `n` of them when `n` is set."""

    type: Literal["augment"] = "augment"
    copies: Annotated[int, Field(ge=1)] = Field(default=20, description="variants per labeled text")
    p_mask: Annotated[float, Field(ge=0, le=1)] = 0.1
    p_swap: Annotated[float, Field(ge=0, le=1)] = 0.1
    p_ngram: Annotated[float, Field(ge=0, le=1)] = 0.25
    ngram_max: Annotated[int, Field(ge=1)] = 5
    mask_token: str = Field(default="[MASK]", description="what a masked word becomes (one word: no whitespace)")
    swap: Literal["auto", "pos", "shape", "none"] = Field(
        default="auto", description="word swaps: same part of speech (pos), same word shape, or none"
    )

    needs_labeled_texts = True

    @model_validator(mode="after")
    def _bands_fit(self) -> AugmentSource:
        if self.p_mask + self.p_swap > 1:
            raise ValueError(f"p_mask + p_swap must be at most 1 (got {self.p_mask} + {self.p_swap})")
        return self

    def check(self, config: RunConfig, index: int) -> None:
        """What the field types cannot say: a mask token the outputs can hold, and the tagger `swap: pos` needs
        installed here (`auto` falls back to word shapes without it)."""
        key = f"transfer.sources[{index}]"
        problem = mask_token_problem(self.mask_token)
        if problem:
            raise ConfigError(f"{key}.mask_token {problem}")
        if self.swap == "pos" and not pos_available():
            raise ConfigError(f"{key}.swap: {POS_NEEDS_TEXTBLOB}")

    def build(self, ctx: SourceContext) -> SourceSummary:
        candidates, stats = augment_texts(ctx.task.train.texts, self, ctx.seed + ctx.index)
        drops: Counter[str] = Counter()
        kept = ctx.text_filter(candidates, drops)
        if self.n is not None:
            random.Random(ctx.seed + ctx.index).shuffle(kept)
            kept = kept[: self.n]
        return SourceSummary(
            type=self.type,
            n=self.n,
            generated=len(candidates),
            kept=len(kept),
            drops=dict(drops),
            shards=write_all(ctx.directory, kept, ctx.shard_size),
            details={"swap_mode": stats["swap_mode"], "copies": self.copies},
        )
