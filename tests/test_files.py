"""Every file the toolkit writes appears whole or not at all (mixcollapse.files)."""

from __future__ import annotations

import json
import os

import pytest

from mixcollapse import files


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "result.json"
    files.atomic_write_json(path, {"epoch": 1})

    def half_then_fail(f):
        f.write(b'{"epoch": ')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        files.atomic_write(path, half_then_fail)
    assert json.loads(path.read_text()) == {"epoch": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_a_written_file_has_the_permissions_of_any_new_file(tmp_path):
    previous = os.umask(0o022)
    try:
        path = files.atomic_write_text(tmp_path / "a" / "note.txt", "hello")
    finally:
        os.umask(previous)
    assert path.read_text() == "hello" and (path.stat().st_mode & 0o777) == 0o644


def test_a_folder_appears_whole_and_replaces_the_old_one(tmp_path):
    out = tmp_path / "features"
    with files.atomic_folder(out) as partial:
        (partial / "a.npy").write_bytes(b"old")
    with pytest.raises(RuntimeError), files.atomic_folder(out) as partial:
        (partial / "a.npy").write_bytes(b"new, half")
        raise RuntimeError("killed")
    assert (out / "a.npy").read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["features"]
    with files.atomic_folder(out) as partial:
        (partial / "b.npy").write_bytes(b"new")
    assert [p.name for p in out.iterdir()] == ["b.npy"]


def test_stale_temporary_files_are_removed_and_nothing_else(tmp_path):
    (tmp_path / ".last.pt.abc123.tmp").write_bytes(b"half")
    (tmp_path / "last.pt").write_bytes(b"whole")
    assert [p.name for p in files.remove_stale_temp_files(tmp_path)] == [".last.pt.abc123.tmp"]
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_an_output_folder_under_a_file_is_refused_before_any_work(tmp_path):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(NotADirectoryError, match="--out .*taken is a file"):
        files.check_output_folder(tmp_path / "taken")
    with pytest.raises(NotADirectoryError, match="lies under a file"):
        files.check_output_folder(tmp_path / "taken" / "sub", "--out")
    assert files.check_output_folder(tmp_path / "new" / "sub") == tmp_path / "new" / "sub"


def test_json_safe_makes_strict_json_scalars():
    import numpy as np

    assert files.json_safe(float("nan")) is None and files.json_safe(np.float32(0.5)) == 0.5
