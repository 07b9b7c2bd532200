"""What a hostile or damaged checkpoint looks like, for the checkpoint, CLI and evaluate tests."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


class Payload:
    """Unpickling this creates the directory ``marker``: the stand-in for a pickle whose
    ``__reduce__`` calls ``os.system``. A test that finds no ``marker`` proved nothing ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def plant_pickle(path: Path, marker: Path) -> None:
    """Replace (or add) ``path`` with a ``torch.save`` file that runs the payload when loaded
    with ``weights_only=False``."""
    import torch

    torch.save({"state": Payload(marker)}, path)


def resign(checkpoint: Path) -> None:
    """Rewrite ``metadata.json`` so that it vouches for the files as they are now (sizes and
    sha256, or sizes alone in a checkpoint of format 1), the way someone handing out a
    doctored checkpoint would."""
    meta_file = checkpoint / "metadata.json"
    meta = json.loads(meta_file.read_text())
    files = [p for p in sorted(checkpoint.rglob("*")) if p.is_file() and p.name != "metadata.json"]
    if "format" in meta:
        meta["files"] = {
            p.relative_to(checkpoint).as_posix(): {
                "size": p.stat().st_size,
                "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
            }
            for p in files
        }
    else:
        meta["files"] = {p.relative_to(checkpoint).as_posix(): p.stat().st_size for p in files}
    meta_file.write_text(json.dumps(meta))


def make_format_1(checkpoint: Path) -> None:
    """Turn ``metadata.json`` into what srl wrote before checksums: ``files`` maps each path
    to its size and there is no ``format``."""
    meta_file = checkpoint / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta.pop("format")
    meta["files"] = {
        p.relative_to(checkpoint).as_posix(): p.stat().st_size
        for p in sorted(checkpoint.rglob("*"))
        if p.is_file() and p.name != "metadata.json"
    }
    meta_file.write_text(json.dumps(meta))


def flip_bytes(path: Path, n: int = 64) -> None:
    """Overwrite ``n`` bytes in the middle of ``path`` with different ones; the size stays."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + n] = bytes(b ^ 0xFF for b in data[mid : mid + n])
    path.write_bytes(bytes(data))
