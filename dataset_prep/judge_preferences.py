"""Command-line entry point of recipekit.reward.judge: pseudo-preference pairs from a judge model (see --help)."""

from recipekit.reward.judge import main

if __name__ == "__main__":
    raise SystemExit(main())
