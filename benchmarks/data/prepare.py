"""Convert the fetched source files of the benchmark data sets into benchmarks/data/<name>/.

Each sub-command reads source files exactly as published (paths given on the command line) and writes
`train.jsonl` / `validation.jsonl` / `test.jsonl` (`{"text": str, "label": int}` per line, 0-based labels)
and `labels.json` (class names in label-id order), or, for the off-task corpus, `corpus.parquet` with one
column `text`. The multi-label GoEmotions variant writes `{"text": str, "label": [int, ...]}` (sorted ids).
Only the standard library and pyarrow are used, and the output is byte-for-byte reproducible.

    python benchmarks/data/prepare.py banking77 SRC/banking_data/train.csv SRC/banking_data/test.csv
    python benchmarks/data/prepare.py clinc150 SRC/data/data_full.json
    python benchmarks/data/prepare.py goemotions SRC/train.tsv SRC/dev.tsv SRC/test.tsv SRC/labels.txt
    python benchmarks/data/prepare.py goemotions-multilabel SRC/train.tsv SRC/dev.tsv SRC/test.tsv SRC/labels.txt
    python benchmarks/data/prepare.py offtask-corpus SRC/data/data_original/TXT [--rows 250000]

Cleaning, as for the shared ag_news/sst2 copies: surrounding whitespace is stripped, runs of spaces and tabs
become one space, and rows whose text is then empty are dropped (each README says how many were).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
_SPACES = re.compile(r"[ \t]+")


def clean(text: str) -> str:
    """Strip the text and collapse runs of spaces and tabs (newlines inside a text are kept)."""
    return _SPACES.sub(" ", text.strip())


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


# A row's label: one class id, or (multi-label sets) the sorted list of its class ids.
Label = int | list[int]


def write_split(out_dir: Path, split: str, rows: list[tuple[str, Label]]) -> None:
    lines = [json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n" for text, label in rows]
    _write_atomic(out_dir / f"{split}.jsonl", "".join(lines).encode("utf-8"))


def write_labels(out_dir: Path, names: list[str]) -> None:
    _write_atomic(out_dir / "labels.json", (json.dumps(names, indent=1) + "\n").encode("utf-8"))


def keep_nonempty(rows: list[tuple[str, Label]], what: str) -> list[tuple[str, Label]]:
    kept = [(clean(text), label) for text, label in rows]
    kept = [(text, label) for text, label in kept if text]
    if len(kept) != len(rows):
        print(f"{what}: dropped {len(rows) - len(kept)} empty texts", file=sys.stderr)
    return kept


def summarize(out_dir: Path, splits: dict[str, list[tuple[str, Label]]], names: list[str]) -> None:
    """Print row counts, class coverage and exact-text overlaps between the splits (for multi-label sets, a class
    counts once in each row that has it, and the rows per number of labels are printed too)."""
    seen = {split: {text for text, _ in rows} for split, rows in splits.items()}
    for split, rows in splits.items():
        counts = Counter(member for _, label in rows for member in (label if isinstance(label, list) else [label]))
        print(
            f"{out_dir.name}/{split}: {len(rows)} rows, {len(counts)}/{len(names)} classes, "
            f"per class min {min(counts.values())} max {max(counts.values())}, "
            f"{len(rows) - len(seen[split])} repeated texts"
        )
        if any(isinstance(label, list) for _, label in rows):
            cardinality = Counter(len(label) for _, label in rows)
            print(
                f"{out_dir.name}/{split}: rows per number of labels "
                + ", ".join(f"{size}: {cardinality[size]}" for size in sorted(cardinality))
            )
    order = list(splits)
    for i, first in enumerate(order):
        for second in order[i + 1 :]:
            print(f"{out_dir.name}: {len(seen[first] & seen[second])} texts in both {first} and {second}")


# --- banking77 ------------------------------------------------------------------------------------------


def read_banking_csv(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        return [(row["text"], row["category"]) for row in reader]


def banking77(args: argparse.Namespace) -> None:
    train = read_banking_csv(Path(args.train_csv))
    test = read_banking_csv(Path(args.test_csv))
    # Case-insensitive alphabetical ids (`Refund_not_showing_up` is 51), as in the Hugging Face `banking77`
    # copy, so that teachers fine-tuned on that copy line up.
    names = sorted({category for _, category in train}, key=str.lower)
    if {category for _, category in test} != set(names):
        raise SystemExit("banking77: the test categories differ from the train categories")
    ids = {name: index for index, name in enumerate(names)}
    out_dir = Path(args.out) / "banking77"
    splits = {
        split: keep_nonempty([(text, ids[category]) for text, category in rows], f"banking77/{split}")
        for split, rows in (("train", train), ("test", test))
    }
    for split, rows in splits.items():
        write_split(out_dir, split, rows)
    write_labels(out_dir, names)
    summarize(out_dir, splits, names)


# --- clinc150 -------------------------------------------------------------------------------------------


def clinc150(args: argparse.Namespace) -> None:
    with Path(args.data_full_json).open(encoding="utf-8") as handle:
        data = json.load(handle)
    # data_full.json: train/val/test hold the 150 in-scope intents; oos_train/oos_val/oos_test the
    # out-of-scope queries, which are left out (their "oos" label is not an intent).
    names = sorted({intent for _, intent in data["train"]})
    ids = {name: index for index, name in enumerate(names)}
    out_dir = Path(args.out) / "clinc150"
    splits = {}
    for split, key in (("train", "train"), ("validation", "val"), ("test", "test")):
        if {intent for _, intent in data[key]} != set(names):
            raise SystemExit(f"clinc150: the intents of {key} differ from those of train")
        splits[split] = keep_nonempty([(text, ids[intent]) for text, intent in data[key]], f"clinc150/{split}")
        write_split(out_dir, split, splits[split])
    write_labels(out_dir, names)
    summarize(out_dir, splits, names)


# --- goemotions -----------------------------------------------------------------------------------------


def read_goemotions_tsv(path: Path) -> list[tuple[str, list[int]]]:
    """Rows of the official tsv (text, comma-separated label ids, comment id), read with csv quoting like the
    Hugging Face loader. A header line `text<TAB>label<TAB>id`, which some copies add, is skipped."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    if rows and rows[0] == ["text", "label", "id"]:
        rows = rows[1:]
    if any(len(row) != 3 for row in rows):
        raise SystemExit(f"goemotions: {path} has a row without exactly 3 tab-separated fields")
    return [(text, [int(label) for label in labels.split(",")]) for text, labels, _ in rows]


def convert_goemotions(
    args: argparse.Namespace,
    folder: str,
    select: Callable[[str, list[tuple[str, list[int]]]], list[tuple[str, Label]]],
) -> None:
    """Read the three GoEmotions tsv files and the class names, turn each split's rows into (text, label) rows
    with `select(split, rows)`, clean them and write benchmarks/data/<folder>/ (shared by both GoEmotions sets)."""
    names = Path(args.labels_txt).read_text(encoding="utf-8").split()
    out_dir = Path(args.out) / folder
    splits = {}
    for split, path in (("train", args.train_tsv), ("validation", args.dev_tsv), ("test", args.test_tsv)):
        rows = read_goemotions_tsv(Path(path))
        if any(not 0 <= label < len(names) for _, labels in rows for label in labels):
            raise SystemExit(f"goemotions: {path} has a label id outside 0-{len(names) - 1}")
        splits[split] = keep_nonempty(select(split, rows), f"{folder}/{split}")
        write_split(out_dir, split, splits[split])
    write_labels(out_dir, names)
    summarize(out_dir, splits, names)


def goemotions(args: argparse.Namespace) -> None:
    def single_label(split: str, rows: list[tuple[str, list[int]]]) -> list[tuple[str, Label]]:
        # The single-label subset: rows whose raters agreed on exactly one of the 28 classes.
        single: list[tuple[str, Label]] = [(text, labels[0]) for text, labels in rows if len(labels) == 1]
        print(f"goemotions/{split}: {len(single)} of {len(rows)} rows have exactly one label", file=sys.stderr)
        return single

    convert_goemotions(args, "goemotions", single_label)


def goemotions_multilabel(args: argparse.Namespace) -> None:
    def every_row(split: str, rows: list[tuple[str, list[int]]]) -> list[tuple[str, Label]]:
        # Every row with all its label ids, sorted; `neutral` (27) is a label like the 27 emotions.
        if any(len(set(labels)) != len(labels) for _, labels in rows):
            raise SystemExit(f"goemotions-multilabel/{split}: a row repeats a label id")
        return [(text, sorted(labels)) for text, labels in rows]

    convert_goemotions(args, "goemotions_multilabel", every_row)


# --- off-task corpus ------------------------------------------------------------------------------------

# Tokens after which a full stop does not end a sentence (titles, "No. 5", "U.S.", single initials).
# fmt: off
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "st", "sr", "jr", "prof", "gen", "col", "lt", "capt", "sgt", "rev", "hon", "messrs",
    "no", "nos", "art", "arts", "para", "paras", "vol", "vols", "p", "pp", "ch", "cf", "viz", "vs", "etc", "e.g",
    "i.e", "u.s", "u.k", "u.n", "u.s.a", "u.s.s.r", "inc", "ltd", "co", "corp", "jan", "feb", "mar", "apr", "jun",
    "jul", "aug", "sep", "sept", "oct", "nov", "dec", "fig", "op", "res", "sess", "suppl", "rep", "doc",
}
# fmt: on
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"\u201d\u2019')\]]*\s+(?=[\"\u201c\u2018(\[]*[A-Z0-9])")
CORPUS_MIN_WORDS = 3
CORPUS_MAX_WORDS = 80


def split_sentences(paragraph: str) -> list[str]:
    """Split one paragraph into sentences at `.`, `!` or `?` followed by space and a capital letter or digit,
    except after a known abbreviation or a single-letter initial. A rule, not a model: some splits are wrong."""
    pieces: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(paragraph):
        before = paragraph[start : match.start()].rstrip("\"\u201d\u2019')]")
        last_word = before.rsplit(None, 1)[-1].lower().rstrip(".") if before.split() else ""
        if last_word in _ABBREVIATIONS or (len(last_word) == 1 and last_word.isalpha()):
            continue
        pieces.append(paragraph[start : match.start()] + match.group(0).strip())
        start = match.end()
    pieces.append(paragraph[start:])
    return [piece.strip() for piece in pieces if piece.strip()]


def offtask_corpus(args: argparse.Namespace) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(args.txt_dir)
    # AppleDouble files (`._X.txt`) that some copies carry are not speeches.
    paths = sorted(path for path in root.rglob("*.txt") if not path.name.startswith("._"))
    if not paths:
        raise SystemExit(f"offtask-corpus: no .txt files under {root}")
    seen: set[str] = set()
    sentences: list[str] = []
    total = short = long = 0
    for path in paths:
        # Some sessions are one paragraph a line, others are wrapped at about 50 characters with line breaks
        # inside sentences, so the whole speech is joined into one line before it is split into sentences.
        speech = " ".join(path.read_text(encoding="utf-8-sig").split())
        for sentence in split_sentences(speech):
            total += 1
            words = len(sentence.split())
            if words < CORPUS_MIN_WORDS:
                short += 1
            elif words > CORPUS_MAX_WORDS:
                long += 1
            elif sentence not in seen:
                seen.add(sentence)
                sentences.append(sentence)
    print(
        f"offtask_corpus: {len(paths)} files, {total} sentences, {short} under {CORPUS_MIN_WORDS} words, "
        f"{long} over {CORPUS_MAX_WORDS} words, {len(sentences)} distinct kept",
        file=sys.stderr,
    )
    if args.rows > len(sentences):
        raise SystemExit(f"offtask-corpus: asked for {args.rows} rows but only {len(sentences)} distinct sentences")
    # A seeded sample, written in source order (speech files sorted by path, sentences in reading order).
    chosen = sorted(random.Random(0).sample(range(len(sentences)), args.rows))
    table = pa.table({"text": pa.array([sentences[index] for index in chosen], type=pa.string())})
    out = Path(args.out) / "offtask_corpus" / "corpus.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    # Row groups of 25,000 rows, so that readers that stream by row group (gendistill's iter_unlabeled) do.
    pq.write_table(table, tmp, compression="zstd", compression_level=19, row_group_size=25_000)
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)
    words = [len(text.split()) for text in table.column("text").to_pylist()]
    print(
        f"offtask_corpus/corpus.parquet: {table.num_rows} rows, {out.stat().st_size} bytes, "
        f"words per text min {min(words)} median {sorted(words)[len(words) // 2]} max {max(words)}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--out", default=str(HERE), help="the folder that gets the data set folders (default: beside this script)"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    command = commands.add_parser("banking77", help="PolyAI banking_data/train.csv and test.csv")
    command.add_argument("train_csv")
    command.add_argument("test_csv")
    command.set_defaults(run=banking77)

    command = commands.add_parser("clinc150", help="clinc/oos-eval data/data_full.json (in-scope intents only)")
    command.add_argument("data_full_json")
    command.set_defaults(run=clinc150)

    for name, run, help_text in (
        ("goemotions", goemotions, "GoEmotions train/dev/test.tsv and the 28 names (single-label rows)"),
        ("goemotions-multilabel", goemotions_multilabel, "the same GoEmotions files (every row, all its labels)"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("train_tsv")
        command.add_argument("dev_tsv")
        command.add_argument("test_tsv")
        command.add_argument("labels_txt", help="emotions.txt: the 28 class names, one a line, in id order")
        command.set_defaults(run=run)

    command = commands.add_parser("offtask-corpus", help="UN General Debate Corpus TXT folder -> sentence sample")
    command.add_argument("txt_dir", help="the corpus's TXT folder (Session NN - YYYY/CCC_NN_YYYY.txt)")
    command.add_argument("--rows", type=int, default=250_000, help="how many distinct sentences to sample")
    command.set_defaults(run=offtask_corpus)

    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
