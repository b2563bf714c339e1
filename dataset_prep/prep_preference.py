"""Command-line entry point of recipekit.reward.prep (run with --help for its options)."""

from recipekit.reward.prep import main

if __name__ == "__main__":
    raise SystemExit(main())
