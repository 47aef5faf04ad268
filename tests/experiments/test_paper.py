"""The paper's experiments: the list, the variants, the datasets they are drawn on, the rows beyond the paper."""

from __future__ import annotations

import pytest

from mixcollapse.experiments.paper import (
    EXPERIMENTS,
    PAPER_EXPERIMENTS,
    RunKey,
    experiments_runs,
    get_experiment,
    panel_rows,
    plan_runs,
    select_datasets,
)
from mixcollapse.experiments.reproduce import list_experiments
from mixcollapse.experiments.scales import run_config


def run_key(name: str) -> RunKey:
    """``"wrn-cifar10-mixup"`` as a RunKey."""
    return RunKey(*name.split("-", 2))


PAPER_ITEMS = ("fig1", "fig2", "fig3", "fig5", "fig7", "fig8", "fig9", "fig10", "fig11", "fig12", "table1", "table2")


def test_list_shows_every_experiment_of_the_paper():
    text = list_experiments()
    assert PAPER_EXPERIMENTS == PAPER_ITEMS  # what `reproduce all` draws: the paper, nothing beyond it
    assert set(EXPERIMENTS) - set(PAPER_ITEMS) == {"methods"}
    listed = [line.split()[0] for line in text.splitlines()[2:] if line.strip()]
    for name in (*PAPER_ITEMS, "methods"):
        assert name in listed
    assert "A100-h" in text and "all" in listed


def test_variants_of_the_figures():
    assert run_config(run_key("wrn-cifar10-alpha0.4")).mixing.alpha == 0.4
    assert run_config(run_key("vit-cifar10-alpha0.4")).mixing.alpha == 0.4
    assert run_config(run_key("vit-cifar10-adamw")).train.optimizer == "adamw"
    assert run_config(run_key("wrn-cifar10-etf")).model.fixed_etf
    assert run_config(run_key("wrn-cifar10-mse")).train.loss == "mse"
    assert run_config(run_key("wrn-cifar10-baseline")).mixing.alpha == 0.0
    assert run_config(run_key("wrn-cifar10-mixup")).train.checkpoint_epochs == [100, 300, 500]
    # What each figure reads.
    assert {k.name for k in get_experiment("fig9").runs} == {"wrn-cifar10-alpha0.4", "vit-cifar10-alpha0.4"}
    assert {k.name for k in get_experiment("fig12").runs} == {"vit-cifar10-adamw"}
    assert {k.name for k in get_experiment("fig7").runs} == {"wrn-cifar10-etf"}
    assert [k.name for k in get_experiment("fig2").runs] == [
        "wrn-cifar10-baseline",
        "wrn-cifar10-mse",
        "wrn-cifar10-mixup",
    ]
    assert len(get_experiment("fig1").runs) == 6 and len(get_experiment("fig8").runs) == 6
    assert {k.variant for k in get_experiment("fig8").runs} == {"baseline"}
    assert [p.checkpoint_epoch for p in get_experiment("fig10").panels[0]] == [100, 300, 500]
    assert len({p.seed for row in get_experiment("fig11").panels for p in row}) == 8


def test_baselines_reuse_the_best_mixup_hyperparameters():
    plan = plan_runs(experiments_runs(["table1"]))
    assert {k.variant for k in plan.swept} == {"mixup"} and len(plan.swept) == 6
    assert {k.variant for k in plan.inherited} == {"baseline"}
    assert all(k.sweep_source() == RunKey(k.arch, k.dataset, "mixup") for k in plan.inherited)


def test_rows_beyond_the_paper_only_below_full_scale():
    """Figures 10 and 11 get a ViT row at the tiny and cpu scales; at full scale they are the paper's, and the
    cost estimates count the paper's runs only."""
    from mixcollapse.experiments.paper import at_scale

    fig10, fig11 = get_experiment("fig10"), get_experiment("fig11")
    assert {k.arch for k in at_scale(fig10, "full").runs} == {"wrn"}
    assert {k.arch for k in at_scale(fig10, "cpu").runs} == {"wrn", "vit"}
    assert [p.checkpoint_epoch for p in at_scale(fig10, "tiny").panels[1]] == [200, 600, 1000]
    assert "vit-cifar10-mixup" not in {k.name for k in experiments_runs(["fig10"])}
    tiny = panel_rows(at_scale(fig11, "tiny"), "tiny")  # the first three of each architecture, a row each
    assert [[(p.run.arch, p.seed) for p in row] for row in tiny] == [
        [("wrn", s) for s in (1, 2, 3)],
        [("vit", s) for s in (1, 2, 3)],
    ]
    assert len(panel_rows(at_scale(fig11, "cpu"), "cpu")) == 3
    kept = select_datasets(at_scale(fig10, "cpu"), ["fashionmnist"], archs=("wrn",))
    assert {k.name for k in kept.runs} == {"wrn-fashionmnist-mixup"}


def test_unknown_experiment_and_run_names():
    with pytest.raises(ValueError, match="unknown experiment 'fig4'"):
        get_experiment("fig4")


def test_datasets_filter_multi_dataset_experiments():
    fig1 = select_datasets(get_experiment("fig1"), ["fashionmnist"])
    assert [p.run.name for row in fig1.panels for p in row] == ["wrn-fashionmnist-mixup", "vit-fashionmnist-mixup"]
    assert fig1.title.endswith("(here: WRN and ViT × FashionMNIST)")
    fig1 = select_datasets(get_experiment("fig1"), ["fashionmnist"], archs=("wrn",))
    assert [k.name for k in fig1.runs] == ["wrn-fashionmnist-mixup"]
    assert fig1.title.endswith("(here: WRN × FashionMNIST)")
    table1 = select_datasets(get_experiment("table1"), ["fashionmnist", "cifar100"], archs=("wrn",))
    assert table1.table.rows == (("wrn", "fashionmnist"), ("wrn", "cifar100"))
    assert select_datasets(get_experiment("fig1"), None) == get_experiment("fig1")


def test_datasets_move_single_dataset_experiments():
    """Figure 2 is drawn on CIFAR10 alone: --datasets fashionmnist draws the same panels on FashionMNIST."""
    fig2 = select_datasets(get_experiment("fig2"), ["fashionmnist"])
    assert [k.name for k in fig2.runs] == [
        "wrn-fashionmnist-baseline",
        "wrn-fashionmnist-mse",
        "wrn-fashionmnist-mixup",
    ]
    assert "FashionMNIST" in fig2.title and "CIFAR10" not in fig2.title
    fig10 = select_datasets(get_experiment("fig10"), ["fashionmnist"])
    assert [p.checkpoint_epoch for row in fig10.panels for p in row] == [100, 300, 500]
    table2 = select_datasets(get_experiment("table2"), ["fashionmnist"])
    assert table2.table.rows == (("wrn", "fashionmnist"), ("vit", "fashionmnist"))
    assert "Drawn here on FashionMNIST" in table2.table.caption
    with pytest.raises(ValueError, match="nothing to draw"):
        select_datasets(get_experiment("fig12"), ["fashionmnist"], archs=("wrn",))  # a ViT experiment
    with pytest.raises(ValueError, match="expected names from"):
        select_datasets(get_experiment("fig1"), ["mnist"])
