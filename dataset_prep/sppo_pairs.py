"""Command-line entry point of recipekit.sppo.pairs (run with --help for its options)."""

from recipekit.sppo.pairs import main

if __name__ == "__main__":
    raise SystemExit(main())
