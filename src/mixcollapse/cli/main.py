"""Command-line interface: parses arguments and calls the same functions a user imports."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, FileExistsError, PermissionError)


def _overrides_help() -> str:
    return "config overrides as section.key=value, e.g. train.lr=0.05 mixup.alpha=0.4"


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a network with (or without) mixup into a run directory")
    p.add_argument("--preset", default="digits", help="preset name or YAML file (default: digits)")
    p.add_argument("--out", default=None, help="run directory (default: runs/<config name>)")
    p.add_argument("--data-root", default=None, help="where the datasets live (sets data.root)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("overrides", nargs="*", help=_overrides_help())
    p.set_defaults(func=_run_train)


def _run_train(args) -> int:
    from mixcollapse.config import load_config
    from mixcollapse.training.loop import train

    overrides = list(args.overrides) + ([f"data.root={args.data_root}"] if args.data_root else [])
    cfg = load_config(args.preset, overrides)
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    train(cfg, out, resume=args.resume)
    return 0


def _add_analyze(sub) -> None:
    p = sub.add_parser("analyze", help="mixup-pair features, projection and figures of a trained run")
    p.add_argument("run", help="run directory written by `mixcollapse train`")
    p.add_argument("--checkpoint", default=None, help="checkpoint file (default: the run's last)")
    p.add_argument("--out", default=None, help="output directory (default: RUN/analysis/<checkpoint name>)")
    p.add_argument("--data-root", default=None, help="where the datasets live (default: as trained)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing analysis output")
    p.add_argument("overrides", nargs="*",
                   help="analysis overrides, e.g. analysis.classes=[0,3,5] analysis.bn_mode=eval")
    p.set_defaults(func=_run_analyze)


def _run_analyze(args) -> int:
    import json

    from mixcollapse.analysis.measure import analyze_run

    result = analyze_run(args.run, checkpoint=args.checkpoint, out_dir=args.out, data_root=args.data_root,
                         overrides=args.overrides, overwrite=args.overwrite)
    headline = {k: v for k, v in result.summary.items() if not isinstance(v, (list, dict))}
    print(json.dumps(headline, indent=2))
    return 0


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="mixup vs baseline on the embedded digits data: figures, accuracy, ECE")
    p.add_argument("--out", default="demo_out", help="output directory (default: demo_out)")
    p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier demo in --out")
    p.add_argument("overrides", nargs="*", help=_overrides_help() + " (applied to both runs)")
    p.set_defaults(func=_run_demo)


def _run_demo(args) -> int:
    from mixcollapse.experiments.demo import run_demo

    run_demo(args.out, overrides=args.overrides, overwrite=args.overwrite)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``mixcollapse`` argument parser with every subcommand."""
    from mixcollapse import __version__

    parser = argparse.ArgumentParser(
        prog="mixcollapse",
        description="See, measure and reproduce how mixup shapes last-layer features "
        "(Fisher, Meng, Papyan, ICLR 2024).",
    )
    parser.add_argument("--version", action="version", version=f"mixcollapse {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_train(sub)
    _add_analyze(sub)
    _add_demo(sub)
    from mixcollapse.cli import reproduce as cli_reproduce

    cli_reproduce.add_parsers(sub)
    try:
        from mixcollapse.cli import theory as cli_theory
    except ImportError:  # pragma: no cover - the theory package is being completed
        pass
    else:
        cli_theory.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: one clear line and exit code 2 for bad input, never a traceback for it."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"mixcollapse {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mixcollapse {args.command}: interrupted; rerun with --resume to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
