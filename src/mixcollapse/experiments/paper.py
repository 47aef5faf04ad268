"""The paper's experiments: its runs, figures and tables, and the datasets and variants they are drawn on.

Vocabulary (docs/reproduce.md has the long version):

* **preset**: one YAML per (architecture, dataset) in ``presets/`` with Appendix B.1's values
  (``wrn-cifar10``, ``vit-fashionmnist``, ...).
* **variant**: overrides on a preset: ``mixup`` (alpha = 1), ``baseline`` (alpha = 0), ``mse``,
  ``etf`` (fixed simplex-ETF classifier), ``alpha0.4``, ``adamw``.
* **run**: (architecture, dataset, variant), named ``wrn-cifar10-mixup``; trained once per output
  directory and shared by every experiment that needs it.
* **sweep**: Appendix B.1's grid, over which a run's hyper-parameters are chosen by final test
  accuracy. Variants that change the loss or the optimizer (mixup, mse, adamw) get their own
  sweep; variants that change only the data mixing or freeze the classifier (baseline, etf,
  alpha0.4) reuse the best hyper-parameters of the preset's mixup sweep, as the paper did for
  the baseline ("the experiment with the highest test accuracy is repeated without mixup").
* **experiment**: a figure or table of the paper (``fig1`` ... ``table2``): the runs it needs and
  which of four analysis steps (``configuration``, ``trajectory``, ``classifier``, ``table``)
  turns them into figures and numbers (the steps live in :mod:`mixcollapse.experiments.reproduce`).
* **scale**: ``full`` is the paper's settings; ``tiny`` shrinks any config in one place
  (:func:`tiny_overrides`, big_vision's ``runlocal``) so that every experiment runs end to end on
  a 2-core CPU through the same code path; ``cpu`` trains on the real data with a recipe chosen by
  measurement to reach the terminal phase on a 2-core CPU in at most 20 minutes per run (the
  presets ``<arch>-<dataset>-cpu``; today WRN and ViT on FashionMNIST), one run per variant, no sweep.
  At the tiny and cpu scales Figures 10 and 11 get a ViT row below the paper's WRN panels
  (``Experiment.extra_rows``: no GPU time, no sweep checkpoints to keep).
* **datasets** (:func:`select_datasets`): an experiment can be limited to some datasets; one drawn
  on a single dataset that is not chosen (Figures 2, 7, 9-12, Table 2: CIFAR10) is drawn on the
  first chosen dataset instead, so ``--datasets fashionmnist`` gives a FashionMNIST Figure 2.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from mixcollapse.catalog import title as dataset_title

ARCHS = ("wrn", "vit")
# The paper's datasets (Section 2.1), named here rather than read from the catalog: registering another
# dataset changes no figure or table of the paper.
PAPER_DATASETS = ("fashionmnist", "cifar10", "cifar100")
ARCH_TITLES = {"wrn": "WideResNet-40-10", "vit": "ViT-B/4"}
ARCH_SHORT = {"wrn": "WRN", "vit": "ViT"}

# Appendix B.1's sweeps. Values are rounded to 4 significant digits (grid.parse_grid), so run
# names and configs agree. The paper gives no count for the ViT weight decays "from 0 to 0.05":
# we take three evenly spaced values, {0, 0.025, 0.05}; pass --grid to the sweep for others.
GRIDS: dict[str, tuple[str, ...]] = {
    "wrn": ("train.lr=logspace(0.01,0.25,10)",),
    "vit": ("train.lr=logspace(1e-4,3e-3,10)", "train.weight_decay=linspace(0,0.05,3)"),
}


@dataclass(frozen=True)
class Variant:
    """Overrides on a preset; ``sweep``: its own grid search, else the best of the preset's mixup sweep."""

    name: str
    overrides: tuple[str, ...]
    sweep: bool
    label: str
    cpu: tuple[str, ...] = ()  # at the CPU scale, which has no sweep: what the sweep would have chosen


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("mixup", ("mixing.alpha=1.0",), True, "mixup α=1"),
        Variant("baseline", ("mixing.alpha=0.0",), False, "baseline (no mixup)"),
        # MSE's gradient on the logits is 2 (z - y) / C per sample against CE's (p - y): at the CPU scale
        # (no sweep) its learning rate is 5x the recipe's 0.1, so both losses take steps of similar size.
        Variant("mse", ("mixing.alpha=1.0", "train.loss=mse"), True, "MSE mixup", cpu=("train.lr=0.5",)),
        Variant("etf", ("mixing.alpha=1.0", "model.fixed_etf=true"), False, "mixup, fixed simplex-ETF classifier"),
        Variant("alpha0.4", ("mixing.alpha=0.4",), False, "mixup α=0.4"),
        # AdamW's weight decay is decoupled: at the CPU scale the top of Appendix B.1's range (0.05), whatever the
        # recipe's coupled Adam value (with 0 the two optimizers would take identical steps).
        Variant(
            "adamw",
            ("mixing.alpha=1.0", "train.optimizer=adamw"),
            True,
            "mixup, AdamW",
            cpu=("train.weight_decay=0.05",),
        ),
        # Beyond the paper: the methods researchers compare mixup with, at their authors' settings (manifold
        # mixup: Verma et al. 2019, alpha = 2 on CIFAR; CutMix: Yun et al. 2019, alpha = 1; label smoothing:
        # epsilon = 0.1, Szegedy et al. 2016). They change only how data and targets are mixed, so at full
        # scale they reuse the best hyper-parameters of the mixup sweep, as the baseline does.
        Variant("manifold", ("mixing.method=manifold", "mixing.alpha=2.0"), False, "manifold mixup α=2"),
        Variant("cutmix", ("mixing.method=cutmix", "mixing.alpha=1.0"), False, "CutMix α=1"),
        Variant("smoothing", ("mixing.method=none", "mixing.label_smoothing=0.1"), False, "label smoothing ε=0.1"),
    )
}
METHOD_VARIANTS = ("mixup", "manifold", "cutmix", "smoothing", "baseline")  # the methods experiment, in order
# What the methods experiment tabulates per run (analysis.json's headline numbers).
METHOD_MEASURES = ("pair_prob_mae", "pair_mass", "same_cos_in_span", "channel_middle_density_ratio", "nc1",
                   "ufm_distance", "test_accuracy", "ece")  # fmt: skip

# Overrides of single runs. Figure 10 reads the configuration at epochs 100, 300 and 500 of the
# WRN/CIFAR10 mixup run, so every member of that sweep keeps those checkpoints (~0.45 GB each). With
# --datasets, Figure 10 moves to another dataset's WRN mixup run: at the tiny scale every WRN mixup run
# keeps the (scaled) epochs, so experiments can run in any order; at full scale only CIFAR10's does (the
# disk cost), and Figure 10 elsewhere needs an --out where its run has not been trained before.
RUN_EXTRAS: dict[str, tuple[str, ...]] = {"wrn-cifar10-mixup": ("train.checkpoint_epochs=[100,300,500]",)}
# The ViT row of Figure 10 (tiny and cpu scales only) reads its mixup run at the same fractions of training
# (200, 600 and 1000 of the paper's 1000 ViT epochs).
VIT_FIG10_EPOCHS = (200, 600, 1000)


@dataclass(frozen=True, order=True)
class RunKey:
    """One training run of the paper: architecture, dataset, variant."""

    arch: str
    dataset: str
    variant: str

    @property
    def name(self) -> str:
        return f"{self.arch}-{self.dataset}-{self.variant}"

    @property
    def preset(self) -> str:
        return f"{self.arch}-{self.dataset}"

    @property
    def swept(self) -> bool:
        return VARIANTS[self.variant].sweep

    def sweep_source(self) -> RunKey:
        """The run whose sweep chooses this run's hyper-parameters (itself when it is swept)."""
        return self if self.swept else RunKey(self.arch, self.dataset, "mixup")

    @property
    def title(self) -> str:
        return f"{ARCH_TITLES[self.arch]} · {dataset_title(self.dataset)} · {VARIANTS[self.variant].label}"


# ---- experiments ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Panel:
    """One configuration scatter: a run, at a checkpoint, for a subset of three classes."""

    run: RunKey
    checkpoint_epoch: int | None = None  # a full-scale epoch (scaled at tiny scale); None: the final one
    seed: int | None = None  # analysis.seed, which picks the three classes; None: the run's own (0)


@dataclass(frozen=True)
class Table:
    """A table of one final-epoch metric, rows (arch, dataset) by variant columns, with the paper's values."""

    metric: str  # a key of metrics.jsonl: test_accuracy | test_ece
    percent: bool
    rows: tuple[tuple[str, str], ...]
    columns: tuple[tuple[str, str], ...]  # (variant, column title)
    paper: dict  # {(arch, dataset, variant): value as printed in the paper}
    caption: str


@dataclass(frozen=True)
class Experiment:
    """A figure or table of the paper: what it shows, which runs, which analysis step."""

    name: str
    title: str
    step: str  # configuration | trajectory | classifier | table (dispatched in reproduce.STEPS)
    expected: str  # the paper's result in words
    panels: tuple[tuple[Panel, ...], ...] = ()  # rows of configuration panels
    tiny_panels: int | None = None  # at tiny scale keep the first n panels of each architecture, a row each
    extra_rows: tuple[tuple[Panel, ...], ...] = ()  # rows beyond the paper, drawn at the tiny and cpu scales
    extra_title: str = ""  # the title when the extra rows are drawn (default: the paper's)
    runs_extra: tuple[RunKey, ...] = ()  # runs of the trajectory and classifier steps
    table: Table | None = None
    lams: tuple[float, ...] = ()  # the trajectory step's mixing weights
    tiny_lams: tuple[float, ...] = ()
    measures: tuple[str, ...] = ()  # configuration step: a table of these analysis numbers, a row per panel
    paper: bool = True  # a figure or table of the paper (``reproduce all``); False: beyond it

    @property
    def runs(self) -> tuple[RunKey, ...]:
        """Every run this experiment reads, in first-use order."""
        keys = [p.run for row in (*self.panels, *self.extra_rows) for p in row] + list(self.runs_extra)
        if self.table is not None:
            keys += [RunKey(a, d, v) for a, d in self.table.rows for v, _ in self.table.columns]
        return tuple(dict.fromkeys(keys))


def _grid(variant: str, archs=ARCHS, datasets=PAPER_DATASETS) -> tuple[tuple[Panel, ...], ...]:
    return tuple(tuple(Panel(RunKey(a, d, variant)) for d in datasets) for a in archs)


_ALL = tuple((a, d) for a in ARCHS for d in PAPER_DATASETS)
_C10 = ("cifar10",)

TABLE1 = Table(
    metric="test_accuracy",
    percent=True,
    rows=_ALL,
    columns=(("baseline", "Baseline"), ("mixup", "Mixup")),
    paper={
        ("wrn", "fashionmnist", "baseline"): 95.10,
        ("wrn", "fashionmnist", "mixup"): 94.21,
        ("wrn", "cifar10", "baseline"): 96.2,
        ("wrn", "cifar10", "mixup"): 97.30,
        ("wrn", "cifar100", "baseline"): 80.03,
        ("wrn", "cifar100", "mixup"): 81.42,
        ("vit", "fashionmnist", "baseline"): 93.71,
        ("vit", "fashionmnist", "mixup"): 94.24,
        ("vit", "cifar10", "baseline"): 86.92,
        ("vit", "cifar10", "mixup"): 92.56,
        ("vit", "cifar100", "baseline"): 59.95,
        ("vit", "cifar100", "mixup"): 69.83,
    },  # fmt: skip
    caption="Table 1: test accuracy (%) for experiments in Figures 1 and 8.",
)

TABLE2 = Table(
    metric="test_ece",
    percent=False,
    rows=(("wrn", "cifar10"), ("vit", "cifar10")),
    columns=(("baseline", "Baseline"), ("mixup", "Mixup (α=1.0)"), ("alpha0.4", "Mixup (α=0.4)")),
    paper={
        ("wrn", "cifar10", "baseline"): 0.024,
        ("wrn", "cifar10", "mixup"): 0.077,
        ("wrn", "cifar10", "alpha0.4"): 0.013,
        ("vit", "cifar10", "baseline"): 0.122,
        ("vit", "cifar10", "mixup"): 0.014,
        ("vit", "cifar10", "alpha0.4"): 0.019,
    },  # fmt: skip
    caption="Table 2: CIFAR10 expected calibration error (15 bins, Appendix C).",
)

_WRN_C10 = RunKey("wrn", "cifar10", "mixup")
_VIT_C10 = RunKey("vit", "cifar10", "mixup")

EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        Experiment(
            "fig1",
            "Last-layer features of mixup training data: WRN and ViT × FashionMNIST, CIFAR10, CIFAR100",
            "configuration",
            "Same-class mixup features collapse onto their classifier's vertex (a simplex ETF); different-class "
            "features form channels along the decision boundaries, denser as λ nears 0.5.",
            panels=_grid("mixup"),
        ),
        Experiment(
            "fig2",
            "WRN-40-10 on CIFAR10: baseline cross-entropy, MSE mixup, cross-entropy mixup",
            "configuration",
            "Baseline: mixup points loosely aligned with the classifiers, noisy in between. MSE mixup: features "
            "are convex combinations of the class features (straight segments). CE mixup: the channels of Figure 1.",
            panels=(
                (Panel(RunKey("wrn", "cifar10", "baseline")), Panel(RunKey("wrn", "cifar10", "mse")), Panel(_WRN_C10)),
            ),
        ),
        Experiment(
            "fig3",
            "Layer-wise trajectories of mixed inputs (ViT: CLS token per block; WRN: pooled features per "
            "stage, not shown in the paper)",
            "trajectory",
            "Paths start at the origin; for a different-class mix with small λ the network first heads towards "
            "one class and only in deeper layers bends towards the mix: manifold-mixup-like behaviour.",
            runs_extra=(RunKey("vit", "cifar10", "mixup"), _WRN_C10),
            lams=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
            tiny_lams=(0.0, 0.25, 0.5, 0.75, 1.0),
        ),
        Experiment(
            "fig5",
            "Convergence of the classifier to a simplex ETF during mixup training",
            "classifier",
            "The coefficient of variation of the classifier norms and the std of the cosines between classifiers "
            "both fall towards 0 as training progresses, for every architecture and dataset.",
            runs_extra=tuple(RunKey(a, d, "mixup") for a, d in _ALL),
        ),
        Experiment(
            "fig7",
            "Mixup with the classifier fixed to a simplex ETF (WRN-40-10, CIFAR10)",
            "configuration",
            "Different-class features form a more hexagonal pattern, closer to the UFM optimum of Figure 6; "
            "test accuracy 97.35%.",
            panels=((Panel(RunKey("wrn", "cifar10", "etf")),),),
        ),
        Experiment(
            "fig8",
            "Baselines (no mixup): last-layer features of mixup data for all six combinations",
            "configuration",
            "Without mixup the configuration of Figure 1 does not appear: mixup points lie loosely along the "
            "classifiers and the region between them is noisy, filled with λ near 0.5.",
            panels=_grid("baseline"),
        ),
        Experiment(
            "fig9",
            "Mixup with α = 0.4 for WRN-40-10 and ViT-B/4 on CIFAR10",
            "configuration",
            "The same configuration as with α = 1, with fewer points near λ = 0.5 (Beta(0.4, 0.4) puts its mass "
            "near 0 and 1).",
            panels=((Panel(RunKey("wrn", "cifar10", "alpha0.4")), Panel(RunKey("vit", "cifar10", "alpha0.4"))),),
        ),
        Experiment(
            "fig10",
            "The configuration during training: WRN-40-10 on CIFAR10 at epochs 100, 300 and 500",
            "configuration",
            "As training progresses, different-class mixup points are pushed towards the decision boundary and "
            "converge to the configuration of Figure 1.",
            panels=(tuple(Panel(_WRN_C10, checkpoint_epoch=e) for e in (100, 300, 500)),),
            extra_rows=(tuple(Panel(_VIT_C10, checkpoint_epoch=e) for e in VIT_FIG10_EPOCHS),),
        ),
        Experiment(
            "fig11",
            "Several random subsets of three classes of one model (WRN-40-10, CIFAR10)",
            "configuration",
            "Every subset shows the same configuration.",
            panels=tuple(tuple(Panel(_WRN_C10, seed=s) for s in row) for row in ((1, 2, 3, 4), (5, 6, 7, 8))),
            tiny_panels=3,
            extra_rows=(tuple(Panel(_VIT_C10, seed=s) for s in (1, 2, 3, 4)),),
            extra_title="Several random subsets of three classes of one model (WRN-40-10, CIFAR10), and below of a "
            "ViT-B/4 (not in the paper)",
        ),
        Experiment(
            "fig12",
            "ViT-B/4 on CIFAR10 trained with AdamW",
            "configuration",
            "The configuration of Figure 1 also appears with AdamW (decoupled weight decay).",
            panels=((Panel(RunKey("vit", "cifar10", "adamw")),),),
        ),
        Experiment(
            "table1",
            "Test accuracy, baseline against mixup, for the six combinations",
            "table",
            "Mixup improves test accuracy except for WRN on FashionMNIST (Table 1).",
            table=TABLE1,
        ),
        Experiment(
            "table2",
            "CIFAR10 expected calibration error: baseline, α = 1, α = 0.4",
            "table",
            "Mixup lowers the ECE of the ViT a lot (0.122 -> 0.014); for the WRN α = 0.4 is best (0.013).",
            table=TABLE2,
        ),
        Experiment(
            "methods",
            "Beyond the paper: mixup, manifold mixup, CutMix, label smoothing and no mixing (WRN and ViT, CIFAR10)",
            "configuration",
            "Not in the paper. Its Section 2.4 reads Figure 3 as mixup promoting manifold-mixup-like behaviour in "
            "earlier layers; the question is which methods give the last-layer configuration of Figure 1: channels "
            "need targets that blend two classes, so label smoothing (soft targets, no mixing) should not.",
            panels=tuple(tuple(Panel(RunKey(a, "cifar10", v)) for v in METHOD_VARIANTS) for a in ARCHS),
            measures=METHOD_MEASURES,
            paper=False,
        ),
    )
}
PAPER_EXPERIMENTS = tuple(name for name, e in EXPERIMENTS.items() if e.paper)  # what ``reproduce all`` draws


def get_experiment(name: str) -> Experiment:
    """The experiment named ``name``; ValueError listing the known names otherwise."""
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise ValueError(
            f"unknown experiment '{name}' (known: {', '.join(EXPERIMENTS)}, or all for the paper's)"
        ) from None


def select_datasets(
    experiment: Experiment, datasets: tuple[str, ...] | list[str] | None, archs: tuple[str, ...] | None = None
) -> Experiment:
    """``experiment`` limited to ``datasets`` (None: all) and ``archs`` (None: all); ValueError when nothing is left.

    Runs on other datasets are dropped; when none of the experiment's datasets is chosen (it is
    drawn on one dataset, e.g. Figure 2 on CIFAR10), its runs move to the first chosen dataset.
    Table rows follow the same rule, and a moved table gets the paper's values of its new rows
    where the paper has them (none for Table 2 off CIFAR10).
    """
    if datasets is not None:
        unknown = [d for d in datasets if d not in PAPER_DATASETS]
        if unknown or not datasets:
            raise ValueError(f"--datasets {','.join(datasets)}: expected names from {', '.join(PAPER_DATASETS)}")
    own = {k.dataset for k in experiment.runs}
    chosen = tuple(datasets) if datasets is not None else tuple(PAPER_DATASETS)
    moved = not own & set(chosen)

    def keep(key: RunKey) -> RunKey | None:
        if moved:
            key = RunKey(key.arch, chosen[0], key.variant)
        if key.dataset not in chosen or (archs is not None and key.arch not in archs):
            return None
        return key

    def keep_panel(p: Panel) -> Panel | None:
        key = keep(p.run)
        return None if key is None else dataclasses.replace(p, run=key)

    def keep_rows(rows):
        return tuple(r for r in (tuple(p for p in map(keep_panel, row) if p) for row in rows) if r)

    panels, extra_rows = keep_rows(experiment.panels), keep_rows(experiment.extra_rows)
    extra = tuple(k for k in map(keep, experiment.runs_extra) if k)
    table = _keep_table(experiment.table, keep, moved)
    if not panels and not extra_rows and not extra and table is None:
        what = f"datasets {', '.join(chosen)}" + (f" and architectures {', '.join(archs)}" if archs else "")
        raise ValueError(f"{experiment.name} has nothing to draw for {what}")
    title = _moved_title(experiment, chosen[0]) if moved else experiment.title
    kept = dataclasses.replace(
        experiment, panels=panels, extra_rows=extra_rows, runs_extra=extra, table=table, title=title
    )
    shown = {k.arch: None for k in kept.runs}, {k.dataset: None for k in kept.runs}
    archs_shown = " and ".join(ARCH_SHORT[a] for a in shown[0])
    if not moved and set(kept.runs) != set(experiment.runs):
        kept = dataclasses.replace(
            kept, title=f"{title} (here: {archs_shown} × {', '.join(dataset_title(d) for d in shown[1])})"
        )
    elif moved and set(shown[0]) != {k.arch for k in experiment.runs}:  # moved, and some architectures left out
        kept = dataclasses.replace(kept, title=f"{title} (here: {archs_shown})")
    return kept


def _keep_table(table: Table | None, keep, moved: bool) -> Table | None:
    """``table`` with the rows ``keep`` keeps (moved to another dataset: its caption says where); None if none."""
    if table is None:
        return None
    keys = (keep(RunKey(a, d, table.columns[0][0])) for a, d in table.rows)
    rows = tuple(dict.fromkeys((k.arch, k.dataset) for k in keys if k))
    caption = table.caption
    if moved:
        caption = f"{caption} Drawn here on {', '.join(dict.fromkeys(dataset_title(d) for _, d in rows))}."
    return dataclasses.replace(table, rows=rows, caption=caption) if rows else None


def _moved_title(experiment: Experiment, dataset: str) -> str:
    title = experiment.title
    for text in map(dataset_title, PAPER_DATASETS):
        title = title.replace(text, dataset_title(dataset))
    return title


def at_scale(experiment: Experiment, scale: str) -> Experiment:
    """``experiment`` as drawn at ``scale``: at full scale the paper's panels only; at the tiny and cpu scales
    its ``extra_rows`` (e.g. Figure 10's ViT row) below them, their runs then trained too."""
    if not experiment.extra_rows:
        return experiment
    if scale == "full":
        return dataclasses.replace(experiment, extra_rows=())
    return dataclasses.replace(
        experiment,
        panels=(*experiment.panels, *experiment.extra_rows),
        extra_rows=(),
        title=experiment.extra_title or experiment.title,
    )


def panel_rows(experiment: Experiment, scale: str) -> list[list[Panel]]:
    """The panels to draw at ``scale``: all of them, or at tiny scale the first ``tiny_panels`` of each
    architecture, one row each."""
    rows = [list(row) for row in experiment.panels]
    if scale == "tiny" and experiment.tiny_panels is not None:
        flat = [p for row in rows for p in row]
        rows = [
            [p for p in flat if p.run.arch == a][: experiment.tiny_panels]
            for a in dict.fromkeys(p.run.arch for p in flat)
        ]
    return rows


def trajectory_lams(experiment: Experiment, scale: str) -> tuple[float, ...]:
    return experiment.tiny_lams if scale == "tiny" and experiment.tiny_lams else experiment.lams


# ---- plans -------------------------------------------------------------------------------------


@dataclass
class Plan:
    """What to train for a set of runs: the sweeps first, then the runs that reuse a sweep's best."""

    swept: list[RunKey] = field(default_factory=list)
    inherited: list[RunKey] = field(default_factory=list)


def plan_runs(keys) -> Plan:
    """Sweeps (each once) and inheriting runs needed for ``keys``, in a stable order."""
    swept = sorted({k.sweep_source() for k in keys})
    inherited = sorted({k for k in keys if not k.swept})
    return Plan(swept, inherited)


def experiments_runs(names) -> list[RunKey]:
    """The runs that the named experiments read, each once, in first-use order."""
    return list(dict.fromkeys(k for n in names for k in at_scale(get_experiment(n), "full").runs))
