"""The demo replaces only its own earlier output, never another directory."""

import pytest

from recipekit.demo import main


def test_demo_refuses_a_directory_it_did_not_make(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("data")
    with pytest.raises(SystemExit, match="not a demo output"):
        main(["--out", str(precious)])
    assert (precious / "keep.txt").read_text() == "data"
