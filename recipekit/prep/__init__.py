"""Dataset preprocessors: raw rows in, the JSONL shapes the recipes read out."""
