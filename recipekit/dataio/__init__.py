"""Data in and out: row readers with located errors, JSONL, atomic writes, splits and the preprocessing runner."""
