"""manifest.json: what it takes to reproduce an output directory.

Every training, merge and evaluation entry point calls `write_manifest` on its output
directory: the command line, the resolved configuration, the git revision (and whether
the tree had uncommitted changes), the versions of the packages that shape results, the
SHA-256 of every input file, and the seed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from recipekit.dataio.atomic import atomic_write_text
from recipekit.paths import REPO_ROOT

MANIFEST_NAME = "manifest.json"
TRACKED_PACKAGES = (
    "axolotl", "torch", "transformers", "trl", "peft", "datasets", "accelerate",
    "bitsandbytes", "tokenizers", "sacrebleu", "rouge-score", "scikit-learn",
    "bert-score", "sentence-transformers", "flash-attn", "deepspeed",
)  # vLLM lives in its own environment: a generating run records the version its server reports (`engine`)


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def input_hashes(paths: Iterable[str | Path]) -> dict[str, str | None]:
    """SHA-256 of each input file; directories hash their files; missing paths map to None."""
    hashes: dict[str, str | None] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            hashes[str(raw)] = file_sha256(path)
        elif path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                hashes[str(child)] = file_sha256(child)
        else:
            hashes[str(raw)] = None
    return hashes


def package_versions(names: Iterable[str] = TRACKED_PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_revision(cwd: Path = REPO_ROOT) -> dict[str, Any]:
    def run(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = run("status", "--porcelain")
    return {"commit": run("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


def build_manifest(
    *,
    config: Any = None,
    inputs: Iterable[str | Path] = (),
    seed: int | None = None,
    argv: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": list(sys.argv if argv is None else argv),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git": git_revision(),
        "packages": package_versions(),
        "config": config,
        "inputs": input_hashes(inputs),
        "seed": seed,
        **(extra or {}),
    }


def write_manifest(out_dir: str | Path, **kwargs: Any) -> Path:
    """Write (or replace) OUT_DIR/manifest.json atomically and return its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / MANIFEST_NAME
    text = json.dumps(build_manifest(**kwargs), indent=2, ensure_ascii=False, default=str)
    atomic_write_text(target, text + "\n")
    return target
