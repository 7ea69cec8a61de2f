"""The vLLM engine runs on a GPU only; here its path is pinned without vLLM: the same prompts as the HF path, the
source's sampling settings mapped to vLLM's names, one reproducible seed per request, and texts cut from a fake
engine's answers exactly as from Hugging Face's."""

import random
import sys
import types

import pytest

from gendistill.generation.causal_lm import train_bpe_tokenizer
from gendistill.generation.sampling import TextSampler, build_prompts, decode_text
from gendistill.generation.vllm_engine import VLLMEngine, vllm_requests
from gendistill.sources.generate import GenerateSource


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe_tokenizer(["the storm and the rain", "a goal for the team", "pasta with garlic"] * 5, 300)


def test_prompts_are_drawn_from_the_seed(tokenizer):
    words = ["storm", "goal", "pasta"]
    settings = {"prompt": "first_word", "first_words": words, "label_names": ["weather", "sports"], "conditional": True}
    first = build_prompts(tokenizer, 8, 3, **settings)
    assert first == build_prompts(tokenizer, 8, 3, **settings)
    assert first != build_prompts(tokenizer, 8, 4, **settings)
    for ids, keep_from in first:
        assert ids[0] == tokenizer.bos_token_id
        prefix = tokenizer.decode(ids[1:keep_from])
        assert prefix in ("weather: ", "sports: ")  # the label prefix is not part of the kept text
        assert tokenizer.decode(ids[keep_from:]).strip() in words
    plain = build_prompts(tokenizer, 4, 3, prompt="bos", first_words=words, label_names=["weather"], conditional=False)
    assert plain == [([tokenizer.bos_token_id], 1)] * 4


def test_vllm_requests_carry_the_sources_sampling_settings(tokenizer):
    prompts = build_prompts(
        tokenizer, 5, 7, prompt="first_word", first_words=["storm", "goal"], label_names=["x"], conditional=False
    )
    source = GenerateSource(n=10, top_k=0, top_p=0.9, temperature=0.7, max_new_tokens=50, engine="vllm")
    requests = vllm_requests(prompts, source, seed=7, eos_token_id=tokenizer.eos_token_id, max_positions=30)
    assert [prompt["prompt_token_ids"] for prompt, _ in requests] == [ids for ids, _ in prompts]
    for (_, params), (ids, _) in zip(requests, prompts):
        assert params["top_k"] == -1 and params["top_p"] == 0.9 and params["temperature"] == 0.7
        assert params["max_tokens"] == 30 - len(ids)  # clipped to the model's positions
        assert params["stop_token_ids"] == [tokenizer.eos_token_id] and params["n"] == 1
    seeds = [params["seed"] for _, params in requests]
    assert len(set(seeds)) == len(seeds)
    again = vllm_requests(prompts, source, seed=7, eos_token_id=0, max_positions=30)
    assert seeds == [params["seed"] for _, params in again]
    top_k = vllm_requests(prompts, source.model_copy(update={"top_k": 40}), seed=7, eos_token_id=0, max_positions=30)
    assert top_k[0][1]["top_k"] == 40


class FakeLLM:
    """vLLM's `LLM` as the engine uses it: each request's tokens drawn from its own seed, EOS included when drawn."""

    def __init__(self, vocab_size: int, eos_token_id: int):
        self.vocab_size, self.eos = vocab_size, eos_token_id
        self.llm_engine = types.SimpleNamespace(model_config=types.SimpleNamespace(max_model_len=30))
        self.answers: list[list[int]] = []  # the token ids it returned, request by request

    def generate(self, prompts, params, use_tqdm=True):
        outputs = []
        assert len(prompts) == len(params)
        for settings in params:
            rng = random.Random(settings["seed"])
            tokens = [rng.randrange(self.vocab_size) for _ in range(settings["max_tokens"] - 1)] + [self.eos]
            self.answers.append(tokens)
            outputs.append(types.SimpleNamespace(outputs=[types.SimpleNamespace(token_ids=tuple(tokens))]))
        return outputs


def test_vllm_texts_are_cut_from_the_answers_as_the_hf_path_cuts_them(tokenizer, monkeypatch):
    fake_vllm = types.SimpleNamespace(SamplingParams=dict)  # the engine's settings as the keyword arguments given
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm)
    llm = FakeLLM(len(tokenizer), tokenizer.eos_token_id)
    source = GenerateSource(n=10, max_new_tokens=8, engine="vllm", prompt="first_word")
    sampler = TextSampler(
        engine=VLLMEngine(llm, tokenizer, source),
        prompt="first_word",
        first_words=["storm", "goal"],
        label_names=["weather", "sports"],
        conditional=True,
    )
    texts = sampler(6, 11)
    prompts = build_prompts(
        tokenizer,
        6,
        11,
        prompt="first_word",
        first_words=["storm", "goal"],
        label_names=["weather", "sports"],
        conditional=True,
    )
    assert texts == [
        decode_text(tokenizer, [*prompt.ids[prompt.keep_from :], *answer])
        for prompt, answer in zip(prompts, llm.answers, strict=True)
    ]
    assert all(text.startswith(("storm", "goal")) for text in texts)  # the first word kept, the label prefix not
    assert sampler(6, 11) == texts


def test_the_vllm_engine_without_vllm_is_a_one_line_error(tmp_path):
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401

        pytest.skip("vllm is installed here")
    except ImportError:
        pass
    from gendistill.errors import ConfigError

    with pytest.raises(ConfigError, match=r"engine: vllm needs the vllm package"):
        VLLMEngine.load(tmp_path, GenerateSource(n=1, engine="vllm"), seed=0)


def test_generator_engine_in_an_old_config_moves_to_the_generate_source():
    from gendistill.config import build_config

    config = build_config(
        {
            "data": {"train": "t.jsonl"},
            "teacher": {"model": "m"},
            "generator": {"engine": "vllm"},
            "transfer": {"sources": [{"type": "generate", "n": 5}]},
        }
    )
    assert config.transfer.sources[0].engine == "vllm"
