"""Export a merged checkpoint as a bitsandbytes NF4 4-bit checkpoint; see recipekit.checkpoints.quantize."""

from recipekit.checkpoints.quantize import main

if __name__ == "__main__":
    raise SystemExit(main())
