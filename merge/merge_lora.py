"""Merge LoRA adapters (a two-stage chain included) into their base; see recipekit.merge."""

from recipekit.merge import main

if __name__ == "__main__":
    raise SystemExit(main())
