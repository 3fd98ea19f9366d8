"""A LangGraph graph that asks a person before it acts: its `interrupt()` is answered on
the dashboard (docs/langgraph.md, "Interrupts answered by an operator").

    python examples/langgraph_approval.py lg-deploy --target prod   # stops: waiting
    # an operator approves or rejects it on the agent page, with a comment
    python manage.py resume_worker --once                            # it goes on

`plan` writes what it would do, `ask` stops at `interrupt({...})` (the agent shows as
waiting, its Approval lists the interrupt's value), and once decided the resume worker
runs `examples.langgraph_approval:resume`, which continues the thread with the decision
as the value `interrupt()` returns: {"approved": bool, "comment": str, "decided_by": str}.
`act` then deploys, or not.
"""

from __future__ import annotations

import argparse
import operator
import sys
from pathlib import Path
from typing import Annotated, Any, TypedDict

if __package__ in (None, ""):  # run as a script: make `statehouse` and `examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt

from statehouse import Statehouse
from statehouse.langgraph import StatehouseSaver, invoke

ENTRY_POINT = "examples.langgraph_approval:resume"


class State(TypedDict, total=False):
    target: str
    decision: dict[str, Any]
    log: Annotated[list[str], operator.add]


def plan(state: State) -> dict[str, Any]:
    return {"log": [f"plan: deploy to {state['target']}"]}


def ask(state: State) -> dict[str, Any]:
    decision = interrupt({"question": f"Deploy to {state['target']}?", "target": state["target"]})
    return {"decision": decision}


def act(state: State) -> dict[str, Any]:
    decision = state["decision"]
    done = "deployed" if decision["approved"] else "not deployed"
    return {"log": [f"{done} to {state['target']} ({decision['comment'] or 'no comment'})"]}


def build(client: Statehouse) -> Any:
    graph = StateGraph(State)
    graph.add_node("plan", plan)
    graph.add_node("ask", ask)
    graph.add_node("act", act)
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "ask")
    graph.add_edge("ask", "act")
    graph.add_edge("act", END)
    return graph.compile(checkpointer=StatehouseSaver(client))


def start(client: Statehouse, thread_id: str, target: str) -> Any:
    """Register the resume entry point, then run the graph until it stops at `ask`."""
    client.register_resume(thread_id, ENTRY_POINT)
    return invoke(build(client), {"target": target, "log": []}, thread_id=thread_id)


def resume(client: Statehouse, agent_id: str) -> Any:
    """Resume entry point: continue the thread; stopped at a decided interrupt, with the
    decision (statehouse.langgraph.invoke)."""
    return invoke(build(client), None, thread_id=agent_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("thread_id")
    parser.add_argument("--target", default="staging")
    options = parser.parse_args()
    with Statehouse() as client:
        start(client, options.thread_id, options.target)
        print(f"{options.thread_id}: {client.status(options.thread_id)}")


if __name__ == "__main__":
    main()
