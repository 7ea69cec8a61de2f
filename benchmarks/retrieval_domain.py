"""How strict the retrieve source's domain classifier should be (issue 21): the share of the selected texts that come
from the dataset's own pool, per domain threshold, on the mixes of benchmarks/retrieval.py. No student is trained
and no test label is read: the criterion is one the retrieve source's rule 2 was chosen on.

For each dataset x seed, the labeled sample is the harness's (benchmarks/lowdata.py's data stage: N per class,
seeded), and the selection is the retrieve source's own (`gendistill.sources.retrieve`): the same index search, the
same domain classifier (`gendistill.data.domain_filter`), the same deeper search while fewer than 2n candidates
pass the threshold, the same class queues, the classes taking turns until n rows. It leaves out the text filters
and the copies of labeled texts the source drops (a few rows of a thousand). It prints, for the default threshold's
candidates, the own-pool share per band of domain scores, and per threshold the depth searched, the candidates
passing and the own-pool share of the n selected rows.

    python benchmarks/retrieval_domain.py --data-dir ../shared/data --datasets ag_news sst2 --seeds 0 1 2 \\
        --teacher models/all-MiniLM-L6-v2 --cache /work/bench-cache-ct --thresholds 0.5 0.7 0.9

The mixes are benchmarks/retrieval.py's (`--hide D --offtask-rows 110000 --pool-rows 10000 --offtask-first`), built
and embedded in --cache as that script builds them (built here if missing; embedded here if not cached).
Output: --out/summary.json (per dataset and threshold: mean share over seeds, and per seed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lowdata  # noqa: E402 - benchmarks/lowdata.py
from agreement import normalized  # noqa: E402
from retrieval import mixed_corpus  # noqa: E402

BANDS = ((0.0, 0.5), (0.5, 0.7), (0.7, 0.9), (0.9, 0.99), (0.99, 1.01))


def select(queues: dict[int, Any], n: int) -> list[int]:
    """The classes take turns, each its next queued row, until n rows (as the retrieve source keeps texts)."""
    kept: list[int] = []
    while len(kept) < n and any(queues.values()):
        for queue in queues.values():
            if queue and len(kept) < n:
                kept.append(queue.popleft())
    return kept


class Search:
    """The retrieve source's search (`deepening_search`) for one labeled sample at several thresholds: each depth is
    searched once and each candidate scored once, whichever threshold asked first."""

    def __init__(self, index: Any, queries: np.ndarray, domain: Any, n: int, per_query: int, corpus_rows: int):
        self.index, self.queries, self.domain, self.n = index, queries, domain, n
        self.per_query, self.corpus_rows = per_query, corpus_rows
        self.searched: dict[int, list[list[int]]] = {}
        self.scores: dict[int, float] = {}

    def neighbours(self, depth: int) -> list[list[int]]:
        if depth not in self.searched:
            self.searched[depth] = self.index.search(self.queries, depth)
        return self.searched[depth]

    def passing(self, rows: list[int], threshold: float) -> set[int]:
        self.scores.update(self.domain.scores([row for row in rows if row not in self.scores]))
        return {row for row in rows if self.scores[row] >= threshold}

    def at(self, threshold: float) -> tuple[int, list[list[int]], list[int], dict[int, float]]:
        from gendistill.sources.retrieve import deepening_search

        found = deepening_search(
            self.neighbours, self.per_query, self.n, self.corpus_rows, lambda rows: self.passing(rows, threshold)
        )
        return found.per_query, found.neighbours, found.candidates, self.scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, action="append", required=True, help="repeat: first has it wins")
    parser.add_argument("--corpus", type=Path, default=Path("benchmarks/data/offtask_corpus/corpus.parquet"))
    parser.add_argument("--datasets", nargs="+", required=True)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--per-class", type=int, default=16)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--per-query", type=int, default=50)
    parser.add_argument("--thresholds", nargs="+", type=float, default=[0.5, 0.7, 0.9])
    parser.add_argument("--teacher", required=True, help="the encoder the mixes are embedded with")
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/retrieval/domain_threshold"))
    args = parser.parse_args()

    import gendistill
    from gendistill.config import build_config
    from gendistill.data.ann_index import CorpusIndex
    from gendistill.data.corpus_embeddings import TextEncoder, embed_corpus
    from gendistill.data.domain_filter import DomainClassifier
    from gendistill.io import write_json
    from gendistill.sources.retrieve import _class_queues

    encoder = TextEncoder(args.teacher, device="cpu", max_length=128)
    summary: dict[str, Any] = {"command": "python " + " ".join(sys.argv), "n": args.n}
    for dataset in args.datasets:
        data_dir = next(d for d in args.data_dir if (d / dataset / "train.jsonl").exists())
        mix = mixed_corpus(data_dir, args.corpus, args.cache / "retrieval", [dataset], 110_000, 10_000, True)
        own_texts = normalized(json.loads(line)["text"] for line in (data_dir / dataset / "train.jsonl").open())
        mix_texts = pq.read_table(mix, columns=["text"]).column("text").to_pylist()
        own_rows = {row for row, text in enumerate(mix_texts) if " ".join(text.split()) in own_texts}
        embeddings = embed_corpus(
            str(mix),
            "text",
            max_chars=2000,
            encoder_name=args.teacher,
            max_length=128,
            load_encoder=lambda: encoder,
            cache_dir=args.cache / "retrieve-embeddings",
            batch_size=64,
        )
        index, _reused = CorpusIndex.build_or_load(embeddings.file, embeddings.folder)
        print(f"{dataset}: {len(own_rows)} own-pool rows of {len(mix_texts)}", flush=True)
        per_seed: dict[str, Any] = {}
        for seed in args.seeds:
            ns = argparse.Namespace(
                data_dir=data_dir,
                teacher=args.teacher,
                teacher_kind="hf_encoder",
                generator="scratch",
                arch="bilstm",
                quick=False,
            )
            run = gendistill.Run(
                build_config(lowdata.base_config(ns, dataset, args.per_class, seed)),
                args.cache / "domain-cells" / dataset / f"n{args.per_class}-s{seed}",
            )
            run.run(until="data")
            train = pq.read_table(run.dir / "data" / "train.parquet").to_pydict()
            queries = encoder(train["text"], 64)
            domain = DomainClassifier(queries, embeddings.file, seed)
            search = Search(index, queries, domain, args.n, args.per_query, len(embeddings.file))
            _depth, _neighbours, candidates, scores = search.at(min(args.thresholds))
            own = np.array([row in own_rows for row in candidates])
            values = np.array([scores[row] for row in candidates])
            bands = {}
            for low, high in BANDS:
                inside = (values >= low) & (values < high)
                bands[f"{low}-{min(high, 1.0)}"] = {
                    "candidates": int(inside.sum()),
                    "own_share": float(own[inside].mean()) if inside.any() else None,
                }
            cell: dict[str, Any] = {"bands": bands, "thresholds": {}}
            for threshold in args.thresholds:
                depth, neighbours, candidates, scores = search.at(threshold)
                passing = {row for row in candidates if scores[row] >= threshold}
                kept = select(_class_queues(neighbours, train["label"], passing), args.n)
                share = float(np.mean([row in own_rows for row in kept]))
                cell["thresholds"][f"{threshold:g}"] = {
                    "per_query_searched": depth,
                    "passing": len(passing),
                    "selected": len(kept),
                    "own_share": share,
                }
                print(
                    f"[{dataset} seed {seed}] threshold {threshold:g}: depth {depth}, passing {len(passing)}, "
                    f"own-pool share {share:.3f}",
                    flush=True,
                )
            per_seed[str(seed)] = cell
        summary[dataset] = {
            "mix": mix.name,
            "own_share": {
                f"{t:g}": statistics.mean(c["thresholds"][f"{t:g}"]["own_share"] for c in per_seed.values())
                for t in args.thresholds
            },
            "seeds": per_seed,
        }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "summary.json", summary)
    print(json.dumps({k: v["own_share"] for k, v in summary.items() if isinstance(v, dict)}, indent=1))


if __name__ == "__main__":
    main()
