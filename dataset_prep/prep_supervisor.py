"""Command-line entry point of recipekit.prep.supervisor (run with --help for its options)."""

from recipekit.prep.supervisor import main

if __name__ == "__main__":
    raise SystemExit(main())
