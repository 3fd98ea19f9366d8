"""The example document's agent code runs against Statehouse and resumes after a crash."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from statehouse import LeaseHeldError, Statehouse
from tests import example_agent as ex


class Crash(Exception):
    """Stands for the process dying at one point of the loop."""


@pytest.fixture(autouse=True)
def fresh_example(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(ex, "executed", [])
    monkeypatch.setattr(ex, "DONE_AT", 5)
    yield


def crash_once(monkeypatch: pytest.MonkeyPatch, where: str, at_step: int) -> None:
    """Make `ex.<where>` raise Crash the first time it is called for step `at_step`."""
    original: Callable[[Any], Any] = getattr(ex, where)
    crashed = []

    def step_of(arg: Any) -> int:
        if where == "decide_next_action":
            return int(arg)
        if where == "execute_action":
            return int(arg["n"])
        return int(arg["value"]) // 10  # is_complete gets the result

    def wrapper(arg: Any) -> Any:
        if step_of(arg) == at_step and not crashed:
            crashed.append(at_step)
            raise Crash(f"crash in {where} at step {at_step}")
        return original(arg)

    monkeypatch.setattr(ex, where, wrapper)


def step_history(client: Statehouse, agent_id: str, key: str) -> list[str]:
    return [
        op.value["status"]
        for event in client.replay(agent_id)
        for op in event.operations
        if op.key == key
    ]


def test_agent_loop_records_task_and_every_step(sh: Statehouse) -> None:
    result = ex.agent_loop(sh, "agent-1", "research")

    assert result == {"value": 50, "final": True}
    assert sh.get_state("agent-1", "task").value == {"task": "research"}
    assert sh.list_keys("agent-1") == [f"step:{n}" for n in range(6)] + ["task"]
    for n in range(6):
        state = sh.get_state("agent-1", f"step:{n}")
        assert state.version == 2
        assert state.value == {
            "action": {"type": "compute", "id": f"action-{n}", "n": n},
            "status": "done",
            "result": {"value": n * 10, "final": n >= 5},
        }
        assert step_history(sh, "agent-1", f"step:{n}") == ["pending", "done"]
    assert ex.executed == [0, 1, 2, 3, 4, 5]
    assert ex.find_resume_point(sh, "agent-1") == 5


def test_find_resume_point_of_agent_without_steps_is_minus_one(sh: Statehouse) -> None:
    assert ex.find_resume_point(sh, "nobody") == -1


def test_find_resume_point_compares_step_numbers_not_key_text(sh: Statehouse) -> None:
    # list_keys sorts "step:10" before "step:2"; the last completed step is still 10.
    with sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="task", value={"task": "t"})
        for n in range(11):
            tx.write(agent_id="a1", key=f"step:{n}", value={"status": "done"})
        tx.write(agent_id="a1", key="step:11", value={"status": "pending"})
    assert ex.find_resume_point(sh, "a1") == 10


@pytest.mark.parametrize(
    ("where", "stored_after_crash", "last_done", "resumes_at", "executed"),
    [
        # The document's three crash scenarios, at step 3.
        ("decide_next_action", None, 2, 3, [0, 1, 2, 3, 4, 5]),
        ("execute_action", "pending", 2, 3, [0, 1, 2, 3, 4, 5]),
        ("is_complete", "done", 3, 4, [0, 1, 2, 3, 4, 5]),
    ],
)
def test_loop_stopped_part_way_resumes_at_the_right_step(
    sh: Statehouse,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    where: str,
    stored_after_crash: str | None,
    last_done: int,
    resumes_at: int,
    executed: list[int],
) -> None:
    crash_once(monkeypatch, where, at_step=3)
    with pytest.raises(Crash):
        ex.agent_loop(sh, "agent-1", "research")

    step3 = sh.get_state("agent-1", "step:3")
    assert (step3.value or {}).get("status") == stored_after_crash
    assert sh.get_state("agent-1", "step:4").exists is False
    assert ex.find_resume_point(sh, "agent-1") == last_done

    # The process is gone (its client closed: the lease released); a new one resumes.
    sh.close()
    with Statehouse() as client:
        result = ex.resume_agent(client, "agent-1")

        assert capsys.readouterr().out == f"Resuming from step {resumes_at}\n"
        assert result == {"value": 50, "final": True}
        assert ex.executed == executed
        assert client.list_keys("agent-1") == [f"step:{n}" for n in range(6)] + ["task"]
        for n in range(6):
            state = client.get_state("agent-1", f"step:{n}")
            assert state.value["status"] == "done"
            assert state.value["result"] == {"value": n * 10, "final": n >= 5}
        assert client.get_state("agent-1", "task").version == 1
        assert ex.find_resume_point(client, "agent-1") == 5

        expected_step3 = {
            "decide_next_action": ["pending", "done"],
            "execute_action": ["pending", "pending", "done"],
            "is_complete": ["pending", "done"],
        }[where]
        assert step_history(client, "agent-1", "step:3") == expected_step3
        assert client.get_state("agent-1", "step:3").version == len(expected_step3)
        for n in (0, 1, 2, 4, 5):
            assert step_history(client, "agent-1", f"step:{n}") == ["pending", "done"]


@pytest.mark.parametrize("crash_at", [0, 1, 9, 10, 11])
def test_resume_after_crash_at_any_step_finishes(
    sh: Statehouse, monkeypatch: pytest.MonkeyPatch, crash_at: int
) -> None:
    monkeypatch.setattr(ex, "DONE_AT", 12)
    crash_once(monkeypatch, "execute_action", at_step=crash_at)
    with pytest.raises(Crash):
        ex.agent_loop(sh, "agent-1", "long task")
    assert ex.find_resume_point(sh, "agent-1") == crash_at - 1

    result = ex.resume_agent(sh, "agent-1")

    assert result == {"value": 120, "final": True}
    assert ex.executed == list(range(13))
    assert sorted(sh.list_keys("agent-1", prefix="step:"), key=lambda k: int(k[5:])) == [
        f"step:{n}" for n in range(13)
    ]
    assert ex.find_resume_point(sh, "agent-1") == 12


def test_resume_without_task_does_nothing(
    sh: Statehouse, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ex.resume_agent(sh, "nobody") is None
    assert capsys.readouterr().out == "No task to resume\n"
    assert sh.list_keys("nobody") == []
    assert list(sh.replay("nobody")) == []


def test_resume_while_the_crashed_client_still_holds_the_agent_is_refused(
    sh: Statehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    crash_once(monkeypatch, "execute_action", at_step=2)
    with pytest.raises(Crash):
        ex.agent_loop(sh, "agent-1", "research")

    # `sh` is still open, as if its process were alive: a second copy must not run.
    with Statehouse() as other, pytest.raises(LeaseHeldError):
        ex.resume_agent(other, "agent-1")

    assert sh.get_state("agent-1", "step:2").value["status"] == "pending"
    assert sh.get_state("agent-1", "step:2").version == 1
    assert ex.executed == [0, 1]
