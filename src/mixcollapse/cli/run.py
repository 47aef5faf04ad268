"""Subcommands ``train``, ``analyze``, ``compare`` and ``demo``: argument parsing only."""

from __future__ import annotations

import json
import logging
from pathlib import Path

OVERRIDES_HELP = "config overrides as section.key=value, e.g. train.lr=0.05 mixing.alpha=0.4"
PDF_HELP = "write every figure as PDF too (vector, for papers; slower), beside the PNG"


def add_parsers(sub) -> None:
    """Register ``train``, ``analyze``, ``compare`` and ``demo`` on ``sub`` (argparse's add_subparsers())."""
    _add_train(sub)
    _add_analyze(sub)
    _add_compare(sub)
    _add_demo(sub)


def _add_train(sub) -> None:
    from mixcollapse.config import preset_names

    p = sub.add_parser("train", help="train a network with (or without) mixup into a run directory")
    p.add_argument(
        "--preset",
        default=None,
        help=f"preset name ({', '.join(preset_names())}) or YAML file (default: digits; with --resume, "
        "the run's own config.yaml)",
    )
    p.add_argument("--out", default=None, help="run directory (default: runs/<config name>)")
    p.add_argument("--data-root", default=None, help="where the datasets live (sets data.root)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last checkpoint, with its saved config (overrides are "
        "checked against it)",
    )
    p.add_argument(
        "--until-epoch",
        type=int,
        default=None,
        metavar="N",
        help="stop after epoch N of the run's schedule with its checkpoint written (an epoch that evaluates "
        "the test set); --resume continues the run later, to the same end (successive-halving sweeps use this)",
    )
    p.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    p.set_defaults(func=run_train)


def _add_analyze(sub) -> None:
    p = sub.add_parser("analyze", help="mixup-pair features, projection and figures of a trained run")
    p.add_argument("run", help="run directory written by `mixcollapse train`")
    p.add_argument("--checkpoint", default=None, help="checkpoint file (default: the run's last)")
    p.add_argument("--out", default=None, help="output directory (default: RUN/analysis/<checkpoint name>)")
    p.add_argument("--data-root", default=None, help="where the datasets live (default: as trained)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing analysis output")
    p.add_argument("--json", action="store_true", help="print the headline numbers as one JSON object")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads on a CPU (default: the run's train.threads when set, else torch's default)",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        help="analysis overrides, e.g. analysis.classes=[0,3,5] analysis.bn_mode=eval analysis.nc_samples=5000",
    )
    p.add_argument("--pdf", action="store_true", help=PDF_HELP)
    p.set_defaults(func=run_analyze)


def _add_compare(sub) -> None:
    p = sub.add_parser("compare", help="runs side by side: configurations, measures, training curves, CSV files")
    p.add_argument("runs", nargs="+", help="run directories (one is enough for its curves and CSV files)")
    p.add_argument("--out", default="compare_out", help="output directory (default: compare_out)")
    p.add_argument("--checkpoint", default=None, help="checkpoint name in every run (default: last.pt)")
    p.add_argument("--data-root", default=None, help="where the datasets live, for runs not yet analysed")
    p.add_argument("--pdf", action="store_true", help=PDF_HELP)
    p.set_defaults(func=run_compare)


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="mixup vs baseline on the embedded digits data: figures, accuracy, ECE")
    p.add_argument("--out", default="demo_out", help="output directory (default: demo_out)")
    p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier demo in --out")
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="trainings side by side, one process each (default: one per CPU core, at most 2)",
    )
    p.add_argument("overrides", nargs="*", help=OVERRIDES_HELP + " (applied to both runs)")
    p.add_argument("--pdf", action="store_true", help=PDF_HELP)
    p.set_defaults(func=run_demo_command)


def run_train(args) -> int:
    from mixcollapse.config import load_config  # validated before torch is imported
    from mixcollapse.training.rundir import CONFIG_FILE

    overrides = list(args.overrides) + ([f"data.root={args.data_root}"] if args.data_root else [])
    preset = args.preset
    if preset is None and args.resume and args.out and (Path(args.out) / CONFIG_FILE).is_file():
        preset = str(Path(args.out) / CONFIG_FILE)  # the run's own config: --resume alone continues it
    cfg = load_config(preset or "digits", overrides)
    args.run_dir = Path(args.out) if args.out else Path("runs") / cfg.name  # for the interrupt hint
    from mixcollapse.training.loop import train

    train(cfg, args.run_dir, resume=args.resume, until_epoch=args.until_epoch)
    return 0


def run_analyze(args) -> int:
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads {args.threads} must be >= 1")
    from mixcollapse.analysis.measure import headline_table
    from mixcollapse.analysis.run import analyze_run

    if args.json:  # standard output holds the JSON object alone
        logging.getLogger("mixcollapse").setLevel(logging.WARNING)
    result = analyze_run(
        args.run,
        checkpoint=args.checkpoint,
        out_dir=args.out,
        data_root=args.data_root,
        overrides=args.overrides,
        overwrite=args.overwrite,
        threads=args.threads,
    )
    if args.json:
        print(json.dumps({k: v for k, v in result.summary.items() if not isinstance(v, (list, dict))}, indent=2))
    else:
        print(headline_table(result.summary))
    return 0


def run_demo_command(args) -> int:
    from mixcollapse.config import load_config

    load_config("digits", args.overrides)  # bad overrides are refused before torch is imported
    from mixcollapse.experiments.demo import describe_summary
    from mixcollapse.experiments.demo import run_demo as demo

    print(
        describe_summary(demo(args.out, overrides=args.overrides, overwrite=args.overwrite, jobs=args.jobs), args.out)
    )
    return 0


def run_compare(args) -> int:
    from mixcollapse.experiments.compare import compare_runs

    result = compare_runs(args.runs, args.out, checkpoint=args.checkpoint, data_root=args.data_root)
    print(result["table"])
    print("\n".join(f"wrote {f}" for f in result["files"]))
    return 0
