"""Atomic, pickle-free persistence of component directories.

A saved component is a directory holding ``manifest.json`` (type, format version, params and
whatever the component adds) next to its own files in open formats. Saves write to a temporary
sibling directory, fsync it, and rename it into place, so a crash never leaves half a save.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from ltrr.errors import PersistenceError

MANIFEST = "manifest.json"


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces ``target`` atomically."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # the writer's pid in the name: a leftover of a killed writer is recognised and removed later
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))
    try:
        yield tmp
        _fsync_tree(tmp)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_stale_temp_dirs(parent: str | os.PathLike, name: str, *, any_owner: bool = False) -> list[Path]:
    """Remove what interrupted saves of ``name`` left in ``parent`` (a writer killed between
    creating its temporary directory and renaming it): ``.NAME.tmp-PID-*``, ``.NAME.old-PID``
    and ``NAME-PID`` directories whose process PID is gone. With ``any_owner`` (the caller holds
    the lock every writer needs), every ``.NAME.tmp-*`` and ``.NAME.old-*`` directory, whoever
    wrote it. Returns the directories removed."""
    parent = Path(parent)
    pattern = re.compile(rf"^\.?{re.escape(name)}(\.tmp|\.old)?-(\d+)?")
    removed: list[Path] = []
    try:
        entries = list(parent.iterdir())
    except FileNotFoundError:
        return removed
    for entry in entries:
        m = pattern.match(entry.name)
        if m is None or not entry.is_dir():
            continue
        temp = m.group(1) is not None and entry.name.startswith(".")
        pid = int(m.group(2)) if m.group(2) else None
        if (any_owner and temp) or (pid is not None and pid != os.getpid() and not _alive(pid)):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON through a temp file and rename (atomic for a single file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True, default=_json_default)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_manifest(directory: str | os.PathLike, type_name: str, format_version: int,
                   params: Mapping[str, Any] | None = None, **extra: Any) -> None:
    write_json(Path(directory) / MANIFEST, {
        "type": type_name,
        "format_version": format_version,
        "params": dict(params or {}),
        **extra,
    })


def read_manifest(directory: str | os.PathLike, expected_type: str,
                  supported_versions: tuple[int, ...]) -> dict[str, Any]:
    """Read and check a manifest; wrong type or version is a PersistenceError saying both."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.exists():
        raise PersistenceError(f"{directory}: not a saved ltrr component (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PersistenceError(f"{path}: corrupt manifest ({exc.msg})") from None
    found_type = manifest.get("type")
    if found_type != expected_type:
        raise PersistenceError(
            f"{directory}: is a saved {found_type!r}, not a saved {expected_type!r}"
        )
    version = manifest.get("format_version")
    if version not in supported_versions:
        raise PersistenceError(
            f"{directory}: format version {version} of {expected_type!r} is not supported by this "
            f"ltrr (supported: {', '.join(map(str, supported_versions))})"
        )
    return manifest


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------- integrity
#: a quick fingerprint reads this many bytes at each of SAMPLES evenly spaced places of a file
SAMPLE_BYTES = 4096
SAMPLES = 16
Verify = Literal["quick", "full", "none"]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sample_digest(path: Path) -> str:
    """SHA-256 of a file's size and ``SAMPLES`` blocks at evenly spaced offsets (reads ~64 KiB
    whatever the size: catches truncation, replacement and damage in the sampled blocks)."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as fh:
        for i in range(SAMPLES):
            fh.seek(max(0, (size - SAMPLE_BYTES) * i // max(SAMPLES - 1, 1)))
            h.update(fh.read(SAMPLE_BYTES))
    return h.hexdigest()


def file_record(path: Path) -> dict[str, Any]:
    """What a manifest records of a file: its size, SHA-256 and quick fingerprint."""
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path), "sample_sha256": sample_digest(path)}


def file_records(root: Path, exclude: tuple[str, ...] = (MANIFEST,)) -> dict[str, dict[str, Any]]:
    """:func:`file_record` of every file under ``root`` by relative path (sorted)."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in sorted(files):
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if rel not in exclude:
                out[rel] = file_record(p)
    return dict(sorted(out.items()))


def check_files(directory: Path, files: Mapping[str, Any], verify: Verify = "quick") -> None:
    """Check files against their manifest records: ``"quick"`` sizes and fingerprints (reads
    kilobytes), ``"full"`` also every SHA-256 (reads every byte), ``"none"`` nothing. A record
    that is a bare digest string (older manifests) is checked in full."""
    if verify == "none":
        return
    for name, meta in files.items():
        path = directory / name
        if not path.exists():
            raise PersistenceError(f"{directory}: missing file {name}")
        if isinstance(meta, str):
            if sha256_file(path) != meta:
                raise PersistenceError(f"{path}: does not match its checksum in the manifest (corrupt)")
            continue
        size = path.stat().st_size
        if size != meta.get("bytes"):
            raise PersistenceError(f"{path}: {size} bytes, the manifest says {meta.get('bytes')} "
                                   "(truncated or replaced)")
        if sample_digest(path) != meta.get("sample_sha256"):
            raise PersistenceError(f"{path}: does not match its fingerprint in the manifest (corrupt)")
        if verify == "full" and sha256_file(path) != meta.get("sha256"):
            raise PersistenceError(f"{path}: does not match its SHA-256 in the manifest (corrupt)")
