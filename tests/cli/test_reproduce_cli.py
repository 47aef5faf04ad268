"""``mixcollapse reproduce``, ``sweep`` and ``report`` in process: the listing and one-line errors."""

import pytest

from mixcollapse.cli import main
from mixcollapse.experiments.paper import EXPERIMENTS


def test_list_names_every_experiment(capsys):
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in EXPERIMENTS)


def test_full_scale_without_the_data_is_one_line(tmp_path, capsys):
    code = main(
        ["reproduce", "fig2", "--scale", "full", "--data-root", str(tmp_path / "none"), "--out", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and err.startswith("mixcollapse reproduce: error:")
    assert not (tmp_path / "o" / "runs").exists()


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["reproduce"], "name an experiment"),
        (["reproduce", "fig4", "--scale", "tiny"], "unknown experiment 'fig4'"),
        (["sweep", "--preset", "digits", "--out", "{tmp}/s"], "has no default grid"),
        (["report", "{tmp}"], "holds no reproduce results"),
    ],
)
def test_errors_are_one_sentence(tmp_path, capsys, argv, fragment):
    code = main([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and fragment in err, err


@pytest.mark.slow  # two real (tiny) trainings through the sweep
def test_a_sweep_with_failed_runs_says_so_on_stderr(tmp_path, capsys, monkeypatch):
    from conftest import TINY_OVERRIDES
    from mixcollapse.experiments import sweep
    from mixcollapse.experiments.launch import inprocess_runner

    fail_one = lambda job, slot: 1 if "0.02" in job.name else inprocess_runner(job, slot)  # noqa: E731
    monkeypatch.setattr(sweep, "pick_runner", lambda launcher, slots: fail_one)
    code = main(
        [
            "sweep",
            "--preset",
            "digits",
            "--out",
            str(tmp_path / "s"),
            "--grid",
            "train.lr=[0.02,0.05]",
            "--gpus",
            "none",
            *TINY_OVERRIDES,
            "train.epochs=1",
        ]
    )
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()  # the progress, then the one line that says what failed
    assert code == 1 and sum("did not finish" in line for line in lines) == 1, captured.err
    assert lines[-1].startswith("mixcollapse sweep: 1 of 2 runs did not finish (lr=0.02)") and "rerun" in lines[-1]
    assert "best: lr=0.05" in captured.out
