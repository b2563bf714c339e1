"""Command-line entry point of recipekit.prep.bitext (run with --help for its options)."""

from recipekit.prep.bitext import main

if __name__ == "__main__":
    raise SystemExit(main())
