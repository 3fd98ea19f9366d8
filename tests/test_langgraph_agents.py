"""LangGraph threads as agents (docs/langgraph.md): steps, interrupts, crash and resume."""

from __future__ import annotations

import operator
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest

pytest.importorskip("langgraph")

from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt
from statehouse_agents.worker import ResumeWorker

from statehouse import Statehouse
from statehouse.langgraph import StatehouseSaver, invoke
from tests.agents_for_tests import read_lines
from tests.conftest import ROOT
from tests.factories import wait_until

LEASE_SECONDS = 1


class Chat(TypedDict):
    messages: Annotated[list[str], operator.add]


def _chat_graph(client: Statehouse, *, ask: bool = False) -> Any:
    def draft(state: Chat) -> dict[str, Any]:
        return {"messages": ["draft"]}

    def approve(state: Chat) -> dict[str, Any]:
        answer = interrupt("approve the draft?") if ask else "yes"
        return {"messages": [f"approved: {answer}"]}

    graph = StateGraph(Chat)
    graph.add_node("draft", draft)
    graph.add_node("approve", approve)
    graph.add_edge(START, "draft")
    graph.add_edge("draft", "approve")
    graph.add_edge("approve", END)
    return graph.compile(checkpointer=StatehouseSaver(client))


def _steps(client: Statehouse, thread: str) -> dict[int, dict[str, Any]]:
    return {int(r.key.split(":")[1]): r.value for r in client.scan_prefix(thread, "step:")}


def test_super_steps_are_steps_with_node_names_and_a_finished_graph_completes(
    sh: Statehouse,
) -> None:
    result = invoke(_chat_graph(sh), {"messages": ["hi"]}, thread_id="lg-chat")

    assert result == {"messages": ["hi", "draft", "approved: yes"]}
    steps = _steps(sh, "lg-chat")
    assert [(n, s["status"], s["action"]) for n, s in sorted(steps.items())] == [
        (0, "done", ["__start__"]),
        (1, "done", ["draft"]),
        (2, "done", ["approve"]),
    ]
    assert sh.get_state("lg-chat", "task").value["thread_id"] == "lg-chat"
    assert sh.get_state("lg-chat", "answer").value == result
    assert sh.status("lg-chat") == "completed"


def test_a_graph_stopped_at_interrupt_records_the_question_and_resumes_with_the_answer(
    sh: Statehouse,
) -> None:
    graph = _chat_graph(sh, ask=True)
    invoke(graph, {"messages": ["hi"]}, thread_id="lg-ask")

    waiting = _steps(sh, "lg-ask")[2]
    assert waiting["status"] == "pending"
    assert waiting["action"] == ["approve"]
    assert waiting["waiting"] == "input"
    assert [i["value"] for i in waiting["interrupt"]] == ["approve the draft?"]
    # No process holds it now, so the dashboard offers it for resume.
    assert sh.status("lg-ask") == "interrupted"

    result = invoke(graph, Command(resume="ok"), thread_id="lg-ask")
    assert result["messages"][-1] == "approved: ok"
    assert _steps(sh, "lg-ask")[2]["status"] == "done"
    assert "interrupt" not in _steps(sh, "lg-ask")[2]
    assert sh.status("lg-ask") == "completed"


def test_a_growing_list_is_stored_as_what_each_step_appended(sh: Statehouse) -> None:
    saver = StatehouseSaver(sh)
    graph = _chat_graph(sh)
    graph = graph.builder.compile(checkpointer=saver)
    invoke(graph, {"messages": ["m" * 1000]}, thread_id="lg-grow")
    blobs = [r.value for r in sh.scan_prefix("lg-grow", "lg/v//messages/")]
    whole = [b for b in blobs if "base" not in b]
    appended = [b for b in blobs if "base" in b]
    assert len(whole) == 1 and len(appended) == 2
    assert [b["add"] for b in appended] in (
        [{"j": ["draft"]}, {"j": ["approved: yes"]}],
        [{"j": ["approved: yes"]}, {"j": ["draft"]}],
    )
    # A fresh saver (another process) rebuilds the whole list from the pieces.
    fresh = StatehouseSaver(Statehouse())
    state = fresh.get_tuple({"configurable": {"thread_id": "lg-grow", "checkpoint_ns": ""}})
    assert state is not None
    assert state.checkpoint["channel_values"]["messages"] == ["m" * 1000, "draft", "approved: yes"]
    fresh.client.close()


def test_a_thread_id_that_is_no_agent_id_is_a_validation_error(sh: Statehouse) -> None:
    from statehouse import ValidationError

    with pytest.raises(ValidationError, match="agent_id"):
        invoke(_chat_graph(sh), {"messages": []}, thread_id="x" * 300)


@pytest.fixture
def lease_env(statehouse_knobs) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return statehouse_knobs(
        STATEHOUSE_LEASE_SECONDS=LEASE_SECONDS,
        STATEHOUSE_RESUME_BACKOFF_SECONDS=0,
        STATEHOUSE_RESUME_MAX_ATTEMPTS=2,
    )


def kill_mid_run(
    script: str, agent_id: str, side_file: Path, env: dict[str, str], *, after: int
) -> None:
    """Start `script` for `agent_id`, SIGKILL it once `after` steps are recorded done."""
    process = subprocess.Popen(
        [sys.executable, script, agent_id, "--side-file", str(side_file), "--delay", "0.6"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        client = Statehouse()
        wait_until(
            lambda: client.last_completed_step(agent_id) >= after,
            timeout=60,
            what=f"{agent_id} to finish step {after}",
        )
        assert client.status(agent_id) == "running"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        wait_until(
            lambda: client.status(agent_id) == "interrupted",
            timeout=5,
            what=f"{agent_id} to show interrupted",
        )
        client.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def resume_by_worker(agent_id: str) -> None:
    with Statehouse() as client:
        client.request_resume(agent_id, requested_by="test")
    outcomes = ResumeWorker(once=True, poll_interval=0.1).run()
    assert outcomes, "the worker resumed nothing"


@pytest.mark.multiprocess
def test_a_killed_graph_is_interrupted_and_the_worker_finishes_it_without_rerunning_nodes(
    lease_env: dict[str, str], tmp_path: Path
) -> None:
    side = tmp_path / "effects.log"
    kill_mid_run("examples/langgraph_agent.py", "lg-crash", side, lease_env, after=2)
    ran_before = read_lines(side)
    assert ran_before[:2] == ["ran lg-crash plan", "ran lg-crash search"]

    resume_by_worker("lg-crash")

    with Statehouse() as client:
        assert client.status("lg-crash") == "completed"
        assert client.get_state("lg-crash", "answer").value["log"] == [
            "plan",
            "search",
            "read",
            "write",
            "review",
        ]
    nodes = [line.split()[-1] for line in read_lines(side)]
    assert sorted(nodes) == sorted(["plan", "search", "read", "write", "review"]), nodes
