"""A pytest plugin: pytest-xdist's `--dist loadgroup`, with the groups chosen by fixture scope.

Tests that share a module-, class- or package-scoped fixture (a trained model, say) form one
group, which one worker runs, so the fixture is built once; every other test goes to whichever
worker is free. The scheduler hands the groups out slowest markers first, then those that
train, so that no long run is left to start last; a group's tests keep their order.

Why not xdist's own loadgroup: pytest-xdist 3.8 marks a group by rewriting `item._nodeid`,
which pytest 9 no longer reads, so it runs every test on its own and each worker builds every
shared fixture again. Here each worker writes its groups to a file at collection, and the
controller's scheduler reads them. Enable with `-p recipekit.testing.xdist_groups`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

SHARED_SCOPES = {"module", "class", "package"}
SLOWEST_MARKERS = ("vllm", "multiprocess", "real_weights", "crash_resume")
_DIR_VAR = "RECIPEKIT_XDIST_GROUPS_DIR"  # made by the controller; its workers inherit it


def _groups_dir() -> Path:
    if not os.environ.get(_DIR_VAR):
        os.environ[_DIR_VAR] = tempfile.mkdtemp(prefix="xdist-groups-")
    return Path(os.environ[_DIR_VAR])


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER") is None and config.getvalue("dist") == "loadgroup":
        _groups_dir()  # before the workers start


def pytest_unconfigure(config):
    if os.environ.get("PYTEST_XDIST_WORKER") is None and os.environ.get(_DIR_VAR):
        for path in _groups_dir().glob("*.json"):
            path.unlink()
        _groups_dir().rmdir()
        del os.environ[_DIR_VAR]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None or not os.environ.get(_DIR_VAR):
        return
    groups = {}
    for item in items:
        scopes = {d.scope for defs in item._fixtureinfo.name2fixturedefs.values() for d in defs}
        if scopes & SHARED_SCOPES:
            groups[item.nodeid] = item.nodeid.split("::")[0]
    path = _groups_dir() / f"{worker}.json"
    path.with_suffix(".tmp").write_text(json.dumps(groups), encoding="utf-8")
    path.with_suffix(".tmp").replace(path)
    # a group keeps its own order (a test may build on what an earlier one left in a shared fixture)
    rank: dict[str, tuple[bool, bool]] = {}
    for item in items:
        group = groups.get(item.nodeid, item.nodeid)
        slow, train = rank.get(group, (True, True))
        rank[group] = (slow and not any(item.get_closest_marker(m) for m in SLOWEST_MARKERS),
                       train and not item.get_closest_marker("train"))
    items.sort(key=lambda item: rank[groups.get(item.nodeid, item.nodeid)])


def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:  # every worker has collected, and written its file, by now
                self.groups = {}
                for path in _groups_dir().glob("*.json"):
                    self.groups.update(json.loads(path.read_text(encoding="utf-8")))
            return self.groups.get(nodeid, nodeid)

    return SharedFixtureScheduling(config, log)
