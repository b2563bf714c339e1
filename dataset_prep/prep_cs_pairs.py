"""Command-line entry point of recipekit.supervisor.prep_pairs (run with --help for its options)."""

from recipekit.supervisor.prep_pairs import main

if __name__ == "__main__":
    raise SystemExit(main())
