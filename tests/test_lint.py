"""The code passes the project's ruff rules (pyproject.toml [tool.ruff])."""

import subprocess
import sys

from recipekit.paths import REPO_ROOT


def test_ruff_is_clean():
    done = subprocess.run([sys.executable, "-m", "ruff", "check", str(REPO_ROOT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
