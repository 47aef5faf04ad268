"""Subcommands ``reproduce``, ``sweep`` and ``report``: argument parsing only (``cli.main`` wires them in).

Each handler returns an exit code; bad input raises ValueError or FileNotFoundError with one clear
sentence, which ``mixcollapse.cli.main`` prints as one line with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mixcollapse.cli.run import PDF_HELP

LAUNCHER_HELP = (
    "how training runs start: inprocess (train() here: one CPU process), subprocess "
    "(python -m mixcollapse train, torchrun for --nproc-per-node > 1), slurm (one Slurm job per run "
    "through submitit; see --partition, --time, --gpus-per-job, --nodes), auto: in-process on one "
    "CPU process, subprocesses otherwise (default)"
)
GPUS_HELP = (
    "GPUs to spread runs over, as CUDA_VISIBLE_DEVICES entries: auto (every visible GPU; default), "
    "none, or a list such as 0,1,2,3"
)


def add_parsers(subparsers) -> None:
    """Register ``reproduce``, ``sweep`` and ``report`` on ``subparsers`` (argparse's add_subparsers())."""
    _add_reproduce(subparsers)
    _add_sweep(subparsers)
    _add_report(subparsers)


def _add_launch_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gpus", default="auto", help=GPUS_HELP)
    p.add_argument(
        "--nproc-per-node",
        type=int,
        default=1,
        help="processes (GPUs) per run; > 1 launches each run with torchrun DDP (default 1)",
    )
    p.add_argument(
        "--launcher", default="auto", choices=("auto", "subprocess", "inprocess", "slurm"), help=LAUNCHER_HELP
    )
    s = p.add_argument_group("--launcher slurm (submitit)")
    s.add_argument("--partition", default=None, help="Slurm partition (default: the cluster's)")
    s.add_argument(
        "--time",
        type=float,
        default=None,
        metavar="MINUTES",
        help="time limit per job (default: twice the run's estimated H100 time, 1 to 24 hours); a run "
        "longer than one job is requeued and resumes from its last checkpoint",
    )
    s.add_argument("--gpus-per-job", type=int, default=1, help="GPUs per node of each job (0: CPU jobs; default 1)")
    s.add_argument("--nodes", type=int, default=1, help="nodes per job (torchrun rendezvous across them; default 1)")
    s.add_argument("--cpus-per-task", type=int, default=8, help="CPUs per job and node (default 8)")
    s.add_argument("--max-jobs", type=int, default=256, help="jobs in the queue at once (default 256)")
    s.add_argument(
        "--signal-delay",
        type=int,
        default=120,
        metavar="SECONDS",
        help="Slurm's warning (USR2) this long before the time limit, at most half of it: the training stops at "
        "its last epoch and the job is requeued (default 120)",
    )
    s.add_argument("--timeouts", type=int, default=20, help="requeues allowed per job past its time limit (default 20)")
    s.add_argument(
        "--cluster",
        default="slurm",
        choices=("slurm", "local"),
        help="slurm (default), or local: submitit's local executor, the same jobs as subprocesses of this "
        "machine (to try a setup without Slurm)",
    )
    p.add_argument(
        "--prune-checkpoints",
        action="store_true",
        help="delete the checkpoints of sweep runs as soon as they can no longer be the best (their "
        "metrics stay and they are never retrained): a sweep then holds the running jobs' "
        "checkpoints plus one",
    )
    p.add_argument(
        "--sweep",
        default="full",
        choices=("full", "halving"),
        help="how a learning-rate sweep picks: full (default; Appendix B.1: every grid point trained to the end) "
        "or halving (successive halving, a documented deviation: every point to 1/9 of the epochs, the best "
        "third to 1/3, the best third of those to the end; the pick is still the best final test accuracy; "
        "about a third of the cost; docs/reproduce.md)",
    )


def _add_reproduce(sub) -> None:
    p = sub.add_parser(
        "reproduce",
        help="reproduce a figure or table of the paper (fig1 ... table2, or all)",
        description="Reproduce a figure or table of Fisher, Meng & Papyan (ICLR 2024). Runs shared between "
        "experiments are trained once per --out; a killed command continues where it stopped.",
    )
    p.add_argument(
        "experiment",
        nargs="?",
        help="fig1, fig2, fig3, fig5, fig7, fig8, fig9, fig10, fig11, fig12, table1, table2, or all (the paper's); "
        "methods: mixup against manifold mixup, CutMix and label smoothing (beyond the paper)",
    )
    p.add_argument("--list", action="store_true", help="list the experiments with their estimated GPU time")
    p.add_argument(
        "--scale",
        default="full",
        choices=("tiny", "cpu", "full"),
        help="full: the paper's settings (default; needs the real data and GPUs); cpu: the real data with "
        "a recipe that reaches the terminal phase on a 2-core CPU (WRN and ViT on FashionMNIST, at most 20 "
        "minutes per run, no sweep); tiny: small models, few images and epochs, minutes on a CPU, "
        "synthetic files when the data is absent (a smoke test)",
    )
    _add_data_options(p)
    p.add_argument("--allow-cpu", action="store_true", help="run --scale full even without a GPU")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads of every training run (default: the preset's; at --scale cpu one per core)",
    )
    _add_launch_options(p)
    p.add_argument(
        "--seeds",
        type=_seed_list,
        default=None,
        metavar="LIST",
        help="train every run with each of these seeds, e.g. 0,1,2: tables show mean ± std over them, "
        "figures the first seed's runs (learning rates are chosen once, on the preset seed's sweep)",
    )
    p.add_argument("--pdf", action="store_true", help=PDF_HELP)
    p.set_defaults(func=run_reproduce)


def _add_data_options(p) -> None:
    """--datasets, --data-root, --out and --download of ``reproduce``."""
    p.add_argument(
        "--archs",
        default=None,
        type=_arch_list,
        metavar="LIST",
        help="only these architectures, wrn or vit or wrn,vit (default: both)",
    )
    p.add_argument(
        "--datasets",
        default=None,
        type=_dataset_list,
        metavar="LIST",
        help="only these datasets, e.g. fashionmnist or fashionmnist,cifar10; an experiment drawn on "
        "CIFAR10 alone (fig2, fig7, fig9-12, table2) is drawn on the first of them instead; "
        "default: all (--scale cpu: those with a CPU recipe)",
    )
    p.add_argument(
        "--data-root",
        default="data",
        help="where the datasets live (default: data; then $MIXCOLLAPSE_DATA, then the system folder "
        "of Debian's dataset-fashion-mnist)",
    )
    p.add_argument(
        "--out", default="reproduce_out", help="output directory, shared by experiments (default: reproduce_out)"
    )
    p.add_argument(
        "--download",
        action="store_true",
        help="at full scale, let torchvision download missing datasets into --data-root",
    )


def run_reproduce(args) -> int:
    from mixcollapse.experiments.launch import Launch
    from mixcollapse.experiments.reproduce import list_experiments, reproduce

    if args.list:
        print(list_experiments())
        return 0
    if not args.experiment:
        raise ValueError("name an experiment (e.g. mixcollapse reproduce fig1) or pass --list to see them")
    launch = Launch(
        args.launcher,
        args.gpus,
        args.nproc_per_node,
        args.threads,
        _slurm_options(args, Path(args.out)),
        allow_cpu=args.allow_cpu,
    )
    manifests = reproduce(
        args.experiment,
        scale=args.scale,
        out=args.out,
        data_root=args.data_root,
        datasets=args.datasets,
        archs=args.archs,
        download=args.download,
        seeds=args.seeds,
        prune_checkpoints=args.prune_checkpoints,
        sweep=args.sweep,
        launch=launch,
    )
    for m in manifests:  # the results: what each experiment wrote (progress went to standard error)
        files = [*m.get("figures", []), *(f for t in m.get("tables", []) for f in t["files"])]
        print(f"{m['name']}: {', '.join(str(Path(args.out) / f) for f in files) or Path(args.out) / 'experiments'}")
    return 0


def _slurm_options(args, out: Path):
    """The submitit settings of --launcher slurm (None for the other launchers); submitit's files in OUT/slurm."""
    if args.launcher != "slurm":
        return None
    from mixcollapse.experiments.slurm import SlurmOptions, check_options

    return check_options(
        SlurmOptions(
            folder=out / "slurm",
            cluster=args.cluster,
            partition=args.partition,
            time_min=args.time,
            gpus_per_node=args.gpus_per_job,
            nodes=args.nodes,
            cpus_per_task=args.cpus_per_task,
            max_jobs=args.max_jobs,
            timeouts=args.timeouts,
            signal_delay_s=args.signal_delay,
        )
    )


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}': expected a comma-separated list of seeds, e.g. 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"'{text}': expected distinct seeds >= 0, e.g. 0,1,2")
    return seeds


def _dataset_list(text: str) -> list[str]:
    from mixcollapse.experiments.paper import PAPER_DATASETS as DATASETS

    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in DATASETS]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"'{text}': expected a comma-separated list of {', '.join(DATASETS)}")
    return list(dict.fromkeys(names))


def _arch_list(text: str) -> list[str]:
    from mixcollapse.experiments.paper import ARCHS

    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    if not names or any(n not in ARCHS for n in names):
        raise argparse.ArgumentTypeError(f"'{text}': expected a comma-separated list of {', '.join(ARCHS)}")
    return list(dict.fromkeys(names))


def _add_sweep(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="train a grid of runs resumably and pick the best by test accuracy (Appendix B.1)",
        description="Train every point of a hyper-parameter grid (resumable: finished runs are never redone) and "
        "write DIR/sweep.json with each run's final test accuracy and the best.",
    )
    p.add_argument("--preset", required=True, help="preset name or YAML file, e.g. wrn-cifar10")
    p.add_argument("--out", required=True, help="sweep directory")
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=VALUES",
        help="a swept key, repeatable: train.lr=logspace(0.01,0.25,10), train.weight_decay="
        "linspace(0,0.05,3), train.weight_decay=[0,0.05]; default: the preset's grid of Appendix "
        "B.1 (WRN and ViT presets)",
    )
    p.add_argument(
        "--scale",
        default="full",
        choices=("tiny", "cpu", "full"),
        help="tiny shrinks the preset as `reproduce --scale tiny` does (and its default grid to 2 runs); cpu "
        "trains the preset's CPU recipe (<preset>-cpu.yaml) on the real data and needs --grid (the CPU "
        "recipes have no default grid)",
    )
    p.add_argument("--data-root", default=None, help="where the datasets live (sets data.root)")
    p.add_argument(
        "--seeds",
        type=_seed_list,
        default=None,
        metavar="LIST",
        help="train every grid point with each of these seeds, e.g. 0,1,2; the best point has the highest "
        "mean test accuracy, and sweep.json shows mean ± std per point",
    )
    _add_launch_options(p)
    p.add_argument("overrides", nargs="*", help="config overrides applied to every run, e.g. train.epochs=100")
    p.set_defaults(func=run_sweep_command)


def run_sweep_command(args) -> int:
    from mixcollapse.experiments.launch import Launch
    from mixcollapse.experiments.sweep import format_sweep
    from mixcollapse.experiments.tune import sweep_preset

    launch = Launch(args.launcher, args.gpus, args.nproc_per_node, slurm=_slurm_options(args, Path(args.out)))
    result = sweep_preset(
        args.preset,
        args.out,
        args.grid,
        scale=args.scale,
        data_root=args.data_root,
        overrides=args.overrides,
        prune=args.prune_checkpoints,
        seeds=args.seeds,
        method=args.sweep,
        launch=launch,
    )
    print(format_sweep(result))
    best = result["best"]
    if best is None:
        raise ValueError(f"no run of the sweep in {args.out} finished; see {Path(args.out) / 'logs'} and rerun")
    print(
        f"best: {best['name']} ({'mean ' if result.get('points') else ''}test accuracy "
        f"{100 * best['test_accuracy']:.2f}%): "
        f"{Path(args.out) / best['run_dir']}; {Path(args.out) / 'sweep.json'}"
    )
    if result["complete"]:
        return 0
    unfinished = [r["name"] for r in result["runs"] if r["state"] != "finished"]
    print(
        f"mixcollapse sweep: {len(unfinished)} of {len(result['runs'])} runs did not finish "
        f"({', '.join(unfinished)}); see {Path(args.out) / 'logs'} and rerun the same command to retry them",
        file=sys.stderr,
    )
    return 1


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="gather a reproduce directory's figures and tables into one HTML page")
    p.add_argument("dir", help="output directory of `mixcollapse reproduce`")
    p.add_argument("--out", default=None, help="HTML file to write (default: DIR/report.html)")
    p.add_argument("--overwrite", action="store_true", help="replace an --out file that is not an earlier report")
    p.set_defaults(func=run_report)


def run_report(args) -> int:
    from mixcollapse.experiments.report import build_report

    path = build_report(args.dir, args.out, overwrite=args.overwrite)
    print(json.dumps({"report": str(path)}))
    return 0
