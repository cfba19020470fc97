"""Secret values of ``tuike.yaml`` (every section: shops, links, kafka, privacy, the ClickHouse
password) written inline or by reference: ``env:NAME`` (the environment) or
``file:PATH`` (a file's content), so the configuration file itself can be shared and the secret
kept in a file only the service account reads (a Kubernetes/Docker secret mount, a vault agent's
output). A file's trailing line break is dropped: ``echo s3cret > key`` means ``s3cret``.

A relative ``PATH`` is relative to the working directory, like ``--config`` and ``--data-dir``.
A secret never comes from the command line, where ``ps`` shows it to every user.
"""
from __future__ import annotations

import os
from pathlib import Path

MAX_SECRET_FILE = 1024 * 1024  # a PEM bundle is a few KiB: a larger file is a wrong path, not a secret


class SecretError(ValueError):
    """A reference that cannot be resolved; the message names the variable or file, never a value."""


def secret_file(value: object) -> Path | None:
    """The file a ``file:PATH`` value names, else None."""
    if isinstance(value, str) and value.startswith("file:") and len(value) > 5:
        return Path(value[5:]).expanduser()
    return None


def is_reference(value: object) -> bool:
    """Whether the value is read from elsewhere (``env:``/``file:``) rather than written inline."""
    return isinstance(value, str) and value.startswith(("env:", "file:"))


def resolve_secret(value: str) -> str:
    """The secret a value stands for: the environment variable, the file's content, or the value itself."""
    if value.startswith("env:"):
        name = value[4:]
        found = os.environ.get(name)
        if not found:
            raise SecretError(f"env:{name}: the environment variable {name} is not set")
        return found
    if value.startswith("file:"):
        path = secret_file(value)
        if path is None:
            raise SecretError("file: names no file (expected file:PATH)")
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_SECRET_FILE + 1)
        except OSError as exc:
            raise SecretError(f"file:{path}: cannot read it: {exc.strerror or exc}") from None
        if len(data) > MAX_SECRET_FILE:
            raise SecretError(f"file:{path}: over {MAX_SECRET_FILE:,} bytes, not a secret")
        try:
            text = data.decode("utf-8-sig").rstrip("\r\n")
        except UnicodeDecodeError:
            raise SecretError(f"file:{path}: not UTF-8 text") from None
        if not text:
            raise SecretError(f"file:{path}: the file is empty")
        return text
    return value
