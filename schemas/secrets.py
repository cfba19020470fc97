"""Secret values in ``tuike.yaml``: written inline, ``env:NAME`` or ``file:PATH`` (contract §6).

One resolver for every section (shops, links, kafka, privacy, the ClickHouse password), so a
secret is read the same way everywhere and its error says which form failed and how to fix it.
A secret never comes from the command line, where ``ps`` shows it to every user.
"""
from __future__ import annotations

import os
from pathlib import Path


class SecretError(ValueError):
    """A secret reference that cannot be resolved; the message says what to set."""


def is_reference(value: object) -> bool:
    return isinstance(value, str) and (value.startswith("env:") or value.startswith("file:"))


def secret_file(value: object) -> Path | None:
    """The file a ``file:PATH`` secret is read from (``tuike config check`` looks at its mode)."""
    return Path(value[5:]).expanduser() if isinstance(value, str) and value.startswith("file:") else None


def resolve_secret(value: str) -> str:
    """The secret itself: the environment variable's value, the file's content without its
    trailing newline, or the value as written."""
    if value.startswith("env:"):
        name = value[4:]
        found = os.environ.get(name)
        if not found:
            raise SecretError(f"env:{name}: the environment variable {name} is not set")
        return found
    path = secret_file(value)
    if path is None:
        return value
    try:
        text = path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise SecretError(f"file:{path}: cannot read it ({exc.strerror or exc})") from None
    if not text:
        raise SecretError(f"file:{path}: the file is empty")
    return text
