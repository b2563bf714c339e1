"""Self-Play Preference Optimisation (arXiv 2405.00675): the self-play loop, rankers, pairs and the paper's loss."""
