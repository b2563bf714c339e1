"""Test support: tiny models, smoke runs and fixtures. Imported by tests, the demo and the bench only."""

from pathlib import Path

# Sample data (raw and prepared) bundled with the package, so the tests run from an install.
FIXTURES_DIR = Path(__file__).parent / "fixtures"


def cache_build_lock(entry: Path):
    """A lock held while `entry` of the cache is built, so processes that share the cache
    (parallel test workers) build it once: the others wait, then find it built."""
    from filelock import FileLock

    return FileLock(f"{entry}.lock")


def cached_build(target: Path, build) -> Path:
    """`target`, a cache entry whose config.json marks it built: `build(target)` runs first if it is
    missing, in one of the processes that share the cache while the others wait for it."""
    if not (target / "config.json").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with cache_build_lock(target):
            if not (target / "config.json").exists():  # else another process built it while this one waited
                build(target)
    return target
