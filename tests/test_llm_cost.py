"""What steps cost (docs/contract.md §3): LLM metadata written by the step helpers and the
durable decorator, checked, projected to the step rows, and totalled on the dashboard."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from statehouse_agents.models import Agent, Commit, Step

import statehouse
from statehouse import Statehouse
from statehouse.durable import record_llm
from statehouse.errors import ValidationError


def step_row(agent_id: str, number: int) -> Step:
    return Step.objects.get(agent__agent_id=agent_id, number=number)


def test_step_helper_writes_llm_metadata_in_the_value_and_the_step_row(sh: Statehouse) -> None:
    sh.start("a1", {"task": "t"})
    with sh.step("a1", 0, action="ask", model="gpt-4o") as step:
        step.llm(tokens_in=100, tokens_out=20, cost=0.25)
        step.llm(tokens_in=50, tokens_out=5, cost=0.5)  # a second call in the same step
        step.result = "ok"
    value = sh.get_state("a1", "step:0").value
    assert value == {
        "action": "ask",
        "status": "done",
        "result": "ok",
        "model": "gpt-4o",
        "tokens_in": 150,
        "tokens_out": 25,
        "cost": 0.75,
    }
    row = step_row("a1", 0)
    assert (row.model, row.tokens_in, row.tokens_out, row.cost) == ("gpt-4o", 150, 25, 0.75)


def test_failed_step_keeps_what_it_cost(sh: Statehouse) -> None:
    sh.start("a1", {"task": "t"})
    with pytest.raises(RuntimeError), sh.step("a1", 0) as step:
        step.llm(model="m", tokens_in=7, cost=0.125)
        raise RuntimeError("boom")
    row = step_row("a1", 0)
    assert (row.status, row.model, row.tokens_in, row.tokens_out, row.cost) == (
        "failed",
        "m",
        7,
        None,
        0.125,
    )


@pytest.mark.parametrize(
    ("usage", "message"),
    [
        ({"tokens_in": "many"}, "tokens_in must be an integer, not 'many'"),
        ({"tokens_out": True}, "tokens_out must be an integer, not True"),
        ({"tokens_in": -1}, "tokens_in must be from 0"),
        ({"cost": "1.0"}, "cost must be a number, not '1.0'"),
        ({"cost": -0.5}, "cost must be a finite number from 0, not -0.5"),
        ({"cost": float("nan")}, "cost must be a finite number from 0|JSON has no NaN"),
        ({"model": ""}, "model must be a non-empty string"),
        ({"model": 4}, "model must be a non-empty string, not 4"),
    ],
)
def test_wrong_llm_metadata_is_a_validation_error_and_writes_nothing(
    sh: Statehouse,
    usage: dict[str, object],
    message: str,
) -> None:
    sh.start("a1", {"task": "t"})
    commits = Commit.objects.count()
    with pytest.raises(ValidationError, match=message):
        sh.step("a1", 0, **usage)  # type: ignore[arg-type]
    # Written by hand as a step's value, the commit refuses it the same way.
    with pytest.raises(ValidationError, match=message), sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="step:0", value={"status": "done", **usage})
    assert Commit.objects.count() == commits
    assert not Step.objects.filter(agent__agent_id="a1").exists()


def test_durable_step_records_its_model_and_each_calls_usage(sh: Statehouse) -> None:
    @statehouse.step(model="claude")
    def ask(question: str) -> str:
        record_llm(tokens_in=10, tokens_out=3, cost=0.01)
        record_llm(tokens_in=5, tokens_out=2, cost=0.02)
        return question.upper()

    @statehouse.durable
    def agent(topic: str) -> str:
        return ask(topic)

    assert agent.run("d1", "hi", client=sh) == "HI"
    row = step_row("d1", 0)
    assert (row.model, row.tokens_in, row.tokens_out) == ("claude", 15, 5)
    assert row.cost == pytest.approx(0.03)
    # Called outside a run, the step is a plain function; record_llm only checks types.
    assert ask("x") == "X"
    with pytest.raises(ValidationError, match="tokens_in must be an integer"):
        record_llm(tokens_in=1.5)  # type: ignore[arg-type]


def test_durable_step_decorator_refuses_a_wrong_model() -> None:
    with pytest.raises(ValidationError, match="model must be a non-empty string"):
        statehouse.step(model="")


def _staff_client() -> Client:
    user = User.objects.create_user("op", password="pw", is_staff=True)
    client = Client()
    client.force_login(user)
    return client


def test_agent_page_and_overview_show_totals_and_rerun_cost(sh: Statehouse) -> None:
    with Statehouse() as crashed:
        crashed.start("costly", {"task": "t"})
        with crashed.step("costly", 0, model="m") as step:
            step.llm(tokens_in=1000, tokens_out=200, cost=1.5)
        with crashed.step("costly", 1, model="m") as step:
            step.llm(tokens_in=10, tokens_out=2, cost=0.25)
        # Step 2 was under way when the process stopped: in doubt, with what it cost so far.
        with crashed.begin_transaction() as tx:
            value = {"status": "pending", "model": "m", "tokens_in": 30, "cost": 0.125}
            tx.write(agent_id="costly", key="step:2", value=value)
    sh.start("cheap", {"task": "t"})
    with sh.step("cheap", 0) as step:
        step.llm(model="m", tokens_in=1, tokens_out=1, cost=0.0625)

    client = _staff_client()
    agent = Agent.objects.get(agent_id="costly")
    page = client.get(agent.get_absolute_url()).content.decode()
    assert '<dd data-testid="llm-steps">3</dd>' in page
    assert '<dd data-testid="llm-tokens">1040 in · 202 out</dd>' in page
    assert '<dd data-testid="llm-cost">1.8750</dd>' in page
    assert (
        "the 1 in-doubt or failed step it runs again cost 0.1250 (30 tokens in, 0 out) "
        "when they ran" in page
    )

    overview = client.get("/").content.decode()
    assert '<dd data-testid="llm-tokens">1041 in · 203 out</dd>' in overview
    assert '<dd data-testid="llm-cost">1.9375</dd>' in overview
    assert overview.index(">costly</a>") < overview.index(">cheap</a>")


def test_agent_page_and_overview_show_usage_by_day(sh: Statehouse) -> None:
    """Over time: one row per UTC day a step started on, newest first, the last 14 days."""
    sh.start("daily", {"task": "t"})
    sh.start("other", {"task": "t"})
    for number, cost in enumerate((0.5, 0.25, 2.0, 8.0)):
        with sh.step("daily", number, model="m") as step:
            step.llm(tokens_in=100 * (number + 1), tokens_out=10, cost=cost)
    with sh.step("other", 0, model="m") as step:
        step.llm(tokens_in=7, tokens_out=3, cost=1.0)
    today = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
    started = {0: today, 1: today - timedelta(days=1), 2: today - timedelta(days=1)}
    started[3] = today - timedelta(days=20)  # older than the table's 14 days
    for number, when in started.items():
        Step.objects.filter(agent__agent_id="daily", number=number).update(started_at=when)
    Step.objects.filter(agent__agent_id="other").update(started_at=today)

    def rows(page: str) -> list[list[str]]:
        table = page[page.index("By day (UTC") : page.index("</table>", page.index("By day"))]
        return [
            re.findall(r"<td data-label=\"[^\"]+\">([^<]*)</td>", row)
            for row in table.split("<tr>")[2:]
        ]

    client = _staff_client()
    day, yesterday = today.date().isoformat(), (today - timedelta(days=1)).date().isoformat()
    page = client.get(Agent.objects.get(agent_id="daily").get_absolute_url()).content.decode()
    assert rows(page) == [
        [day, "1", "100", "10", "0.5000"],
        [yesterday, "2", "500", "20", "2.2500"],
    ]
    assert '<dd data-testid="llm-cost">10.7500</dd>' in page  # the totals include all days
    overview = client.get("/").content.decode()
    assert rows(overview) == [
        [day, "2", "107", "13", "1.5000"],
        [yesterday, "2", "500", "20", "2.2500"],
    ]


def test_langgraph_saver_records_what_each_super_step_cost(sh: Statehouse) -> None:
    pytest.importorskip("langgraph")
    from langchain_core.messages import AIMessage
    from langgraph.graph import END, START, MessagesState, StateGraph

    from statehouse.langgraph import StatehouseSaver, invoke

    def llm(n: int) -> AIMessage:
        return AIMessage(
            content=f"answer {n}",
            usage_metadata={"input_tokens": 100 * n, "output_tokens": 10 * n, "total_tokens": 0},
            response_metadata={"model_name": "fake-llm"},
        )

    def think(state: MessagesState) -> dict[str, Any]:
        return {"messages": [llm(1)]}

    def write(state: MessagesState) -> dict[str, Any]:
        return {"messages": [llm(2)]}

    graph = StateGraph(MessagesState)
    graph.add_node("think", think)
    graph.add_node("write", write)
    graph.add_edge(START, "think")
    graph.add_edge("think", "write")
    graph.add_edge("write", END)
    saver = StatehouseSaver(sh, llm_cost=lambda model, t_in, t_out: (t_in + 2 * t_out) / 1000)
    invoke(graph.compile(checkpointer=saver), {"messages": [("user", "hi")]}, thread_id="lg")

    rows = {s.number: s for s in Step.objects.filter(agent__agent_id="lg")}
    assert (rows[1].model, rows[1].tokens_in, rows[1].tokens_out) == ("fake-llm", 100, 10)
    assert rows[1].cost == pytest.approx(0.12)
    assert (rows[2].model, rows[2].tokens_in, rows[2].tokens_out) == ("fake-llm", 200, 20)
    assert rows[2].cost == pytest.approx(0.24)
    assert rows[0].tokens_in is None and rows[0].model == ""


def _super_steps(saver: Any, thread: str) -> tuple[Any, Any]:
    """Checkpoints for super-steps 0 and 1 of `thread`, as the Pregel loop puts them: the
    config of step 0's checkpoint (where its task writes) and a `put` of step 1's."""
    from langgraph.checkpoint.base import create_checkpoint, empty_checkpoint

    config: Any = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    first = create_checkpoint(empty_checkpoint(), None, 0)
    at_step_0 = saver.put(config, first, {"source": "loop", "step": 0}, {})

    def put_step_1() -> Any:
        return saver.put(
            at_step_0, create_checkpoint(first, None, 1), {"source": "loop", "step": 1}, {}
        )

    return at_step_0, put_step_1


def _usage_message(tokens_in: int, tokens_out: int) -> Any:
    from langchain_core.messages import AIMessage

    return AIMessage(
        content="answer",
        usage_metadata={"input_tokens": tokens_in, "output_tokens": tokens_out, "total_tokens": 0},
        response_metadata={"model_name": "fake-llm"},
    )


def test_a_tasks_usage_written_after_the_next_checkpoint_is_kept_on_its_done_step(
    sh: Statehouse,
) -> None:
    """LangGraph hands a task's writes to a background thread, and they can reach the
    saver after the checkpoint that ends their super-step: the step stays done and still
    records what the task's LLM calls cost."""
    pytest.importorskip("langgraph")
    from statehouse.langgraph import StatehouseSaver

    saver = StatehouseSaver(sh, llm_cost=lambda model, t_in, t_out: (t_in + 2 * t_out) / 1000)
    at_step_0, put_step_1 = _super_steps(saver, "lg-late")
    put_step_1()
    saver.put_writes(at_step_0, [("messages", [_usage_message(100, 10)])], "t1", "think")
    saver.put_writes(at_step_0, [("messages", [_usage_message(200, 20)])], "t2", "write")
    # a task's writes that come again (its key is merged, after a conflict) count once
    saver.put_writes(at_step_0, [("messages", [_usage_message(200, 20)])], "t2", "write")
    saver.flush()

    value = sh.get_state("lg-late", "step:1").value
    assert {k: value.get(k) for k in ("status", "model", "tokens_in", "tokens_out")} == {
        "status": "done",
        "model": "fake-llm",
        "tokens_in": 300,
        "tokens_out": 30,
    }
    assert value["cost"] == pytest.approx(0.36)
    row = step_row("lg-late", 1)
    assert (row.status, row.model, row.tokens_in, row.tokens_out) == ("done", "fake-llm", 300, 30)
    assert row.cost == pytest.approx(0.36)


def test_a_tasks_usage_committed_while_the_next_checkpoint_is_staged_is_kept(
    sh: Statehouse,
) -> None:
    """`put` builds its checkpoint's writes before it waits for the saver's write lock; a
    task's writes committed in between are not lost to the done step it then commits."""
    pytest.importorskip("langgraph")
    from statehouse.langgraph import StatehouseSaver

    saver = StatehouseSaver(sh)
    at_step_0, put_step_1 = _super_steps(saver, "lg-between")
    register = saver._register

    def writes_arrive_meanwhile(*args: Any) -> Any:
        # Staging is over (the index entry is its last write); the lock is not yet taken.
        saver.put_writes(at_step_0, [("messages", [_usage_message(100, 10)])], "t1", "think")
        return register(*args)

    saver._register = writes_arrive_meanwhile  # type: ignore[method-assign]
    put_step_1()
    saver.flush()

    value = sh.get_state("lg-between", "step:1").value
    assert (value["status"], value["model"], value["tokens_in"], value["tokens_out"]) == (
        "done",
        "fake-llm",
        100,
        10,
    )
    row = step_row("lg-between", 1)
    assert (row.status, row.model, row.tokens_in, row.tokens_out) == ("done", "fake-llm", 100, 10)


def test_usage_written_more_than_four_super_steps_late_leaves_the_step_as_it_is(
    sh: Statehouse,
) -> None:
    """The saver keeps the done steps of a thread's last four super-steps for late writes
    (docs/langgraph.md): writes later than that change nothing."""
    pytest.importorskip("langgraph")
    from langgraph.checkpoint.base import create_checkpoint, empty_checkpoint

    from statehouse.langgraph import LATE_WRITES_STEPS, StatehouseSaver

    saver = StatehouseSaver(sh)
    config: Any = {"configurable": {"thread_id": "lg-old-writes", "checkpoint_ns": ""}}
    checkpoint = empty_checkpoint()
    configs = []
    for step in range(LATE_WRITES_STEPS + 2):
        checkpoint = create_checkpoint(checkpoint, None, step)
        config = saver.put(config, checkpoint, {"source": "loop", "step": step}, {})
        configs.append(config)
    writes = [("messages", [_usage_message(100, 10)])]
    saver.put_writes(configs[0], writes, "t1", "think")  # step 1: too late
    saver.put_writes(configs[2], writes, "t1", "think")  # step 3: still kept
    saver.flush()

    steps = {s.number: s for s in Step.objects.filter(agent__agent_id="lg-old-writes")}
    assert (steps[1].status, steps[1].tokens_in) == ("done", None)
    assert (steps[3].status, steps[3].tokens_in) == ("done", 100)
    assert sh.get_state("lg-old-writes", "step:1").version == 1


def _checkpoint_id(config: Any) -> str:
    return str(config["configurable"]["checkpoint_id"])


def test_a_cost_function_failing_under_the_write_lock_stores_nothing_of_the_checkpoint(
    sh: Statehouse,
) -> None:
    """A task's writes committed while `put` staged its checkpoint are priced again under
    the saver's write lock. If the user's `llm_cost` raises there, `put` raises it and
    stores nothing of its checkpoint; the next checkpoint is stored whole, with the step
    done and priced."""
    pytest.importorskip("langgraph")
    from statehouse.langgraph import StatehouseSaver

    price_list_down = False

    def llm_cost(model: str, tokens_in: int, tokens_out: int) -> float:
        if price_list_down:
            raise RuntimeError("price list unavailable")
        return (tokens_in + 2 * tokens_out) / 1000

    thread: Any = {"configurable": {"thread_id": "lg-cost-fails", "checkpoint_ns": ""}}
    saver = StatehouseSaver(sh, llm_cost=llm_cost)
    at_step_0, put_step_1 = _super_steps(saver, "lg-cost-fails")
    register = saver._register

    def writes_arrive_meanwhile(*args: Any) -> Any:
        nonlocal price_list_down
        saver.put_writes(at_step_0, [("messages", [_usage_message(100, 10)])], "t1", "think")
        price_list_down = True
        return register(*args)

    saver._register = writes_arrive_meanwhile  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="price list unavailable"):
        put_step_1()
    saver._register = register  # type: ignore[method-assign]
    saver.flush()

    latest = saver.get_tuple(thread)
    assert latest is not None
    assert _checkpoint_id(latest.config) == _checkpoint_id(at_step_0)
    pending = sh.get_state("lg-cost-fails", "step:1")
    assert (pending.version, pending.value["status"], pending.value["tokens_in"]) == (
        1,
        "pending",
        100,
    )

    price_list_down = False
    at_step_1 = put_step_1()
    saver.flush()
    latest = saver.get_tuple(thread)
    assert latest is not None
    assert _checkpoint_id(latest.config) == _checkpoint_id(at_step_1)
    done = sh.get_state("lg-cost-fails", "step:1").value
    assert (done["status"], done["action"], done["tokens_in"], done["tokens_out"]) == (
        "done",
        ["think"],
        100,
        10,
    )
    assert done["cost"] == pytest.approx(0.12)
    row = step_row("lg-cost-fails", 1)
    assert (row.status, row.tokens_in, row.cost) == ("done", 100, pytest.approx(0.12))
