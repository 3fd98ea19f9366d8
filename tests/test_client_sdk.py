"""The original SDK's surface (docs/client.md): module names, aliases, formatting,
defaults from the environment, and the async client; embedded and remote alike."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

import statehouse
from statehouse import AsyncStatehouse, ReplayEvent, Statehouse, errors, exceptions, formatting
from statehouse.types import Operation
from tests.factories import run_async


def record(sh: Statehouse) -> list[int]:
    stamps = []
    for n in range(3):
        with sh.begin_transaction(timeout_ms=None) as tx:
            tx.write(agent_id="a1", key=f"step:{n}", value={"status": "done", "result": n})
            if n == 2:
                tx.delete(agent_id="a1", key="step:0")
        stamps.append(tx.commit_ts)
    return stamps


def test_exceptions_module_holds_the_same_classes_as_errors() -> None:
    for name in errors.__all__:
        assert getattr(exceptions, name) is getattr(errors, name)
    assert issubclass(statehouse.ConnectionError, statehouse.StatehouseError)


def test_every_error_class_is_listed_and_exported_by_the_package() -> None:
    classes = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, Exception)
    }
    assert set(errors.__all__) == classes
    assert classes <= set(statehouse.__all__)
    for name in classes:
        assert getattr(statehouse, name) is getattr(errors, name)


def test_replay_events_is_replay(sh: Statehouse) -> None:
    record(sh)
    assert [e.to_dict() for e in sh.replay_events("a1")] == [e.to_dict() for e in sh.replay("a1")]


def test_replay_over_ts1_ts3_returns_three_events(sh: Statehouse) -> None:
    t1, _t2, t3 = record(sh)
    assert len(list(sh.replay("a1", start_ts=t1, end_ts=t3))) == 3


def test_replay_pretty_yields_one_line_per_operation(sh: Statehouse) -> None:
    record(sh)
    lines = list(sh.replay_pretty("a1"))
    assert [line.split()[1:5] for line in lines] == [
        ["a1", "WRITE", "step:0", "v1"],
        ["a1", "WRITE", "step:1", "v1"],
        ["a1", "WRITE", "step:2", "v1"],
        ["a1", "DEL", "step:0", "v2"],
    ]
    assert lines[0].endswith('{"status": "done", "result": 0}')
    verbose = list(sh.replay_pretty("a1", verbose=True))
    assert all(" ts=" in line and " txn=" in line for line in verbose)


def test_replay_event_to_dict_and_repr(sh: Statehouse) -> None:
    t1, *_ = record(sh)
    event = next(sh.replay("a1"))
    data = event.to_dict()
    assert data["commit_ts"] == t1
    assert data["operations"] == [
        {"key": "step:0", "value": {"status": "done", "result": 0}, "version": 1, "op": "write"}
    ]
    assert json.loads(json.dumps(data)) == data
    assert f"commit_ts={t1}" in repr(event) and "WRITE step:0 v1" in repr(event)


def test_formatting_is_pure() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    event = ReplayEvent(
        txn_id="t",
        commit_ts=7,
        namespace="default",
        agent_id="a1",
        committed_at=at,
        operations=[Operation("k", {"x": "y" * 100}, 3), Operation("gone", None, 2, "delete")],
    )
    assert formatting.format_ts(at) == "2026-01-02T03:04:05.678Z"
    assert formatting.format_ts(0) == "1970-01-01T00:00:00.000Z"
    assert formatting.format_key("step:1", 8) == "step:1  "
    assert formatting.format_key("a-long-key", 5) == "a-lo…"
    assert formatting.format_value_summary({"a": 1}) == '{"a": 1}'
    assert formatting.format_value_summary("x" * 100, 10) == '"xxxxxx...'
    assert formatting.format_event_pretty(event).splitlines() == [
        "2026-01-02T03:04:05.678Z a1 WRITE k v3 "
        + formatting.format_value_summary({"x": "y" * 100}),
        "2026-01-02T03:04:05.678Z a1 DEL   gone v2",
    ]
    assert "ts=7 txn=t" in formatting.format_event_verbose(event)
    assert json.loads(formatting.format_event_json(event))["operations"][1]["op"] == "delete"


def test_timeout_ms_none_means_the_default(sh: Statehouse) -> None:
    tx = sh.begin_transaction(timeout_ms=None)
    assert tx.timeout_ms == 30_000
    tx.abort()


def test_namespace_and_timeout_come_from_the_environment(
    sh: Statehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATEHOUSE_NAMESPACE", "blue")
    monkeypatch.setenv("STATEHOUSE_TIMEOUT", "5")
    with Statehouse() as client:
        assert (client.namespace, client.timeout) == ("blue", 5.0)
        client.start("a1", "t")
    assert sh.get_state("a1", "task", namespace="blue").value == "t"
    assert Statehouse(namespace="green", timeout=60).namespace == "green"
    monkeypatch.setenv("STATEHOUSE_TIMEOUT", "soon")
    with pytest.raises(statehouse.ValidationError, match="STATEHOUSE_TIMEOUT"):
        Statehouse()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("STATEHOUSE_TIMEOUT", "-1", "STATEHOUSE_TIMEOUT must be a positive number of seconds"),
        ("STATEHOUSE_TIMEOUT", "inf", "STATEHOUSE_TIMEOUT must be a positive number of seconds"),
        ("STATEHOUSE_LEASE_SECONDS", "long", "STATEHOUSE_LEASE_SECONDS must be a number of"),
        ("STATEHOUSE_LEASE_SECONDS", "0", "STATEHOUSE_LEASE_SECONDS must be a positive number"),
    ],
)
def test_a_remote_client_refuses_nonsense_in_its_environment(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    """Both are read when the client is made, before any request: the error names the
    variable (a ValidationError), not a ValueError from deep inside."""
    monkeypatch.setenv(name, value)
    with pytest.raises(statehouse.ValidationError, match=re.escape(message)):
        Statehouse("http://127.0.0.1:9", token="t")


def test_an_unreachable_server_is_a_connection_error(transactional_db: None) -> None:
    from bench.remote_bench import free_port

    for url in (f"http://127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"):
        client = Statehouse(url, token="x", timeout=2)
        assert client.mode == "remote"
        with pytest.raises(statehouse.ConnectionError, match="unreachable"):
            client.get_state("a1", "k")
        with pytest.raises(statehouse.ConnectionError):
            client.start("a1", "t")


def test_a_url_that_is_neither_server_nor_database_is_refused() -> None:
    with pytest.raises(statehouse.ValidationError, match="neither a server address"):
        Statehouse("not a url")


def test_async_client_commits_reads_and_replays(sh: Statehouse, client_mode: str) -> None:
    seen: list[int] = []

    async def run() -> None:
        async with AsyncStatehouse() as client:
            assert client.mode == client_mode
            assert await client.health() == "ok"
            async with client.begin_transaction() as tx:
                tx.write(agent_id="a1", key="task", value={"task": "t"})
                tx.write(agent_id="a1", key="scratch", value=1)
            assert tx.commit_ts is not None
            with pytest.raises(errors.ConflictError):
                async with client.begin_transaction() as tx:
                    tx.write(agent_id="a1", key="scratch", value=2, expected_version=0)
            tx2 = await client.begin_transaction()
            tx2.delete(agent_id="a1", key="scratch")
            await tx2.commit()
            async with client.step("a1", 0, action="act") as step:
                step.result = 42
            assert (await client.get_state("a1", "step:0")).value["status"] == "done"
            assert await client.list_keys("a1") == ["step:0", "task"]
            assert await client.last_completed_step("a1") == 0
            seen.extend([e.commit_ts async for e in client.replay("a1")])
            assert len([line async for line in client.replay_pretty("a1")]) == 5
            await client.finish("a1", "done")
            assert await client.status("a1") == "completed"

    run_async(run())
    assert sh.get_state("a1", "answer").value == "done"
    assert seen == [e.commit_ts for e in sh.replay("a1")][: len(seen)]
    assert len(seen) == 4  # the task, the delete, the step pending then done


def test_async_client_aborts_on_exception(sh: Statehouse) -> None:
    async def run() -> None:
        async with AsyncStatehouse() as client:
            with pytest.raises(RuntimeError):
                async with client.begin_transaction() as tx:
                    tx.write(agent_id="a1", key="k", value=1)
                    raise RuntimeError("boom")

    run_async(run())
    assert sh.get_state("a1", "k").exists is False


def test_an_error_carries_the_details_it_declares() -> None:
    conflict = errors.ConflictError("no", agent_id="a", key="k", expected=1, actual=2)
    assert (str(conflict), conflict.agent_id, conflict.expected, conflict.actual) == (
        "no",
        "a",
        1,
        2,
    )
    assert errors.AgentCancelledError("gone").agent_id == ""  # a detail with a default
    with pytest.raises(TypeError, match="ConflictError needs the detail 'actual'"):
        errors.ConflictError("no", agent_id="a", key="k", expected=1)
    with pytest.raises(TypeError, match="AgentPausedError has no detail 'host'"):
        errors.AgentPausedError("no", host="h")


# Every error that carries details, with a value for each: what the HTTP API sends to a
# remote client, and what a process pool pickles to its parent.
DETAILED_ERRORS = [
    errors.ConflictError("c", agent_id="a", key="k", expected=1, actual=2),
    errors.LeaseHeldError(
        "h", agent_id="a", host="h1", pid=7, expires_at=datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    ),
    errors.LeaseLostError("l", agent_id="a", host="h1", pid=None, expires_at=None),
    errors.StepReviewRequiredError("r", agent_id="a", key="step:4", number=4),
    errors.ApprovalTimeoutError("t", approval_id=3, name="ship"),
    errors.AgentCancelledError("x", agent_id="a"),
    errors.AgentPausedError("p", agent_id="a"),
]


def test_every_error_class_that_carries_details_is_covered_here() -> None:
    covered = {type(error) for error in DETAILED_ERRORS}
    detailed = {
        getattr(errors, name)
        for name in errors.__all__
        if errors.detail_names(getattr(errors, name))
    }
    assert covered == detailed


@pytest.mark.parametrize("error", DETAILED_ERRORS, ids=lambda e: type(e).__name__)
def test_an_error_crosses_the_http_api_with_its_class_message_and_details(error) -> None:  # type: ignore[no-untyped-def]  # parametrized
    from statehouse._wire import error_body, error_from_body

    status, body = error_body(error)
    json.dumps(body)  # the body is JSON as it stands
    back = error_from_body(status, json.loads(json.dumps(body)))
    assert (type(back), str(back), back.details) == (type(error), str(error), error.details)


@pytest.mark.parametrize("error", DETAILED_ERRORS, ids=lambda e: type(e).__name__)
def test_an_error_pickles_with_its_details(error) -> None:  # type: ignore[no-untyped-def]  # parametrized
    import pickle

    back = pickle.loads(pickle.dumps(error))
    assert (type(back), back.args, back.details) == (type(error), error.args, error.details)


def test_a_remote_error_missing_a_required_detail_still_has_its_class() -> None:
    from statehouse._wire import error_from_body

    body = {"code": "conflict", "message": "m", "error": "ConflictError", "details": {"key": "k"}}
    back = error_from_body(409, body)
    assert type(back) is errors.ConflictError
    assert (back.key, back.agent_id, back.expected) == ("k", None, None)
