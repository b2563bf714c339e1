"""Benchmark harness entry point; see bench/README.md."""

from recipekit.bench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
