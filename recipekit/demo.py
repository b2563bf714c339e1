"""`make demo`: the supervisor pipeline end to end on CPU, with tiny models and bundled data."""

from __future__ import annotations

import tempfile

from recipekit.offline import go_offline
from recipekit.paths import RECIPES_DIR


def main() -> int:
    go_offline()
    from recipekit.smoke import smoke_train

    with tempfile.TemporaryDirectory(prefix="demo-") as tmp:
        result = smoke_train(RECIPES_DIR / "supervisor_stage1.yml", tmp, steps=20)
    print(f"stage 1: {len(result.losses)} steps, loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
