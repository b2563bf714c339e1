"""Command-line entry point of recipekit.prep.cs_pairs (run with --help for its options)."""

from recipekit.prep.cs_pairs import main

if __name__ == "__main__":
    raise SystemExit(main())
