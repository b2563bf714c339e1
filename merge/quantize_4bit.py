"""Export a merged checkpoint as a bitsandbytes NF4 4-bit checkpoint; see recipekit.quantize."""

from recipekit.quantize import main

if __name__ == "__main__":
    raise SystemExit(main())
