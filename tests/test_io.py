"""Atomic writes: whole files or nothing, the umask's permissions, and no overwrite unless asked."""

from __future__ import annotations

import os
import stat

import pytest

from mmer.errors import MMERError
from mmer.io import atomic_path, make_output_dir, refuse_foreign_outputs, write_atomic, write_text


def test_a_write_gives_the_file_the_umask_permissions_and_leaves_no_temporary(tmp_path):
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644  # not mkstemp's 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("mine\n")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert path.read_text() == "mine\n" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_without_overwrite_a_file_that_appears_during_the_write_is_kept(tmp_path):
    path = tmp_path / "a.txt"
    with pytest.raises(MMERError, match="already exists; refusing to overwrite it"), atomic_path(path, overwrite=False) as tmp:
        tmp.write_text("ours")
        path.write_text("theirs")  # another process got there first
    assert path.read_text() == "theirs" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    with pytest.raises(MMERError, match="already exists"):
        write_text(path, "again", overwrite=False)


def test_a_directory_is_not_a_file_name(tmp_path):
    with pytest.raises(MMERError, match="is a directory; give a file name"):
        write_text(tmp_path, "x")


def test_contents_reach_the_disk_before_the_file_takes_its_name(tmp_path, monkeypatch):
    """A crash after the rename must not leave an empty file under the final name: the temporary is fsynced first."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.path.getsize(f"/proc/self/fd/{fd}"))), real_fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", None)), real_replace(a, b)))
    write_text(tmp_path / "a.txt", "hello\n")
    assert events == [("fsync", 6), ("replace", None)]
    assert (tmp_path / "a.txt").read_text() == "hello\n"


def test_without_overwrite_an_existing_file_is_refused_before_anything_is_written(tmp_path):
    """The check comes first: the (possibly slow) writer never runs and no temporary file appears."""
    path = tmp_path / "a.txt"
    path.write_text("mine\n")
    calls = []
    with pytest.raises(MMERError, match=rf"^{path} already exists; refusing to overwrite it$"):
        write_atomic(path, calls.append, overwrite=False)
    assert calls == [] and path.read_text() == "mine\n" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    write_atomic(path, lambda fh: fh.write("new\n"))  # overwrite=True is the default
    assert path.read_text() == "new\n"


def test_make_output_dir_names_the_file_in_the_way(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (blocker, blocker / "sub" / "deeper"):
        with pytest.raises(MMERError, match=rf"^output folder {out}: {blocker} exists and is not a directory$"):
            make_output_dir(out)
    assert make_output_dir(tmp_path / "a" / "b").is_dir()


def test_refuse_foreign_outputs_lists_the_clashing_names(tmp_path):
    (tmp_path / "b.csv").write_text("x")
    (tmp_path / "a.md").write_text("x")
    with pytest.raises(MMERError, match=rf"^{tmp_path}: a.md, b.csv exist\(s\) and are not an earlier report; choose another --out$"):
        refuse_foreign_outputs(tmp_path, ["b.csv", "c.png", "a.md"], False, "report")
    refuse_foreign_outputs(tmp_path, ["b.csv", "a.md"], True, "report")  # its own earlier output may be replaced
    refuse_foreign_outputs(tmp_path, ["c.png"], False, "report")
