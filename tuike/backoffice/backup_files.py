"""What a backup directory holds and how its files are checked: the manifest, checksums, copies
of directories, and the configuration with its secrets left as references.

A backup directory::

    manifest.json                 what was backed up, when, by which tuike, checksums, Kafka positions
    ledger/<table>.parquet        every base table of the ledger's database (sinks/tables.py)
    state/                        a RocksDB checkpoint of <data-dir>/state (embedded runs)
    evidence/evidence.jsonl       the hash-chained evidence log, verified
    inbox/                        tuike serve's inbox (embedded serving), when there is one
    config/tuike.yaml             the configuration; an inline secret is replaced by a reference
"""
from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import orjson
import yaml

from schemas.secrets import is_reference

MANIFEST = "manifest.json"
FORMAT = 1
SECRET_WORDS = ("secret", "password", "token", "key")  # a key naming one of these holds a secret
REDACTED = "env:TUIKE_RESTORE_SET_ME"  # what an inline secret becomes in the copy


class BackupError(Exception):
    """A backup or restore that cannot be done as asked; the message says what to do instead."""


class BackupDamaged(BackupError):
    """A file of the backup is missing or does not match its checksum."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def files_under(root: Path) -> dict[str, dict[str, Any]]:
    """Every file below ``root``: relative path -> bytes and SHA-256."""
    return {p.relative_to(root).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256_of(p)}
            for p in sorted(root.rglob("*")) if p.is_file()}


def check_files(root: Path, files: dict[str, dict[str, Any]], what: str) -> None:
    """Raise :class:`BackupDamaged` naming the first file of ``files`` that is missing or altered."""
    for rel, want in files.items():
        path = root / rel
        if not path.is_file():
            raise BackupDamaged(f"{what}: {path} is missing from the backup")
        if sha256_of(path) != want["sha256"]:
            raise BackupDamaged(f"{what}: {path} does not match its checksum in {MANIFEST}: the backup is damaged; "
                                "restore an older one")


def copy_tree(src: Path, dst: Path) -> None:
    """Copy a directory's files (a RocksDB checkpoint, an inbox), flushed to disk."""
    shutil.copytree(src, dst)
    for p in dst.rglob("*"):
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def write_manifest(root: Path, manifest: dict) -> None:
    tmp = root / (MANIFEST + ".tmp")
    tmp.write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    os.replace(tmp, root / MANIFEST)  # the manifest appears last: a backup without one is unfinished


def read_manifest(root: Path) -> dict:
    path = root / MANIFEST
    if not path.is_file():
        raise BackupError(f"{root} is not a tuike backup (no {MANIFEST}; an interrupted backup has none): "
                          "give the directory `tuike backup --to` wrote")
    manifest = orjson.loads(path.read_bytes())
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{path}: backup format {manifest.get('format')!r}, this tuike reads format {FORMAT}: "
                          "restore it with the tuike version that wrote it "
                          f"({manifest.get('tuike_version', 'unknown')})")
    return manifest


@dataclass(frozen=True)
class ConfigCopy:
    text: str
    redacted: list[str]  # dotted paths of the inline secrets replaced by a reference


def config_without_secrets(path: Path) -> ConfigCopy:
    """The configuration file's text; when it holds a secret inline, a copy with each such value
    replaced by :data:`REDACTED` (comments are lost then), so a backup never carries a secret."""
    text = path.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    found = list(_inline_secrets(data))
    if not found:
        return ConfigCopy(text, [])
    for parent, key, _path in found:
        parent[key] = REDACTED
    note = ("# copied by `tuike backup`: the secrets below written inline were replaced by "
            f"{REDACTED}; write each as env:NAME or file:PATH again\n")
    return ConfigCopy(note + yaml.safe_dump(data, allow_unicode=True, sort_keys=False), [p for _, _, p in found])


def _inline_secrets(node: Any, path: str = "", secret: bool = False) -> Iterator[tuple[Any, Any, str]]:
    """(container, key or index, dotted path) of every secret written inline."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        here = f"{path}.{key}" if isinstance(key, str) and path else (str(key) if not path else f"{path}[{key}]")
        named = secret or (isinstance(key, str) and any(w in key.lower() for w in SECRET_WORDS)
                           and not key.lower().endswith("_id"))
        if isinstance(value, (dict, list)):
            yield from _inline_secrets(value, here, named)
        elif named and isinstance(value, str) and value and not is_reference(value):
            yield node, key, here
