"""Command-line entry point of recipekit.backfill.job (run with --help for its options)."""

from recipekit.backfill.job import main

if __name__ == "__main__":
    raise SystemExit(main())
