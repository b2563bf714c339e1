"""Score a reasoning backfiller: well-formed rate, solution preservation, trace lengths (see --help)."""

from recipekit.backfill.eval import main

if __name__ == "__main__":
    raise SystemExit(main())
