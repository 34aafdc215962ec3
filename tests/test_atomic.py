"""Atomic writes leave the old file or the new one, and `unreadable_files` finds what is not whole."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from guidedmarl.atomic import atomic_torch_save, atomic_write_json, atomic_write_text, unreadable_files


def test_complete_files_are_not_reported(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    atomic_write_text(tmp_path / "m.csv", "a,b\n1,2\n")
    atomic_write_text(tmp_path / "c.yaml", "k: 1\n")
    atomic_torch_save(tmp_path / "w.pt", {"t": torch.zeros(3)})
    (tmp_path / ".w.pt.x1.tmp").write_bytes(b"half")  # a stray temporary file: ignored, as readers do
    assert unreadable_files(tmp_path) == []


@pytest.mark.parametrize(
    ("name", "data"),
    [("a.json", b'{"x": '), ("m.csv", b"a,b\n1\n"), ("w.pt", b"PK\x03\x04 truncated"), ("p.png", b"\x89PN"),
     ("c.yaml", b"k: [1,\n")],
)
def test_truncated_files_are_reported_by_name(tmp_path: Path, name: str, data: bytes) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / name).write_bytes(data)
    bad = unreadable_files(tmp_path)
    assert len(bad) == 1 and bad[0].startswith(f"sub/{name}: ")


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    atomic_write_json(target, {"old": True})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"new": object()})  # not serialisable: nothing is written
    assert target.read_text() == '{\n "old": true\n}'
    assert list(tmp_path.iterdir()) == [target]  # and no temporary file is left behind
