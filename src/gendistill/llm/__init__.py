"""Served LLMs behind an OpenAI-compatible API (vLLM, SGLang, llama.cpp's server, `transformers serve`, hosted
APIs), as a transfer source (`gendistill.sources.llm`) and as a teacher (`gendistill.teachers.llm`).

- `settings`: the config fields both share (where the server is, how hard to push it);
- `client`: many small requests with bounded concurrency, retries and counters (needs `gendistill[llm]`);
- `cache`: the on-disk request cache that makes a crash or a rerun never pay twice;
- `prompts`: Jinja templates for generation and annotation, and their defaults;
- `parse`: lists of texts out of a generation, soft labels out of log-probabilities or sampled answers.
"""
