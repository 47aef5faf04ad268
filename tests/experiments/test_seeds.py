"""--seeds: every run trained with each seed on the chosen hyper-parameters; tables show mean ± std over them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from mixcollapse.cli import main
from mixcollapse.experiments.reproduce import reproduce
from mixcollapse.training.rundir import read_metrics


@pytest.mark.slow  # twelve tiny trainings: about 20 s
def test_a_two_seed_table_shows_mean_and_std_of_each_seeds_run(tmp_path):
    (manifest,) = reproduce(
        "table2", scale="tiny", datasets=["fashionmnist"], seeds=[0, 1], out=tmp_path, log=lambda line: None
    )
    (table,) = manifest["tables"]
    for cell in table["cells"]:
        runs = manifest["runs"][cell["run"]]["seed_runs"]
        assert list(runs) == ["0", "1"]
        values = [read_metrics(tmp_path / runs[s])[-1]["test_ece"] for s in ("0", "1")]
        assert values[0] != values[1]  # two trainings, not one counted twice
        assert cell["values"] == pytest.approx(values, abs=1e-5)
        assert cell["measured"] == pytest.approx(np.mean(values), abs=1e-5)
        assert cell["std"] == pytest.approx(np.std(values, ddof=1), abs=1e-5)
        seeded = yaml.safe_load((tmp_path / runs["1"] / "config.yaml").read_text())
        first = yaml.safe_load((tmp_path / runs["0"] / "config.yaml").read_text())
        assert seeded["train"]["seed"] == 1 and first["train"]["seed"] == 0
        assert seeded["train"]["lr"] == first["train"]["lr"]  # the hyper-parameters chosen on seed 0's sweep
        assert manifest["runs"][cell["run"]]["run_dir"] == runs["0"]  # figures and run lists: the first seed
    row = table["rows"][0]
    assert "±" in row[2] and f"{table['cells'][0]['measured']:.3f}" == row[2].split(" ± ")[0]
    saved = json.loads((tmp_path / "tables" / "table2.json").read_text())
    assert saved["rows"] == table["rows"]


@pytest.mark.parametrize("seeds", ["a,b", "1,1", "-1"])
def test_bad_seed_lists_are_one_line_errors(seeds, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["reproduce", "table2", "--scale", "tiny", f"--seeds={seeds}"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and "--seeds" in err and "e.g. 0,1,2" in err
