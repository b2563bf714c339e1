"""manifest.json carries what a run needs to be reproduced."""

from __future__ import annotations

import hashlib
import json

from recipekit.reporting.manifest import write_manifest


def test_manifest_fields(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text('{"a": 1}\n')
    out = tmp_path / "run"
    path = write_manifest(out, config={"seed": 42, "lr": 1e-3}, inputs=[data, tmp_path / "missing.jsonl"],
                          seed=42, argv=["axolotl", "train", "x.yml"])
    manifest = json.loads(path.read_text())
    assert manifest["command"] == ["axolotl", "train", "x.yml"]
    assert manifest["config"] == {"seed": 42, "lr": 1e-3}
    assert manifest["seed"] == 42
    assert manifest["inputs"][str(data)] == hashlib.sha256(b'{"a": 1}\n').hexdigest()
    assert manifest["inputs"][str(tmp_path / "missing.jsonl")] is None
    assert manifest["packages"]["axolotl"] == "0.19.0"
    assert manifest["packages"]["torch"].startswith("2.13.0")
    assert set(manifest["git"]) == {"commit", "dirty"}
    assert not list(out.glob(".*tmp")), "temporary file left behind"
