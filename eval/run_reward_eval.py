"""Score a reward model on preference pairs: RewardBench-style accuracy per dataset (see --help)."""

from recipekit.reward.scoring import main

if __name__ == "__main__":
    raise SystemExit(main())
