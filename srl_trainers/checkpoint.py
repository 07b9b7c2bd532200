"""Atomic checkpoint directories: a killed run always leaves its last complete checkpoint.

The trainer decides what goes into a checkpoint (adapters, optimizers, RNG, curriculum,
counters) through a ``write_fn(directory)``; :class:`CheckpointManager` makes the result
atomic, ordered and rotated:

* ``save`` writes into ``<dir>/.tmp-<id>-<pid>``, writes ``metadata.json`` LAST (with the
  size and sha256 of every file written), fsyncs files and directories, then renames the
  directory to ``<dir>/<id>`` in one ``os.replace``. A checkpoint is *complete* when its
  ``metadata.json`` parses and every file it lists exists with the listed size; it is
  *verified* when, besides, every file matches its sha256. Only verified checkpoints are
  loaded: :meth:`CheckpointManager.verify` (and ``resolve``) check every byte, and
  ``"latest"`` falls back to the newest checkpoint that verifies, logging a warning for
  each one it skips.
* Order is by the ``episode`` in the metadata (then save time), never by mtime; newest last.
* ``max_checkpoints`` newest complete checkpoints are kept; ``-1`` keeps all of them. The
  ids in ``protected`` (the trainer's best checkpoint) are kept besides them.
* ``LATEST`` (a one-line text file, replaced atomically) names the last saved id for humans
  and shell tools; :meth:`CheckpointManager.resolve` does not trust it and scans instead.

A checkpoint is data, never code: tensors are read with :func:`load_tensors`
(``torch.load(weights_only=True)``) or safetensors, plain state with :func:`read_state`
(JSON). Checkpoints of format 1 (before checksums, with a pickled trainer state) fail
verification: they cannot be read without unpickling.

Metadata is strict JSON (:func:`to_jsonable`): enums become their values, numpy scalars and
arrays, tensors, paths, dataclasses and sets become plain JSON, non-finite floats ``null``.
"""

from __future__ import annotations

import builtins
import dataclasses
import datetime as _dt
import enum
import hashlib
import json
import logging
import math
import os
import random
import re
import shutil
import stat
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CHECKPOINT_FORMAT",
    "LATEST_FILE",
    "METADATA_FILE",
    "RNG_FILE",
    "CheckpointError",
    "CheckpointJSONEncoder",
    "CheckpointManager",
    "CheckpointNotFoundError",
    "CheckpointVerificationError",
    "capture_rng_state",
    "check_checkpoint_id",
    "checkpoint_id_for",
    "list_available_checkpoints",
    "load_checkpoint_metadata",
    "load_rng_state",
    "load_tensors",
    "read_state",
    "restore_rng_state",
    "save_rng_state",
    "to_jsonable",
    "write_state",
]

logger = logging.getLogger(__name__)

METADATA_FILE = "metadata.json"
LATEST_FILE = "LATEST"
RNG_FILE = "rng.pt"
# 2: metadata.json lists every file's size and sha256, plain state is JSON (no pickles).
# 1 (no "format" key): sizes only, and the trainer state was a pickle.
CHECKPOINT_FORMAT = 2
# Prefixes of work directories (never checkpoints): in-progress saves, a checkpoint being
# replaced, one being deleted by rotation. Each ends in "-<pid>" of the process that made it.
_WORK_PREFIXES = (".tmp-", ".old-", ".del-")
_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


class CheckpointError(ValueError):
    """A checkpoint (or checkpoint id) cannot be used; the message says which one and why."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The requested checkpoint does not exist or is incomplete; the message lists the ids."""


class CheckpointVerificationError(CheckpointError):
    """A checkpoint's files do not match its metadata (changed or corrupted since it was
    saved), or it was written before checksums (format 1); the message names the file."""


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
        # ids that rotation leaves alone (the trainer's best checkpoint), beside the newest
        self.protected: set[str] = set()

    # ------------------------------------------------------------------ save
    def save(
        self,
        checkpoint_id: str,
        write_fn: Callable[[Path], Mapping[str, Any] | None],
        metadata: Mapping[str, Any],
    ) -> Path:
        """Write a checkpoint atomically and return its directory.

        ``write_fn(tmp_dir)`` writes the payload files into ``tmp_dir`` and may return a dict
        of extra metadata. ``metadata`` must hold an integer ``episode`` (the ordering key);
        it is checked for JSON-safety before anything is written, and stored as
        ``metadata.json`` with ``checkpoint_id``, ``saved_at``, ``format``
        (:data:`CHECKPOINT_FORMAT`) and ``files`` (relative path -> ``{"size": bytes,
        "sha256": hex digest}``). An existing checkpoint with the same id is replaced. Then
        the oldest checkpoints beyond ``max_checkpoints`` are deleted.
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
                p.relative_to(tmp).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)}
                for p in sorted(tmp.rglob("*"))
                if p.is_file()
            }
            meta = {
                **to_jsonable({**metadata, **(extra or {})}),
                "checkpoint_id": checkpoint_id,
                "saved_at": time.time(),
                "format": CHECKPOINT_FORMAT,
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
            if cid == keep or cid in self.protected:
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
        """The metadata of a complete checkpoint directory (every listed file there, with
        its listed size), else None."""
        meta = _read_metadata(path)
        if meta is None or _size_problem(path, meta) is not None:
            return None
        return meta

    def _scan(self, complete: bool = True) -> builtins.list[tuple[tuple, str, dict[str, Any]]]:
        """``(order key, id, metadata)`` of the checkpoints (the complete ones, or every one
        whose metadata parses), oldest first."""
        if not self.checkpoint_dir.is_dir():
            return []
        found = []
        for entry in self.checkpoint_dir.iterdir():
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            meta = self._read_complete(entry) if complete else _read_metadata(entry)
            if meta is None:
                continue
            episode = meta.get("episode")
            if isinstance(episode, bool) or not isinstance(episode, int):
                continue
            saved_at = meta.get("saved_at")
            saved_at = float(saved_at) if isinstance(saved_at, int | float) else 0.0
            found.append(((episode, saved_at, entry.name), entry.name, meta))
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

    def verify(self, checkpoint_id: str = "latest") -> tuple[Path, dict[str, Any]]:
        """``(directory, metadata)`` of a checkpoint whose every file matches its sha256.

        An id that fails raises :class:`CheckpointVerificationError` naming the file and
        what is wrong with it (:class:`CheckpointNotFoundError` when it does not exist or
        has no valid ``metadata.json``). ``"latest"`` is the newest checkpoint that
        verifies: each newer one that does not is skipped with a logged warning saying
        why; when none verifies, the error lists every reason.
        """
        check_checkpoint_id(checkpoint_id)
        if checkpoint_id.lower() != "latest":
            path = self.checkpoint_dir / checkpoint_id
            meta = _read_metadata(path)
            if meta is None:
                raise CheckpointNotFoundError(self._missing_message(checkpoint_id))
            problem = _verification_problem(path, meta)
            if problem is not None:
                raise CheckpointVerificationError(
                    f"checkpoint {checkpoint_id!r} in {str(self.checkpoint_dir)!r} fails "
                    f"verification: {problem}"
                )
            return path, meta
        skipped = []
        for _key, cid, meta in reversed(self._scan(complete=False)):
            path = self.checkpoint_dir / cid
            problem = _verification_problem(path, meta)
            if problem is None:
                return path, meta
            logger.warning(
                "checkpoint %s in %s skipped: %s; trying the one before it",
                cid,
                self.checkpoint_dir,
                problem,
            )
            skipped.append(f"{cid}: {problem}")
        if skipped:
            raise CheckpointVerificationError(
                f"no checkpoint in {str(self.checkpoint_dir)!r} passes verification: "
                + "; ".join(skipped)
            )
        raise CheckpointNotFoundError(f"no complete checkpoint in {str(self.checkpoint_dir)!r}")

    def resolve(self, checkpoint_id: str = "latest") -> Path:
        """Directory of a verified checkpoint (:meth:`verify`); ``"latest"`` is the newest.

        Temp directories, checkpoints without a valid ``metadata.json`` and ones with a
        missing, truncated or changed file are never returned.
        """
        return self.verify(checkpoint_id)[0]

    def load_metadata(self, checkpoint_id: str = "latest") -> dict[str, Any]:
        """The ``metadata.json`` of a verified checkpoint (``"latest"`` allowed)."""
        return self.verify(checkpoint_id)[1]

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


def check_checkpoint_id(checkpoint_id: Any) -> None:
    """Raise :class:`CheckpointError` unless ``checkpoint_id`` is ``"latest"`` or a plain
    checkpoint id (a name inside the checkpoint dir, never a path)."""
    if isinstance(checkpoint_id, str) and checkpoint_id.lower() == "latest":
        return
    if not isinstance(checkpoint_id, str) or not _ID_RE.match(checkpoint_id):
        raise CheckpointError(
            f"invalid checkpoint id {checkpoint_id!r}: use 'latest' or an id such as "
            "'checkpoint_000040' (letters, digits, '_', '-', '.', not starting with '.' or "
            "'-'; a name in the checkpoint dir, not a path)"
        )


def _check_id(checkpoint_id: str) -> None:
    """A checkpoint id that can be written (``latest`` and ``LATEST`` are reserved)."""
    if isinstance(checkpoint_id, str) and checkpoint_id.lower() in ("latest", LATEST_FILE.lower()):
        raise CheckpointError(f"checkpoint id {checkpoint_id!r} is reserved")
    check_checkpoint_id(checkpoint_id)


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _read_metadata(path: Path) -> dict[str, Any] | None:
    """The parsed ``metadata.json`` of ``path`` if it is a dict with a ``files`` dict."""
    try:
        meta = json.loads((path / METADATA_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict):
        return None
    return meta


def _size_problem(path: Path, meta: Mapping[str, Any]) -> str | None:
    """What makes the checkpoint at ``path`` incomplete (a listed file outside it, missing,
    not a regular file or not of its listed size), or None."""
    for rel, entry in meta["files"].items():
        size = entry.get("size") if isinstance(entry, dict) else entry  # format 1: a size
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            return f"its metadata lists {rel!r}, a path outside the checkpoint"
        try:
            st = (path / rel).stat()
        except OSError:
            return f"{rel} is missing"
        if not stat.S_ISREG(st.st_mode):
            return f"{rel} is not a regular file"
        if st.st_size != size:
            return f"{rel} has {st.st_size} bytes, not the {size!r} it was saved with"
    return None


def _verification_problem(path: Path, meta: Mapping[str, Any]) -> str | None:
    """Why the checkpoint at ``path`` must not be loaded, or None when every file it lists
    is there with its size and sha256."""
    problem = _size_problem(path, meta)
    if problem is not None:
        return problem
    if meta.get("format") != CHECKPOINT_FORMAT:
        return (
            f"it is of checkpoint format {meta.get('format', 1)!r}, not {CHECKPOINT_FORMAT}: "
            "written by an older srl, without checksums and with a pickled trainer state, "
            "which this version never unpickles (a pickle can run code); load it with the "
            "srl version that wrote it, or start a new run"
        )
    for rel, entry in meta["files"].items():
        if not isinstance(entry, dict) or _sha256(path / rel) != entry.get("sha256"):
            return f"{rel} does not match its sha256 (changed or corrupted since it was saved)"
    return None


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
    """Read ``<directory>/rng.pt`` (:func:`load_tensors`) and restore it unless told not to."""
    state = load_tensors(Path(directory) / RNG_FILE)
    if restore:
        restore_rng_state(state)
    return state


# ---------------------------------------------------------------------- payload files: data only
def load_tensors(path: str | os.PathLike[str]) -> Any:
    """A ``torch.save`` file of tensors in plain containers (state dicts, RNG state), read
    with ``torch.load(weights_only=True)`` onto the CPU: an object that would need code to
    rebuild (a pickle whose ``__reduce__`` calls anything) is refused, never run.

    Raises :class:`CheckpointError` naming the file when it holds anything else or is not
    a torch file at all.
    """
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as exc:  # garbage makes the unpickler raise almost anything
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = next(
            (line for line in lines if "GLOBAL" in line or line.startswith("Unsupported")),
            lines[-1] if lines else type(exc).__name__,
        )
        raise CheckpointError(
            f"{path} is not a file of plain tensors ({detail}): refusing to load it, since "
            "unpickling anything else can run code"
        ) from None


def write_state(state: Any, path: str | os.PathLike[str]) -> None:
    """Write plain state (dicts with string keys, lists, str, int, float, bool, None) as
    JSON that :func:`read_state` gives back exactly: floats keep every bit (NaN and the
    infinities are written as Python's ``json`` writes them), tuples come back as lists,
    numpy scalars as Python numbers. Anything else raises ``TypeError`` naming its type."""
    text = json.dumps(state, default=_plain_scalar, allow_nan=True)
    Path(path).write_text(text + "\n", encoding="utf-8")


def read_state(path: str | os.PathLike[str]) -> Any:
    """What :func:`write_state` wrote; :class:`CheckpointError` naming the file if it is not
    valid JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from None


def _plain_scalar(obj: Any) -> Any:
    if isinstance(obj, np.bool_ | np.integer | np.floating):
        return obj.item()
    raise TypeError(
        f"training state value of type {type(obj).__name__} is not plain JSON data: "
        f"{obj!r:.80}; tensors go into a tensor file, other objects into plain values"
    )
