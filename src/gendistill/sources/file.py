"""`file`: unlabeled texts the user already has (CSV/TSV/JSONL/Parquet or `hf:`), a random `n` of them when set."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from gendistill.sources.base import SourceConfig, SourceContext, SourceSummary, normalize, write_all

if TYPE_CHECKING:
    from gendistill.config import RunConfig


class FileSource(SourceConfig):
    """Unlabeled in-domain texts read from a file."""

    type: Literal["file"] = "file"
    path: str = Field(description="CSV/TSV/JSONL/Parquet path, or hf:NAME[:CONFIG][@SPLIT]")
    text_column: str | None = Field(default=None, description="default: data.text_column")
    exclude_labeled: bool = Field(default=True, description="drop texts that are in the labeled training set")

    def inputs(self) -> list[str]:
        return [self.path]

    def column(self, config: RunConfig) -> str:
        return self.text_column or config.data.text_column

    def check(self, config: RunConfig, index: int) -> None:
        from gendistill.data import _column, read_table

        frame = read_table(self.path, "transfer")
        hint = (
            f"transfer.sources[{index}].text_column"
            if self.text_column
            else (f"transfer.sources[{index}].text_column (it defaults to data.text_column)")
        )
        _column(frame, self.column(config), self.path, "text", hint)

    def build(self, ctx: SourceContext) -> SourceSummary:
        from gendistill.data import load_unlabeled

        texts = load_unlabeled(self.path, self.column(ctx.config), ctx.config.data.max_chars)
        drops: Counter[str] = Counter()
        if self.exclude_labeled:
            before = len(texts)
            texts = [text for text in texts if normalize(text) not in ctx.text_filter.training_texts]
            drops["training_copy"] += before - len(texts)
        random.Random(ctx.seed + ctx.index).shuffle(texts)
        kept = ctx.text_filter(texts, drops)
        if self.n is not None:
            kept = kept[: self.n]
        return SourceSummary(
            type=self.type,
            requested=self.n,
            generated=len(texts) + drops["training_copy"],
            kept=len(kept),
            drops=dict(drops),
            shards=write_all(ctx.directory, kept, ctx.shard_size),
            details={"file": Path(self.path).name if not self.path.startswith("hf:") else self.path},
        )
