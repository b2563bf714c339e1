"""Test support: tiny models, smoke runs and fixtures. Imported by tests, the demo and the bench only."""

from pathlib import Path

# Sample data (raw and prepared) bundled with the package, so the demo runs from an install.
FIXTURES_DIR = Path(__file__).parent / "fixtures"
