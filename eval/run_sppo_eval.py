"""AlpacaEval for SPPO iterations: answers, a local judge, win rate and LC win rate (see --help)."""

from recipekit.sppo.alpaca_eval import main

if __name__ == "__main__":
    raise SystemExit(main())
