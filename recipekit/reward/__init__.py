"""The Japanese Bradley-Terry reward model: preference pairs, judge labels and pairwise scoring."""
