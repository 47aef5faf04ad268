"""The runs of a reproduction: where their data is, training them (sweeps first), and reading their results.

:class:`Context` is what one ``reproduce`` call shares between its steps: the output folder, the
scale, the data sources, and every run's directory, chosen hyper-parameters and resolved config.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mixcollapse.catalog import title as dataset_title
from mixcollapse.config import model_label, training_label
from mixcollapse.experiments.launch import Runner, run_jobs
from mixcollapse.experiments.paper import RunKey, plan_runs
from mixcollapse.experiments.scales import run_config, sweep_grid
from mixcollapse.experiments.sweep import SweepPlan, format_sweep, plan_sweep, run_sweeps, write_job
from mixcollapse.training.rundir import read_metrics

_log = logging.getLogger(__name__)


@dataclass
class Context:
    """What the steps of one ``reproduce`` call share."""

    out: Path
    scale: str
    sources: dict = field(default_factory=dict)  # dataset -> data.fake.DataSource
    runs: dict[str, Path] = field(default_factory=dict)  # run name -> run directory
    hyper: dict[str, list[str]] = field(default_factory=dict)  # run name -> chosen hyper-parameter overrides
    configs: dict = field(default_factory=dict)  # run name -> its resolved ExperimentConfig at this scale
    sweeps: dict[str, Path] = field(default_factory=dict)  # run name -> its sweep directory (swept runs)
    overrides: list[str] = field(default_factory=list)  # applied last to every run (e.g. train.threads)
    seeds: list[int] | None = None  # training seeds (--seeds): tables average them, figures show the first
    seed_runs: dict[str, dict[int, Path]] = field(default_factory=dict)  # run name -> seed -> run directory
    sweep: str = "full"  # how sweeps pick (--sweep): full (Appendix B.1) or halving (experiments.halving)
    log: Callable[[str], None] = _log.info

    def rel(self, path: str | Path) -> str:
        """``path`` relative to the output directory (manifests stay valid when ``out`` moves)."""
        try:
            return str(Path(path).resolve().relative_to(self.out.resolve()))
        except ValueError:
            return str(path)


def resolve_data(dataset: str, scale: str, data_root: str | Path, out: str | Path, download: bool = False):
    """Where ``dataset`` is read from at ``scale`` (a data.fake.DataSource); cpu and full scale refuse missing data.

    Tiny scale never downloads: without the real files (searched as data.locate_files does) it
    writes synthetic files in the real on-disk format to ``<out>/fake-data``. The cpu and full
    scales use the real files (full: downloaded first when ``download``) and raise ValueError with
    one line naming the folders searched and how to install the data when they are missing.
    """
    from mixcollapse.config import DataConfig
    from mixcollapse.data.fake import ensure_data
    from mixcollapse.data.locate import DOWNLOAD_HINT, DataError

    root = str(Path(data_root).expanduser().resolve())
    cfg = DataConfig(name=dataset, root=root, download=download and scale == "full")
    if scale == "tiny":
        return ensure_data(cfg, allow_fake=True, fake_root=Path(out).resolve() / "fake-data")
    try:
        source = ensure_data(cfg, allow_fake=False)
    except DataError as err:
        hint = (
            "--scale tiny runs without it"
            if scale == "cpu"
            else "or let torchvision download it (--download); --scale tiny runs without it"
        )
        why = str(err).replace(DOWNLOAD_HINT, "")
        raise ValueError(f"--scale {scale} needs the real data: {why}; {hint}") from None
    if source.kind == "fake":
        raise ValueError(
            f"--scale {scale} needs the real {dataset_title(dataset)} files, but {source.root} holds "
            "synthetic ones (FAKE_DATA.txt); point --data-root at the real data"
        )
    return source


def data_overrides(source) -> list[str]:
    """Config overrides that point a run at ``source`` (found already: training never downloads)."""
    return [f"data.root={source.root}", "data.download=false"]


def ensure_runs(keys: Sequence[RunKey], ctx: Context, slots, runner: Runner, prune: bool = False) -> None:
    """Train what ``keys`` need (sweeps first, then the runs reusing a sweep's best) and record the run directories."""
    late = {ds: data_overrides(src) + ctx.overrides for ds, src in ctx.sources.items()}
    if ctx.scale == "cpu":
        _ensure_single_runs(keys, ctx, slots, runner, late)
        return
    plan = plan_runs(keys)
    sweeps = {}
    for key in plan.swept:
        sweep_dir = ctx.out / "sweeps" / key.name
        grid = sweep_grid(key.arch, ctx.scale)

        def configure(hyper: list[str], key: RunKey = key):
            return run_config(key, ctx.scale, hyper, late[key.dataset])

        planned = plan_sweep(sweep_dir, grid, configure, prefix=f"{key.name}/")
        sweeps[key] = SweepPlan(sweep_dir, grid, planned, ctx.sweep)
    results = run_sweeps(list(sweeps.values()), slots, runner, ctx.log, prune)
    for (key, sweep), result in zip(sweeps.items(), results, strict=True):
        best = result["best"]
        if best is None:
            raise ValueError(f"every run of the sweep {sweep.sweep_dir} failed; see its logs/ and rerun to retry")
        ctx.log(f"[reproduce] sweep {key.name}: best {best['name']} of {len(result['runs'])}\n{format_sweep(result)}")
        if not result["complete"]:
            ctx.log(
                f"[reproduce] warning: sweep {key.name} is incomplete; the best of its finished runs is used "
                "(a rerun retries the others)"
            )
        ctx.runs[key.name] = sweep.sweep_dir / best["run_dir"]
        ctx.hyper[key.name] = list(best["overrides"])
        ctx.configs[key.name] = run_config(key, ctx.scale, best["overrides"], late[key.dataset])
        ctx.sweeps[key.name] = sweep.sweep_dir

    jobs = []
    for key in plan.inherited:
        source = key.sweep_source().name
        hyper, point = ctx.hyper[source], ctx.runs[source].name
        base = ctx.out / "runs" / key.name
        cfg = run_config(key, ctx.scale, hyper, late[key.dataset])
        jobs.append(write_job(key.name, cfg, base / point, base / f"{point}.yaml", base / f"{point}.log", hyper))
        ctx.runs[key.name], ctx.hyper[key.name], ctx.configs[key.name] = base / point, list(hyper), cfg
    status = run_jobs(jobs, slots, runner, ctx.log)
    _raise_on_failure(jobs, status)
    _ensure_seed_runs(keys, ctx, slots, runner, late)


def _ensure_single_runs(keys: Sequence[RunKey], ctx: Context, slots, runner: Runner, late: dict) -> None:
    """The CPU scale: every run trains once with its recipe's settings, no sweep (``<out>/runs/<run>/cpu``)."""
    jobs = []
    for key in keys:
        cfg = run_config(key, ctx.scale, (), late[key.dataset])
        base = ctx.out / "runs" / key.name
        jobs.append(write_job(key.name, cfg, base / "cpu", base / "cpu.yaml", base / "cpu.log", []))
        ctx.runs[key.name], ctx.hyper[key.name], ctx.configs[key.name] = base / "cpu", [], cfg
    ctx.log(
        f"[reproduce] cpu scale: no learning-rate sweep; each of the {len(jobs)} runs trains once with its "
        "recipe's settings (presets/<arch>-<dataset>-cpu.yaml)"
    )
    status = run_jobs(jobs, slots, runner, ctx.log)
    _raise_on_failure(jobs, status)
    _ensure_seed_runs(keys, ctx, slots, runner, late)


def _ensure_seed_runs(keys: Sequence[RunKey], ctx: Context, slots, runner: Runner, late: dict) -> None:
    """With ``ctx.seeds``: each run again for every seed other than its config's own (``<run dir>-seed<s>``), with
    the hyper-parameters chosen on the sweep; the figures' runs become the first seed's."""
    if not ctx.seeds:
        return
    jobs = []
    for key in keys:
        own, base, cfg = ctx.runs[key.name], ctx.out / "runs" / key.name, ctx.configs[key.name]
        runs, configs = {}, {}
        for seed in ctx.seeds:
            if seed == cfg.train.seed:
                runs[seed], configs[seed] = own, cfg
                continue
            point = f"{own.name}-seed{seed}"
            configs[seed] = run_config(key, ctx.scale, ctx.hyper[key.name], [*late[key.dataset], f"train.seed={seed}"])
            jobs.append(
                write_job(
                    f"{key.name}/seed{seed}",
                    configs[seed],
                    base / point,
                    base / f"{point}.yaml",
                    base / f"{point}.log",
                    ctx.hyper[key.name],
                )
            )
            runs[seed] = base / point
        ctx.seed_runs[key.name] = runs
        ctx.runs[key.name], ctx.configs[key.name] = runs[ctx.seeds[0]], configs[ctx.seeds[0]]
    ctx.log(
        f"[reproduce] seeds {', '.join(map(str, ctx.seeds))}: {len(jobs)} more runs with the chosen "
        "hyper-parameters; the tables show the mean and standard deviation over the seeds, the figures the "
        f"runs of seed {ctx.seeds[0]}"
    )
    status = run_jobs(jobs, slots, runner, ctx.log)
    _raise_on_failure(jobs, status)


def _raise_on_failure(jobs, status: dict) -> None:
    failed = [j for j in jobs if status[j.name]["state"] != "finished"]
    if failed:
        raise ValueError(f"run {failed[0].name} failed; see {failed[0].log_path} (a rerun resumes it)")


def analysis_overrides(cfg) -> list[str]:
    """Every ``analysis.*`` value of ``cfg`` as overrides (JSON values read back exactly by YAML)."""
    from dataclasses import asdict

    return [f"analysis.{k}={json.dumps(v)}" for k, v in asdict(cfg.analysis).items()]


def final_row(run_dir: Path, epoch: int | None = None) -> dict:
    """The metrics row of ``epoch`` (default: the last) of a run."""
    rows = read_metrics(run_dir)
    if epoch is not None:
        rows = [r for r in rows if int(r.get("epoch", 0)) == epoch]
    return rows[-1] if rows else {}


def run_label(key: RunKey, cfg) -> str:
    """Model, dataset and what the training was (loss, mixup α, fixed ETF, optimizer), from the run's config."""
    return f"{model_label(cfg)} · {dataset_title(key.dataset)} · {training_label(cfg)}"


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def scale_note(ctx: Context, keys: Sequence[RunKey]) -> str:
    """One line for titles and captions: the scale and the data of ``keys``' runs (real or synthetic, sizes)."""

    cfgs = [ctx.configs[k.name] for k in keys if k.name in ctx.configs]
    data = []
    for ds in dict.fromkeys(k.dataset for k in keys):
        src = ctx.sources.get(ds)
        if src is None:
            continue
        title = dataset_title(ds)
        kind = "SYNTHETIC files, not the real data" if src.kind == "fake" else "real data"
        limits = {c.data.train_limit for c in cfgs if c.data.name == ds}
        size = f"first {min(limits):,} training images of " if limits and None not in limits else ""
        data.append(f"{size}{title} ({kind})")
    models = ", ".join(dict.fromkeys(model_label(c) for c in cfgs))
    epochs = "/".join(str(e) for e in sorted({c.train.epochs for c in cfgs}))
    what = {
        "full": "full scale (Appendix B.1)",
        "cpu": "CPU scale (one run per variant, no sweep)",
        "tiny": "TINY scale: a smoke test, not the paper's result",
    }[ctx.scale]
    return f"{what} · {models}, {epochs} epochs · {'; '.join(data)}"
