"""The `statehouse` command line: in-process through `main()`, and as real processes
(the console script, `python -m statehouse.cli`, `python manage.py statehouse`)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import UTC
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from statehouse import ReplayEvent, Statehouse
from statehouse.cli import main
from tests.conftest import ROOT

BIN = Path(sys.executable).parent
UNREACHABLE = "postgres://postgres@127.0.0.1:1/nope"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], list[str]]:
    """Run the command line in this process: (exit status, stdout lines, stderr lines)."""
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out.splitlines(), captured.err.splitlines()


def at(event: ReplayEvent) -> str:
    return event.committed_at.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


@pytest.fixture
def seeded(sh: Statehouse) -> list[ReplayEvent]:
    """Agent a1: a task and two steps, then step:1 rewritten and `scratch` deleted."""
    with sh.begin_transaction() as tx:
        tx.write("a1", "task", {"task": "summarise the quarterly report for the whole te...e team"})
        tx.write("a1", "step:0", {"status": "done", "action": "search"})
        tx.write("a1", "scratch", [1, 2])
    with sh.begin_transaction() as tx:
        tx.write("a1", "step:1", {"status": "pending"})
        tx.delete("a1", "scratch")
    with sh.begin_transaction() as tx:
        tx.write("a1", "step:1", {"status": "done", "result": "ok"})
    return list(sh.replay("a1"))


# --- health, version ------------------------------------------------------------------


def test_health_prints_ok(capsys, sh: Statehouse) -> None:
    assert run(capsys, "health") == (0, ["ok"], [])


def test_version_names_package_and_schema(capsys, sh: Statehouse) -> None:
    from django.db.migrations.loader import MigrationLoader

    latest = max(name for app, name in MigrationLoader(None).disk_migrations if app == "agents")
    assert run(capsys, "version") == (0, [f"statehouse 0.1.0 (schema agents.{latest})"], [])


def test_dash_dash_version_needs_no_database(capsys) -> None:
    assert run(capsys, "--version") == (0, ["statehouse 0.1.0"], [])


def test_help_lists_every_subcommand(capsys) -> None:
    status, out, _ = run(capsys, "--help")
    assert status == 0
    text = "\n".join(out)
    for name in ("health", "version", "get", "keys", "scan", "replay", "migrate"):
        assert name in text


# --- get ------------------------------------------------------------------------------


def test_get_prints_pretty_value_then_version(capsys, seeded) -> None:
    ts = seeded[2].commit_ts
    assert run(capsys, "get", "a1", "step:1") == (
        0,
        ["{", '  "status": "done",', '  "result": "ok"', "}", "version: 2", f"commit_ts: {ts}"],
        [],
    )


def test_get_json_is_one_object(capsys, seeded) -> None:
    status, out, err = run(capsys, "get", "a1", "step:0", "--json")
    assert (status, err, len(out)) == (0, [], 1)
    assert json.loads(out[0]) == {
        "namespace": "default",
        "agent_id": "a1",
        "key": "step:0",
        "version": 1,
        "commit_ts": seeded[0].commit_ts,
        "exists": True,
        "value": {"status": "done", "action": "search"},
    }


def test_get_at_version(capsys, seeded) -> None:
    assert run(capsys, "get", "a1", "step:1", "--version", "1") == (
        0,
        ["{", '  "status": "pending"', "}", "version: 1", f"commit_ts: {seeded[1].commit_ts}"],
        [],
    )


def test_get_at_version_of_a_delete_says_deleted(capsys, seeded) -> None:
    assert run(capsys, "get", "a1", "scratch", "--version", "2") == (
        0,
        ["(deleted)", "version: 2", f"commit_ts: {seeded[1].commit_ts}"],
        [],
    )


def test_get_missing_key_exits_1(capsys, seeded) -> None:
    assert run(capsys, "get", "a1", "nope") == (
        1,
        [],
        ["statehouse: error: key 'nope' not found for agent 'a1' in namespace 'default'"],
    )


def test_get_deleted_key_exits_1_and_points_to_history(capsys, seeded) -> None:
    assert run(capsys, "get", "a1", "scratch") == (
        1,
        [],
        [
            "statehouse: error: key 'scratch' of agent 'a1' in namespace 'default' was "
            "deleted at version 2; read the value before with --version 1"
        ],
    )


def test_get_unknown_agent_exits_1(capsys, seeded) -> None:
    assert run(capsys, "get", "ghost", "task") == (
        1,
        [],
        ["statehouse: error: unknown agent 'ghost' in namespace 'default'"],
    )


def test_get_version_that_never_existed_exits_1(capsys, seeded) -> None:
    assert run(capsys, "get", "a1", "task", "--version", "9") == (
        1,
        [],
        [
            "statehouse: error: version 9 of 'a1'/'task' in namespace 'default' never existed",
        ],
    )


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5"])
def test_get_bad_version_is_a_usage_error(capsys, bad: str) -> None:
    assert run(capsys, "get", "a1", "task", "--version", bad) == (
        2,
        [],
        [
            f"statehouse: error: argument --version: must be an integer >= 1, not {bad!r} "
            "(see 'statehouse get --help')"
        ],
    )


def test_control_character_in_id_is_a_validation_error(capsys, sh: Statehouse) -> None:
    assert run(capsys, "get", "a\x01", "task") == (
        1,
        [],
        ["statehouse: error: agent_id 'a\\x01' contains the control character '\\x01'"],
    )


# --- keys, scan -----------------------------------------------------------------------


def test_keys_one_per_line_sorted_without_tombstones(capsys, seeded) -> None:
    assert run(capsys, "keys", "a1") == (0, ["step:0", "step:1", "task"], [])


def test_keys_with_prefix(capsys, seeded) -> None:
    assert run(capsys, "keys", "a1", "--prefix", "step:") == (0, ["step:0", "step:1"], [])
    assert run(capsys, "keys", "a1", "--prefix", "zzz") == (0, [], [])


def test_keys_of_agent_whose_keys_are_all_deleted_prints_nothing(capsys, sh) -> None:
    with sh.begin_transaction() as tx:
        tx.write("a2", "k", 1)
    with sh.begin_transaction() as tx:
        tx.delete("a2", "k")
    assert run(capsys, "keys", "a2") == (0, [], [])


def test_keys_of_unknown_agent_exits_1(capsys, seeded) -> None:
    assert run(capsys, "keys", "ghost") == (
        1,
        [],
        ["statehouse: error: unknown agent 'ghost' in namespace 'default'"],
    )


def test_scan_prints_key_version_value(capsys, seeded) -> None:
    assert run(capsys, "scan", "a1", "step") == (
        0,
        [
            'step:0\t1\t{"status": "done", "action": "search"}',
            'step:1\t2\t{"status": "done", "result": "ok"}',
        ],
        [],
    )


def test_scan_json_lines(capsys, seeded) -> None:
    status, out, err = run(capsys, "scan", "a1", "step:1", "--json")
    assert (status, err) == (0, [])
    assert [json.loads(line) for line in out] == [
        {
            "namespace": "default",
            "agent_id": "a1",
            "key": "step:1",
            "version": 2,
            "commit_ts": seeded[2].commit_ts,
            "exists": True,
            "value": {"status": "done", "result": "ok"},
        }
    ]


def test_scan_of_unknown_agent_exits_1(capsys, seeded) -> None:
    status, out, err = run(capsys, "scan", "ghost", "step")
    assert (status, out) == (1, [])
    assert err == ["statehouse: error: unknown agent 'ghost' in namespace 'default'"]


# --- namespaces -----------------------------------------------------------------------


def test_namespace_option_selects_the_namespace(capsys, sh: Statehouse) -> None:
    with sh.begin_transaction(namespace="prod") as tx:
        tx.write("a1", "task", "in prod")
    assert run(capsys, "keys", "a1", "--namespace", "prod") == (0, ["task"], [])
    assert run(capsys, "get", "a1", "task", "-n", "prod") == (
        0,
        ['"in prod"', "version: 1", f"commit_ts: {sh.get_state('a1', 'task', 'prod').commit_ts}"],
        [],
    )
    assert run(capsys, "keys", "a1")[0] == 1  # nothing in "default"


def test_bad_namespace_is_a_validation_error(capsys, sh: Statehouse) -> None:
    assert run(capsys, "keys", "a1", "--namespace", "") == (
        1,
        [],
        ["statehouse: error: namespace must not be empty"],
    )


# --- replay ---------------------------------------------------------------------------


def test_replay_prints_one_readable_line_per_operation(capsys, seeded) -> None:
    first, second, third = seeded
    assert run(capsys, "replay", "a1") == (
        0,
        [
            f'{at(first)} a1 WRITE task v1 {{"task": "summarise the quarterly report for the '
            "whole te...",
            f'{at(first)} a1 WRITE step:0 v1 {{"status": "done", "action": "search"}}',
            f"{at(first)} a1 WRITE scratch v1 [1, 2]",
            f'{at(second)} a1 WRITE step:1 v1 {{"status": "pending"}}',
            f"{at(second)} a1 DEL   scratch v2",
            f'{at(third)} a1 WRITE step:1 v2 {{"status": "done", "result": "ok"}}',
        ],
        [],
    )


def test_replay_verbose_prints_full_values_and_commit(capsys, seeded) -> None:
    first = seeded[0]
    status, out, _ = run(capsys, "replay", "a1", "--verbose", "--limit", "1")
    assert (status, out) == (
        0,
        [
            f"{at(first)} a1 WRITE task v1 ts={first.commit_ts} txn={first.txn_id} "
            '{"task": "summarise the quarterly report for the whole te...e team"}'
        ],
    )


def test_replay_json_lines(capsys, seeded) -> None:
    status, out, _ = run(capsys, "replay", "a1", "--json")
    rows = [json.loads(line) for line in out]
    assert status == 0
    assert [(r["op"], r["key"], r["version"], r["value"]) for r in rows] == [
        ("write", "task", 1, {"task": "summarise the quarterly report for the whole te...e team"}),
        ("write", "step:0", 1, {"status": "done", "action": "search"}),
        ("write", "scratch", 1, [1, 2]),
        ("write", "step:1", 1, {"status": "pending"}),
        ("delete", "scratch", 2, None),
        ("write", "step:1", 2, {"status": "done", "result": "ok"}),
    ]
    assert rows[4]["commit_ts"] == seeded[1].commit_ts
    assert rows[4]["txn_id"] == seeded[1].txn_id
    assert rows[4]["agent_id"] == "a1"
    assert rows[4]["namespace"] == "default"


def test_replay_limit_stops_after_n_operations(capsys, seeded) -> None:
    status, out, _ = run(capsys, "replay", "a1", "--limit", "4")
    assert (status, [line.split()[2:4] for line in out]) == (
        0,
        [["WRITE", "task"], ["WRITE", "step:0"], ["WRITE", "scratch"], ["WRITE", "step:1"]],
    )


def test_replay_time_range_includes_both_ends(capsys, seeded) -> None:
    second, third = seeded[1], seeded[2]
    status, out, _ = run(
        capsys,
        "replay",
        "a1",
        "--start-ts",
        str(second.commit_ts),
        "--end-ts",
        str(third.commit_ts - 1),
    )
    assert (status, [line.split()[2:5] for line in out]) == (
        0,
        [["WRITE", "step:1", "v1"], ["DEL", "scratch", "v2"]],
    )


def test_replay_empty_range_of_known_agent_prints_nothing(capsys, seeded) -> None:
    after = str(seeded[-1].commit_ts + 1)
    assert run(capsys, "replay", "a1", "--start-ts", after) == (0, [], [])


def test_replay_backwards_range_is_a_usage_error(capsys) -> None:
    status, out, err = run(capsys, "replay", "a1", "--start-ts", "5", "--end-ts", "4")
    assert (status, out) == (2, [])
    assert err == ["statehouse: error: --end-ts (4) must not be less than --start-ts (5)"]


def test_replay_of_unknown_agent_exits_1(capsys, seeded) -> None:
    assert run(capsys, "replay", "ghost") == (
        1,
        [],
        ["statehouse: error: unknown agent 'ghost' in namespace 'default'"],
    )


def test_replay_verbose_and_json_exclude_each_other(capsys) -> None:
    status, _, err = run(capsys, "replay", "a1", "--verbose", "--json")
    assert status == 2
    assert err[0].startswith("statehouse: error: argument --json: not allowed with argument")


# --- usage errors, unexpected errors ----------------------------------------------------


def test_unknown_subcommand_is_one_line_exit_2(capsys) -> None:
    status, out, err = run(capsys, "frobnicate")
    assert (status, out, len(err)) == (2, [], 1)
    assert err[0].startswith("statehouse: error: argument COMMAND: invalid choice: 'frobnicate'")


def test_no_subcommand_is_a_usage_error(capsys) -> None:
    assert run(capsys) == (
        2,
        [],
        [
            "statehouse: error: the following arguments are required: COMMAND "
            "(see 'statehouse --help')"
        ],
    )


def test_missing_argument_is_a_usage_error(capsys) -> None:
    status, _, err = run(capsys, "get", "a1")
    assert status == 2
    assert err == [
        "statehouse: error: the following arguments are required: KEY (see 'statehouse get --help')"
    ]


def test_unexpected_error_is_one_line_unless_traceback(capsys, sh, monkeypatch) -> None:
    def boom(self: Statehouse) -> str:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(Statehouse, "health", boom)
    assert run(capsys, "health") == (
        1,
        [],
        ["statehouse: error: RuntimeError: boom second line (run with --traceback for details)"],
    )
    with pytest.raises(RuntimeError):
        main(["--traceback", "health"])


# --- migrate --------------------------------------------------------------------------


def test_migrate_check_on_a_migrated_database(capsys, sh: Statehouse) -> None:
    assert run(capsys, "migrate", "--check") == (0, ["the schema is up to date"], [])


def test_migrate_on_a_migrated_database_applies_nothing(capsys, sh: Statehouse) -> None:
    status, out, err = run(capsys, "migrate")
    assert (status, err) == (0, [])
    assert out[-1].strip() == "No migrations to apply."


# --- manage.py statehouse ---------------------------------------------------------------


def test_call_command_delegates_to_the_same_command_line(seeded) -> None:
    out = io.StringIO()
    call_command("statehouse", "keys", "a1", "--prefix", "step", stdout=out)
    assert out.getvalue() == "step:0\nstep:1\n"
    out = io.StringIO()
    call_command("statehouse", "get", "a1", "step:1", "--version", "1", "--json", stdout=out)
    assert json.loads(out.getvalue())["value"] == {"status": "pending"}


def test_call_command_raises_command_error_on_failure(seeded) -> None:
    with pytest.raises(CommandError) as caught:
        call_command("statehouse", "get", "a1", "nope")
    assert str(caught.value) == "key 'nope' not found for agent 'a1' in namespace 'default'"
    assert caught.value.returncode == 1


# --- real processes ---------------------------------------------------------------------


def _run(
    argv: list[str], env: dict[str, str], **kwargs: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, **kwargs
    )


@pytest.mark.multiprocess
def test_console_script(seeded, subprocess_env) -> None:
    result = _run([str(BIN / "statehouse"), "keys", "a1"], subprocess_env)
    assert (result.returncode, result.stdout, result.stderr) == (0, "step:0\nstep:1\ntask\n", "")


@pytest.mark.multiprocess
def test_python_dash_m(seeded, subprocess_env) -> None:
    result = _run([sys.executable, "-m", "statehouse.cli", "get", "a1", "nope"], subprocess_env)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "statehouse: error: key 'nope' not found for agent 'a1' in namespace 'default'\n"
    )


@pytest.mark.multiprocess
def test_manage_py_statehouse(seeded, subprocess_env) -> None:
    manage = [sys.executable, "manage.py", "statehouse"]
    result = _run([*manage, "health", "--settings=statehouse_site.settings"], subprocess_env)
    assert (result.returncode, result.stdout, result.stderr) == (0, "ok\n", "")
    result = _run([*manage, "get", "ghost", "task"], subprocess_env)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "manage.py statehouse: error: unknown agent 'ghost' in namespace 'default'\n"
    )


@pytest.mark.multiprocess
@pytest.mark.parametrize("command", ["health", "keys", "migrate"])
def test_unreachable_database_is_one_line_exit_1(subprocess_env, command: str) -> None:
    argv = [str(BIN / "statehouse"), command, *(["a1"] if command == "keys" else [])]
    result = _run(argv, {**subprocess_env, "DATABASE_URL": UNREACHABLE})
    assert (result.returncode, result.stdout) == (1, "")
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("statehouse: error: ")
    assert "127.0.0.1" in result.stderr
    assert "port 1" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.multiprocess
def test_closed_pipe_is_quiet(sh: Statehouse, subprocess_env) -> None:
    """`statehouse replay big | head -1`: no BrokenPipeError, exit 0."""
    with sh.begin_transaction() as tx:
        for i in range(3000):  # far more output than a pipe buffers
            tx.write("big", f"k{i:04}", {"i": i, "pad": "x" * 60})
    process = subprocess.Popen(
        [str(BIN / "statehouse"), "replay", "big"],
        env=subprocess_env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    assert " big WRITE k0000 v1 " in process.stdout.readline()
    process.stdout.close()
    assert process.wait(timeout=120) == 0
    assert process.stderr.read() == ""
