"""Command-line entry point of recipekit.supervisor.prep (run with --help for its options)."""

from recipekit.supervisor.prep import main

if __name__ == "__main__":
    raise SystemExit(main())
