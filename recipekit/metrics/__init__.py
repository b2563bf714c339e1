"""Metrics shared by the scorers: text overlap/similarity and classification."""
