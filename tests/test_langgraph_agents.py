"""LangGraph threads as agents (docs/langgraph.md): steps, interrupts, crash and resume."""

from __future__ import annotations

import json
import operator
import threading
from io import StringIO
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest

pytest.importorskip("langgraph")

import psycopg
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt
from statehouse_agents.models import Agent

from examples.langgraph_agent import NODES
from statehouse import Statehouse, ValidationError
from statehouse.langgraph import REGISTRY_AGENT, AsyncStatehouseSaver, StatehouseSaver, invoke
from tests.agents_for_tests import read_lines
from tests.conftest import database_url_of_test_db
from tests.crashes import kill_mid_run, resume_by_worker, run_worker_once
from tests.factories import make_agent, run_async, wait_until


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
    # No process holds it; it waits for an operator's decision (docs/langgraph.md).
    assert sh.status("lg-ask") == "waiting"

    assert list(Agent.objects.waiting_for_input().values_list("agent_id", flat=True)) == ["lg-ask"]

    result = invoke(graph, Command(resume="ok"), thread_id="lg-ask")
    assert result["messages"][-1] == "approved: ok"
    assert _steps(sh, "lg-ask")[2]["status"] == "done"
    assert "interrupt" not in _steps(sh, "lg-ask")[2]
    assert sh.status("lg-ask") == "completed"
    assert not Agent.objects.waiting_for_input().exists()


def test_the_agent_page_and_the_list_mark_a_graph_stopped_at_interrupt(sh: Statehouse) -> None:
    invoke(_chat_graph(sh, ask=True), {"messages": ["hi"]}, thread_id="lg-asks")
    invoke(_chat_graph(sh), {"messages": ["hi"]}, thread_id="lg-done")
    make_agent(sh, "plain", status="interrupted")  # a pending step that waits for nothing
    asks = Agent.objects.get(agent_id="lg-asks")
    staff = Client()
    staff.force_login(User.objects.create_user("op", is_staff=True))

    page = staff.get(asks.get_absolute_url()).content.decode()
    assert page.count("waiting for input") == 1
    listed = staff.get(reverse("agents:list")).content.decode()
    assert listed.count("⏸ waiting for input") == 1
    row = listed[listed.index(f'id="agent-row-{asks.pk}"') :]
    assert row.index("waiting for input") < row.index("</tr>")
    for other in ("lg-done", "plain"):
        agent = Agent.objects.get(agent_id=other)
        assert "waiting for input" not in staff.get(agent.get_absolute_url()).content.decode()


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
    with pytest.raises(ValidationError, match="agent_id"):
        invoke(_chat_graph(sh), {"messages": []}, thread_id="x" * 300)


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


@pytest.mark.multiprocess
def test_killed_graphs_queued_by_bulk_resume_finish_without_rerunning_nodes(
    lease_env: dict[str, str], tmp_path: Path
) -> None:
    effects = {name: tmp_path / f"{name}.log" for name in ("lg-bulk-1", "lg-bulk-2")}
    # Killed at different points: after its first node, and after its third.
    for (name, side), after in zip(effects.items(), (1, 3), strict=True):
        kill_mid_run("examples/langgraph_agent.py", name, side, lease_env, after=after)
    out = StringIO()
    call_command("resume_agents", "--agent", "lg-bulk-*", stdout=out)
    assert out.getvalue().startswith("2 of 2 matching agent(s) queued for resume")

    run_worker_once()

    with Statehouse() as client:
        for name, side in effects.items():
            assert client.status(name) == "completed"
            assert client.get_state(name, "answer").value["log"] == list(NODES)
            nodes = [line.split()[-1] for line in read_lines(side)]
            assert sorted(nodes) == sorted(NODES), (name, nodes)


def _latest_step(thread: str) -> int | None:
    fresh = StatehouseSaver(Statehouse())
    state = fresh.get_tuple({"configurable": {"thread_id": thread, "checkpoint_ns": ""}})
    fresh.client.close()
    return None if state is None else state.metadata["step"]


def test_a_checkpoint_left_to_the_next_write_is_committed_by_the_flusher(sh: Statehouse) -> None:
    # Plain graph.invoke: the last checkpoint has no writes after it to ride with.
    graph = _chat_graph(sh)
    graph.invoke({"messages": ["hi"]}, {"configurable": {"thread_id": "lg-flush"}})

    wait_until(lambda: _latest_step("lg-flush") == 2, timeout=5, what="the last checkpoint")
    assert _steps(sh, "lg-flush")[2]["status"] == "done"


def _saver_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("statehouse-saver")}


def test_closing_the_saver_commits_its_last_checkpoint_and_stops_its_threads(
    sh: Statehouse,
) -> None:
    earlier = _saver_threads()  # other tests' savers, left to stop by themselves
    graph = _chat_graph(sh)
    graph.invoke({"messages": ["hi"]}, {"configurable": {"thread_id": "lg-close"}})
    saver = graph.checkpointer
    assert isinstance(saver, StatehouseSaver)
    assert _saver_threads() - earlier  # the last checkpoint waits for the flusher

    saver.close()
    # At once: nothing waits for the flusher's idle second, so no thread of the saver
    # keeps a database connection open after it.
    assert _saver_threads() - earlier == set()
    assert _latest_step("lg-close") == 2


@pytest.mark.skipif(connection.vendor != "postgresql", reason="counts PostgreSQL sessions")
def test_an_async_saver_that_exits_leaves_no_database_session_open(
    transactional_db: None,
) -> None:
    watch = psycopg.connect(database_url_of_test_db(), autocommit=True)

    def sessions() -> set[int]:
        """The test database's sessions, but for the client's lease keeper (it holds the
        running agent's advisory lock: docs/operations.md, "Crash detection")."""
        query = (
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid NOT IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory')"
        )
        return {pid for (pid,) in watch.execute(query)}

    async def run() -> set[int]:
        before = sessions()
        graph = StateGraph(Chat)
        graph.add_node("draft", lambda state: {"messages": ["draft"]})
        graph.add_edge(START, "draft")
        async with AsyncStatehouseSaver(client) as saver:
            compiled = graph.compile(checkpointer=saver)
            await compiled.ainvoke({"messages": ["hi"]}, {"configurable": {"thread_id": "lg-a"}})
        # The event loop and its thread pool live on (as in a server): every session the
        # saver opened on their threads is closed when it exits.
        wait_until(lambda: sessions() <= before, timeout=5, what="the saver's sessions closed")
        return before

    client = Statehouse()
    try:
        run_async(run())
    finally:
        client.close()
        watch.close()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="counts PostgreSQL sessions")
def test_graph_runs_one_after_another_leave_no_database_sessions_behind(
    sh: Statehouse,
) -> None:
    """LangGraph writes a task's writes on a thread pool of each run; the sessions those
    threads opened end with them (docs/client.md, "Threads"), with no garbage collection."""
    import gc

    watch = psycopg.connect(database_url_of_test_db(), autocommit=True)
    query = (
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() "
        "AND pid NOT IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory')"
    )

    def sessions() -> set[int]:
        return {pid for (pid,) in watch.execute(query)}

    saver = StatehouseSaver(sh)
    graph = _chat_graph(sh).builder.compile(checkpointer=saver)
    # The first run starts the client's lease keeper, whose session lives with the client.
    invoke(graph, {"messages": ["hi"]}, thread_id="lg-run-0")
    gc.collect()
    gc.disable()
    try:
        before = sessions()
        for n in range(1, 7):
            invoke(graph, {"messages": ["hi"]}, thread_id=f"lg-run-{n}")
        saver.close()  # its flusher thread's session too
        # A run's pool threads may still be ending as it returns; theirs end with them.
        wait_until(lambda: sessions() <= before, timeout=5, what="the runs' sessions closed")
    finally:
        gc.enable()
        watch.close()
    assert [sh.status(f"lg-run-{n}") for n in range(7)] == ["completed"] * 7


def test_a_script_that_exits_without_closing_its_saver_keeps_its_last_checkpoint(
    sh: Statehouse, run_python: Any
) -> None:
    run_python(
        """
        import operator
        from typing import Annotated, TypedDict
        from langgraph.graph import START, StateGraph
        from statehouse import Statehouse
        from statehouse.langgraph import StatehouseSaver

        class Chat(TypedDict):
            messages: Annotated[list[str], operator.add]

        graph = StateGraph(Chat)
        graph.add_node("draft", lambda state: {"messages": ["draft"]})
        graph.add_node("approve", lambda state: {"messages": ["approved"]})
        graph.add_edge(START, "draft")
        graph.add_edge("draft", "approve")
        graph = graph.compile(checkpointer=StatehouseSaver(Statehouse()))
        graph.invoke({"messages": ["hi"]}, {"configurable": {"thread_id": "lg-exit"}})
        # ends at once: the last checkpoint is committed at exit, not left behind
        """
    )
    assert _latest_step("lg-exit") == 2


def test_a_tasks_writes_are_one_key_and_writing_them_again_keeps_the_first(
    sh: Statehouse,
) -> None:
    from langgraph.checkpoint.base import empty_checkpoint

    saver = StatehouseSaver(sh)
    config = saver.put(
        {"configurable": {"thread_id": "lg-w", "checkpoint_ns": ""}},
        empty_checkpoint(),
        {"source": "update", "step": -1},
        {},
    )
    saver.put_writes(config, [("a", 1), ("b", 2)], task_id="t1")
    saver.put_writes(config, [("a", 10), ("__interrupt__", "why?")], task_id="t1")

    assert sh.list_keys("lg-w", prefix="lg/w/") == [
        f"lg/w//{config['configurable']['checkpoint_id']}/t1"
    ]
    state = saver.get_tuple(config)
    assert state is not None
    assert sorted(state.pending_writes, key=repr) == sorted(
        [("t1", "a", 1), ("t1", "b", 2), ("t1", "__interrupt__", "why?")], key=repr
    )


def test_writes_stored_one_per_key_by_earlier_versions_are_still_read(sh: Statehouse) -> None:
    from langgraph.checkpoint.base import empty_checkpoint

    saver = StatehouseSaver(sh)
    config = saver.put(
        {"configurable": {"thread_id": "lg-old", "checkpoint_ns": ""}},
        empty_checkpoint(),
        {"source": "update", "step": -1},
        {},
    )
    checkpoint_id = config["configurable"]["checkpoint_id"]
    with sh.begin_transaction() as tx:
        tx.write(
            agent_id="lg-old",
            key=f"lg/w//{checkpoint_id}/t1/0",
            value={"task_id": "t1", "channel": "a", "idx": 0, "task_path": "", "value": {"j": 5}},
        )
    state = saver.get_tuple(config)
    assert state is not None and state.pending_writes == [("t1", "a", 5)]
    assert [t.pending_writes for t in saver.list(config)] == [[("t1", "a", 5)]]


class Small(TypedDict):
    n: int
    flag: bool
    label: str
    note: str
    doc: dict[str, Any]


def _small_values_graph(saver: StatehouseSaver) -> Any:
    """Two nodes writing small values (a number, a flag, short strings) and larger ones (a
    dict, a string one character over the inline limit); the flag and the dict are written
    by the first node only."""
    from statehouse.langgraph import INLINE_STRING_CHARS

    def first(state: Small) -> dict[str, Any]:
        return {"n": 1, "flag": True, "label": "first", "doc": {"body": "d" * 500}}

    def second(state: Small) -> dict[str, Any]:
        return {"n": 2, "label": "x" * INLINE_STRING_CHARS, "note": "y" * (INLINE_STRING_CHARS + 1)}

    graph = StateGraph(Small).add_sequence([first, second])
    graph.add_edge(START, "first")
    return graph.compile(checkpointer=saver)


def _checkpoint_records(client: Statehouse, thread: str) -> list[dict[str, Any]]:
    return [r.value for r in client.scan_prefix(thread, "lg/cp/")]


def test_small_channel_values_are_stored_inside_each_checkpoint_not_under_keys(
    sh: Statehouse,
) -> None:
    from statehouse.langgraph import INLINE_STRING_CHARS

    result = invoke(_small_values_graph(StatehouseSaver(sh)), {"n": 0}, thread_id="lg-small")
    assert result == {
        "n": 2,
        "flag": True,
        "label": "x" * INLINE_STRING_CHARS,
        "note": "y" * (INLINE_STRING_CHARS + 1),
        "doc": {"body": "d" * 500},
    }

    # Only the dicts (the input, the document) and the long string have keys of their own,
    # one per version: the document, written once, is stored once.
    channels = [key.split("/")[3] for key in sh.list_keys("lg-small", prefix="lg/v/")]
    assert sorted(channels) == ["__start__", "doc", "note"]
    last = max(_checkpoint_records(sh, "lg-small"), key=lambda r: r["id"])
    # The last checkpoint holds the flag of the first step too.
    assert {c: s["j"] for c, s in last["inline"].items() if "j" in s} == {
        "n": 2,
        "flag": True,
        "label": "x" * INLINE_STRING_CHARS,
    }
    # A channel emptied at this checkpoint (the edge to the node that ran) says so.
    assert {c: s for c, s in last["inline"].items() if "j" not in s} == {
        "branch:to:second": {"empty": True}
    }
    # A value held inline takes no more room than its channel's version id, which every
    # checkpoint records anyway: storage follows what changed (docs/langgraph.md).
    for record in _checkpoint_records(sh, "lg-small"):
        versions = record["checkpoint"]["j"]["channel_versions"]
        for channel, stored in record.get("inline", {}).items():
            assert len(json.dumps(stored)) <= len(json.dumps(versions[channel])), channel

    fresh = StatehouseSaver(Statehouse())
    history = list(fresh.list({"configurable": {"thread_id": "lg-small"}}))
    assert [t.checkpoint["channel_values"].get("label") for t in history] == [
        "x" * INLINE_STRING_CHARS,
        "first",
        None,
        None,
    ]
    state = fresh.get_tuple({"configurable": {"thread_id": "lg-small", "checkpoint_ns": ""}})
    assert state is not None
    assert state.checkpoint["channel_values"] == result
    fresh.client.close()


def test_checkpoints_stored_before_small_values_were_inlined_are_still_read(
    sh: Statehouse,
) -> None:
    saver = StatehouseSaver(sh)
    invoke(_small_values_graph(saver), {"n": 0}, thread_id="lg-inline")
    config: Any = {"configurable": {"thread_id": "lg-inline", "checkpoint_ns": ""}}
    before = [t.checkpoint["channel_values"] for t in saver.list(config)]

    # The layout of earlier versions: every channel version under a key of its own.
    with sh.begin_transaction() as tx:
        for record in _checkpoint_records(sh, "lg-inline"):
            versions = record["checkpoint"]["j"]["channel_versions"]
            for channel, stored in record.pop("inline", {}).items():
                key = StatehouseSaver._blob_key("", channel, versions[channel])
                tx.write(agent_id="lg-inline", key=key, value=stored)
            tx.write(agent_id="lg-inline", key=f"lg/cp//{record['id']}", value=record)
    assert not any("inline" in r for r in _checkpoint_records(sh, "lg-inline"))

    fresh = StatehouseSaver(Statehouse())
    assert [t.checkpoint["channel_values"] for t in fresh.list(config)] == before
    latest = fresh.get_tuple(config)
    assert latest is not None and latest.checkpoint["channel_values"] == before[0]
    fresh.client.close()


def test_a_checkpoint_over_the_value_limit_fails_at_put_and_nothing_of_it_is_kept(
    sh: Statehouse, settings: Any
) -> None:
    from langgraph.checkpoint.base import empty_checkpoint

    settings.STATEHOUSE_MAX_VALUE_BYTES = 2000
    saver = StatehouseSaver(sh)
    config = saver.put(
        {"configurable": {"thread_id": "lg-big", "checkpoint_ns": ""}},
        empty_checkpoint(),
        {"source": "update", "step": -1},
        {},
    )
    big = empty_checkpoint()
    big["channel_values"] = {"doc": {"text": "x" * 3000}}
    big["channel_versions"] = {"doc": "1"}

    with pytest.raises(ValidationError, match=r"lg/v//doc/1.*2000"):
        saver.put(config, big, {"source": "loop", "step": 0}, {"doc": "1"})

    # The next commit of the thread carries its own writes only.
    saver.put_writes(config, [("a", 1)], task_id="t1")
    assert sh.list_keys("lg-big", prefix="lg/") == [
        f"lg/cp//{config['configurable']['checkpoint_id']}",
        f"lg/w//{config['configurable']['checkpoint_id']}/t1",
    ]


def test_a_put_refused_for_its_size_leaves_the_next_lists_stored_whole(
    sh: Statehouse, settings: Any
) -> None:
    """A list is stored as what it appended to the version last stored; a put that fails
    stores nothing, so the next one may not build on what it would have stored."""
    from langgraph.checkpoint.base import create_checkpoint, empty_checkpoint

    settings.STATEHOUSE_MAX_VALUE_BYTES = 2000
    saver = StatehouseSaver(sh)
    config: Any = {"configurable": {"thread_id": "lg-lists", "checkpoint_ns": ""}}

    def put(messages: list[str], doc: str, version: int) -> Any:
        checkpoint = create_checkpoint(empty_checkpoint(), None, version)
        checkpoint["channel_values"] = {"messages": messages, "doc": {"text": doc}}
        checkpoint["channel_versions"] = {"messages": str(version), "doc": str(version)}
        new = {"messages": str(version), "doc": str(version)}
        return saver.put(config, checkpoint, {"source": "update", "step": version}, new)

    put(["a"], "small", 1)
    with pytest.raises(ValidationError, match="2000"):
        put(["a", "b"], "x" * 3000, 2)
    stored = put(["a", "b", "c"], "small again", 3)

    state = StatehouseSaver(Statehouse()).get_tuple(stored)
    assert state is not None
    assert state.checkpoint["channel_values"] == {
        "messages": ["a", "b", "c"],
        "doc": {"text": "small again"},
    }


def test_a_put_refused_at_its_thread_index_indexes_the_thread_at_the_next_put(
    sh: Statehouse, settings: Any
) -> None:
    """The thread's index entry (what `list(None)` and runs read) is written by the
    saver's first put of the thread; one refused while staging it stores nothing, so the
    next put writes it instead of taking it as written."""
    from langgraph.checkpoint.base import empty_checkpoint

    saver = StatehouseSaver(sh)
    config: Any = {"configurable": {"thread_id": "lg-index", "checkpoint_ns": ""}}
    settings.STATEHOUSE_MAX_TRANSACTION_OPERATIONS = 1  # the checkpoint, not its index
    with pytest.raises(ValidationError, match="1 operations"):
        saver.put(config, empty_checkpoint(), {"source": "update", "step": -1}, {})
    assert sh.list_keys(REGISTRY_AGENT) == []

    settings.STATEHOUSE_MAX_TRANSACTION_OPERATIONS = 100
    saver.put(config, empty_checkpoint(), {"source": "update", "step": -1}, {})
    saver.flush()
    assert sh.list_keys(REGISTRY_AGENT) == ["thread/lg-index"]
    assert [t.config["configurable"]["thread_id"] for t in saver.list(None)] == ["lg-index"]


def test_a_savers_memory_keeps_its_newest_entries_and_its_threads_stay_right(
    sh: Statehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long-lived saver does not grow with every super-step it ran (docs/langgraph.md,
    "Memory"): with its memory limited to 8 entries, 3 threads of 12 super-steps each
    still end with every step done, resume from their last checkpoint, and grow lists by
    appending."""
    import statehouse.langgraph as lg

    monkeypatch.setattr(lg, "RECENT_CHECKPOINTS", 8)
    monkeypatch.setattr(lg, "RECENT_THREADS", 2)

    class Count(TypedDict):
        n: int
        log: Annotated[list[str], operator.add]

    def tick(state: Count) -> dict[str, Any]:
        return {"n": state["n"] + 1, "log": [f"tick {state['n']}"]}

    graph = StateGraph(Count)
    graph.add_node("tick", tick)
    graph.add_edge(START, "tick")
    graph.add_conditional_edges("tick", lambda s: END if s["n"] >= 12 else "tick")
    saver = StatehouseSaver(sh)
    compiled = graph.compile(checkpointer=saver)
    for thread in ("m1", "m2", "m3"):
        invoke(compiled, {"n": 0, "log": []}, thread_id=thread)

    memory = [saver._steps, saver._finished, saver._seen, saver._names, saver._usage]
    assert max(len(part) for part in [*memory, saver._registered]) <= 8
    assert (len(saver._lists), len(saver._done)) == (2, 2)
    for thread in ("m1", "m2", "m3"):
        steps = _steps(sh, thread)
        assert sorted(steps) == list(range(13)), thread
        assert {v["status"] for v in steps.values()} == {"done"}
        assert sh.get_state(thread, "answer").exists
        state = StatehouseSaver(Statehouse()).get_tuple({"configurable": {"thread_id": thread}})
        assert state is not None
        assert state.checkpoint["channel_values"]["n"] == 12
        assert state.checkpoint["channel_values"]["log"] == [f"tick {n}" for n in range(12)]
    listed = {t.config["configurable"]["thread_id"] for t in saver.list(None)}
    assert {"m1", "m2", "m3"} <= listed
