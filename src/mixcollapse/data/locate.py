"""Where a dataset's files are: found in the usual places, or downloaded, or a one-line error saying how to get them.

Search order (:func:`search_roots`, first match wins): ``data.root``, then ``$MIXCOLLAPSE_DATA``, then the
system folders of the dataset's spec (Debian's FashionMNIST), each in torchvision's layout or, for a
``flat`` dataset, the files side by side (plain or .gz); files are read in place, nothing is written
next to them. Missing everywhere: the spec's download when ``data.download``, after a quick reachability
probe; any failure is a :class:`DataError` naming every folder searched and how to install the files.

Light on purpose (torchvision only inside a download): the sweep and the command line read from here.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

from mixcollapse.catalog import DATA_ENV, DatasetSpec, get_spec, resolve
from mixcollapse.config import DataConfig

FAKE_MARKER = "FAKE_DATA.txt"  # written by mixcollapse.data.fake into every root of synthetic files
DOWNLOAD_HINT = ", or run with data.download=true on a machine with network access"
PROBE_TIMEOUT_S = 3.0  # reachability probe before a download (DNS can hang when offline)
DOWNLOAD_TIMEOUT_S = 30.0  # per socket operation while a download runs


class DataError(ValueError):
    """Data is missing or unreadable; the one-line message names the files and how to provide them."""


def dataset_spec(cfg: DataConfig) -> DatasetSpec:
    """The catalog's spec of ``cfg.name``; DataError naming the known datasets otherwise."""
    try:
        return get_spec(cfg.name)
    except ValueError as err:
        raise DataError(str(err)) from None


def search_roots(spec: DatasetSpec, root: str) -> list[Path]:
    """The folders searched for ``spec``'s files, in order: ``root``, $MIXCOLLAPSE_DATA, the system folders."""
    roots = [Path(root)]
    if spec.files is not None and spec.files.searched:
        if os.environ.get(DATA_ENV):
            roots.append(Path(os.environ[DATA_ENV]))
        roots += [Path(d) for d in spec.files.system_dirs]
    return list(dict.fromkeys(roots))


def file_paths(spec: DatasetSpec, root: Path) -> list[Path] | None:
    """The paths of ``spec``'s files under ``root`` (its layout, or side by side when flat), else None."""
    files = spec.files
    layouts = [[root / f for f in files.paths]]
    if files.flat:
        layouts.append([root / os.path.basename(f) for f in files.paths])
    for paths in layouts:
        found = [_find(p) if files.flat else (p if p.exists() else None) for p in paths]
        if all(found):
            return found
    return None


def locate_files(cfg: DataConfig) -> Path | None:
    """The first folder of :func:`search_roots` that holds ``cfg``'s dataset (None when none does or it has no
    files: an embedded dataset)."""
    spec = dataset_spec(cfg)
    if spec.files is None:
        return None
    return next((r for r in search_roots(spec, cfg.root) if file_paths(spec, r) is not None), None)


def files_present(cfg: DataConfig) -> bool:
    """Whether ``cfg``'s dataset can be read without a download (an embedded one: always)."""
    return dataset_spec(cfg).files is None or locate_files(cfg) is not None


def ensure_files(cfg: DataConfig) -> Path | None:
    """The folder holding ``cfg``'s files (None for an embedded dataset), downloading them into cfg.root when
    ``cfg.download`` and the spec can; else DataError."""
    spec = dataset_spec(cfg)
    if spec.files is None:
        return None
    found = locate_files(cfg)
    if found is not None:
        return found
    if spec.download is None or spec.files.url is None:
        raise DataError(missing_message(spec, cfg, "not found", download_hint=False))
    if not cfg.download:
        raise DataError(missing_message(spec, cfg, "data.download is false"))
    _download(spec, cfg)
    if file_paths(spec, Path(cfg.root)) is None:
        raise DataError(missing_message(spec, cfg, "download finished but files are still missing"))
    return Path(cfg.root)


def missing_message(spec: DatasetSpec, cfg: DataConfig, reason: str, download_hint: bool = True) -> str:
    """One line: ``spec``'s data was not found (``reason``), every folder searched, and how to get the files."""
    files = spec.files
    if not files.searched:
        absent = next((Path(cfg.root) / f for f in files.paths if not (Path(cfg.root) / f).exists()), Path(cfg.root))
        return f"data.name={spec.name} reads {files.expected}; {absent} does not exist ({files.how})"
    searched = []
    for r in search_roots(spec, cfg.root):
        searched.append(f"{r.as_posix()}/{os.path.dirname(files.paths[0])}".rstrip("/"))
        if files.flat:
            searched.append(r.as_posix())
    tail = DOWNLOAD_HINT if download_hint and not cfg.download else ""
    return (
        f"{spec.title} data not found ({reason}): searched {', '.join(searched)} for {files.expected}; "
        f"{files.how.format(root=cfg.root)}{tail}"
    )


def one_line(err: BaseException, limit: int = 200) -> str:
    """An exception's message on one line, at most ``limit`` characters."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _find(path: Path) -> Path | None:
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _download(spec: DatasetSpec, cfg: DataConfig) -> None:
    files, root = spec.files, cfg.root
    archive_here = False
    if files.archive is not None:  # a complete official archive is extracted without the network
        from torchvision.datasets.utils import check_integrity

        archive_here = check_integrity(os.path.join(root, files.archive), files.archive_md5)
    if not archive_here and not _reachable(files.url):
        raise DataError(missing_message(spec, cfg, f"no network: cannot reach {urlparse(files.url).hostname}"))
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # fail instead of hanging on a stalled connection
    try:
        resolve(spec.download)(root)
    except Exception as err:  # URLError, socket errors, HTTP errors, md5 RuntimeError, bad archives
        raise DataError(missing_message(spec, cfg, f"download failed: {one_line(err)}")) from None
    finally:
        socket.setdefaulttimeout(previous)


def _reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``url``'s host opens within ``timeout`` (DNS included, via a thread)."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    ok: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((parsed.hostname, port), timeout=timeout):
                ok.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    return bool(ok)
