"""`augment`: rule-based variants of the labeled texts (Tang et al. 2019: masking, same-part-of-speech swaps,
n-gram sampling); the rules themselves are in `gendistill.generation.rule_based`. Defaults are the paper's."""

from __future__ import annotations

import random
from collections import Counter
from typing import Annotated, Literal

from pydantic import Field, model_validator

from gendistill.sources.base import SourceConfig, SourceContext, SourceSummary, write_all


class AugmentSource(SourceConfig):
    """Up to `copies` filtered variants per labeled text; a random `n` of them when `n` is set."""

    type: Literal["augment"] = "augment"
    copies: Annotated[int, Field(ge=1)] = Field(default=20, description="variants per labeled text")
    p_mask: Annotated[float, Field(ge=0, le=1)] = 0.1
    p_swap: Annotated[float, Field(ge=0, le=1)] = 0.1
    p_ngram: Annotated[float, Field(ge=0, le=1)] = 0.25
    ngram_max: Annotated[int, Field(ge=1)] = 5
    mask_token: str = "[MASK]"
    swap: Literal["auto", "pos", "shape", "none"] = Field(
        default="auto", description="word swaps: same part of speech (pos), same word shape, or none"
    )

    needs_labeled_texts = True

    @model_validator(mode="after")
    def _bands_fit(self) -> AugmentSource:
        if self.p_mask + self.p_swap > 1:
            raise ValueError(f"p_mask + p_swap must be at most 1 (got {self.p_mask} + {self.p_swap})")
        return self

    def build(self, ctx: SourceContext) -> SourceSummary:
        from gendistill.generation.rule_based import AugmentConfig, augment_texts

        options = AugmentConfig(
            p_mask=self.p_mask,
            p_swap=self.p_swap,
            p_ngram=self.p_ngram,
            ngram_max=self.ngram_max,
            copies=self.copies,
            mask_token=self.mask_token,
            swap=self.swap,
        )
        candidates, stats = augment_texts(ctx.task.train.texts, options, ctx.seed + ctx.index)
        drops: Counter[str] = Counter()
        kept = ctx.text_filter(candidates, drops)
        if self.n is not None:
            random.Random(ctx.seed + ctx.index).shuffle(kept)
            kept = kept[: self.n]
        return SourceSummary(
            type=self.type,
            requested=self.n,
            generated=len(candidates),
            kept=len(kept),
            drops=dict(drops),
            shards=write_all(ctx.directory, kept, ctx.shard_size),
            details={"swap_mode": stats["swap_mode"], "copies": self.copies},
        )
