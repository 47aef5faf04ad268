"""``mixcollapse reproduce``, ``sweep`` and ``report`` in process: the listing and one-line errors."""

import pytest

from mixcollapse.cli import main
from mixcollapse.experiments.registry import EXPERIMENTS


def test_list_names_every_experiment(capsys):
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in EXPERIMENTS)


def test_full_scale_without_the_data_is_one_line(tmp_path, capsys):
    code = main(["reproduce", "fig2", "--scale", "full", "--data-root", str(tmp_path / "none"),
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and err.startswith("mixcollapse reproduce: error:")
    assert not (tmp_path / "o" / "runs").exists()


@pytest.mark.parametrize("argv, fragment", [
    (["reproduce"], "name an experiment"),
    (["reproduce", "fig4", "--scale", "tiny"], "unknown experiment 'fig4'"),
    (["sweep", "--preset", "digits", "--out", "{tmp}/s"], "has no default grid"),
    (["report", "{tmp}"], "holds no reproduce results"),
])
def test_errors_are_one_sentence(tmp_path, capsys, argv, fragment):
    code = main([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and fragment in err, err
