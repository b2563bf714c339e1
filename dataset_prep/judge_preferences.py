"""Command-line entry point of recipekit.judge: pseudo-preference pairs from a judge model (see --help)."""

from recipekit.judge import main

if __name__ == "__main__":
    raise SystemExit(main())
