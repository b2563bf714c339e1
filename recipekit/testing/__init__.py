"""Test support: tiny models, smoke runs and fixtures. Imported by tests, the demo and the bench only."""

from pathlib import Path

# Sample data (raw and prepared) bundled with the package, so the tests run from an install.
FIXTURES_DIR = Path(__file__).parent / "fixtures"


def cache_build_lock(entry: Path):
    """A lock held while `entry` of the cache is built, so processes that share the cache
    (parallel test workers) build it once: the others wait, then find it built."""
    from filelock import FileLock

    return FileLock(f"{entry}.lock")
