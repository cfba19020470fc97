"""Event validation (contract §1.1): exact messages that name the field; JSON Schema files in sync
with the models and agreeing with them on valid and invalid examples."""
from __future__ import annotations

import copy
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas import jsonschema as js
from schemas.events import EVENT_MODELS, InvalidEvent, validate_event
from schemas.records import parse_record, read_records

DATA = Path(__file__).parent.parent / "data"
EXAMPLES = [orjson.loads(line) for line in (DATA / "valid_events.jsonl").read_bytes().splitlines()]
BY_TYPE: dict[str, dict] = {}
for _e in EXAMPLES:
    BY_TYPE.setdefault(_e["type"], _e)  # the first example of each type


def _with(base: str, **changes: Any) -> dict:
    """A copy of the example of type ``base`` with top-level changes (``...`` deletes the key)."""
    obj = copy.deepcopy(BY_TYPE[base])
    for key, value in changes.items():
        if value is ...:
            obj.pop(key, None)
        else:
            obj[key] = value
    return obj


def _item(**changes: Any) -> dict:
    """An order.paid example whose first item is changed."""
    obj = copy.deepcopy(BY_TYPE["order.paid"])
    obj["items"][0].update(changes)
    return obj


def _reason(obj: dict) -> str:
    with pytest.raises(InvalidEvent) as info:
        validate_event(obj)
    return str(info.value)


# --- the models ---------------------------------------------------------------------------


def test_every_type_has_a_valid_example() -> None:
    assert set(BY_TYPE) == set(EVENT_MODELS)


@pytest.mark.parametrize("obj", EXAMPLES, ids=[f"{e['type']}-{e['event_id']}" for e in EXAMPLES])
def test_valid_examples(obj: dict) -> None:
    event = validate_event(obj)
    assert type(event) is EVENT_MODELS[obj["type"]]
    assert event.event_id == obj["event_id"]


def test_bad_json_is_named_through_read_records(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"type": "order.completed", "event_id": "e1", "ts": 2026-11-11}\n')
    (rec,) = read_records(path)
    assert rec.obj is None
    assert parse_record(rec) == rec.error == "bad JSON at column 57: unexpected character, expected ',' or '}'"


BAD_CASES = {
    "unknown type": (
        _with("order.completed", type="order.shipped"),
        "type: unknown event type 'order.shipped' (known: click, customer.bound, order.cancelled, "
        "order.completed, order.paid, order.refunded, order.settled, promoter.agreed, promoter.banned, promoter.joined, "
        "review.decided)",
    ),
    "missing type": (
        _with("order.completed", type=...),
        "type: required field is missing (known: click, customer.bound, order.cancelled, "
        "order.completed, order.paid, order.refunded, order.settled, promoter.agreed, promoter.banned, promoter.joined, "
        "review.decided)",
    ),
    "float money": (
        _item(price=199.00),
        'order.paid: items[0].price: money must be a decimal string such as "199.00", got float 199.0',
    ),
    "money with 3 decimals": (
        _item(price="199.001"),
        "order.paid: items[0].price: money must be a non-negative decimal string with at most 2 decimals, got '199.001'",
    ),
    "negative money": (
        _with("order.refunded", items=..., amount="-5.00"),
        "order.refunded: amount: money must be a non-negative decimal string with at most 2 decimals, got '-5.00'",
    ),
    "missing required field": (
        _with("order.paid", customer_id=...),
        "order.paid: customer_id: required field is missing",
    ),
    "missing required item field": (
        _item(category=None) | {"items": [{"sku": "A", "price": "1.00", "qty": 1}]},
        "order.paid: items[0].category: required field is missing",
    ),
    "bad timestamp": (
        _with("click", ts="2026-11-10 8pm"),
        "click: ts: timestamp is not RFC 3339: '2026-11-10 8pm' (write e.g. 2026-11-11T10:00:00+08:00)",
    ),
    "ISO week date is not RFC 3339": (
        _with("click", ts="2026-W46-3T10:00:00+08:00"),
        "click: ts: timestamp is not RFC 3339: '2026-W46-3T10:00:00+08:00' (write e.g. 2026-11-11T10:00:00+08:00)",
    ),
    "timestamp without offset": (
        _with("click", ts="2026-11-10T20:00:00"),
        "click: ts: timestamp has no UTC offset: '2026-11-10T20:00:00' (write e.g. 2026-11-11T10:00:00+08:00)",
    ),
    "timestamp as a number": (
        _with("click", ts=1794355200),
        "click: ts: timestamp must be an RFC 3339 string, got int 1794355200",
    ),
    "negative qty": (
        _item(qty=-1),
        "order.paid: items[0].qty: Input should be greater than 0",
    ),
    "qty as a float": (
        _item(qty=2.0),
        "order.paid: items[0].qty: Input should be a valid integer",
    ),
    "refund with both items and amount": (
        _with("order.refunded", amount="10.00"),
        "order.refunded: give either items (per-item amounts) or amount (order level), not both or neither",
    ),
    "refund with neither": (
        _with("order.refunded", items=...),
        "order.refunded: give either items (per-item amounts) or amount (order level), not both or neither",
    ),
    "numeric id": (
        _with("order.completed", order_id=42),
        "order.completed: order_id: ids are strings, got int 42",
    ),
    "repeated sku": (
        _item(sku="SKU-0002"),
        "order.paid: items[1].sku 'SKU-0002' repeats items[0]: send one line per sku with its total qty",
    ),
    "unknown decision": (
        _with("review.decided", decision="maybe"),
        "review.decided: decision: Input should be 'release' or 'reject'",
    ),
    "not an object": ([BY_TYPE["click"]], "an event is a JSON object, got list"),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_events_name_the_field(case: str) -> None:
    obj, message = BAD_CASES[case]
    assert _reason(obj) == message


def test_bad_json_message(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"type": "click", "event_id": "e1", ts: "2026-11-10T20:00:00+08:00"}\n')
    (rec,) = read_records(path)
    assert parse_record(rec) == "bad JSON at column 37: unexpected character, expected a string key"


def test_valid_money_forms() -> None:
    for price in ("0", "199", "199.0", "199.00", "0.01", "4999999999999.99"):  # × qty 2: the largest line
        assert str(validate_event(_item(price=price)).items[0].price) == price


def test_timestamps_become_utc() -> None:
    a = validate_event(_with("click", ts="2026-11-10T20:00:00+08:00"))
    b = validate_event(_with("click", ts="2026-11-10t12:00:00z"))
    assert a.ts == b.ts == datetime(2026, 11, 10, 12, 0, tzinfo=timezone.utc)
    assert a.ts_ms == b.ts_ms == 1794312000000


# --- JSON Schema --------------------------------------------------------------------------


def test_committed_json_schema_files_are_in_sync() -> None:
    assert js.stale_files() == [], "run: python -m schemas.jsonschema"
    assert sorted(p.name for p in js.SCHEMA_DIR.glob("*.json")) == sorted(f"{t}.json" for t in EVENT_MODELS)


def test_stale_files_detects_drift(tmp_path: Path) -> None:
    js.write_all(tmp_path)
    assert js.stale_files(tmp_path) == []
    (tmp_path / "click.json").write_text("{}\n")
    (tmp_path / "order.shipped.json").write_text("{}\n")
    (tmp_path / "review.decided.json").unlink()
    assert js.stale_files(tmp_path) == ["click.json", "order.shipped.json", "review.decided.json"]
    js.write_all(tmp_path)
    assert js.stale_files(tmp_path) == []


def test_check_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert js.main(["--check"]) == 0
    assert js.main(["--bogus"]) == 2


def test_schema_says_money_and_ts_are_strings() -> None:
    paid = json.loads((js.SCHEMA_DIR / "order.paid.json").read_text("utf-8"))
    price = paid["$defs"]["Item"]["properties"]["price"]
    assert price["type"] == "string" and price["pattern"] == r"^[0-9]{1,13}(\.[0-9]{1,2})?$"
    assert paid["properties"]["ts"]["type"] == "string" and paid["properties"]["ts"]["format"] == "date-time"
    refund = json.loads((js.SCHEMA_DIR / "order.refunded.json").read_text("utf-8"))
    assert refund["properties"]["amount"]["anyOf"][0]["type"] == "string"
    assert refund["$defs"]["RefundItem"]["properties"]["amount"]["type"] == "string"
    for name in EVENT_MODELS:
        schema = json.loads((js.SCHEMA_DIR / f"{name}.json").read_text("utf-8"))
        assert schema["properties"]["type"]["const"] == name
        assert {"type", "event_id", "ts"} <= set(schema["required"])


class SchemaInvalid(Exception):
    pass


def check(schema: dict, value: Any, root: dict | None = None, where: str = "") -> None:
    """A small JSON Schema (2020-12) checker for exactly the keywords the generated files use:
    the `jsonschema` package is not a dependency. Unknown keywords fail loudly, so a new
    constraint in the models cannot be skipped here without notice."""
    root = root or schema
    annotations = {"$schema", "$id", "$defs", "title", "description", "examples", "default", "format"}
    unknown = set(schema) - annotations - set(_KEYWORDS)
    if unknown:
        raise AssertionError(f"checker does not know {sorted(unknown)}")
    for key, arg in schema.items():
        if key in _KEYWORDS:
            _KEYWORDS[key](arg, value, root, where, schema)


def _type_ok(kind: str, value: Any) -> bool:
    return {
        "string": isinstance(value, str),
        "integer": isinstance(value, int) and not isinstance(value, bool) or isinstance(value, float) and value.is_integer(),
        "number": isinstance(value, (int, float)) and not isinstance(value, bool),
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "null": value is None,
        "boolean": isinstance(value, bool),
    }[kind]


def _fail(where: str, msg: str) -> None:
    raise SchemaInvalid(f"{where or '(top)'}: {msg}")


def _k_type(arg, value, root, where, schema):
    if not _type_ok(arg, value):
        _fail(where, f"not {arg}")


def _k_properties(arg, value, root, where, schema):
    if isinstance(value, dict):
        for name, sub in arg.items():
            if name in value:
                check(sub, value[name], root, f"{where}.{name}")


def _k_required(arg, value, root, where, schema):
    if isinstance(value, dict):
        for name in arg:
            if name not in value:
                _fail(where, f"{name} missing")


def _k_items(arg, value, root, where, schema):
    if isinstance(value, list):
        for i, v in enumerate(value):
            check(arg, v, root, f"{where}[{i}]")


def _k_ref(arg, value, root, where, schema):
    assert arg.startswith("#/$defs/")
    check(root["$defs"][arg.removeprefix("#/$defs/")], value, root, where)


def _count_valid(options: list, value, root, where) -> int:
    n = 0
    for option in options:
        try:
            check(option, value, root, where)
            n += 1
        except SchemaInvalid:
            pass
    return n


def _k_anyof(arg, value, root, where, schema):
    if _count_valid(arg, value, root, where) == 0:
        _fail(where, "matches no anyOf option")


def _k_oneof(arg, value, root, where, schema):
    if _count_valid(arg, value, root, where) != 1:
        _fail(where, "does not match exactly one oneOf option")


def _k_pattern(arg, value, root, where, schema):
    # ECMA-262 `$` (JSON Schema's regex flavour) is the end of input; Python's `$` also
    # matches before a final newline, so say \Z.
    if isinstance(value, str) and not re.search(re.sub(r"\$$", r"\\Z", arg), value):
        _fail(where, f"does not match {arg}")


def _k_len(bound):
    def k(arg, value, root, where, schema):
        if isinstance(value, str) and not (len(value) >= arg if bound == "min" else len(value) <= arg):
            _fail(where, f"{bound}Length {arg}")
    return k


def _k_minitems(arg, value, root, where, schema):
    if isinstance(value, list) and len(value) < arg:
        _fail(where, f"fewer than {arg} items")


def _k_exclusive_minimum(arg, value, root, where, schema):
    if _type_ok("number", value) and not value > arg:
        _fail(where, f"not > {arg}")


def _k_maximum(arg, value, root, where, schema):
    if _type_ok("number", value) and not value <= arg:
        _fail(where, f"not <= {arg}")


def _k_const(arg, value, root, where, schema):
    if value != arg or type(value) is not type(arg):
        _fail(where, f"not {arg!r}")


def _k_enum(arg, value, root, where, schema):
    if not any(value == a and type(value) is type(a) for a in arg):
        _fail(where, f"not one of {arg}")


_KEYWORDS = {
    "type": _k_type, "properties": _k_properties, "required": _k_required, "items": _k_items,
    "$ref": _k_ref, "anyOf": _k_anyof, "oneOf": _k_oneof, "pattern": _k_pattern,
    "minLength": _k_len("min"), "maxLength": _k_len("max"), "minItems": _k_minitems,
    "exclusiveMinimum": _k_exclusive_minimum, "maximum": _k_maximum, "const": _k_const, "enum": _k_enum,
}


def _schema(event_type: str) -> dict:
    return json.loads((js.SCHEMA_DIR / f"{event_type}.json").read_text("utf-8"))


def _schema_ok(obj: Any) -> bool:
    if not isinstance(obj, dict) or obj.get("type") not in EVENT_MODELS:
        return False
    try:
        check(_schema(obj["type"]), obj)
        return True
    except SchemaInvalid:
        return False


def _model_ok(obj: Any) -> bool:
    try:
        validate_event(obj)
        return True
    except InvalidEvent:
        return False


# Where the JSON Schema cannot say what the models check. Always the safe direction: the schema
# accepts, the model refuses (the event goes to the dead letters with a reason).
SCHEMA_WEAKER = {
    "qty as a float",  # JSON Schema counts 2.0 as an integer
    "repeated sku",  # uniqueness of one property across array items
}
MORE_CASES = {
    "impossible date": _with("click", ts="2026-02-30T10:00:00+08:00"),
    "hour 25": _with("click", ts="2026-11-10T25:00:00+08:00"),
    "empty id": _with("click", click_id=""),
    "long id": _with("click", click_id="x" * 201),
    "empty items": _with("order.paid", items=[]),
    "lower-case currency": _with("order.paid", currency="cny"),
    "bad via": _with("customer.bound", via="sms"),
    "null optional": _with("customer.bound", via=None, click_id=None),
    "extra field": _with("order.completed", warehouse="W1"),
    "money with 16 digits": _item(price="1234567890123456"),
    "money with sign": _item(price="+1.00"),
    "money with newline": _item(price="1.00\n"),
    "money in arabic digits": _item(price="١٩٩"),
    "zero qty": _item(qty=0),
    "bool qty": _item(qty=True),
    "null parent": _with("promoter.joined", parent_id=None),
    "refund items null, amount given": _with("order.refunded", items=None, amount="1.00"),
    "refund empty items": _with("order.refunded", items=[]),
    "refund item float": _with("order.refunded", items=[{"sku": "A", "amount": 1.5}]),
}
SCHEMA_WEAKER |= {"impossible date", "hour 25"}  # the pattern checks the shape, not the calendar


@pytest.mark.parametrize("obj", EXAMPLES, ids=[f"{e['type']}-{e['event_id']}" for e in EXAMPLES])
def test_valid_examples_pass_the_json_schema(obj: dict) -> None:
    check(_schema(obj["type"]), obj)


@pytest.mark.parametrize("case", sorted(set(BAD_CASES) | set(MORE_CASES)))
def test_json_schema_and_models_agree(case: str) -> None:
    obj = BAD_CASES[case][0] if case in BAD_CASES else MORE_CASES[case]
    schema_ok, model_ok = _schema_ok(obj), _model_ok(obj)
    if case in SCHEMA_WEAKER:
        assert (schema_ok, model_ok) == (True, False)
    else:
        assert schema_ok == model_ok, f"schema says {schema_ok}, model says {model_ok}"


def test_with_the_jsonschema_package_if_installed() -> None:
    jsonschema = pytest.importorskip("jsonschema")  # not a dependency; used only where present
    for obj in EXAMPLES:
        jsonschema.Draft202012Validator(_schema(obj["type"])).validate(obj)
    # the package matches patterns with Python's re, whose $ also matches before a final newline
    # (ECMA-262's, which JSON Schema names, does not; the checker above follows ECMA-262)
    python_re_differs = {"money with newline"}
    for case, obj in MORE_CASES.items():
        if case not in SCHEMA_WEAKER | python_re_differs and not _model_ok(obj):
            assert not jsonschema.Draft202012Validator(_schema(obj["type"])).is_valid(obj), case
