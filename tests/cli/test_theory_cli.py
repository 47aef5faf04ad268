"""``mixcollapse theory`` in process: the numbers as JSON, the figure, one line for bad settings."""

import json

import pytest

from mixcollapse.cli import main

SMALL = [
    "--num-classes",
    "4",
    "--dim",
    "5",
    "--samples",
    "300",
    "--joint-nodes",
    "4",
    "--weight-decay-w",
    "1e-2",
    "--weight-decay-h",
    "1e-2",
]


def test_json_has_the_required_keys(tmp_path, capsys):
    assert main(["theory", "--json", "--out", str(tmp_path), *SMALL]) == 0
    out = json.loads(capsys.readouterr().out)  # standard output holds the JSON object alone
    for key in ("same_class_K", "expected_loss", "mc_loss", "amplified_mc_loss", "etf_check", "settings"):
        assert key in out
    assert out["settings"]["num_classes"] == 4 and len(out["settings"]["classes"]) == 3
    assert out["etf_check"]["etf_distance"] < 1e-3
    assert (tmp_path / "figure6.png").stat().st_size > 0 and not (tmp_path / "figure6.pdf").exists()
    assert main(["theory", "--pdf", "--out", str(tmp_path / "pdf"), *SMALL]) == 0
    assert (tmp_path / "pdf" / "figure6.pdf").read_bytes().startswith(b"%PDF")


def test_summary_says_what_it_is_doing(tmp_path, capsys):
    assert main(["theory", "--no-joint", "--no-figure", "--out", str(tmp_path), *SMALL]) == 0
    out, err = capsys.readouterr()
    assert "[theory] closed form and Monte Carlo loss" in err and "same-class K =" in out and "[theory]" not in out
    assert not any(tmp_path.iterdir())  # --no-figure


@pytest.mark.parametrize(
    "argv",
    [
        ["--num-classes", "1"],
        ["--dim", "2"],
        ["--weight-decay-h", "0"],
        ["--alpha", "-1"],
        ["--classes", "0", "1", "9"],
        ["--multiplier", "0"],
        ["--classes", "0", "0", "1"],
        ["--weight-decay-w", "0"],
    ],
)
def test_bad_parameters_exit_2_with_one_line(argv, capsys, tmp_path):
    code = main(["theory", "--no-joint", "--no-figure", "--out", str(tmp_path), *SMALL, *argv])
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("mixcollapse theory: error: ")
    assert "[theory]" not in captured.out  # refused before any work
