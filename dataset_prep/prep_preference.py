"""Command-line entry point of recipekit.prep.preference (run with --help for its options)."""

from recipekit.prep.preference import main

if __name__ == "__main__":
    raise SystemExit(main())
