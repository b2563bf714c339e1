"""Score a supervisor checkpoint: generate verdicts, then the card's metrics (see --help)."""

from recipekit.supervisor.scoring import main

if __name__ == "__main__":
    raise SystemExit(main())
