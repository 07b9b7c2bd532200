"""Atomic checkpoint directories: a killed run always leaves its last complete checkpoint.

The trainer decides what goes into a checkpoint (adapters, optimizers, RNG, curriculum,
counters) through a ``write_fn(directory)``; :class:`CheckpointManager` makes the result
atomic, ordered and rotated:

* ``save`` writes into ``<dir>/.tmp-<id>-<pid>``, writes ``metadata.json`` LAST (with the
  size of every file written), fsyncs files and directories, then renames the directory to
  ``<dir>/<id>`` in one ``os.replace``. A checkpoint is *complete* when its ``metadata.json``
  parses and every file it lists exists with the listed size; nothing else is ever loaded.
* Order is by the ``episode`` in the metadata (then save time), never by mtime; newest last.
* ``max_checkpoints`` newest complete checkpoints are kept; ``-1`` keeps all of them.
* ``LATEST`` (a one-line text file, replaced atomically) names the last saved id for humans
  and shell tools; :meth:`CheckpointManager.resolve` does not trust it and scans instead.

Metadata is strict JSON (:func:`to_jsonable`): enums become their values, numpy scalars and
arrays, tensors, paths, dataclasses and sets become plain JSON, non-finite floats ``null``.
"""

from __future__ import annotations

import builtins
import dataclasses
import datetime as _dt
import enum
import json
import math
import os
import random
import re
import shutil
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "LATEST_FILE",
    "METADATA_FILE",
    "RNG_FILE",
    "CheckpointJSONEncoder",
    "CheckpointManager",
    "CheckpointNotFoundError",
    "capture_rng_state",
    "checkpoint_id_for",
    "list_available_checkpoints",
    "load_checkpoint_metadata",
    "load_rng_state",
    "restore_rng_state",
    "save_rng_state",
    "to_jsonable",
]

METADATA_FILE = "metadata.json"
LATEST_FILE = "LATEST"
RNG_FILE = "rng.pt"
# Prefixes of work directories (never checkpoints): in-progress saves, a checkpoint being
# replaced, one being deleted by rotation. Each ends in "-<pid>" of the process that made it.
_WORK_PREFIXES = (".tmp-", ".old-", ".del-")
_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


class CheckpointNotFoundError(FileNotFoundError):
    """The requested checkpoint does not exist or is incomplete; the message lists the ids."""


def checkpoint_id_for(episode: int) -> str:
    """The id of the checkpoint taken after training episode ``episode``: ``checkpoint_000042``."""
    if isinstance(episode, bool) or not isinstance(episode, int | np.integer) or episode < 0:
        raise ValueError(f"episode must be an integer >= 0, got {episode!r}")
    return f"checkpoint_{int(episode):06d}"


# ---------------------------------------------------------------------- JSON-safe metadata
def to_jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values (dict/list/str/int/float/bool/None), recursively.

    Enums become their values (Core SRL failed here), numpy scalars/arrays and tensors become
    numbers/lists, paths strings, dataclasses dicts, sets/tuples lists, datetimes ISO strings,
    non-finite floats ``None`` (strict JSON). Dict keys become strings. Anything else raises
    ``TypeError`` naming its type.
    """
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if type(obj).__module__.startswith("torch") and type(obj).__name__ in ("Tensor", "Parameter"):
        return to_jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {_json_key(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, set | frozenset):
        items = [to_jsonable(v) for v in obj]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(obj, _dt.datetime | _dt.date):
        return obj.isoformat()
    raise TypeError(
        f"checkpoint metadata value of type {type(obj).__name__} is not JSON-serialisable: "
        f"{obj!r:.80}; convert it to plain values first"
    )


def _json_key(key: Any) -> str:
    key = to_jsonable(key)
    return key if isinstance(key, str) else json.dumps(key)


class CheckpointJSONEncoder(json.JSONEncoder):
    """A ``json`` encoder that writes anything :func:`to_jsonable` accepts, as strict JSON."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["allow_nan"] = False
        super().__init__(**kwargs)

    def default(self, o: Any) -> Any:
        return to_jsonable(o)

    def iterencode(self, o: Any, _one_shot: bool = False):  # type: ignore[override]
        # Converting up front also handles enum/non-str dict keys and NaN, which the
        # standard encoder never passes to ``default``.
        return super().iterencode(to_jsonable(o), _one_shot)


# ---------------------------------------------------------------------- filesystem helpers
def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # platforms without directory fds (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            _fsync_file(Path(dirpath) / name)
        _fsync_dir(Path(dirpath))


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _work_dir_owner(name: str) -> tuple[str, str, int] | None:
    """``(prefix, checkpoint_id, pid)`` of a work directory name, else None."""
    for prefix in _WORK_PREFIXES:
        if name.startswith(prefix):
            stem, _, pid = name[len(prefix) :].rpartition("-")
            if stem and pid.isdigit():
                return prefix, stem, int(pid)
    return None


# ---------------------------------------------------------------------- the manager
class CheckpointManager:
    """Atomic, ordered, rotated checkpoint directories under ``checkpoint_dir``.

    ``max_checkpoints``: how many of the newest complete checkpoints to keep (>= 1), or -1 to
    keep every checkpoint. See the module docstring for the on-disk protocol.
    """

    def __init__(self, checkpoint_dir: str | os.PathLike[str], max_checkpoints: int = 10) -> None:
        if isinstance(max_checkpoints, bool) or not isinstance(max_checkpoints, int):
            raise ValueError(f"max_checkpoints must be an int >= 1 or -1, got {max_checkpoints!r}")
        if max_checkpoints != -1 and max_checkpoints < 1:
            raise ValueError(
                f"max_checkpoints={max_checkpoints} is not allowed: use an int >= 1 (how many "
                "newest checkpoints to keep) or -1 (keep all)"
            )
        self.checkpoint_dir = Path(checkpoint_dir)
        self.max_checkpoints = max_checkpoints

    # ------------------------------------------------------------------ save
    def save(
        self,
        checkpoint_id: str,
        write_fn: Callable[[Path], Mapping[str, Any] | None],
        metadata: Mapping[str, Any],
    ) -> Path:
        """Write a checkpoint atomically and return its directory.

        ``write_fn(tmp_dir)`` writes the payload files into ``tmp_dir`` and may return a dict
        of extra metadata (e.g. checksums of what it wrote). ``metadata`` must hold an integer
        ``episode`` (the ordering key); it is checked for JSON-safety before anything is
        written, and stored as ``metadata.json`` with ``checkpoint_id``, ``saved_at`` and
        ``files`` (relative path -> size in bytes). An existing checkpoint with the same id is
        replaced. Then the oldest checkpoints beyond ``max_checkpoints`` are deleted.
        """
        _check_id(checkpoint_id)
        episode = metadata.get("episode")
        if isinstance(episode, bool) or not isinstance(episode, int | np.integer):
            raise ValueError(
                f"checkpoint metadata needs an integer 'episode' (the ordering key), got "
                f"{episode!r}"
            )
        json.dumps(to_jsonable(dict(metadata)), allow_nan=False)  # fail before writing MBs

        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.cleanup_temp()
        pid = os.getpid()
        tmp = self.checkpoint_dir / f".tmp-{checkpoint_id}-{pid}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        try:
            extra = write_fn(tmp)
            if extra is not None and not isinstance(extra, Mapping):
                raise TypeError(
                    f"write_fn returned {type(extra).__name__}: return None or a dict of extra "
                    "metadata"
                )
            if (tmp / METADATA_FILE).exists():
                raise ValueError(f"write_fn must not write {METADATA_FILE}: the manager owns it")
            files = {
                p.relative_to(tmp).as_posix(): p.stat().st_size
                for p in sorted(tmp.rglob("*"))
                if p.is_file()
            }
            meta = {
                **to_jsonable({**metadata, **(extra or {})}),
                "checkpoint_id": checkpoint_id,
                "saved_at": time.time(),
                "files": files,
            }
            if isinstance(meta["episode"], bool) or not isinstance(meta["episode"], int):
                raise ValueError(
                    f"write_fn's metadata set a non-integer episode {meta['episode']!r}"
                )
            _fsync_tree(tmp)  # payload durable before the metadata that vouches for it
            with open(tmp / METADATA_FILE, "w", encoding="utf-8") as f:
                json.dump(meta, f, indent=2, allow_nan=False)
                f.flush()
                os.fsync(f.fileno())
            _fsync_dir(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

        final = self.checkpoint_dir / checkpoint_id
        old = None
        if final.exists():
            # A directory cannot be renamed over a non-empty one: move the old one aside
            # first (cleanup_temp puts it back if we die before the next rename).
            old = self.checkpoint_dir / f".old-{checkpoint_id}-{pid}"
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync_dir(self.checkpoint_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        _write_text_atomic(self.checkpoint_dir / LATEST_FILE, checkpoint_id + "\n")
        self._rotate(keep=checkpoint_id)
        return final

    def _rotate(self, keep: str) -> None:
        if self.max_checkpoints == -1:
            return
        ids = self.list()
        excess = len(ids) - self.max_checkpoints
        for cid in ids:
            if excess <= 0:
                break
            if cid == keep:
                continue
            self.delete(cid)
            excess -= 1

    def delete(self, checkpoint_id: str) -> None:
        """Remove one checkpoint (renamed aside first, so a crash never leaves half of it)."""
        _check_id(checkpoint_id)
        path = self.checkpoint_dir / checkpoint_id
        if not path.exists():
            raise CheckpointNotFoundError(self._missing_message(checkpoint_id))
        trash = self.checkpoint_dir / f".del-{checkpoint_id}-{os.getpid()}"
        if trash.exists():
            shutil.rmtree(trash)
        os.replace(path, trash)
        shutil.rmtree(trash, ignore_errors=True)

    # ------------------------------------------------------------------ read
    def _read_complete(self, path: Path) -> dict[str, Any] | None:
        """The metadata of a complete checkpoint directory, else None."""
        try:
            meta = json.loads((path / METADATA_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict):
            return None
        for rel, size in meta["files"].items():
            try:
                if (path / rel).stat().st_size != size:
                    return None
            except OSError:
                return None
        return meta

    def _scan(self) -> builtins.list[tuple[tuple, str, dict[str, Any]]]:
        if not self.checkpoint_dir.is_dir():
            return []
        found = []
        for entry in self.checkpoint_dir.iterdir():
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            meta = self._read_complete(entry)
            if meta is None:
                continue
            episode = meta.get("episode")
            if not isinstance(episode, int):
                continue
            found.append(
                ((episode, float(meta.get("saved_at") or 0.0), entry.name), entry.name, meta)
            )
        found.sort(key=lambda t: t[0])
        return found

    def list(self) -> builtins.list[str]:
        """Ids of the complete checkpoints, oldest first, newest last (by metadata episode)."""
        return [cid for _key, cid, _meta in self._scan()]

    def latest_id(self) -> str | None:
        """Id of the newest complete checkpoint, or None when there is none."""
        ids = self.list()
        return ids[-1] if ids else None

    def read_latest_pointer(self) -> str | None:
        """What ``LATEST`` says (a hint only: see :meth:`resolve`), or None."""
        try:
            text = (self.checkpoint_dir / LATEST_FILE).read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return text or None

    def resolve(self, checkpoint_id: str = "latest") -> Path:
        """Directory of a complete checkpoint; ``"latest"`` is the newest complete one.

        Temp directories, checkpoints without a valid ``metadata.json`` and ones with missing
        or truncated files are never returned. Raises :class:`CheckpointNotFoundError` with
        the available ids.
        """
        if checkpoint_id.lower() == "latest":
            latest = self.latest_id()
            if latest is None:
                raise CheckpointNotFoundError(
                    f"no complete checkpoint in {str(self.checkpoint_dir)!r}"
                )
            return self.checkpoint_dir / latest
        _check_id(checkpoint_id)
        path = self.checkpoint_dir / checkpoint_id
        if self._read_complete(path) is None:
            raise CheckpointNotFoundError(self._missing_message(checkpoint_id))
        return path

    def load_metadata(self, checkpoint_id: str = "latest") -> dict[str, Any]:
        """The ``metadata.json`` of a complete checkpoint (``"latest"`` allowed)."""
        path = self.resolve(checkpoint_id)
        meta = self._read_complete(path)
        if meta is None:  # deleted between resolve and read
            raise CheckpointNotFoundError(self._missing_message(checkpoint_id))
        return meta

    def _missing_message(self, checkpoint_id: str) -> str:
        path = self.checkpoint_dir / checkpoint_id
        state = (
            "is incomplete (no valid metadata.json or missing files)"
            if path.exists()
            else "not found"
        )
        ids = self.list()
        avail = ", ".join(ids) if ids else "none"
        return (
            f"checkpoint {checkpoint_id!r} {state} in {str(self.checkpoint_dir)!r}; "
            f"available: {avail} (or 'latest')"
        )

    # ------------------------------------------------------------------ housekeeping
    def cleanup_temp(self) -> builtins.list[Path]:
        """Remove work directories left by dead processes; return what was removed.

        ``.tmp-*`` (unfinished saves) and ``.del-*`` (unfinished deletes) are removed;
        a ``.old-<id>-*`` (a checkpoint being replaced) is moved back to ``<id>`` when the
        replacement never landed, else removed. Directories of live processes (this one
        included) are left alone.
        """
        if not self.checkpoint_dir.is_dir():
            return []
        removed = []
        for entry in sorted(self.checkpoint_dir.iterdir()):
            name = entry.name
            if name.startswith(f".{LATEST_FILE}.tmp-"):
                pid = name.rpartition("-")[2]
                if pid.isdigit() and not _pid_alive(int(pid)):
                    entry.unlink(missing_ok=True)
                    removed.append(entry)
                continue
            owner = _work_dir_owner(name)
            if owner is None:
                continue
            prefix, cid, pid = owner
            if pid == os.getpid() or _pid_alive(pid):
                continue
            target = self.checkpoint_dir / cid
            if prefix == ".old-" and not target.exists() and self._read_complete(entry) is not None:
                os.replace(entry, target)
                continue
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
        return removed

    def __repr__(self) -> str:
        return (
            f"CheckpointManager({str(self.checkpoint_dir)!r}, "
            f"max_checkpoints={self.max_checkpoints})"
        )


def _check_id(checkpoint_id: str) -> None:
    if not isinstance(checkpoint_id, str) or not _ID_RE.match(checkpoint_id):
        raise ValueError(
            f"invalid checkpoint id {checkpoint_id!r}: use letters, digits, '_', '-', '.' "
            "(not starting with '.' or '-'), e.g. checkpoint_id_for(episode)"
        )
    if checkpoint_id.lower() in ("latest", LATEST_FILE.lower()):
        raise ValueError(f"checkpoint id {checkpoint_id!r} is reserved")


# ---------------------------------------------------------------------- Core SRL helpers
def list_available_checkpoints(checkpoint_dir: str | os.PathLike[str]) -> list[str]:
    """Ids of the complete checkpoints in ``checkpoint_dir``, newest last ([] if none)."""
    return CheckpointManager(checkpoint_dir, max_checkpoints=-1).list()


def load_checkpoint_metadata(
    checkpoint_id: str, checkpoint_dir: str | os.PathLike[str]
) -> dict[str, Any]:
    """``metadata.json`` of checkpoint ``checkpoint_id`` (or ``"latest"``) in ``checkpoint_dir``."""
    return CheckpointManager(checkpoint_dir, max_checkpoints=-1).load_metadata(checkpoint_id)


# ---------------------------------------------------------------------- RNG state
def capture_rng_state() -> dict[str, Any]:
    """State of every global generator: python ``random``, numpy, torch CPU, CUDA if present.

    Only tensors and plain python values, so ``torch.load(weights_only=True)`` reads it back.
    """
    import torch

    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64).copy()),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Put back what :func:`capture_rng_state` captured (CUDA only when devices match)."""
    import torch

    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = state["numpy"]
    keys = npst["keys"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
    np.random.set_state(
        (
            npst["bit_generator"],
            keys.astype(np.uint32),
            int(npst["pos"]),
            int(npst["has_gauss"]),
            float(npst["cached_gaussian"]),
        )
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None:
        if torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
            torch.cuda.set_rng_state_all(cuda)
        else:
            warnings.warn(
                "checkpoint holds CUDA RNG state for "
                f"{len(cuda)} device(s) but {torch.cuda.device_count()} are available: "
                "CUDA generators not restored",
                stacklevel=2,
            )


def save_rng_state(directory: str | os.PathLike[str]) -> Path:
    """Write :func:`capture_rng_state` to ``<directory>/rng.pt``; return the file."""
    import torch

    path = Path(directory) / RNG_FILE
    torch.save(capture_rng_state(), path)
    return path


def load_rng_state(directory: str | os.PathLike[str], *, restore: bool = True) -> dict[str, Any]:
    """Read ``<directory>/rng.pt`` (safely, ``weights_only``) and restore it unless told not to."""
    import torch

    state = torch.load(Path(directory) / RNG_FILE, weights_only=True)
    if restore:
        restore_rng_state(state)
    return state
