"""docs/contract.md §2, identity and values: bad input is a ValidationError and writes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from statehouse_agents.models import Commit, Version

from statehouse import Statehouse, StatehouseError, ValidationError


class Opaque:
    pass


def write(sh: Statehouse, agent_id: str, key: str, value: Any, **kwargs: Any) -> None:
    with sh.begin_transaction() as tx:
        tx.write(agent_id=agent_id, key=key, value=value, **kwargs)


@pytest.fixture
def offline() -> Iterator[Statehouse]:
    """A client without database access: checks that must reject input before any query."""
    client = Statehouse()
    yield client
    client.close()


def assert_nothing_written(sh: Statehouse) -> None:
    assert Commit.objects.count() == 0
    assert Version.objects.count() == 0


# --- values --------------------------------------------------------------------------------

NOT_JSON = [
    pytest.param({1, 2}, id="set"),
    pytest.param(frozenset({1}), id="frozenset"),
    pytest.param(b"bytes", id="bytes"),
    pytest.param(bytearray(b"x"), id="bytearray"),
    pytest.param((1, 2), id="tuple"),
    pytest.param(object(), id="object"),
    pytest.param(Opaque(), id="instance"),
    pytest.param(Decimal("1.5"), id="decimal"),
    pytest.param(float("nan"), id="nan"),
    pytest.param(float("inf"), id="inf"),
    pytest.param(float("-inf"), id="-inf"),
    pytest.param({"a": [1, {"b": float("nan")}]}, id="nested-nan"),
    pytest.param([1, [2, float("inf")]], id="nested-inf"),
    pytest.param({"ok": {"inner": {3}}}, id="nested-set"),
    pytest.param([b"x"], id="nested-bytes"),
    pytest.param({1: "a"}, id="int-key"),
    pytest.param({None: "a"}, id="none-key"),
    pytest.param({("t",): "a"}, id="tuple-key"),
    pytest.param({"outer": {2.5: "a"}}, id="nested-float-key"),
    pytest.param("\ud800", id="lone-surrogate"),
    pytest.param({"s": "ok \udfff"}, id="nested-lone-surrogate"),
    pytest.param({"\ud800": 1}, id="surrogate-object-key"),
    pytest.param(lambda: None, id="function"),
]


def nested(depth: int) -> list[Any]:
    outer: list[Any] = []
    inner = outer
    for _ in range(depth):
        inner.append([])
        inner = inner[0]
    return outer


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            {"a": [1, {"b": float("nan")}]},
            "has nan at value['a'][1]['b']; JSON has no NaN/Infinity",
        ),
        (float("inf"), "has inf at value; JSON has no NaN/Infinity"),
        ({"a": (1, 2)}, "has a tuple at value['a'], which is not JSON (use a list)"),
        ([0, {"s": {3}}], "has a set at value[1]['s'], which is not JSON (use a list)"),
        ({"a": {1: "x"}}, "has a non-string object key 1 at value['a']"),
        ({"when": Opaque()}, "has a Opaque at value['when'], which is not JSON"),
        (nested(205), "nests deeper than 200 levels"),
    ],
)
def test_a_value_that_is_not_json_is_refused_naming_where(
    offline: Statehouse, value: Any, message: str
) -> None:
    with pytest.raises(ValidationError) as refused, offline.begin_transaction() as tx:
        tx.write(agent_id="a1", key="the-key", value=value)
    assert str(refused.value) == f"value of key 'the-key' {message}"


@pytest.mark.parametrize("value", NOT_JSON)
def test_non_json_value_raises_validation_error_naming_key(sh: Statehouse, value: Any) -> None:
    tx = sh.begin_transaction()
    with pytest.raises(ValidationError, match="'the-key'"):
        tx.write(agent_id="a1", key="the-key", value=value)
    assert tx.operations == []
    tx.commit()
    assert sh.get_state("a1", "the-key").exists is False
    assert_nothing_written(sh)


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -7,
        2**62,
        1.5,
        -0.25,
        "",
        "text",
        [],
        {},
        [1, "two", None, {"three": [3.0]}],
        {"nested": {"deep": [{"x": None}]}, "flag": False},
    ],
)
def test_json_values_round_trip(sh: Statehouse, value: Any) -> None:
    write(sh, "a1", "k", value)
    assert sh.get_state("a1", "k").value == value
    assert json.dumps(sh.get_state("a1", "k").value) == json.dumps(value)


def test_validation_error_is_a_statehouse_error_and_value_error() -> None:
    assert issubclass(ValidationError, StatehouseError)
    assert issubclass(ValidationError, ValueError)


# --- size --------------------------------------------------------------------------------


def test_value_over_one_mib_is_rejected_by_default(sh: Statehouse) -> None:
    tx = sh.begin_transaction()
    with pytest.raises(ValidationError, match="'big'"):
        tx.write(agent_id="a1", key="big", value={"blob": "x" * (1024 * 1024)})
    tx.commit()
    assert_nothing_written(sh)


def test_value_just_under_one_mib_is_accepted_by_default(sh: Statehouse) -> None:
    blob = "x" * (1024 * 1024 - 2)  # plus two quotes: exactly 1 MiB of JSON
    write(sh, "a1", "big", blob)
    assert sh.get_state("a1", "big").value == blob


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("x" * 98, True),  # 100 bytes of JSON with the quotes
        ("x" * 99, False),
        ("é" * 49, True),  # 2 bytes each in UTF-8
        ("é" * 50, False),
        ("🦊" * 24 + "xx", True),  # 4 bytes each
        ("🦊" * 25, False),
        (["x" * 96], True),  # ["…"] adds 4
        (["x" * 97], False),
    ],
)
def test_value_size_limit_comes_from_settings_and_counts_utf8_bytes(
    sh: Statehouse, settings, value: Any, accepted: bool
) -> None:  # type: ignore[no-untyped-def]
    settings.STATEHOUSE_MAX_VALUE_BYTES = 100
    if accepted:
        write(sh, "a1", "k", value)
        assert sh.get_state("a1", "k").value == value
    else:
        with pytest.raises(ValidationError, match=r"'k'.*100"):
            write(sh, "a1", "k", value)
        assert_nothing_written(sh)


# --- identifiers ----------------------------------------------------------------------------

BAD_IDS = [
    pytest.param("", id="empty"),
    pytest.param("x" * 256, id="256-chars"),
    pytest.param("é" * 256, id="256-non-ascii"),
    pytest.param("a\nb", id="newline"),
    pytest.param("a\tb", id="tab"),
    pytest.param("a\rb", id="carriage-return"),
    pytest.param("\x00", id="nul"),
    pytest.param("a\x00b", id="embedded-nul"),
    pytest.param("\x1b[31m", id="escape"),
    pytest.param("\x7f", id="del"),
    pytest.param("a\x85b", id="c1-control"),
    pytest.param("\ud800", id="lone-surrogate"),
    pytest.param(None, id="none"),
    pytest.param(7, id="int"),
    pytest.param(b"a1", id="bytes"),
]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_agent_id_is_rejected_at_write(sh: Statehouse, bad: Any) -> None:
    tx = sh.begin_transaction()
    with pytest.raises(ValidationError, match="agent_id"):
        tx.write(agent_id=bad, key="k", value=1)
    with pytest.raises(ValidationError, match="agent_id"):
        tx.delete(agent_id=bad, key="k")
    assert tx.operations == []
    tx.commit()
    assert_nothing_written(sh)


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_key_is_rejected_at_write(sh: Statehouse, bad: Any) -> None:
    tx = sh.begin_transaction()
    with pytest.raises(ValidationError, match="key"):
        tx.write(agent_id="a1", key=bad, value=1)
    with pytest.raises(ValidationError, match="key"):
        tx.delete(agent_id="a1", key=bad)
    assert tx.operations == []
    tx.commit()
    assert_nothing_written(sh)


# None names the default namespace (STATEHOUSE_NAMESPACE, else "default"), for the client
# as for per-call arguments.
@pytest.mark.parametrize("bad", [p for p in BAD_IDS if p.id != "none"])
def test_bad_namespace_is_rejected_by_the_client(bad: Any) -> None:
    with pytest.raises(ValidationError, match="namespace"):
        Statehouse(namespace=bad)


@pytest.mark.parametrize("bad", [p for p in BAD_IDS if p.id != "none"])
def test_bad_namespace_is_rejected_per_call(sh: Statehouse, bad: Any) -> None:
    with pytest.raises(ValidationError, match="namespace"):
        sh.begin_transaction(namespace=bad)
    with pytest.raises(ValidationError, match="namespace"):
        sh.get_state("a1", "k", namespace=bad)
    with pytest.raises(ValidationError, match="namespace"):
        sh.list_keys("a1", namespace=bad)
    with pytest.raises(ValidationError, match="namespace"):
        sh.replay("a1", namespace=bad)
    assert_nothing_written(sh)


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize(
    "read",
    [
        lambda sh, bad: sh.get_state(bad, "k"),
        lambda sh, bad: sh.get_state_at_version(bad, "k", 1),
        lambda sh, bad: sh.list_keys(bad),
        lambda sh, bad: sh.scan_prefix(bad, "p"),
        lambda sh, bad: sh.replay(bad),
    ],
    ids=["get_state", "get_state_at_version", "list_keys", "scan_prefix", "replay"],
)
def test_bad_agent_id_is_rejected_by_reads(
    offline: Statehouse, bad: Any, read: Callable[[Statehouse, Any], Any]
) -> None:
    with pytest.raises(ValidationError, match="agent_id"):
        read(offline, bad)


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_key_is_rejected_by_reads(offline: Statehouse, bad: Any) -> None:
    with pytest.raises(ValidationError, match="key"):
        offline.get_state("a1", bad)
    with pytest.raises(ValidationError, match="key"):
        offline.get_state_at_version("a1", bad, 1)


@pytest.mark.parametrize("length", [1, 255])
def test_ids_of_1_to_255_characters_are_accepted(sh: Statehouse, length: int) -> None:
    ident = "i" * length
    with sh.begin_transaction(namespace=ident) as tx:
        tx.write(agent_id=ident, key=ident, value=length)
    assert sh.get_state(ident, ident, namespace=ident).value == length
    assert sh.list_keys(ident, namespace=ident) == [ident]


def test_255_non_ascii_characters_are_accepted(sh: Statehouse) -> None:
    ident = "🦊" * 255
    with sh.begin_transaction(namespace=ident) as tx:
        tx.write(agent_id=ident, key=ident, value="fox")
    assert sh.get_state(ident, ident, namespace=ident).value == "fox"


# --- other arguments --------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["1", 1.0, 1.5, True, False, -1, [1], object()])
def test_non_integer_expected_version_is_rejected(sh: Statehouse, bad: Any) -> None:
    tx = sh.begin_transaction()
    with pytest.raises(ValidationError, match="expected_version"):
        tx.write(agent_id="a1", key="k", value=1, expected_version=bad)
    with pytest.raises(ValidationError, match="expected_version"):
        tx.delete(agent_id="a1", key="k", expected_version=bad)
    assert tx.operations == []
    tx.commit()
    assert_nothing_written(sh)


# None means the default timeout (docs/client.md).
@pytest.mark.parametrize("bad", [0, -1, 1.5, 100.0, "100", True, False])
def test_bad_timeout_ms_is_rejected(offline: Statehouse, bad: Any) -> None:
    with pytest.raises(ValidationError, match="timeout_ms"):
        offline.begin_transaction(timeout_ms=bad)


@pytest.mark.parametrize("bad", [0, -1, "1", 1.0, True, None])
def test_bad_version_for_get_state_at_version_is_rejected(offline: Statehouse, bad: Any) -> None:
    with pytest.raises(ValidationError, match="version"):
        offline.get_state_at_version("a1", "k", bad)


@pytest.mark.parametrize("bad", [1, b"p", ["p"]])
def test_non_string_prefix_is_rejected(offline: Statehouse, bad: Any) -> None:
    with pytest.raises(ValidationError, match="prefix"):
        offline.list_keys("a1", prefix=bad)
    with pytest.raises(ValidationError, match="prefix"):
        offline.scan_prefix("a1", bad)


# A prefix is a partial key: empty, or what a key may hold (a bad one could match nothing).
@pytest.mark.parametrize("bad", [p for p in BAD_IDS if p.id not in ("empty", "none")])
def test_prefix_a_key_could_not_start_with_is_rejected(offline: Statehouse, bad: Any) -> None:
    with pytest.raises(ValidationError, match="prefix"):
        offline.list_keys("a1", prefix=bad)
    with pytest.raises(ValidationError, match="prefix"):
        offline.scan_prefix("a1", bad)


@pytest.mark.parametrize("bound", ["start_ts", "end_ts"])
@pytest.mark.parametrize("bad", ["1", 1.5, True])
def test_non_integer_replay_bounds_are_rejected(offline: Statehouse, bound: str, bad: Any) -> None:
    with pytest.raises(ValidationError, match=bound):
        offline.replay("a1", **{bound: bad})


# --- a bad write inside a transaction ------------------------------------------------------


def test_validation_error_inside_with_aborts_the_whole_transaction(sh: Statehouse) -> None:
    write(sh, "a1", "existing", "before")
    commits = Commit.objects.count()

    with pytest.raises(ValidationError, match="'bad'"), sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="existing", value="after")
        tx.write(agent_id="a2", key="fresh", value=1)
        tx.delete(agent_id="a1", key="other")
        tx.write(agent_id="a1", key="bad", value={1, 2})

    assert sh.get_state("a1", "existing").value == "before"
    assert sh.get_state("a1", "existing").version == 1
    assert sh.get_state("a2", "fresh").exists is False
    assert sh.get_state("a1", "other").version == 0
    assert sh.get_state("a1", "bad").exists is False
    assert Commit.objects.count() == commits


def test_rejected_write_leaves_earlier_staged_writes_when_caught(sh: Statehouse) -> None:
    # Outside a `with` block, a rejected write stages nothing and the transaction stays open.
    tx = sh.begin_transaction()
    tx.write(agent_id="a1", key="good", value=1)
    with pytest.raises(ValidationError):
        tx.write(agent_id="a1", key="bad", value=float("nan"))
    assert tx.operations == [("a1", "good", "write")]
    tx.commit()
    assert sh.list_keys("a1") == ["good"]


# --- unicode -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("namespace", "agent_id", "key"),
    [
        ("default", "агент-1", "шаг:0"),
        ("名前空間", "エージェント", "ステップ:1"),
        ("🌍", "🤖-agent", "🔑"),
        ("ns", "a\u0301", "e\u0301"),  # combining accents are kept as written
        ("ns", "é", "é"),  # precomposed: a different id than the combining form
        ("ns", "zero\u200bwidth", "rtl\u200f"),
    ],
)
def test_unicode_ids_round_trip(sh: Statehouse, namespace: str, agent_id: str, key: str) -> None:
    with sh.begin_transaction(namespace=namespace) as tx:
        tx.write(agent_id=agent_id, key=key, value={"id": agent_id})

    state = sh.get_state(agent_id, key, namespace=namespace)
    assert (state.value, state.exists, state.key, state.agent_id, state.namespace) == (
        {"id": agent_id},
        True,
        key,
        agent_id,
        namespace,
    )
    assert sh.list_keys(agent_id, namespace=namespace) == [key]
    (event,) = sh.replay(agent_id, namespace=namespace)
    assert [op.key for op in event.operations] == [key]


def test_combining_and_precomposed_ids_are_distinct(sh: Statehouse) -> None:
    write(sh, "a1", "e\u0301", "combining")
    write(sh, "a1", "\u00e9", "precomposed")
    assert sh.get_state("a1", "e\u0301").value == "combining"
    assert sh.get_state("a1", "\u00e9").value == "precomposed"
    assert sh.list_keys("a1") == sorted(["e\u0301", "\u00e9"])


@pytest.mark.parametrize(
    "value",
    [
        "🦊🚀✨",
        "中文字符",
        {"日本語": "テキスト", "emoji": "👩‍👩‍👧‍👦", "mixed": ["ä", "ß", "Ω", "😀"]},
        {"escapes": 'quote " backslash \\ newline \n tab \t nul \x00'},
        "\U0010ffff",
        "\u2028\u2029",
    ],
)
def test_unicode_values_round_trip_exactly(sh: Statehouse, value: Any) -> None:
    write(sh, "a1", "k", value)
    assert sh.get_state("a1", "k").value == value
    assert sh.get_state_at_version("a1", "k", 1).value == value
    ((op,),) = [ev.operations for ev in sh.replay("a1")]
    assert op.value == value
    assert [r.value for r in sh.scan_prefix("a1", "k")] == [value]
