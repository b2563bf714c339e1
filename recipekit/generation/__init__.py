"""Generation: one place that chooses transformers or vLLM, shards, predictions and the scoring runner."""
