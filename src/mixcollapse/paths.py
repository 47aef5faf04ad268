"""Output paths checked before any work: every layer that writes (training, analysis, theory) uses this one check."""

from __future__ import annotations

from pathlib import Path


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
