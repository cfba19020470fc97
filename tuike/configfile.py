"""Loading ``tuike.yaml`` (contract §2) with errors that point at the file and line.

:func:`engine.config.parse_config` knows the rules and names each problem by its dotted key
path (``commission.rules[1].levels``); this module knows the file: it keeps PyYAML's node tree
(which has line numbers) next to the decoded mapping and walks each path back to its line, so
a shop engineer reads ``tuike.yaml:14: commission.rules[1].levels: …``. Duplicate keys, which
PyYAML would silently resolve to the last one, are refused here: in a file that sets
compliance-relevant rates, a second ``levels:`` further down must not win unnoticed.
``env:NAME`` and ``file:PATH`` values are left as written; they are resolved where they are used.
``tuike config check`` also warns (exit still 0) when a file holding secrets can be read by group
or others: the configuration itself when it holds a secret inline, and any ``file:PATH``.
"""
from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from engine.config import Config, ConfigError, parse_config
from schemas.secrets import is_reference, secret_file
from gateway.settings import gateway_settings, secret_values
from topologies.protection import privacy_settings
from tuike.backoffice.retention import retention_days
from topologies.settings import stream_settings

DEFAULT_PATH = Path("tuike.yaml")
_SECTION_CHECKS = (stream_settings, lambda raw: gateway_settings(raw, resolve_secrets=False),
                   lambda raw: privacy_settings(raw, resolve=False), retention_days)
_STEP = re.compile(r"\[(\d+)\]|\.?([^.\[\]]+)")


class ConfigFileError(ValueError):
    """A configuration file that cannot be used; one line per problem, each naming file and line."""

    def __init__(self, message_lines: list[str]):
        self.message_lines = message_lines
        super().__init__("\n".join(message_lines))


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """The configuration in ``path``; with no path ``./tuike.yaml`` if it exists, else the
    built-in defaults. Raises :class:`ConfigFileError` listing every problem."""
    if path is None:
        if not DEFAULT_PATH.is_file():
            return parse_config({})
        path = DEFAULT_PATH
    name = str(path)
    root, data = _compose_and_load(_read_text(Path(path), name), name)
    found = [(line, str(problem)) for line, problem in _duplicate_keys(root)]
    config = None
    try:
        config = parse_config(data)
    except ConfigError as exc:
        found += [(line_of(root, p.path), str(p)) for p in exc.problems]
    for check in _SECTION_CHECKS if isinstance(data, dict) else ():  # read by the streaming and HTTP commands
        try:
            check(data)
        except ConfigError as exc:
            found += [(line_of(root, p.path), str(p)) for p in exc.problems]
    if found:
        found.sort(key=lambda lp: lp[0])  # file order; sort is stable within a line
        raise ConfigFileError([f"{name}:{line}: {text}" for line, text in found])
    return config


def check_config_file(path: str | os.PathLike[str]) -> tuple[bool, list[str]]:
    """For ``tuike config check FILE``: (ok, lines to print); warnings do not make it fail."""
    warnings = secret_file_warnings(Path(path))
    try:
        config = load_config(Path(path))
    except ConfigFileError as exc:
        return False, exc.message_lines + warnings
    return True, warnings + [f"{path}: OK ({_summary(config)})"]


def _others_can_read(path: Path) -> int | None:
    """The file's permission bits when group or others may read it, else None."""
    mode = stat.S_IMODE(path.stat().st_mode)
    return mode if mode & (stat.S_IRGRP | stat.S_IROTH) else None


def _file_references(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(dotted path, value) of every ``file:PATH`` value in the configuration, in any section."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _file_references(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _file_references(value, f"{path}[{i}]")
    elif secret_file(node) is not None:
        yield path, node


def secret_file_warnings(path: Path) -> list[str]:
    """One line per secret that others on the machine could read: written inline in a
    configuration file readable by group or others, or in a ``file:PATH`` that is."""
    name = str(path)
    try:
        root, data = _compose_and_load(_read_text(path, name), name)
    except ConfigFileError:
        return []  # load_config names the problem
    if not isinstance(data, dict):
        return []
    found: list[tuple[int, str]] = []
    mode = _others_can_read(path)
    if mode is not None:
        for key, value in secret_values(data):
            if isinstance(value, str) and value and not is_reference(value):
                found.append((line_of(root, key), f"{key} is written inline and {name} can be read by group or "
                                                  f"others (mode {mode:04o}): chmod 600 {name}, or write it "
                                                  "env:NAME or file:PATH"))
    for key, value in _file_references(data):
        secret = secret_file(value)
        try:
            mode = _others_can_read(secret)
        except OSError as exc:
            found.append((line_of(root, key), f"{key}: {value}: {exc.strerror or exc} (it cannot be read where "
                                              "it is used)"))
            continue
        if mode is not None:
            found.append((line_of(root, key), f"{key}: {value} can be read by group or others (mode {mode:04o}): "
                                              f"chmod 600 {secret}"))
    found.sort(key=lambda lp: lp[0])
    return [f"{name}:{line}: warning: {text}" for line, text in found]


def _summary(config: Config) -> str:
    """What the shop engineer most wants confirmed: the rates in force and the cap."""
    levels = "/".join(str(r) for r in config.levels[: config.max_levels])
    return (f"levels {levels}, payout_cap {config.payout_cap}, {len(config.rules)} rules, "
            f"{len(config.campaigns)} campaigns, {len(config.tiers)} tiers")


def _read_text(path: Path, name: str) -> str:
    """The file as text; a missing, unreadable or non-UTF-8 file is a ConfigFileError."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigFileError([f"{name}: no such configuration file"]) from None
    except OSError as exc:
        raise ConfigFileError([f"{name}: cannot read the configuration file: {exc.strerror}"]) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigFileError([f"{name}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x})"]) from None


def _compose_and_load(text: str, name: str) -> tuple[Node | None, Any]:
    """One parse giving both the node tree (lines) and the decoded values (safe types only)."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        return root, (loader.construct_document(root) if root is not None else None)
    except yaml.MarkedYAMLError as exc:
        raise ConfigFileError([_yaml_error_line(name, exc)]) from None
    except yaml.YAMLError as exc:
        raise ConfigFileError([f"{name}: YAML error: {exc}"]) from None
    finally:
        loader.dispose()


def _yaml_error_line(name: str, exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"{name}:{mark.line + 1}" if mark else name
    column = f" (column {mark.column + 1})" if mark else ""
    context = f", {exc.context}" if exc.context else ""
    return f"{where}: YAML syntax error{column}: {exc.problem}{context}"


def line_of(root: Node | None, path: str) -> int:
    """1-based line of a dotted key path such as ``commission.rules[1].levels``: the line of its
    key (or list item); where the path leaves the file (a missing key) the deepest line found."""
    if root is None:
        return 1
    node, line = root, root.start_mark.line + 1
    for index, key in _STEP.findall(path):
        if index and isinstance(node, SequenceNode) and int(index) < len(node.value):
            node = node.value[int(index)]
            line = node.start_mark.line + 1
        elif key and isinstance(node, MappingNode) and (pair := _find_key(node, key)) is not None:
            key_node, node = pair
            line = key_node.start_mark.line + 1
        else:
            break
    return line


def _find_key(node: MappingNode, key: str) -> tuple[Node, Node] | None:
    """The last pair with this key (the one PyYAML's value comes from)."""
    found = None
    for key_node, value_node in node.value:
        if isinstance(key_node, ScalarNode) and key_node.value == key:
            found = (key_node, value_node)
    return found


def _duplicate_keys(node: Node | None, path: str = "") -> Iterator[tuple[int, str]]:
    """(line, problem) for every key written twice in one mapping, at any depth."""
    if isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            yield from _duplicate_keys(item, f"{path}[{i}]")
    elif isinstance(node, MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.value == "<<":
                continue
            key, line = key_node.value, key_node.start_mark.line + 1
            here = f"{path}.{key}" if path else key
            if key in first:
                yield line, f"{here}: key written twice (first on line {first[key]}); YAML would silently keep only this one"
            else:
                first[key] = line
            yield from _duplicate_keys(value_node, here)
