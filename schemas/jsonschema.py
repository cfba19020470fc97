"""JSON Schema files of the event types, generated from the pydantic models.

Producers outside the repo validate against ``schemas/jsonschema/<type>.json``; generating
them from :data:`schemas.events.EVENT_MODELS` keeps them from drifting from what the engine
accepts. The models stay the authority: some rules (a sku may not repeat inside one order)
have no JSON Schema form. Regenerate with ``python -m schemas.jsonschema``; ``--check``
exits 1 when the committed files are stale (a test does the same).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from schemas.events import EVENT_MODELS

SCHEMA_DIR = Path(__file__).with_name("jsonschema")
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema_for(event_type: str) -> dict:
    """The JSON Schema of one event type, with the dialect named so validators pick the right one."""
    model = EVENT_MODELS[event_type]
    body = model.model_json_schema(mode="validation")
    return {"$schema": DIALECT, "$id": f"{event_type}.json", **body}


def render(schema: dict) -> str:
    """Stable text (fixed key order, final newline) so a regeneration diff shows real changes only."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def generate() -> dict[str, str]:
    """File name -> file text, for every event type."""
    return {f"{name}.json": render(schema_for(name)) for name in sorted(EVENT_MODELS)}


def stale_files(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of files that are missing, differ from the models, or belong to no event type."""
    wanted = generate()
    present = {p.name for p in directory.glob("*.json")} if directory.is_dir() else set()
    stale = [n for n, text in wanted.items() if n not in present or (directory / n).read_text("utf-8") != text]
    return sorted(stale + [n for n in present if n not in wanted])


def write_all(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write every schema file and delete files of types that no longer exist."""
    directory.mkdir(parents=True, exist_ok=True)
    wanted = generate()
    for old in directory.glob("*.json"):
        if old.name not in wanted:
            old.unlink()
    paths = []
    for name, text in wanted.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    """``python -m schemas.jsonschema [--check]``."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["--check"]:
        stale = stale_files()
        for name in stale:
            print(f"{SCHEMA_DIR / name}: out of date; run python -m schemas.jsonschema", file=sys.stderr)
        return 1 if stale else 0
    if args:
        print("usage: python -m schemas.jsonschema [--check]", file=sys.stderr)
        return 2
    for path in write_all():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
