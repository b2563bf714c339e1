"""Command-line entry point of recipekit.backfill.prep (run with --help for its options)."""

from recipekit.backfill.prep import main

if __name__ == "__main__":
    raise SystemExit(main())
