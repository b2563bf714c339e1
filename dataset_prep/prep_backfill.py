"""Command-line entry point of recipekit.prep.backfill (run with --help for its options)."""

from recipekit.prep.backfill import main

if __name__ == "__main__":
    raise SystemExit(main())
