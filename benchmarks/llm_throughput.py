"""Requests/s and texts/s of the `llm` source's client against `transformers serve` on this machine, at several
concurrency levels side by side in one run.

    python benchmarks/llm_throughput.py [--concurrency 1 4 16 64] [--requests 64] [--max-tokens 48]
                                        [--model DIR] [--out benchmarks/results/llm]

Without --model, a random-init GPT-2 (4 layers, width 256, a 2,000-token byte-level BPE learnt from
examples/support) is built in a temporary folder with a chat template: offline there is no instruction-tuned LM,
so the answers are noise and texts/s counts what the source's parser makes of them (mostly one text per answer).
What is measured is the path a real run takes: the default generation prompt, rendered per request, sent by
`gendistill.llm.client.Client` (httpx, bounded concurrency, no cache), to a real OpenAI-compatible server. Each
level sends the same number of distinct requests (different seeds) after one warm-up request. Writes
<out>/transformers_serve.json and .md with the exact command and prints the table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def build_model(directory: Path, layers: int, width: int) -> int:
    """A random-init GPT-2 with a chat template and sampling on by default; returns its parameter count."""
    import torch
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel

    from gendistill.data.tables import read_table
    from gendistill.generation.causal_lm import train_bpe_tokenizer

    texts = read_table(str(ROOT / "examples" / "support" / "train.jsonl"))["text"].astype(str).tolist()
    tokenizer = train_bpe_tokenizer(texts, 2000)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(directory)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=1024,
        n_embd=width,
        n_layer=layers,
        n_head=4,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config)
    model.generation_config = GenerationConfig(
        do_sample=True, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    model.save_pretrained(directory)
    return sum(p.numel() for p in model.parameters())


def _die_with_parent() -> None:
    """In the server process: SIGTERM when this script dies, however it dies (Linux prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve(model: Path, log: Path, extra: list[str]):
    import httpx

    port = free_port()
    command = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(model), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--device", "cpu", "--dtype", "float32", *extra]
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                sys.exit(f"error: transformers serve exited: {log.read_text()[-1500:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                sys.exit("error: transformers serve did not start in 300 s")
            time.sleep(0.25)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def requests_for(model: str, count: int, max_tokens: int, texts_per_request: int, offset: int) -> list[Any]:
    """`count` distinct generation requests, as the llm source renders them (default chat template)."""
    from gendistill.llm.client import Request
    from gendistill.llm.prompts import default_messages, render_messages

    labels = ["delivery", "billing", "account", "product"]
    examples = ["my parcel never came", "I was charged twice this month", "I cannot log in to my account"]
    out = []
    for i in range(count):
        variables = {
            "label": labels[i % len(labels)],
            "description": "",
            "labels": labels,
            "descriptions": {},
            "examples": examples,
            "count": texts_per_request,
            "attributes": {},
        }
        body = {
            "model": model,
            "messages": render_messages(default_messages("generate"), variables),
            "max_tokens": max_tokens,
            "temperature": 1.0,
            "seed": offset + i,
        }
        out.append(Request("chat/completions", body))
    return out


def measure(url: str, model: str, concurrency: int, count: int, max_tokens: int, per_request: int, offset: int):
    from gendistill.llm.client import Client
    from gendistill.llm.parse import choice_text, parse_list
    from gendistill.llm.settings import ServedModel

    settings = ServedModel(endpoint=url, model=model, max_concurrency=concurrency, timeout=600, max_retries=3)
    client = Client(settings, None, f"benchmark (concurrency {concurrency})")
    start = time.perf_counter()
    answers = client.run(requests_for(model, count, max_tokens, per_request, offset))
    seconds = time.perf_counter() - start
    texts = sum(len(parse_list(choice_text(a["choices"][0])).texts) for a in answers)
    usage = client.usage
    return {
        "concurrency": concurrency,
        "requests": usage.requests,
        "seconds": round(seconds, 2),
        "requests_per_s": round(usage.requests / seconds, 2),
        "texts_per_s": round(texts / seconds, 2),
        "completion_tokens_per_s": round(usage.completion_tokens / seconds, 1),
        "texts": texts,
        "retries": usage.retries,
        "failed": usage.failed,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# LLM source throughput: transformers serve on this CPU",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Server: transformers serve {result['transformers']} (`{' '.join(result['serve_args']) or 'defaults'}`), "
        f"model: {result['model']} ({result['model_params']:,} parameters), on the CPU of this machine "
        f"({result['cpu']}); client: gendistill's LLM client (httpx), {result['requests_per_level']} distinct "
        f"requests per level, max_tokens {result['max_tokens']}, {result['texts_per_request']} texts asked per "
        "request, no request cache. Load average (1, 5, 15 min) before / after: "
        f"{result['load_average']['before']} / {result['load_average']['after']} (other processes shared the cores).",
        "",
        "| concurrency | requests | seconds | requests/s | texts/s | completion tokens/s | retries | failed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["results"]:
        lines.append(
            f"| {row['concurrency']} | {row['requests']} | {row['seconds']} | {row['requests_per_s']} "
            f"| {row['texts_per_s']} | {row['completion_tokens_per_s']} | {row['retries']} | {row['failed']} |"
        )
    lines += ["", result["note"], ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--requests", type=int, default=64, help="requests per concurrency level")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--texts-per-request", type=int, default=4)
    parser.add_argument("--model", type=Path, help="a causal LM folder with a chat template (default: build one)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--serve-arg", action="append", default=[], help="extra `transformers serve` argument")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "llm")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    with tempfile.TemporaryDirectory() as scratch:
        model = args.model
        if model is None:
            model = Path(scratch) / "model"
            params = build_model(model, args.layers, args.width)
            name = f"random-init GPT-2, {args.layers} layers, width {args.width}"
        else:
            from transformers import AutoModelForCausalLM

            params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(model).parameters())
            name = str(model)
        with serve(model, Path(scratch) / "serve.log", args.serve_arg) as url:
            measure(url, str(model), 1, 1, args.max_tokens, args.texts_per_request, 10**6)  # warm-up
            rows = []
            load_before = os.getloadavg()
            for level in args.concurrency:
                row = measure(url, str(model), level, args.requests, args.max_tokens, args.texts_per_request, level)
                print(json.dumps(row), flush=True)
                rows.append(row)
    result = {
        "command": " ".join(["python benchmarks/llm_throughput.py", shlex.join(sys.argv[1:])]).strip(),
        "transformers": transformers.__version__,
        "serve_args": args.serve_arg,
        "model": name,
        "model_params": params,
        "cpu": f"{platform.machine()}, {os.cpu_count()} logical cores",
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]},
        "requests_per_level": args.requests,
        "max_tokens": args.max_tokens,
        "texts_per_request": args.texts_per_request,
        "results": rows,
        "note": "A random-init model writes noise: texts/s counts what the parser kept from it (a real instruct model "
        "answers the numbered list it is asked for, so texts/s approaches texts_per_request x requests/s). On a "
        "GPU, vLLM or SGLang batch concurrent requests continuously; these numbers were not measured there.",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "transformers_serve.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    text = markdown(result)
    (args.out / "transformers_serve.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
