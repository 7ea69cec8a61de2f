"""The logprob path against a real server that returns log-probabilities: llama.cpp's, through llama-cpp-python's
OpenAI-compatible server, serving a tiny GPT-2 that this test builds and converts to GGUF with llama.cpp's own
`convert_hf_to_gguf.py`. Slow: llama-cpp-python compiles llama.cpp when installed (`make test-slow` does both the
install and the download of its source, which carries the convert script).

Needs: `llama_cpp.server` importable, and the llama-cpp-python source tree (the sdist, unpacked) in
GENDISTILL_LLAMA_CPP_SRC or .cache/llama-cpp-python/ (where `make test-slow` puts it).
"""

import contextlib
import json
import math
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import CHAT_TEMPLATE, all_fixture_texts
from llm_servers import _die_with_parent, free_port

from gendistill.config import build_config
from gendistill.data.task import LabeledSet
from gendistill.teachers import FitContext

pytestmark = pytest.mark.slow
LABELS = ["cooking", "sports", "weather"]
TEXTS = ["the team scored a goal", "rain and wind all day", "garlic sauce in the oven", "a new coach this season"]
REPO = Path(__file__).resolve().parent.parent


def convert_script() -> Path | None:
    roots = [os.environ.get("GENDISTILL_LLAMA_CPP_SRC"), REPO / ".cache" / "llama-cpp-python"]
    for root in filter(None, roots):
        found = sorted(Path(root).glob("**/vendor/llama.cpp/convert_hf_to_gguf.py")) + sorted(
            Path(root).glob("convert_hf_to_gguf.py")
        )
        if found:
            return found[0]
    return None


@pytest.fixture(scope="module")
def gguf_model(tmp_path_factory) -> Path:
    """A random GPT-2 whose untied output layer makes the verbalizer tokens (" cooking", " sports", " weather") the
    likeliest next tokens by a text-dependent margin, converted to GGUF (f32)."""
    pytest.importorskip("llama_cpp.server", reason="pip install 'llama-cpp-python[server]' (make test-slow does)")
    script = convert_script()
    if script is None:
        pytest.skip("llama.cpp's convert_hf_to_gguf.py not found: set GENDISTILL_LLAMA_CPP_SRC (make test-slow does)")
    import torch
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel

    from gendistill.generation.causal_lm import train_bpe_tokenizer

    root = tmp_path_factory.mktemp("gguf")
    folder = root / "hf"
    words = " ".join(LABELS)
    tokenizer = train_bpe_tokenizer([*all_fixture_texts(), *[f"{words} Class: {words}"] * 50], 400)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=512,
        n_embd=32,
        n_layer=2,
        n_head=2,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config)
    with torch.no_grad():
        lean = torch.ones(32)
        model.transformer.ln_f.bias.copy_(lean)  # every final state leans along `lean`, plus a text-dependent part
        model.transformer.ln_f.weight.mul_(0.3)
        model.lm_head.weight.mul_(0.1)
        for word, boost in zip(LABELS, (0.12, 0.10, 0.08), strict=True):
            model.lm_head.weight[tokenizer.convert_tokens_to_ids("Ġ" + word)] = lean * boost + 0.05 * torch.randn(32)
    model.generation_config = GenerationConfig(do_sample=True, eos_token_id=tokenizer.eos_token_id)
    model.save_pretrained(folder)
    saved = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**saved, "n_ctx": saved["n_positions"]}))  # the script reads it
    # our tokenizer is GPT-2's byte-level BPE learnt on other texts: tell the script so (it knows BPEs by a hash)
    driver = (
        "import runpy, sys\n"
        f"src = {str(script.parent)!r}\n"
        "sys.path[:0] = [src, src + '/gguf-py']\n"
        "from conversion.base import TextModel\n"
        "TextModel.get_vocab_base_pre = lambda self, tokenizer: 'gpt-2'\n"
        f"sys.argv = ['convert_hf_to_gguf.py', {str(folder)!r}, '--outfile', {str(root / 'model.gguf')!r},"
        " '--outtype', 'f32']\n"
        "runpy.run_path(src + '/convert_hf_to_gguf.py', run_name='__main__')\n"
    )
    done = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "model.gguf"


@pytest.fixture(scope="module")
def llama_server(gguf_model, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("llama_server") / "server.log"
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_model), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--n_ctx", "512", "--model_alias", "tiny-gpt2"]
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    try:
        for _ in range(240):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                    break
            assert process.poll() is None, log.read_text()[-2000:]
            time.sleep(0.25)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=20)


def by_hand(answer: dict, api: str) -> tuple[list[float], float]:
    """The soft label from the server's own answer, computed from the definition without gendistill's parser:
    the candidates for the first answer token; each token whose stripped, lower-cased form begins exactly one
    class name adds exp(logprob) to it; probabilities = shares of that covered mass; logits = log(max(p, 1e-4))."""
    logprobs = answer["choices"][0]["logprobs"]
    if api == "chat":
        candidates = [(item["token"], item["logprob"]) for item in logprobs["content"][0]["top_logprobs"]]
    else:
        candidates = list(logprobs["top_logprobs"][0].items())
    mass = dict.fromkeys(LABELS, 0.0)
    for token, logprob in candidates:
        word = token.strip().lower()
        owners = [label for label in LABELS if word and label.startswith(word)]
        if len(owners) == 1:
            mass[owners[0]] += math.exp(logprob)
    covered = sum(mass.values())
    return [math.log(max(mass[label] / covered, 1e-4)) for label in LABELS], covered


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_llama_cpp_logprobs_give_the_soft_labels_computed_by_hand(llama_server, tmp_path, api):
    raw = {
        "data": {"train": "unused.jsonl"},
        "teacher": {"kind": "llm", "endpoint": llama_server, "model": "tiny-gpt2", "api": api, "max_concurrency": 2},
    }
    teacher = build_config(raw).teacher
    run = tmp_path / "run"
    stats = teacher.fit(FitContext(LabeledSet([], []), LABELS, run / "teacher", run / "checkpoints", None, 0))
    assert stats["soft_labels"] == "logprobs", stats
    loaded = teacher.load(run / "teacher", "cpu")
    logits = loaded.logits(TEXTS, 8)

    with sqlite3.connect(run / "cache" / "llm-requests.sqlite") as db:  # the answers exactly as the server sent them
        stored = {
            json.loads(request)["messages"][-1]["content"]
            if api == "chat"
            else json.loads(request)["prompt"]: json.loads(response)
            for request, response in db.execute("SELECT request, response FROM answers")
        }
    expected, covered = [], []
    for text in TEXTS:
        answer = next(a for prompt, a in stored.items() if prompt.rstrip().endswith(f"Text: {text}\nClass:"))
        row, mass = by_hand(answer, api)
        expected.append(row)
        covered.append(mass)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)
    assert min(covered) > 0.05  # the verbalizers are among the candidates: a real test of the arithmetic
    assert loaded.describe()["covered_mass"] == pytest.approx(np.mean(covered), abs=1e-4)
