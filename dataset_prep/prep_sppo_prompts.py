"""Command-line entry point of recipekit.prep.sppo_prompts (run with --help for its options)."""

from recipekit.prep.sppo_prompts import main

if __name__ == "__main__":
    raise SystemExit(main())
