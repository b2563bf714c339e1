"""Command-line entry point of recipekit.sppo.prompts (run with --help for its options)."""

from recipekit.sppo.prompts import main

if __name__ == "__main__":
    raise SystemExit(main())
