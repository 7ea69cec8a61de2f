"""The vLLM engine path is exercised on a GPU only; here its request building is pinned without vLLM: the same
prompts as the HF path, the source's sampling settings mapped to vLLM's names, one reproducible seed per request."""

import pytest

from gendistill.generation.causal_lm import train_bpe_tokenizer
from gendistill.generation.sampling import build_prompts, load_vllm, vllm_requests
from gendistill.sources.generate import GenerateSource


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe_tokenizer(["the storm and the rain", "a goal for the team", "pasta with garlic"] * 5, 300)


def test_prompts_are_drawn_from_the_seed(tokenizer):
    words = ["storm", "goal", "pasta"]
    first = build_prompts(tokenizer, 8, 3, "first_word", words, ["weather", "sports"], True)
    assert first == build_prompts(tokenizer, 8, 3, "first_word", words, ["weather", "sports"], True)
    assert first != build_prompts(tokenizer, 8, 4, "first_word", words, ["weather", "sports"], True)
    for ids, keep_from in first:
        assert ids[0] == tokenizer.bos_token_id
        prefix = tokenizer.decode(ids[1:keep_from])
        assert prefix in ("weather: ", "sports: ")  # the label prefix is not part of the kept text
        assert tokenizer.decode(ids[keep_from:]).strip() in words
    plain = build_prompts(tokenizer, 4, 3, "bos", words, ["weather"], False)
    assert plain == [([tokenizer.bos_token_id], 1)] * 4


def test_vllm_requests_carry_the_sources_sampling_settings(tokenizer):
    prompts = build_prompts(tokenizer, 5, 7, "first_word", ["storm", "goal"], ["x"], False)
    source = GenerateSource(n=10, top_k=0, top_p=0.9, temperature=0.7, max_new_tokens=50, engine="vllm")
    requests = vllm_requests(prompts, source, seed=7, eos_token_id=tokenizer.eos_token_id, max_positions=30)
    assert [prompt["prompt_token_ids"] for prompt, _ in requests] == [ids for ids, _ in prompts]
    for (_, params), (ids, _) in zip(requests, prompts):
        assert params["top_k"] == -1 and params["top_p"] == 0.9 and params["temperature"] == 0.7
        assert params["max_tokens"] == 30 - len(ids)  # clipped to the model's positions
        assert params["stop_token_ids"] == [tokenizer.eos_token_id] and params["n"] == 1
    seeds = [params["seed"] for _, params in requests]
    assert len(set(seeds)) == len(seeds)
    assert seeds == [params["seed"] for _, params in vllm_requests(prompts, source, 7, 0, 30)]
    assert vllm_requests(prompts, source.model_copy(update={"top_k": 40}), 7, 0, 30)[0][1]["top_k"] == 40


def test_the_vllm_engine_without_vllm_is_a_one_line_error(tmp_path):
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401

        pytest.skip("vllm is installed here")
    except ImportError:
        pass
    from gendistill.errors import ConfigError

    with pytest.raises(ConfigError, match=r"engine: vllm needs the vllm package"):
        load_vllm(tmp_path, 0)


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
