"""The test suite's scheduler: tests that share a module fixture run on one worker, the rest spread."""

from __future__ import annotations

import os
import re
import subprocess
import sys

_PROJECT = '''
import pytest

@pytest.fixture(scope="module")
def built_once():
    return object()

@pytest.mark.parametrize("i", range(4))
def test_shares(i, built_once):
    pass

@pytest.mark.parametrize("i", range(6))
def test_alone(i):
    pass

@pytest.mark.multiprocess  # a slow marker moves its group forward, not this test within the group
def test_shares_last(built_once):
    pass
'''


def test_tests_sharing_a_module_fixture_run_on_one_worker_and_the_others_spread(tmp_path):
    (tmp_path / "test_project.py").write_text(_PROJECT, encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers = multiprocess\n", encoding="utf-8")
    # a session of its own: not one of this run's workers, nor sharing its groups directory
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "RECIPEKIT_XDIST"))}
    done = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "--no-loadscope-reorder",
                           "-p", "recipekit.testing.xdist_groups", "-p", "no:cacheprovider", "-v", "test_project.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    ran = re.findall(r"\[(gw\d)\] \[\s*\d+%\] PASSED test_project.py::(\S+)", done.stdout)
    ran_on = {test: worker for worker, test in ran}
    assert len(ran_on) == 11, done.stdout
    shared = [f"test_shares[{i}]" for i in range(4)] + ["test_shares_last"]
    assert len({ran_on[test] for test in shared}) == 1
    assert [test for _, test in ran if test in shared] == shared
    assert len(set(ran_on.values())) == 2  # the others went to the free worker too
