"""The suite sees an empty, temporary Hugging Face home, whatever this machine has cached."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from recipekit.testing.offline import offline_env


def test_every_hub_cache_is_inside_the_session_directory(session_tmp):
    """Resolved in a fresh interpreter, as `axolotl train` and the CLIs are, so no import order hides a leak."""
    probe = (
        "import json, huggingface_hub.constants as c;"
        "print(json.dumps({'home': c.HF_HOME, 'hub': c.HF_HUB_CACHE, 'assets': c.HF_ASSETS_CACHE,"
        " 'offline': c.HF_HUB_OFFLINE}))"
    )
    done = subprocess.run([sys.executable, "-c", probe], env=offline_env(), capture_output=True, text=True, check=True)
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen.pop("offline") is True
    for name, path in seen.items():
        assert Path(path).resolve().is_relative_to(session_tmp.resolve()), (name, path)
