"""Chat templates and special tokens: rendering conversations, token lengths, end-of-turn tokens."""
