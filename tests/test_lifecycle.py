"""Data lifecycle commands: `prune`, `export_agent` and `import_agent`.

prune deletes finished (completed or failed) agents, or superseded versions of finished
agents; current versions and everything of unfinished agents stay, so their replay and
resume work afterwards. An export round-trips exactly through an import; a bad import is
refused whole.
"""

from __future__ import annotations

import json
import uuid
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from statehouse_agents.models import Agent, Commit, Record, Step, Version

from statehouse import NotFoundError, Statehouse

FINISHED = ("done-agent", "failed-agent")
UNFINISHED = ("live-agent", "idle-agent")


def replay_of(sh: Statehouse, agent: str, namespace: str | None = None) -> list[Any]:
    return [
        (e.commit_ts, e.txn_id, [(o.key, o.value, o.version, o.op) for o in e.operations])
        for e in sh.replay(agent, namespace=namespace)
    ]


def current_state(sh: Statehouse, agent: str, namespace: str | None = None) -> dict[str, Any]:
    """Every key ever written, with its current value, version and existence."""
    keys = Record.objects.filter(agent__agent_id=agent, agent__namespace=namespace or "default")
    return {
        key: (s.value, s.version, s.exists)
        for key in sorted(keys.values_list("key", flat=True))
        for s in [sh.get_state(agent, key, namespace=namespace)]
    }


def counts() -> tuple[int, int, int, int, int]:
    return (
        Agent.objects.count(),
        Commit.objects.count(),
        Version.objects.count(),
        Record.objects.count(),
        Step.objects.count(),
    )


@pytest.fixture
def population(sh: Statehouse) -> Statehouse:
    """Two finished agents, a running one, an idle one (no task), with shared transactions."""
    # done-agent: task, steps, a key with several versions, a tombstone, an answer.
    sh.start("done-agent", {"task": "finish me"})
    for n in range(2):
        with sh.step("done-agent", n, action={"n": n}) as step:
            step.result = n * 10
    for value in ("v1", "v2", "v3"):
        with sh.begin_transaction() as tx:
            tx.write("done-agent", "notes", value)
            tx.write("live-agent", "shared", value)  # one transaction, two agents
    with sh.begin_transaction() as tx:
        tx.write("done-agent", "scratch", {"tmp": True})
    with sh.begin_transaction() as tx:
        tx.delete("done-agent", "scratch")
    sh.finish("done-agent", {"answer": 42})

    sh.start("failed-agent", {"task": "fail me"})
    with sh.begin_transaction() as tx:
        tx.write("failed-agent", "notes", "a")
    with sh.begin_transaction() as tx:
        tx.write("failed-agent", "notes", "b")
    sh.fail("failed-agent", "it broke")

    # live-agent: running (this client holds it), several versions of its keys.
    sh.start("live-agent", {"task": "keep me"})
    for n in range(3):
        with sh.step("live-agent", n, action={"n": n}) as step:
            step.result = n
    with sh.begin_transaction() as tx:
        tx.delete("live-agent", "shared")

    # idle-agent: plain keys only, no task: not finished either.
    for value in range(3):
        with sh.begin_transaction() as tx:
            tx.write("idle-agent", "counter", value)

    assert sh.status("done-agent") == "completed"
    assert sh.status("failed-agent") == "failed"
    assert sh.status("live-agent") == "running"
    return sh


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


# --- prune ----------------------------------------------------------------------------------


def test_prune_agents_deletes_finished_agents_only(population: Statehouse) -> None:
    sh = population
    kept = {a: (replay_of(sh, a), current_state(sh, a)) for a in UNFINISHED}
    output = run("prune", "--agents", "0s")
    assert "deleted 2 finished agent(s)" in output
    assert set(Agent.objects.values_list("agent_id", flat=True)) == set(UNFINISHED)
    for agent in FINISHED:
        assert sh.status(agent) is None
        assert list(sh.replay(agent)) == []
        assert sh.list_keys(agent) == []
        assert not Version.objects.filter(agent__agent_id=agent).exists()
    for agent in UNFINISHED:
        assert (replay_of(sh, agent), current_state(sh, agent)) == kept[agent]
    # Commits are kept while any agent still has versions in them; none is left empty.
    assert not Commit.objects.filter(versions__isnull=True).exists()
    assert sh.status("live-agent") == "running"
    assert sh.last_completed_step("live-agent") == 2


def test_prune_agents_keeps_those_finished_more_recently(population: Statehouse) -> None:
    before = counts()
    assert "deleted 0 finished agent(s)" in run("prune", "--agents", "1d")
    assert counts() == before


def test_prune_versions_deletes_superseded_versions_of_finished_agents_only(
    population: Statehouse,
) -> None:
    sh = population
    current = {a: current_state(sh, a) for a in (*FINISHED, *UNFINISHED)}
    kept = {a: replay_of(sh, a) for a in UNFINISHED}
    versions_before = Version.objects.count()
    output = run("prune", "--versions", "0s")
    assert "deleted 0 finished agent(s)" in output
    # Every current version survives, tombstones included …
    for agent, state in current.items():
        assert current_state(sh, agent) == state
        for key, (_value, version, _exists) in state.items():
            assert sh.get_state_at_version(agent, key, version).version == version
    # … superseded ones of finished agents are gone …
    for agent, key in (
        ("done-agent", "notes"),
        ("failed-agent", "notes"),
        ("done-agent", "step:0"),
    ):
        version = current[agent][key][1]
        assert version > 1
        for old in range(1, version):
            with pytest.raises(NotFoundError):
                sh.get_state_at_version(agent, key, old)
    for agent in FINISHED:
        rows = Version.objects.filter(agent__agent_id=agent)
        assert rows.count() == Record.objects.filter(agent__agent_id=agent).count()
    # … and unfinished agents keep everything, down to their shared transactions.
    for agent in UNFINISHED:
        assert replay_of(sh, agent) == kept[agent]
    assert f"and {versions_before - Version.objects.count()} old version(s)" in output
    assert versions_before > Version.objects.count()
    assert not Commit.objects.filter(versions__isnull=True).exists()


def test_prune_versions_keeps_recent_versions(population: Statehouse) -> None:
    before = counts()
    assert "deleted 0 finished agent(s) and 0 old version(s)" in run("prune", "--versions", "1h")
    assert counts() == before


def test_prune_dry_run_deletes_nothing(population: Statehouse) -> None:
    sh = population
    before = counts()
    replays = {a: replay_of(sh, a) for a in (*FINISHED, *UNFINISHED)}
    output = run("prune", "--agents", "0s", "--versions", "0s", "--dry-run")
    assert "would delete 2 finished agent(s)" in output
    assert counts() == before
    assert {a: replay_of(sh, a) for a in replays} == replays
    # What the dry run announced is what a real run deletes.
    assert "deleted 2 finished agent(s)" in run("prune", "--agents", "0s", "--versions", "0s")


def test_prune_by_namespace(sh: Statehouse) -> None:
    for ns in ("default", "other"):
        sh.start("agent", {"task": ns}, namespace=ns)
        sh.finish("agent", "ok", namespace=ns)
    run("prune", "--agents", "0s", "--namespace", "other")
    assert sh.status("agent") == "completed"
    assert sh.status("agent", namespace="other") is None


@pytest.mark.parametrize(
    "args",
    [
        ("--agents", "soon"),
        ("--agents", "10x"),
        ("--agents", "-5d"),
        ("--versions", "1d2"),
        ("--versions", "d"),
        ("--agents", "30d", "--versions", "forever"),
        (),
        ("--dry-run",),
    ],
)
def test_prune_refuses_bad_arguments(population: Statehouse, args: tuple[str, ...]) -> None:
    before = counts()
    with pytest.raises(CommandError):
        run("prune", *args)
    assert counts() == before


# --- export / import ------------------------------------------------------------------------


@pytest.fixture
def history(sh: Statehouse) -> Statehouse:
    """An agent with a varied history: steps, several versions, deletes, rewrites, unicode."""
    sh.start("hist", {"task": "round-trip", "émoji": "🚀", "nested": [1, 2.5, None, True]})
    for n in range(3):
        with sh.step("hist", n, action=f"act {n}") as step:
            step.result = {"n": n, "text": "ünïcödé"}
    with sh.begin_transaction() as tx:
        tx.write("hist", "memo", {"a": 1})
        tx.write("hist", "other", [1, 2, 3])
        tx.write("bystander", "x", "not exported")  # same transaction, another agent
    with sh.begin_transaction() as tx:
        tx.delete("hist", "memo")
        tx.write("hist", "other", "rewritten")
    with sh.begin_transaction() as tx:
        tx.write("hist", "memo", "back again")  # a write after a tombstone: version 3
    sh.register_resume("hist", "tests.agents_for_tests:complete")
    sh.finish("hist", {"answer": "done"})
    return sh


def export(agent: str, path: Path, *extra: str) -> list[dict[str, Any]]:
    run("export_agent", agent, "-o", str(path), *extra)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def without(lines: list[dict[str, Any]], *fields: str) -> list[dict[str, Any]]:
    """The export with `fields` dropped from its header and its transactions."""
    return [{k: v for k, v in line.items() if k not in fields} for line in lines]


def test_export_is_stable_and_complete(history: Statehouse, tmp_path: Path) -> None:
    sh = history
    first = export("hist", tmp_path / "one.jsonl")
    assert export("hist", tmp_path / "two.jsonl") == first
    header, *events = first
    assert header["format"] == "statehouse-agent-history" and header["agent_id"] == "hist"
    assert header["resume_entry_point"] == "tests.agents_for_tests:complete"
    replayed = list(sh.replay("hist"))
    assert [e["txn_id"] for e in events] == [e.txn_id for e in replayed]
    assert [e["commit_ts"] for e in events] == [e.commit_ts for e in replayed]
    assert all(op["key"] != "x" for e in events for op in e["operations"])


def test_export_import_round_trip_into_an_emptied_database(
    history: Statehouse, tmp_path: Path
) -> None:
    sh = history
    first = export("hist", tmp_path / "one.jsonl")
    state = current_state(sh, "hist")
    steps = list(Step.objects.filter(agent__agent_id="hist").values_list("key", "status"))
    Agent.objects.all().delete()
    Commit.objects.all().delete()
    assert counts() == (0, 0, 0, 0, 0)

    output = run("import_agent", str(tmp_path / "one.jsonl"))
    assert f"{len(first) - 1} transaction(s)" in output
    second = export("hist", tmp_path / "two.jsonl")
    assert without(second, "commit_ts") == without(first, "commit_ts")
    # commit_ts is the new database's own clock, in the same order.
    stamps = [line["commit_ts"] for line in second[1:]]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert current_state(sh, "hist") == state
    assert list(Step.objects.filter(agent__agent_id="hist").values_list("key", "status")) == steps
    assert sh.status("hist") == "completed"
    assert Agent.objects.get(agent_id="hist").resume_entry_point == (
        "tests.agents_for_tests:complete"
    )


def test_import_under_another_agent_id_with_new_txn_ids(
    history: Statehouse, tmp_path: Path
) -> None:
    sh = history
    first = export("hist", tmp_path / "one.jsonl")
    run(
        "import_agent",
        str(tmp_path / "one.jsonl"),
        "--agent-id",
        "hist-copy",
        "--namespace",
        "copies",
        "--new-txn-ids",
    )
    copy = export("hist-copy", tmp_path / "copy.jsonl", "--namespace", "copies")
    assert copy[0]["agent_id"] == "hist-copy" and copy[0]["namespace"] == "copies"
    assert without(copy, "commit_ts", "txn_id", "agent_id", "namespace") == without(
        first, "commit_ts", "txn_id", "agent_id", "namespace"
    )
    assert not {e["txn_id"] for e in copy[1:]} & {e["txn_id"] for e in first[1:]}
    new_ids = [e["txn_id"] for e in copy[1:]]
    assert {uuid.UUID(txn_id).version for txn_id in new_ids} == {7}
    assert sorted(new_ids) == new_ids
    assert current_state(sh, "hist-copy", namespace="copies") == current_state(sh, "hist")
    # The original is untouched.
    assert export("hist", tmp_path / "again.jsonl") == first


def test_import_over_an_existing_agent_is_refused(history: Statehouse, tmp_path: Path) -> None:
    export("hist", tmp_path / "one.jsonl")
    before = counts()
    with pytest.raises(CommandError, match="already has records"):
        run("import_agent", str(tmp_path / "one.jsonl"))
    with pytest.raises(CommandError, match="already has records"):
        run("import_agent", str(tmp_path / "one.jsonl"), "--new-txn-ids")
    # Another id in the same database, keeping the transaction ids: refused too.
    with pytest.raises(CommandError, match="new transaction ids"):
        run("import_agent", str(tmp_path / "one.jsonl"), "--agent-id", "hist-2")
    assert counts() == before
    assert not Agent.objects.filter(agent_id="hist-2").exists()


def _malformed(export_lines: list[str]) -> dict[str, str]:
    header = json.loads(export_lines[0])
    events = [json.loads(line) for line in export_lines[1:]]
    bad_version = json.loads(json.dumps(events))
    bad_version[-1]["operations"][0]["version"] += 5
    bad_op = json.loads(json.dumps(events))
    bad_op[1]["operations"][0]["op"] = "upsert"
    bad_value = [*export_lines[:2], export_lines[2].replace('"value":', '"value":NaN,"x":', 1)]
    return {
        "empty file": "",
        "not JSON": "this is not json\n",
        "a JSON list": "[1, 2, 3]\n",
        "wrong header": json.dumps({**header, "format": "something-else"}) + "\n",
        "format version mismatch": "\n".join(
            [json.dumps({**header, "format_version": 99}), *export_lines[1:]]
        ),
        "truncated mid-file": "\n".join([*export_lines[:3], export_lines[3][:25]]),
        "line missing fields": "\n".join([*export_lines[:3], json.dumps({"txn_id": "x"})]),
        "versions that do not match": "\n".join(
            [export_lines[0], *(json.dumps(e) for e in bad_version)]
        ),
        "unknown operation": "\n".join([export_lines[0], *(json.dumps(e) for e in bad_op)]),
        "invalid value": "\n".join(bad_value),
        "invalid key": "\n".join(
            [export_lines[0], export_lines[1].replace('"key":"task"', '"key":""', 1)]
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "empty file",
        "not JSON",
        "a JSON list",
        "wrong header",
        "format version mismatch",
        "truncated mid-file",
        "line missing fields",
        "versions that do not match",
        "unknown operation",
        "invalid value",
        "invalid key",
    ],
)
def test_malformed_import_is_refused_and_writes_nothing(
    history: Statehouse, tmp_path: Path, case: str
) -> None:
    export("hist", tmp_path / "one.jsonl")
    lines = (tmp_path / "one.jsonl").read_text(encoding="utf-8").splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(_malformed(lines)[case], encoding="utf-8")
    before = counts()
    with pytest.raises(CommandError):
        run("import_agent", str(bad), "--agent-id", "imported", "--new-txn-ids")
    assert counts() == before
    assert not Agent.objects.filter(agent_id="imported").exists()


def test_import_of_a_missing_file_and_export_of_an_unknown_agent(
    sh: Statehouse, tmp_path: Path
) -> None:
    with pytest.raises(CommandError, match="no such file"):
        run("import_agent", str(tmp_path / "nope.jsonl"))
    with pytest.raises(CommandError, match="no agent"):
        run("export_agent", "never-existed", "-o", str(tmp_path / "out.jsonl"))


def test_importing_over_an_agent_raises_already_exists(history: Statehouse, tmp_path: Path) -> None:
    from statehouse_agents.store.lifecycle import import_history

    from statehouse.errors import AlreadyExistsError, ConflictError

    export("hist", tmp_path / "one.jsonl")
    with open(tmp_path / "one.jsonl", "rb") as lines, pytest.raises(AlreadyExistsError) as caught:
        import_history(lines)
    assert not isinstance(caught.value, ConflictError)
    assert "already has records" in str(caught.value)
