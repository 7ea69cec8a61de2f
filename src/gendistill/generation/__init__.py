"""Generation: the causal-LM generator (build, fine-tune, load), its samplers (Hugging Face, vLLM) and the
rule-based transfer set (Tang et al. 2019)."""
