"""Checkpoints: a directory a person can read, written atomically, checked before it is parsed.

Layout (like huggingface ``save_pretrained``)::

    run/
      config.json            {"format": "rnnkit-checkpoint", "format_version": 1,
                              "config": {...the caller's...}, "files": {name: sha256, ...}}
      model.safetensors      the model's state_dict
      vocab.json             the vocabulary: a JSON list of strings
      training.safetensors   optional: the tensors of the training state ...
      training.json          ... and the JSON skeleton around them (see ``flatten_state``)

``save_checkpoint`` writes into ``.run.tmp-*`` beside the target, fsyncs, then renames the old
copy aside (``.run.old-*``) and the new one into place; ``load_checkpoint`` recovers the old copy
when a crash fell between the two renames. Only the file names above are ever opened: anything
else in the directory (``*.bin``, ``*.pt``, ``*.pkl`` ...) is ignored, and there is no pickle and
no ``torch.load`` anywhere.

A checkpoint never names a device: tensors are written from CPU copies, wherever they were
trained, and read onto ``map_location`` (the CPU unless asked), so a run trained on a GPU loads,
resumes and samples on the CPU and the reverse; the caller moves what it loads.

Loading trusts nothing: whoever forges a file can forge its sha256 in config.json too, so each
parser is safe on its own. Every file must be a regular file (a FIFO or a device is never
opened); JSON is read once, hashed and parsed from the same bytes, within ``JSON_LIMITS``
(``jsonfile.py``: bytes, values, nesting, no repeated keys, no integer of 2**64 or more, no
NaN, no lone surrogate); a safetensors header is checked before the library reads it
(``safetensors_header.py``: it fits the file, every tensor's bytes lie inside the data region,
match its shape and dtype and overlap no other), so what is allocated is bounded by the file's
size.

Deliberately not here: what goes into the training state (the loop decides) and keeping several
checkpoints (the caller names the directory).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import torch

from rnnkit.checkpoint.jsonfile import (
    CONFIG,
    TRAINING,
    VOCAB,
    Refused,
    check_shape,
    loads,
    open_regular,
    read_regular,
    regular_stat,
)
from rnnkit.checkpoint.safetensors_header import check_safetensors_header
from rnnkit.checkpoint.state import flatten_state, unflatten_state
from rnnkit.errors import UserError, describe, short
from rnnkit.io_errors import reason, writing

FORMAT = "rnnkit-checkpoint"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
VOCAB_FILE = "vocab.json"
TRAINING_TENSORS = "training.safetensors"
TRAINING_SKELETON = "training.json"

_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,255}")  # a plain file name: no "/", NUL, or 10 MB
_CHUNK = 1 << 20
#: what each JSON file may hold (``jsonfile.py``: bytes, values, containers, nesting)
JSON_LIMITS = {CONFIG_FILE: CONFIG, VOCAB_FILE: VOCAB, TRAINING_SKELETON: TRAINING}


@dataclass
class Checkpoint:
    """What ``load_checkpoint`` returns; ``training`` is None if absent or not requested."""

    path: Path
    config: dict
    model_state: dict[str, torch.Tensor]
    vocab: list[str]
    training: object | None


# --- saving -------------------------------------------------------------------------------


def save_checkpoint(
    directory: str | Path,
    *,
    config: dict,
    model_state: dict[str, torch.Tensor],
    vocab: list[str],
    training: object | None = None,
) -> Path:
    """Write a checkpoint directory atomically and return its (absolute) path.

    ``model_state`` is saved from copies, so tied weights (two names, one Parameter) are fine;
    ``training`` is any state ``flatten_state`` accepts. An existing checkpoint at ``directory``
    is replaced; anything else there (a file, a non-empty directory without an rnnkit
    config.json) is refused with a UserError rather than deleted.

    Raises:
        TypeError: config not a dict, model_state not str -> Tensor, vocab not a list of str,
            or a training value ``flatten_state`` does not accept.
        ValueError: config holds something JSON cannot write exactly (nan, inf).
        UserError: ``directory`` holds something that is not a checkpoint, or writing failed
            (``cannot write DIR: No space left on device``; the checkpoint that was there, if
            any, is left as it was).
    """
    target = Path(os.path.abspath(directory))
    _check_save_args(config, model_state, vocab)
    if not target.name:
        raise UserError(f"{target}: a checkpoint needs a directory name, not a file system root")
    with writing(directory):  # ENOSPC, EFBIG, EROFS, EACCES...: one line naming the checkpoint
        target.parent.mkdir(parents=True, exist_ok=True)
        _refuse_foreign(target)
        cleanup_stale(target)
        tmp = _sibling(target, "tmp")
        tmp.mkdir()
        try:
            _write_files(tmp, config, model_state, vocab, training)
            _swap_in(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        cleanup_stale(target)
    return target


def cleanup_stale(directory: str | Path) -> list[Path]:
    """Remove what interrupted saves of ``directory`` left beside it; return what was removed.

    ``.NAME.tmp-*`` are half-written and always go; ``.NAME.old-*`` go only once ``directory``
    itself is a checkpoint (until then the newest old copy is what ``load_checkpoint`` reads).
    Assumes no other process is saving to the same directory at the same time.
    """
    target = Path(os.path.abspath(directory))
    if not target.parent.is_dir():
        return []
    kinds = ("tmp", "old") if is_checkpoint(target) else ("tmp",)
    removed = []
    for kind in kinds:
        for stale in _siblings(target, kind):
            shutil.rmtree(stale, ignore_errors=True)
            removed.append(stale)
    return removed


def _check_save_args(config: object, model_state: object, vocab: object) -> None:
    if not isinstance(config, dict):
        raise TypeError(f"save_checkpoint: config must be a dict, got {type(config).__name__}")
    items = model_state.items() if isinstance(model_state, dict) else [("", model_state)]
    for name, tensor in items:
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise TypeError(
                "save_checkpoint: model_state must map str to torch.Tensor, got "
                f"{type(name).__name__} {name!r} -> {type(tensor).__name__}"
            )
    bad = [t for t in vocab if not isinstance(t, str)] if isinstance(vocab, list) else [vocab]
    if bad:
        raise TypeError(f"save_checkpoint: vocab must be a list of str, found {describe(bad[0])}")


def _refuse_foreign(target: Path) -> None:
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise UserError(f"{target} exists and is not a directory; refusing to replace it")
    if target.is_dir() and any(target.iterdir()) and not is_checkpoint(target):
        raise UserError(
            f"{target} is a non-empty directory but not an rnnkit checkpoint (no config.json); "
            "refusing to replace it"
        )


def _write_files(
    folder: Path, config: dict, model_state: dict, vocab: list, training: object | None
) -> None:
    files = {MODEL_FILE: _write_tensors(folder / MODEL_FILE, model_state)}
    files[VOCAB_FILE] = _write_json(folder / VOCAB_FILE, list(vocab), ascii_only=False)
    if training is not None:
        tensors, skeleton = flatten_state(training)
        files[TRAINING_TENSORS] = _write_tensors(folder / TRAINING_TENSORS, tensors)
        files[TRAINING_SKELETON] = _write_json(folder / TRAINING_SKELETON, skeleton)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": config, "files": files}
    _write_json(folder / CONFIG_FILE, meta, ascii_only=False)
    _fsync_dir(folder)


def _write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> str:
    """Save copies (own storage, contiguous, on the CPU) so shared or strided tensors save."""
    copies = {}
    for key, tensor in tensors.items():
        if tensor.layout != torch.strided:
            raise TypeError(
                f"{path.name}: tensor {key!r} has layout {tensor.layout}; expected dense"
            )
        copies[key] = tensor.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
    # serialised here and written by us: a failed write is an OSError (ENOSPC, EFBIG), which
    # save_file would turn into a SafetensorError with the errno in its text
    return _write_bytes(path, safetensors.torch.save(copies, metadata={"format": "pt"}))


def _write_json(path: Path, obj: object, *, ascii_only: bool = True) -> str:
    """Insertion order is kept (the caller's config reads as written; state dicts round-trip)."""
    data = (json.dumps(obj, indent=2, allow_nan=False, ensure_ascii=ascii_only) + "\n").encode()
    _check_loadable(path.name, data)
    return _write_bytes(path, data)


def _check_loadable(name: str, data: bytes) -> None:
    """Refuse to write JSON that ``load_checkpoint`` would refuse (over ``JSON_LIMITS``): the
    save fails with one line and the checkpoint already there stays as it was."""
    if (limits := JSON_LIMITS.get(name)) is None:
        return
    try:
        check_shape(data, limits)
    except Refused as err:
        raise UserError(
            f"cannot save {name}: it {err}, so it could not be loaded back (a vocabulary this "
            "large? raise --min-count)"
        ) from None


def _write_bytes(path: Path, data: bytes) -> str:
    """Write and fsync ``data``; return its sha256."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return hashlib.sha256(data).hexdigest()


def _swap_in(tmp: Path, target: Path) -> None:
    old = None
    if target.exists():
        old = _sibling(target, "old")
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        if old is not None:  # best effort; if this fails too, load_checkpoint recovers ``old``
            with contextlib.suppress(OSError):
                os.replace(old, target)
        raise
    _fsync_dir(target.parent)


def _sibling(target: Path, kind: str) -> Path:
    return target.parent / f".{target.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"


def _siblings(target: Path, kind: str) -> list[Path]:
    prefix = f".{target.name}.{kind}-"
    return [p for p in target.parent.iterdir() if p.name.startswith(prefix)]


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":  # directories cannot be opened for fsync elsewhere
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# --- loading ------------------------------------------------------------------------------


def is_checkpoint(directory: str | Path) -> bool:
    """True if ``directory/config.json`` is a regular file holding a JSON object that says
    format ``rnnkit-checkpoint`` (a FIFO or a device there is never opened)."""
    try:
        data = read_regular(Path(directory) / CONFIG_FILE, JSON_LIMITS[CONFIG_FILE].max_bytes)
        meta = loads(data, JSON_LIMITS[CONFIG_FILE])
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT


def names_checkpoint(directory: str | Path) -> bool:
    """True if ``directory`` holds a ``config.json`` of any kind (a dangling link included):
    it is meant as a checkpoint, and ``load_checkpoint`` says what is wrong with it. Reads
    nothing, so a load parses config.json once."""
    return os.path.lexists(Path(directory) / CONFIG_FILE)


def load_checkpoint(
    directory: str | Path, *, training: bool = True, map_location: str = "cpu"
) -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint``, checking every file before parsing it.

    Each file read must be a regular file (after links; a FIFO or device is never opened) and
    match its sha256 in config.json; JSON is read once, within ``JSON_LIMITS``; tensors are
    loaded onto ``map_location``. ``training=False`` skips (and does not verify) the training
    state. If ``directory`` is missing because a save crashed between its two renames, the old
    copy beside it is read instead, with a warning; ``Checkpoint.path`` says which was read.

    Raises:
        UserError: one line naming the path and the problem: missing, not a checkpoint, not a
            regular file, unsupported format version, a listed file missing or failing its
            checksum, a file that does not parse or is over its limits, a vocab that is not a
            list of strings.
    """
    path, meta = _locate(Path(os.path.abspath(directory)))
    files = meta["files"]
    has_training = training and (TRAINING_SKELETON in files or TRAINING_TENSORS in files)
    extra = [TRAINING_TENSORS, TRAINING_SKELETON] if has_training else []
    blobs = _verify(path, files, [MODEL_FILE, VOCAB_FILE, *extra])
    model_state = _read_tensors(path, MODEL_FILE, map_location)
    vocab = _parse_json(path, VOCAB_FILE, blobs[VOCAB_FILE])
    bad = [t for t in vocab if not isinstance(t, str)] if isinstance(vocab, list) else [vocab]
    if bad:
        raise UserError(
            f"{path}: vocab.json must be a JSON list of strings, found {describe(bad[0])}"
        )
    state = None
    if has_training:
        tensors = _read_tensors(path, TRAINING_TENSORS, map_location)
        skeleton = _parse_json(path, TRAINING_SKELETON, blobs[TRAINING_SKELETON])
        try:
            state = unflatten_state(tensors, skeleton)
        except UserError as err:
            raise UserError(f"{path}: {TRAINING_SKELETON}: {err}") from None
    return Checkpoint(path, meta["config"], model_state, vocab, state)


def _verify(path: Path, files: dict[str, str], wanted: list[str]) -> dict[str, bytes]:
    """Every listed file is a regular file; each about to be read matches its sha256. Returns
    the bytes of the JSON files among ``wanted``, read once: what was hashed is what is parsed."""
    for name in files:
        _regular(path, name)
    blobs = {}
    for name in wanted:
        if name not in files:
            raise UserError(f'{path}: config.json does not list {name} under "files"')
        if name in JSON_LIMITS:
            blobs[name] = _read_bytes(path, name)
            digest = hashlib.sha256(blobs[name]).hexdigest()
        else:
            digest = _sha256_regular(path, name)
        if digest != files[name]:
            raise UserError(f"{path}: {name} is corrupted or truncated (checksum mismatch)")
    return blobs


def _locate(target: Path) -> tuple[Path, dict]:
    """``target`` and its config.json, or the old copy an interrupted save left beside it."""
    if target.is_dir():
        return target, _read_meta(target)
    if target.exists():
        raise UserError(f"{target} is not an rnnkit checkpoint (no config.json)")
    olds = _siblings(target, "old") if target.parent.is_dir() else []
    for old in sorted(olds, key=lambda p: p.stat().st_mtime, reverse=True):
        meta = _complete_meta(old) if old.is_dir() else None
        if meta is not None:
            warnings.warn(
                f"{target} is missing after an interrupted save; loading the previous copy {old}",
                stacklevel=3,
            )
            return old, meta
    raise UserError(f"no checkpoint at {target}")


def _complete_meta(folder: Path) -> dict | None:
    """``folder``'s config.json if it and every file it lists are there, else None."""
    try:
        meta = _read_meta(folder)
        for name in meta["files"]:
            _regular(folder, name)
    except UserError:
        return None
    return meta


def _read_meta(path: Path) -> dict:
    """config.json, checked: format, version, a config object, ``files`` of name -> sha256."""
    try:
        data = read_regular(path / CONFIG_FILE, JSON_LIMITS[CONFIG_FILE].max_bytes)
    except FileNotFoundError:
        raise UserError(f"{path} is not an rnnkit checkpoint (no config.json)") from None
    except Refused as err:
        raise UserError(f"{path}: {CONFIG_FILE} {err}") from None
    meta = _parse_json(path, CONFIG_FILE, data)
    if not isinstance(meta, dict):
        raise UserError(f"{path}: config.json must hold a JSON object, found {describe(meta)}")
    if meta.get("format") != FORMAT:
        raise UserError(
            f"{path} is not an rnnkit checkpoint (config.json says format "
            f"{short(meta.get('format'))}, expected {FORMAT!r})"
        )
    version = meta.get("format_version")
    if type(version) is not int or not 1 <= version <= FORMAT_VERSION:
        raise UserError(
            f"{path}: checkpoint format version {short(version)} is not supported "
            f"(this rnnkit reads version {FORMAT_VERSION})"
        )
    if not isinstance(meta.get("config"), dict):
        raise UserError(f'{path}: config.json "config" must be a JSON object')
    files = meta.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(digest, str)
        and _SHA256.fullmatch(digest)
        and _NAME.fullmatch(name)
        and name not in (".", "..")
        for name, digest in files.items()
    ):
        raise UserError(
            f'{path}: config.json "files" must map plain file names to sha256 hex digests'
        )
    return meta


@contextlib.contextmanager
def _reading(path: Path, name: str):
    """Problems reading ``path/name`` as one-line UserErrors: missing, not a regular file (a
    FIFO, a device, a directory), over its cap, or the operating system's reason."""
    try:
        yield
    except FileNotFoundError:
        raise UserError(f"{path}: {name} is missing") from None
    except Refused as err:
        raise UserError(f"{path}: {name} {err}") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read {name} ({reason(err)})") from None


def _regular(path: Path, name: str) -> None:
    """``path/name`` is a regular file (links followed), else a one-line UserError."""
    with _reading(path, name):
        regular_stat(path / name)


def _read_bytes(path: Path, name: str) -> bytes:
    with _reading(path, name):
        return read_regular(path / name, JSON_LIMITS[name].max_bytes)


def _parse_json(path: Path, name: str, data: bytes) -> object:
    """``data`` as JSON within ``JSON_LIMITS[name]`` (see ``jsonfile.loads``)."""
    with _reading(path, name):
        return loads(data, JSON_LIMITS[name])


def _sha256_regular(path: Path, name: str) -> str:
    digest = hashlib.sha256()
    with _reading(path, name), open_regular(path / name) as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _read_tensors(path: Path, name: str, map_location: str) -> dict[str, torch.Tensor]:
    try:
        check_safetensors_header(path / name)
        return safetensors.torch.load_file(str(path / name), device=map_location)
    except Exception as err:  # ours, SafetensorError, OSError ... from the library: one story
        raise UserError(
            f"{path}: {name} is not a valid safetensors file ({_one_line(err)[:300]})"
        ) from None


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__
