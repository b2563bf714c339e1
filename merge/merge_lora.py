"""Merge LoRA adapters (a two-stage chain included) into their base; see recipekit.checkpoints.merge."""

from recipekit.checkpoints.merge import main

if __name__ == "__main__":
    raise SystemExit(main())
