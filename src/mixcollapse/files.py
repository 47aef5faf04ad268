"""Writing results so that nothing is ever half-written: every writer of the toolkit goes through here.

A file is written to a temporary name in its own folder (``.NAME.XXXX.tmp``), flushed to disk, then
renamed onto its name (``os.replace``, atomic on POSIX): a reader, a resumed run or a second process
sees the old file or the new one, never part of one, and a failed write leaves the old file and no
temporary file behind. Folders of many files are built under ``.NAME.partial`` and renamed the same
way. Output folders are checked before any work starts (:func:`check_output_folder`).

No torch, numpy or matplotlib here: the bottom layer of the package, usable by every other one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

TEMP_SUFFIX = ".tmp"


def check_output_folder(path: str | Path, option: str = "--out") -> Path:
    """Raise NotADirectoryError when ``path``, or a folder above it, is a file: checked before any work starts."""
    path = Path(path)
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                where = "is a file" if part == path else f"lies under a file, {part}"
                raise NotADirectoryError(f"{option} {path} {where}; give a folder")
            break
    return path


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """An open binary file beside ``path`` to write; flushed, fsynced and renamed onto ``path`` when the block
    ends without error, removed otherwise (the old file at ``path`` is then intact).

    The file gets the permissions of any new file (the umask's; mkstemp's would be 0600), and the
    rename itself is made durable.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        os.chmod(name, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(file)`` on an open temporary file beside ``path``, then rename it onto ``path``
    (:func:`atomic_file`)."""
    with atomic_file(path) as f:
        write(f)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(text.encode()))


def atomic_write_json(path: str | Path, obj, *, indent: int | None = 2, sort_keys: bool = False, default=None) -> Path:
    """Write ``obj`` as JSON (``json.dumps`` with these arguments) atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys, default=default))


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """A fresh folder ``.NAME.partial`` beside ``path`` to fill; renamed onto ``path`` (replacing an older one) when
    the block ends without error, removed otherwise. A partial folder left by a killed process is replaced."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    try:
        yield partial
        if path.exists():
            shutil.rmtree(path)
        os.replace(partial, path)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    _fsync_folder(path.parent)


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete the temporary files (``.NAME.XXXX.tmp``) that a killed process left in ``folder``.

    Call it only where no live write can be under way (a run directory when its run starts or resumes).
    """
    stale = [p for p in Path(folder).glob(f".*{TEMP_SUFFIX}") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def json_safe(value):
    """A scalar for strict JSON: NaN and infinities become None, numpy/torch scalars Python numbers."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on folders
        pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
