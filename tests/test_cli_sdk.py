"""The command line's original-SDK commands (docs/cli.md): tail, dump, inspect,
`get --json-output/--pretty`, `keys --json`, `--url/--address` and `--token`; embedded and
against a remote server (STATEHOUSE_URL and STATEHOUSE_TOKEN in remote mode)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from statehouse import Statehouse
from statehouse.cli import main

from .conftest import ROOT


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], list[str]]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out.splitlines(), captured.err.splitlines()


@pytest.fixture
def agent(sh: Statehouse) -> Statehouse:
    sh.start("a1", {"task": "t"})
    for n in range(3):
        with sh.step("a1", n, action=f"act {n}") as step:
            step.result = n * 10
    return sh


def test_get_json_output_and_pretty(capsys, agent: Statehouse) -> None:  # type: ignore[no-untyped-def]
    status, out, _ = run(capsys, "get", "a1", "task", "--json-output")
    assert status == 0 and len(out) == 1
    assert json.loads(out[0])["value"] == {"task": "t"}
    status, out, _ = run(capsys, "get", "a1", "task", "--pretty")
    assert status == 0 and len(out) > 1
    assert json.loads("\n".join(out))["version"] == 1


def test_keys_json(capsys, agent: Statehouse) -> None:  # type: ignore[no-untyped-def]
    assert run(capsys, "keys", "a1", "--json") == (
        0,
        ['["step:0", "step:1", "step:2", "task"]'],
        [],
    )


def test_tail_prints_the_last_n_operations(capsys, agent: Statehouse) -> None:  # type: ignore[no-untyped-def]
    status, out, _ = run(capsys, "tail", "a1", "-n", "2")
    assert status == 0
    assert [line.split()[2:5] for line in out] == [
        ["WRITE", "step:2", "v1"],
        ["WRITE", "step:2", "v2"],
    ]
    assert run(capsys, "tail", "nobody")[0] == 1


def test_tail_follow_prints_new_operations(agent: Statehouse, subprocess_env) -> None:  # type: ignore[no-untyped-def]
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "statehouse.cli",
            "tail",
            "a1",
            "-n",
            "1",
            "-f",
            "--interval",
            "0.2",
        ],
        env=subprocess_env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert "step:2 v2" in child.stdout.readline()
        agent.finish("a1", "the answer")
        deadline = time.monotonic() + 30
        line = child.stdout.readline()
        assert time.monotonic() < deadline
        assert "WRITE answer v1" in line
    finally:
        child.kill()
        child.wait()


def test_dump_json_and_text(capsys, agent: Statehouse, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "a1.json"
    assert run(capsys, "dump", "a1", "-o", str(target)) == (0, [], [])
    dumped = json.loads(target.read_text())
    assert dumped["status"] == "running"
    assert dumped["state"]["step:2"] == {
        "value": {"action": "act 2", "status": "done", "result": 20},
        "version": 2,
    }
    assert [e["commit_ts"] for e in dumped["events"]] == [e.commit_ts for e in agent.replay("a1")]
    status, out, _ = run(capsys, "dump", "a1", "--format", "text")
    assert status == 0
    assert out[0] == "# default/a1: running"
    assert sum(" ts=" in line for line in out) == 7


def test_inspect_summarizes_the_agent(capsys, agent: Statehouse) -> None:  # type: ignore[no-untyped-def]
    status, out, _ = run(capsys, "inspect", "a1")
    assert status == 0
    assert out[:5] == [
        "agent: default/a1",
        "status: running",
        "last completed step: 2",
        "keys: 4",
        "commits: 7",
    ]


def test_global_url_and_token_reach_a_server(
    capsys,
    api_server: str,
    api_token: str,
    transactional_db: None,
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.delenv("STATEHOUSE_URL", raising=False)
    with Statehouse(api_server, token=api_token) as client:
        client.start("r1", "remote task")
    address = api_server.removeprefix("http://")
    for flag, url in (("--url", api_server), ("--address", address)):
        status, out, _ = run(capsys, flag, url, "--token", api_token, "get", "r1", "task", "--json")
        assert (status, json.loads(out[0])["value"]) == (0, "remote task")
    status, _out, err = run(capsys, "--url", api_server, "--token", "sh_bad", "health")
    assert status == 1 and "unknown API token" in err[0]


def test_statehousectl_is_installed() -> None:
    ctl = Path(sys.executable).parent / "statehousectl"
    result = subprocess.run(
        [str(ctl), "--help"], capture_output=True, text=True, env=dict(os.environ)
    )
    assert result.returncode == 0
    assert "tail" in result.stdout and "--address" in result.stdout
