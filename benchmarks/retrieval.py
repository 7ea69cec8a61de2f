"""The `retrieve` source on real data (issue 21): does retrieval find a task's texts in a mostly off-task corpus,
and does the pipeline's memory stay flat as the corpus grows?

quality: for each dataset x seed, one labeled sample (N per class) and one teacher (the cells of
benchmarks/rounds.py, adopted when they exist), and two students distilled on n texts each:
  in_domain_pool   n texts drawn from the dataset's own unlabeled pool (a `file` source; rounds.py's one_shot@n)
  retrieved        the n texts of a mixed corpus nearest the labeled texts (a `retrieve` source, the teacher's
                   pretrained encoder, all-MiniLM-L6-v2). The mixed corpus is the off-task corpus (250k UN General
                   Debate sentences, or its first --offtask-rows) plus the unlabeled pools of the --hide datasets
                   (default banking77, clinc150 and 20,000 GoEmotions texts): every dataset's own pool is hidden
                   among at least 10x texts of other tasks (checked). Built once, embedded once.
  `from_own_pool` says what share of the retrieved texts came from the dataset's own pool.
  --picks nearest spread adds `retrieved_spread`, the same source with `pick: spread`; --dev-texts K scores every
  student's agreement with the teacher on K of the dataset's own pool texts that no arm trained on (`dev_agreement`):
  held-out teacher-labeled texts, the criterion that chooses between rules (the test file is only reported).

    python benchmarks/retrieval.py quality --data-dir benchmarks/data --datasets banking77 --seeds 0 1 2 \\
        --teacher models/all-MiniLM-L6-v2 --cache /work/bench-cache [--hide banking77 --offtask-rows 110000]

One mix per dataset, its pool (or a random --pool-rows of it) after the first 110,000 off-task rows, so every mix
embeds those rows once between them (the embeddings cache copies the blocks they share):

    python benchmarks/retrieval.py quality --data-dir ../shared/data --datasets sst2 --hide sst2 \\
        --offtask-rows 110000 --pool-rows 10000 --offtask-first --seeds 0 1 2 --teacher models/all-MiniLM-L6-v2

scale: peak RSS and seconds of embed + index + query (1,000 queries, 50 neighbours) for corpora of each size, each
in a fresh process; the texts are synthesized and the encoder is a random-init 2-layer BERT with 384-dim outputs
(MiniLM's width), so the figures measure the data path (streaming, the float16 vectors file, the faiss index), not
a model.

    python benchmarks/retrieval.py scale --sizes 100000 1000000

Outputs: benchmarks/results/retrieval/{summary.json, runs/*.json, scale.json}.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from gendistill.data.domain_filter import DEFAULT_THRESHOLD

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agreement import dev_agreement, normalized  # noqa: E402 - benchmarks/agreement.py

HIDDEN = ("banking77", "clinc150", "goemotions")  # whose pools hide in the mixed corpus
GOEMOTIONS_IN_MIX = 20_000


def mixed_corpus(
    data_dir: Path,
    corpus: Path,
    out: Path,
    hide: list[str],
    offtask_rows: int | None,
    pool_rows: int | None = None,
    offtask_first: bool = False,
) -> Path:
    """The off-task corpus (its first `offtask_rows` rows, or all) and the train pools of the `hide` datasets (each
    a random `pool_rows` of its pool where it has more), as one Parquet file (built once per composition). Every
    hidden pool is at most a tenth of the rest. All rows shuffled, or with `offtask_first` the off-task rows first
    in their own order and the pools shuffled after them: then mixes for different datasets share their off-task
    blocks, which the embeddings cache embeds once (row order means nothing to a nearest-neighbour search)."""
    layout = ["pool" + str(pool_rows)] if pool_rows else []
    layout += ["offtask-first"] if offtask_first else []
    name = "-".join(["mixed", *hide, f"offtask{offtask_rows or 'all'}", *layout])
    path = out / f"{name}.parquet"
    if path.exists():
        return path
    offtask = pq.read_table(corpus, columns=["text"]).column("text").to_pylist()[:offtask_rows]
    pools = {}
    for dataset in hide:
        pool = [json.loads(line)["text"] for line in (data_dir / dataset / "train.jsonl").read_text().splitlines()]
        cap = pool_rows or (GOEMOTIONS_IN_MIX if dataset == "goemotions" else None)
        if cap and len(pool) > cap:
            pool = random.Random(0).sample(pool, cap)
        pools[dataset] = pool
    hidden = [text for pool in pools.values() for text in pool]
    if offtask_first:
        random.Random(0).shuffle(hidden)
        texts = list(dict.fromkeys(offtask + hidden))
    else:
        texts = list(dict.fromkeys(offtask + hidden))
        random.Random(0).shuffle(texts)
    for dataset, pool in pools.items():
        if 10 * len(pool) > len(texts) - len(pool):
            others = len(texts) - len(pool)
            sys.exit(f"error: {dataset}'s pool ({len(pool)}) is more than a tenth of the other {others} texts")
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(pa.table({"text": texts}), tmp, compression="zstd", row_group_size=25_000)
    tmp.replace(path)
    return path


def quality(args: argparse.Namespace) -> None:
    import lowdata

    import gendistill
    from gendistill.config import build_config
    from gendistill.io import write_json

    corpus = mixed_corpus(
        args.data_dir,
        args.corpus,
        args.cache / "retrieval",
        args.hide,
        args.offtask_rows,
        args.pool_rows,
        args.offtask_first,
    )
    corpus_size = pq.read_metadata(corpus).num_rows
    runs = args.out / "runs"
    for dataset in args.datasets:
        own = normalized(
            json.loads(line)["text"] for line in (args.data_dir / dataset / "train.jsonl").read_text().splitlines()
        )
        for seed in args.seeds:
            base = lowdata.base_config(args, dataset, args.per_class, seed)
            cell = args.cache / dataset / f"n{args.per_class}-s{seed}" / "rounds"  # benchmarks/rounds.py's cell
            shared = gendistill.Run(build_config(base), cell / "shared")
            shared.run(until="teacher")
            student = {**base["student"], "baseline": False}
            pool = {"type": "file", "path": base["data"]["train"], "exclude_labeled": True, "n": args.n}
            retrieve = {
                "type": "retrieve",
                "corpus": str(corpus),
                "n": args.n,
                "per_query": args.per_query,
                "cache_dir": str(args.cache / "retrieve-embeddings"),
            }
            row: dict[str, Any] = {"dataset": dataset, "seed": seed, "n": args.n, "corpus_size": corpus_size}
            row["corpus"], row["command"] = corpus.name, "python " + " ".join(sys.argv)
            arms = [("in_domain_pool", pool, cell / f"one_shot-{args.n}")]
            # "retrieved" is the default pick's arm at the default domain threshold; another pick's is
            # retrieved_<pick>, another threshold's retrieved_d<threshold> (retrieved_spread_d0.7: both)
            for pick, threshold in ((p, t) for p in args.picks for t in args.domain_thresholds):
                default = threshold == DEFAULT_THRESHOLD
                variant = ("" if pick == "nearest" else f"_{pick}") + ("" if default else f"_d{threshold:g}")
                folder = cell.parent / "retrieval" / (f"retrieve-{args.n}" + variant.replace("_", "-"))
                source = retrieve | ({} if pick == "nearest" else {"pick": pick})
                source |= {} if default else {"domain_threshold": threshold}
                arms.append(("retrieved" + variant, source, folder))
            finished: dict[str, tuple[gendistill.Run, list[str]]] = {}  # arm -> (run, its transfer texts)
            for arm, source, folder in arms:
                raw = {**base, "student": student, "transfer": {"sources": [source]}}
                run = gendistill.Run(build_config(raw), folder)
                run.adopt(cell / "shared", ("data", "teacher"))
                started = time.perf_counter()
                report = run.run(force=["changed"])
                row["teacher"] = report.teacher.accuracy
                row[arm] = report.student.accuracy
                row[f"{arm}_seconds"] = round(time.perf_counter() - started, 1)
                texts = transfer_texts(run)
                if arm.startswith("retrieved"):
                    suffix = arm.removeprefix("retrieved")
                    row[f"from_own_pool{suffix}"] = sum(t in own for t in texts) / max(len(texts), 1)
                    row[f"retrieve_details{suffix}"] = report.transfer_set.sources[0].details
                finished[arm] = (run, texts)
                print(f"[{dataset} seed {seed}] {arm}: {report.student.accuracy:.4f}", flush=True)
            if args.dev_texts:
                students = {arm: run.layout.final_student for arm, (run, _texts) in finished.items()}
                trained = {text for _run, texts in finished.values() for text in texts}
                row |= dev_agreement(shared, students, own, trained, args.dev_texts, seed)
                print(f"[{dataset} seed {seed}] dev agreement: {row['dev_agreement']}", flush=True)
            write_json(runs / f"{dataset}-n{args.per_class}-s{seed}-{args.n}.json", row)
    write_summary(args.out, args.n)


def transfer_texts(run: Any) -> list[str]:
    return [" ".join(t.split()) for p in sorted(run.layout.transfer.rglob("shard-*.parquet")) for t in _texts(p)]


def write_summary(out: Path, n: int) -> None:
    """summary.json from every runs/*.json of size n: means over seeds per dataset."""
    from gendistill.io import write_json

    runs = out / "runs"
    cells = [json.loads(path.read_text()) for path in sorted(runs.glob("*.json"))]
    summary: dict[str, Any] = {}
    for dataset in dict.fromkeys(cell["dataset"] for cell in cells):
        mine = [cell for cell in cells if cell["dataset"] == dataset and cell["n"] == n]
        summary[dataset] = {
            key: statistics.mean(cell[key] for cell in mine)
            for key in ("teacher", "in_domain_pool", "retrieved", "from_own_pool")
            if all(key in cell for cell in mine)  # a run of --picks spread alone has no `retrieved`
        } | {"corpus_size": mine[0]["corpus_size"], "n": n, "seeds": [cell["seed"] for cell in mine]}
        extra = sorted({key for cell in mine for key in cell if key.startswith(("retrieved_", "from_own_pool_"))})
        for key in (k for k in extra if not k.endswith(("_seconds",)) and all(k in cell for cell in mine)):
            summary[dataset][key] = statistics.mean(cell[key] for cell in mine)
        if all("dev_agreement" in cell for cell in mine):
            arms = mine[0]["dev_agreement"]
            summary[dataset]["dev_agreement"] = {
                arm: statistics.mean(cell["dev_agreement"][arm] for cell in mine) for arm in arms
            }
        if "command" in mine[0]:  # rows written since the command was recorded per run
            summary[dataset] |= {"corpus": mine[0]["corpus"], "command": mine[0]["command"]}
    summary["command"] = "python " + " ".join(sys.argv)
    write_json(out / "summary.json", summary)
    print(json.dumps(summary, indent=1))


def _texts(path: Path) -> list[str]:
    return pq.read_table(path, columns=["text"]).column("text").to_pylist()


# ---- scale ----------------------------------------------------------------------------------------------------
WORDS = [f"w{i}" for i in range(20000)]


def _synthetic_corpus(path: Path, size: int) -> None:
    """`size` synthetic texts as Parquet, written beside `path` and renamed into place (a killed run leaves no
    partial corpus behind)."""
    rng = random.Random(size)
    writer = None
    tmp = path.with_name(f".{path.name}.tmp")
    for start in range(0, size, 50_000):
        texts = [" ".join(rng.choices(WORDS, k=rng.randint(6, 24))) for _ in range(min(50_000, size - start))]
        table = pa.table({"text": texts})
        writer = writer or pq.ParquetWriter(tmp, table.schema, compression="zstd")
        writer.write_table(table, row_group_size=25_000)
    assert writer is not None
    writer.close()
    tmp.replace(path)


def _tiny_encoder(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    if (folder / "config.json").exists():
        return
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4, **{w: i + 5 for i, w in enumerate(WORDS)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )
    fast.save_pretrained(folder)
    config = BertConfig(vocab_size=len(vocab), hidden_size=384, num_hidden_layers=2, num_attention_heads=6,
                        intermediate_size=512, max_position_embeddings=64)  # fmt: skip
    BertModel(config).save_pretrained(folder)


def scale_one(size: int, work: Path) -> dict[str, Any]:
    """Runs in its own process: embed, index and query a synthetic corpus of `size` rows."""
    import numpy as np

    from gendistill.data.ann_index import CorpusIndex
    from gendistill.data.corpus_embeddings import TextEncoder, embed_corpus

    corpus, encoder_dir = work / f"corpus-{size}.parquet", work / "encoder"
    if not corpus.exists():
        _synthetic_corpus(corpus, size)
    _tiny_encoder(encoder_dir)
    baseline_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    loaded: list[TextEncoder] = []

    def load() -> TextEncoder:
        if not loaded:
            loaded.append(TextEncoder(str(encoder_dir), device="cpu", max_length=32))
        return loaded[0]

    cache = work / f"cache-{size}"
    shutil.rmtree(cache, ignore_errors=True)  # measure embedding and indexing, not a cache left by an earlier run
    embeddings = embed_corpus(
        str(corpus), "text", max_chars=2000, encoder_name=str(encoder_dir), max_length=32, load_encoder=load,
        cache_dir=cache, batch_size=256,
    )  # fmt: skip
    embedded = time.perf_counter()
    index, _ = CorpusIndex.build_or_load(embeddings.file, embeddings.folder)
    indexed = time.perf_counter()
    queries = load()([" ".join(random.Random(i).choices(WORDS, k=12)) for i in range(1000)], 256)
    neighbours = index.search(np.asarray(queries), 50)
    done = time.perf_counter()
    assert len(neighbours) == 1000
    return {
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_after_imports_mb": round(baseline_mb, 1),
        "seconds": round(done - started, 1),
        "embed_seconds": round(embedded - started, 1),
        "index_seconds": round(indexed - embedded, 1),
        "query_seconds": round(done - indexed, 1),
        "rows": embeddings.rows,
    }


def scale(args: argparse.Namespace) -> None:
    from gendistill.io import write_json

    results: dict[str, Any] = {}
    work = args.cache / "retrieval-scale"
    work.mkdir(parents=True, exist_ok=True)
    for size in args.sizes:  # the corpora are synthesized here, outside the measured processes
        if not (work / f"corpus-{size}.parquet").exists():
            _synthetic_corpus(work / f"corpus-{size}.parquet", size)
    for size in args.sizes:
        command = [sys.executable, __file__, "scale-one", str(size), "--work", str(work)]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        results[str(size)] = json.loads(output.strip().splitlines()[-1])
        print(size, results[str(size)], flush=True)
    sizes = [str(size) for size in args.sizes]
    results["peak_rss_ratio_largest_over_smallest"] = round(
        results[sizes[-1]]["peak_rss_mb"] / results[sizes[0]]["peak_rss_mb"], 3
    )
    results["setup"] = (
        "synthetic texts (6-24 words over 20,000 words); random-init 2-layer BERT, 384-dim outputs, max_length 32; "
        "float16 embeddings file (plain writes and reads), faiss IVF-PQ + exact re-rank from the file (the retrieve "
        "source's); 1,000 queries x 50 neighbours; "
        "each size in a fresh process; one run"
    )
    results["command"] = "python " + " ".join(sys.argv)
    write_json(args.out / "scale.json", results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--data-dir", type=Path, default=Path("benchmarks/data"))
    q.add_argument("--corpus", type=Path, default=Path("benchmarks/data/offtask_corpus/corpus.parquet"))
    q.add_argument("--datasets", nargs="+", default=list(HIDDEN))
    q.add_argument("--hide", nargs="+", default=list(HIDDEN), help="datasets whose train pools hide in the corpus")
    q.add_argument("--offtask-rows", type=int, default=None, help="off-task rows in the mix (default: all)")
    q.add_argument("--pool-rows", type=int, default=None, help="hide a random sample of this many pool texts")
    q.add_argument("--offtask-first", action="store_true", help="off-task rows first (shared blocks embed once)")
    q.add_argument("--per-class", type=int, default=16)
    q.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    q.add_argument("--teacher", required=True)
    q.add_argument("--n", type=int, default=1000)
    q.add_argument("--per-query", type=int, default=50)
    q.add_argument(
        "--picks",
        nargs="+",
        default=["nearest"],
        choices=["nearest", "spread"],
        help="the retrieve source's pick rule(s): one retrieved student each (nearest is the default's `retrieved`)",
    )
    q.add_argument(
        "--domain-thresholds",
        nargs="+",
        type=float,
        default=[DEFAULT_THRESHOLD],
        help="the retrieve source's domain_threshold(s): one retrieved student each (another than the default's "
        "is the arm retrieved_d<threshold>)",
    )
    q.add_argument(
        "--dev-texts",
        type=int,
        default=0,
        help="score every student's agreement with the teacher on this many own-pool texts no arm trained on",
    )
    summary = sub.add_parser("summary", help="rebuild summary.json from runs/ (nothing runs)")
    summary.add_argument("--n", type=int, default=1000)
    summary.add_argument("--out", type=Path, default=Path("benchmarks/results/retrieval"))
    s = sub.add_parser("scale")
    s.add_argument("--sizes", nargs="+", type=int, default=[100_000, 1_000_000])
    one = sub.add_parser("scale-one")
    one.add_argument("size", type=int)
    one.add_argument("--work", type=Path, required=True)
    for p in (q, s):
        p.add_argument("--out", type=Path, default=Path("benchmarks/results/retrieval"))
        p.add_argument("--cache", type=Path, default=Path("benchmarks/cache"))
    args = parser.parse_args()
    if args.command == "quality":
        args.teacher_kind, args.generator, args.arch, args.quick = "hf_encoder", "scratch", "bilstm", False
        quality(args)
    elif args.command == "summary":
        write_summary(args.out, args.n)
    elif args.command == "scale":
        scale(args)
    else:
        args.work.mkdir(parents=True, exist_ok=True)
        print(json.dumps(scale_one(args.size, args.work)))


if __name__ == "__main__":
    main()
