"""Durable functions (docs/durable.md): steps record themselves, re-runs skip what is done."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import statehouse
from statehouse import StatehouseError, StepMismatchError, ValidationError
from statehouse.client import Statehouse
from statehouse.durable import resume as durable_resume
from tests.agents_for_tests import read_lines
from tests.crashes import kill_mid_run, resume_by_worker
from tests.factories import run_async

calls: list[str] = []


@statehouse.step
def fetch(url: str) -> dict[str, Any]:
    calls.append(f"fetch {url}")
    return {"url": url, "size": len(url)}


@statehouse.step
def summarize(page: dict[str, Any]) -> str:
    calls.append("summarize")
    if page["url"] == "boom":
        raise RuntimeError("the model is down")
    return f"{page['url']} has {page['size']} characters"


@statehouse.durable
def research(topic: str) -> str:
    return summarize(fetch(topic))


@statehouse.step
async def afetch(url: str) -> str:
    calls.append(f"afetch {url}")
    await asyncio.sleep(0)
    return url.upper()


@statehouse.durable
async def aresearch(topic: str) -> list[str]:
    return [await afetch(topic), await afetch(topic + "!")]


@pytest.fixture(autouse=True)
def _fresh_calls() -> None:
    calls.clear()


def _steps(client: Statehouse, agent_id: str) -> list[dict[str, Any]]:
    found = {int(r.key.split(":")[1]): r.value for r in client.scan_prefix(agent_id, "step:")}
    return [found[n] for n in sorted(found)]


def test_each_step_call_is_recorded_with_its_arguments_and_result(sh: Statehouse) -> None:
    assert research.run("dur-1", "volcanoes", client=sh) == "volcanoes has 9 characters"

    assert _steps(sh, "dur-1") == [
        {
            "action": {"step": "fetch", "args": ["volcanoes"], "kwargs": {}},
            "status": "done",
            "result": {"url": "volcanoes", "size": 9},
        },
        {
            "action": {
                "step": "summarize",
                "args": [{"url": "volcanoes", "size": 9}],
                "kwargs": {},
            },
            "status": "done",
            "result": "volcanoes has 9 characters",
        },
    ]
    task = sh.get_state("dur-1", "task").value
    assert task["function"] == "tests.test_durable:research"
    assert task["args"] == ["volcanoes"]
    assert sh.get_state("dur-1", "answer").value == "volcanoes has 9 characters"
    assert sh.status("dur-1") == "completed"


def test_a_rerun_returns_recorded_results_and_runs_only_the_incomplete_step(
    sh: Statehouse,
) -> None:
    with pytest.raises(RuntimeError, match="model is down"):
        research.run("dur-2", "boom", client=sh)
    assert sh.status("dur-2") == "failed"
    assert [s["status"] for s in _steps(sh, "dur-2")] == ["done", "failed"]
    assert calls == ["fetch boom", "summarize"]

    calls.clear()
    with pytest.raises(RuntimeError):
        research.run("dur-2", "boom", client=sh)
    assert calls == ["summarize"]  # fetch's recorded result came back without running it


def test_a_finished_agent_run_again_returns_its_answer_without_running(sh: Statehouse) -> None:
    research.run("dur-3", "lava", client=sh)
    calls.clear()
    assert research.run("dur-3", "lava", client=sh) == "lava has 4 characters"
    assert calls == []


def test_a_changed_step_sequence_is_a_typed_error_at_the_diverging_step(sh: Statehouse) -> None:
    with sh.step("dur-4", 0, action={"step": "fetch", "args": ["x"], "kwargs": {}}) as s:
        s.result = {"url": "x", "size": 1}
    with sh.step("dur-4", 1, action={"step": "translate", "args": [], "kwargs": {}}):
        pass
    with pytest.raises(StepMismatchError) as raised:
        research.run("dur-4", "x", client=sh)
    error = raised.value
    assert isinstance(error, StatehouseError)
    assert (error.number, error.recorded, error.called) == (1, "translate", "summarize")
    assert "step 1" in str(error) and "'translate'" in str(error)
    assert calls == []  # fetch was replayed, summarize never ran
    assert not sh.get_state("dur-4", "answer").exists
    assert not sh.get_state("dur-4", "failure").exists


def test_arguments_that_are_not_json_are_a_validation_error_and_nothing_is_written(
    sh: Statehouse,
) -> None:
    with pytest.raises(ValidationError, match="JSON"):
        research.run("dur-5", {1, 2}, client=sh)
    assert sh.list_keys("dur-5") == []


def test_outside_a_run_steps_and_durable_functions_are_plain_calls(sh: Statehouse) -> None:
    assert research("plain") == "plain has 5 characters"
    assert calls == ["fetch plain", "summarize"]


def test_async_functions_and_steps_are_durable_too(sh: Statehouse) -> None:
    assert run_async(aresearch.run("dur-6", "ash", client=sh)) == ["ASH", "ASH!"]
    assert [s["result"] for s in _steps(sh, "dur-6")] == ["ASH", "ASH!"]
    calls.clear()
    assert run_async(aresearch.run("dur-6", "ash", client=sh)) == ["ASH", "ASH!"]
    assert calls == []


def test_the_resume_entry_point_reruns_the_function_its_task_names(sh: Statehouse) -> None:
    with pytest.raises(RuntimeError):
        research.run("dur-7", "boom", client=sh)
    calls.clear()
    with pytest.raises(RuntimeError):
        durable_resume(sh, "dur-7")
    assert calls == ["summarize"]


@pytest.mark.multiprocess
def test_a_killed_durable_function_is_resumed_by_the_worker_from_its_first_incomplete_step(
    lease_env: dict[str, str], tmp_path: Path
) -> None:
    side = tmp_path / "effects.log"
    kill_mid_run("examples/durable_agent.py", "dur-crash", side, lease_env, after=1)
    assert read_lines(side)[:2] == ["ran dur-crash 0", "ran dur-crash 1"]

    resume_by_worker("dur-crash")

    with Statehouse() as client:
        assert client.status("dur-crash") == "completed"
        assert client.get_state("dur-crash", "answer").value == [f"result {n}" for n in range(5)]
    assert read_lines(side) == [f"ran dur-crash {n}" for n in range(5)]
