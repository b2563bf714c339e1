"""Self-Play Preference Optimisation (arXiv 2405.00675): pair building and the paper's loss."""
