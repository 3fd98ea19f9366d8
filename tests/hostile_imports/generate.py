"""Write the hostile import corpus: `python -m tests.hostile_imports.generate`.

Each file is a valid export of one agent but for one hostile change, mostly on line 3 (so
that line 2 would already have been applied: "nothing imported" means it is undone too).
`expected.json` maps each file to the start of the one-line error `import_agent` must give.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
HEADER = {
    "format": "statehouse-agent-history",
    "format_version": 1,
    "namespace": "default",
    "agent_id": "hostile",
    "resume_entry_point": "",
}
EVENTS = [
    {
        "txn_id": "0b7f7a8e-2f0a-4a8e-9a51-1f1f6b0e0001",
        "commit_ts": 1,
        "committed_at": "2026-01-01T00:00:00+00:00",
        "operations": [{"key": "task", "op": "write", "version": 1, "value": {"task": "t"}}],
    },
    {
        "txn_id": "0b7f7a8e-2f0a-4a8e-9a51-1f1f6b0e0002",
        "commit_ts": 2,
        "committed_at": "2026-01-01T00:00:01+00:00",
        "operations": [
            {"key": "step:0", "op": "write", "version": 1, "value": {"status": "pending"}},
            {"key": "notes", "op": "write", "version": 1, "value": "café"},
        ],
    },
    {
        "txn_id": "0b7f7a8e-2f0a-4a8e-9a51-1f1f6b0e0003",
        "commit_ts": 3,
        "committed_at": "2026-01-01T00:00:02+00:00",
        "operations": [{"key": "step:0", "op": "write", "version": 2, "value": {"status": "done"}}],
    },
]
DEEP = 100_000

Doc = dict[str, Any]
Change = Callable[[Doc, list[Doc]], None]


def _line3(change: Callable[[Doc], None]) -> Change:
    return lambda header, events: change(events[1])


def _op3(change: Callable[[Doc], None]) -> Change:
    return lambda header, events: change(events[1]["operations"][0])


def _set(name: str, value: Any) -> Callable[[Doc], None]:
    return lambda doc: doc.__setitem__(name, value)


def _drop(name: str) -> Callable[[Doc], None]:
    return lambda doc: doc.pop(name)


def _header(name: str, value: Any) -> Change:
    return lambda header, events: header.__setitem__(name, value)


# name -> (change of the documents, expected start of the error)
CASES: dict[str, tuple[Change, str]] = {
    "bad_date.jsonl": (_line3(_set("committed_at", "yesterday")), "line 3, field committed_at:"),
    "date_without_time_zone.jsonl": (
        _line3(_set("committed_at", "2026-01-01T00:00:01")),
        "line 3, field committed_at:",
    ),
    "date_as_number.jsonl": (
        _line3(_set("committed_at", 1767225601)),
        "line 3, field committed_at: must be a string",
    ),
    "date_year_99999.jsonl": (
        _line3(_set("committed_at", "99999-01-01T00:00:00+00:00")),
        "line 3, field committed_at:",
    ),
    "date_before_year_1_in_utc.jsonl": (
        _line3(_set("committed_at", "0001-01-01T00:00:00+05:00")),
        "line 3, field committed_at:",
    ),
    "bad_txn_id.jsonl": (_line3(_set("txn_id", "txn-1")), "line 3, field txn_id: 'txn-1' is not"),
    "txn_id_as_number.jsonl": (_line3(_set("txn_id", 42)), "line 3, field txn_id: must be"),
    "txn_id_null.jsonl": (_line3(_set("txn_id", None)), "line 3, field txn_id: must be"),
    "missing_txn_id.jsonl": (_line3(_drop("txn_id")), "line 3, field txn_id: missing"),
    "missing_committed_at.jsonl": (
        _line3(_drop("committed_at")),
        "line 3, field committed_at: missing",
    ),
    "missing_operations.jsonl": (_line3(_drop("operations")), "line 3, field operations: missing"),
    "operations_not_a_list.jsonl": (
        _line3(_set("operations", {"key": "step:0"})),
        "line 3, field operations: must be a list",
    ),
    "operations_a_string.jsonl": (
        _line3(_set("operations", "step:0")),
        "line 3, field operations: must be a list",
    ),
    "operations_empty.jsonl": (_line3(_set("operations", [])), "line 3, field operations:"),
    "operation_not_an_object.jsonl": (
        _line3(_set("operations", [1])),
        "line 3, field operations[0]: must be an object",
    ),
    "missing_version.jsonl": (_op3(_drop("version")), "line 3, field operations[0].version:"),
    "string_version.jsonl": (
        _op3(_set("version", "1")),
        "line 3, field operations[0].version: must be an integer >= 1, not '1'",
    ),
    "version_zero.jsonl": (_op3(_set("version", 0)), "line 3, field operations[0].version:"),
    "version_true.jsonl": (_op3(_set("version", True)), "line 3, field operations[0].version:"),
    "version_float.jsonl": (_op3(_set("version", 1.0)), "line 3, field operations[0].version:"),
    "version_gap.jsonl": (
        _op3(_set("version", 7)),
        "line 3, field operations[0].version: 'step:0' would get version 1",
    ),
    "missing_op.jsonl": (_op3(_drop("op")), "line 3, field operations[0].op:"),
    "unknown_op.jsonl": (_op3(_set("op", "upsert")), "line 3, field operations[0].op: 'upsert'"),
    "missing_key.jsonl": (_op3(_drop("key")), "line 3, field operations[0].key:"),
    "empty_key.jsonl": (_op3(_set("key", "")), "line 3, field operations[0].key:"),
    "key_a_number.jsonl": (_op3(_set("key", 5)), "line 3, field operations[0].key:"),
    "key_with_nul.jsonl": (_op3(_set("key", "a\x00b")), "line 3, field operations[0].key:"),
    "key_lone_surrogate.jsonl": (_op3(_set("key", "a\ud800")), "line 3, field operations[0].key:"),
    "key_300_characters.jsonl": (_op3(_set("key", "k" * 300)), "line 3, field operations[0].key:"),
    "step_number_too_big.jsonl": (
        _op3(_set("key", "step:99999999999")),
        "line 3, field operations[0].key:",
    ),
    "missing_value.jsonl": (_op3(_drop("value")), "line 3, field operations[0].value: missing"),
    "value_nested_100000_deep.jsonl": (
        _op3(_set("value", "DEEP")),
        "line 3 nests JSON too deeply",
    ),
    "value_nested_300_deep.jsonl": (
        _op3(_set("value", "NEST300")),
        "line 3, field operations[0].value:",
    ),
    "value_nan.jsonl": (_op3(_set("value", "NAN")), "line 3, field operations[0].value:"),
    "duplicate_key.jsonl": (
        lambda header, events: events[1]["operations"].append(
            copy.deepcopy(events[1]["operations"][0])
        ),
        "line 3, field operations[2].key: 'step:0' appears twice",
    ),
    "header_string_format_version.jsonl": (_header("format_version", "1"), "line 1"),
    "header_empty_agent_id.jsonl": (_header("agent_id", ""), "line 1, field agent_id:"),
    "header_long_namespace.jsonl": (_header("namespace", "n" * 300), "line 1, field namespace:"),
    "header_entry_point_with_newline.jsonl": (
        _header("resume_entry_point", "os:system\nrm"),
        "line 1, field resume_entry_point:",
    ),
    "header_entry_point_302_characters.jsonl": (
        _header("resume_entry_point", "m" * 300 + ":f"),
        "line 1, field resume_entry_point:",
    ),
}
# Files whose bytes are not JSON documents of the shapes above.
RAW: dict[str, tuple[bytes, str]] = {}


def _render(doc: Doc) -> bytes:
    text = json.dumps(doc, ensure_ascii=True)
    text = text.replace('"DEEP"', "[" * DEEP + "]" * DEEP)
    text = text.replace('"NEST300"', "[" * 300 + "]" * 300)
    text = text.replace('"NAN"', "NaN")
    return text.encode("ascii")


def _lines(header: Doc, events: list[Doc]) -> list[bytes]:
    return [_render(header), *(_render(event) for event in events)]


def _raw_cases() -> None:
    good = _lines(copy.deepcopy(HEADER), copy.deepcopy(EVENTS))
    latin1 = good[2].replace(b"caf\\u00e9", "café".encode("latin-1"))
    assert latin1 != good[2]
    RAW["latin1_bytes.jsonl"] = (
        b"\n".join([*good[:2], latin1, *good[3:]]) + b"\n",
        "line 3 is not UTF-8 text",
    )
    RAW["latin1_header.jsonl"] = (
        b"\n".join([good[0].replace(b"hostile", "hôstile".encode("latin-1")), *good[1:]]),
        "line 1 is not UTF-8 text",
    )
    RAW["empty.jsonl"] = (b"", "line 1 is not JSON")
    RAW["no_header.jsonl"] = (b"\n".join(good[1:]), "line 1 is not a statehouse-agent-history")
    RAW["truncated_line.jsonl"] = (
        b"\n".join([*good[:2], good[2][:30]]),
        "line 3 is not JSON",
    )
    RAW["line_a_list.jsonl"] = (b"\n".join([*good[:2], b"[1, 2]"]), "line 3 is not a JSON object")
    RAW["utf8_bom.jsonl"] = (b"\xef\xbb\xbf" + b"\n".join(good), "line 1 is not JSON")


def main() -> None:
    _raw_cases()
    expected: dict[str, str] = {}
    for name, (change, message) in CASES.items():
        header, events = copy.deepcopy(HEADER), copy.deepcopy(EVENTS)
        change(header, events)
        (HERE / name).write_bytes(b"\n".join(_lines(header, events)) + b"\n")
        expected[name] = message
    for name, (content, message) in RAW.items():
        (HERE / name).write_bytes(content)
        expected[name] = message
    (HERE / "valid.jsonl").write_bytes(b"\n".join(_lines(HEADER, EVENTS)) + b"\n")
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
