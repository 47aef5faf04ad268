"""``mixcollapse``: the entry point and its one error path.

Every command parses its arguments and calls the functions a user imports. Bad input (an argument,
a config value, a file) ends in one line on stderr, ``mixcollapse COMMAND: error: ...``, and exit
code 2, never a traceback; Ctrl-C ends with exit code 130 (a training stopped by SIGTERM: 143) and a
hint that runs as printed. Library code logs
through ``logging`` (one logger per module, under ``mixcollapse``); the CLI sends INFO and above to
standard error as plain lines (progress), and prints each command's results to standard output.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys

from mixcollapse import __version__
from mixcollapse.cli import reproduce, run, theory
from mixcollapse.plots.formats import DEFAULT_FORMATS, figure_formats

# Bad input: ValueError (the toolkit's one-sentence errors: configs, data, checkpoints, run directories) and
# OSError (the system's: a full disk, a path through a file, no permission).
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError)


class OneLineParser(argparse.ArgumentParser):
    """argparse with the toolkit's error line: ``PROG: error: MESSAGE (see PROG --help)`` and exit code 2."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _StderrHandler(logging.StreamHandler):
    """Plain lines to whatever ``sys.stderr`` is at the time (pytest's capture, a redirected stream)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # not setStream: it would flush the previous stream, which may be closed
        super().emit(record)


def show_logs(level: int = logging.INFO) -> None:
    """Send the toolkit's log records (progress, hints, warnings) at ``level`` and above to standard error, one
    plain line each; standard output holds each command's results alone (tables, JSON, the files written)."""
    logger = logging.getLogger("mixcollapse")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)


# What to do about an OSError, by errno; the message says what the system refused and where.
_OS_HINTS = {
    errno.ENOSPC: "free some space and run the command again",
    errno.EDQUOT: "free some space and run the command again",
    errno.ENOTDIR: "a part of that path is a file, not a folder; choose another path",
    errno.EISDIR: "that path is a folder; give a file",
    errno.EEXIST: "something that is not a folder is in the way; choose another path",
    errno.EACCES: "choose a path you can write to",
    errno.EPERM: "choose a path you can write to",
    errno.EROFS: "that file system is read-only; choose another path",
    errno.ENOENT: "check the path",
}


def error_line(err: BaseException, command: str = "") -> str:
    """The one line a user error becomes: its own first line, or for an OSError from the system (one with an
    errno) what the system refused, on which path, and what to do."""
    if not (isinstance(err, OSError) and err.errno is not None):
        return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    where = f": {err.filename}" if err.filename else ""
    what = err.strerror or str(err).splitlines()[0] or type(err).__name__
    hint = _OS_HINTS.get(err.errno, "")
    if err.errno in (errno.ENOSPC, errno.EDQUOT) and command == "train":
        hint = "free some space and rerun with --resume (the last complete checkpoint is kept)"
    return f"{what}{where}" + (f"; {hint}" if hint else "")


def interrupt_hint(args: argparse.Namespace) -> str:
    """What to do after ``args.command`` was interrupted: a command that runs as printed where one applies."""
    if args.command == "train":
        run_dir = getattr(args, "run_dir", None) or args.out
        if run_dir is None:
            return "nothing was trained yet; run the command again"
        return f"continue with: mixcollapse train --out {run_dir} --resume"
    if args.command in ("reproduce", "demo"):
        return "run the same command again: finished runs are kept and interrupted ones resume from their checkpoints"
    return "nothing half-written was kept; run the command again"


def build_parser() -> argparse.ArgumentParser:
    """The ``mixcollapse`` argument parser with every subcommand."""
    parser = OneLineParser(
        prog="mixcollapse",
        description="See, measure and reproduce how mixup shapes last-layer features "
        "(Fisher, Meng, Papyan, ICLR 2024).",
    )
    parser.add_argument("--version", action="version", version=f"mixcollapse {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    run.add_parsers(sub)
    reproduce.add_parsers(sub)
    theory.add_parsers(sub)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv`` with config overrides (``section.key=value``) accepted anywhere on the line.

    argparse gives a ``nargs="*"`` positional only the words before the first option; the rest come
    back as unknown words, and those of the form ``key=value`` join the overrides in their order.
    """
    args, unknown = parser.parse_known_args(argv)
    late = [word for word in unknown if "=" in word and not word.startswith("-")]
    rest = [word for word in unknown if word not in late]
    if late and hasattr(args, "overrides"):
        args.overrides = [*args.overrides, *late]
    elif late:
        rest = unknown
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point: one clear line and exit code 2 for bad input, never a traceback for it."""
    args = parse_args(build_parser(), argv)
    show_logs()
    formats = ("png", "pdf") if getattr(args, "pdf", False) else DEFAULT_FORMATS
    try:
        with figure_formats(*formats):
            return int(args.func(args) or 0)
    except USER_ERRORS as err:
        print(f"mixcollapse {args.command}: error: {error_line(err, args.command)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # Ctrl-C, or a stop signal during training (training.interrupt)
        print(f"mixcollapse {args.command}: interrupted; {interrupt_hint(args)}", file=sys.stderr)
        return int(getattr(err, "exit_code", 130))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
