"""The demo replaces only its own earlier output, never another directory."""

from recipekit.demo import main


def test_demo_refuses_a_directory_it_did_not_make(tmp_path, capsys):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("data")
    assert main(["--out", str(precious)]) == 2
    assert "not a demo output" in capsys.readouterr().err
    assert (precious / "keep.txt").read_text() == "data"
