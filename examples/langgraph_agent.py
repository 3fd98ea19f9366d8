"""A LangGraph graph run as a Statehouse agent: crash it, and the worker finishes it.

    python examples/langgraph_agent.py lg-001 --side-file /tmp/lg.log --delay 1 &
    kill -9 $!                                                  # mid-run
    python manage.py resume_agents && python manage.py resume_worker --once

Five nodes run in a row; each appends "ran <thread> <node>" to the side file (the effect
a crash test counts: examples/crash_demo.py). The thread registers
`examples.langgraph_agent:resume`, which re-invokes the graph from its last checkpoint:
nodes whose checkpoint was written do not run again.
"""

from __future__ import annotations

import operator
import sys
import time
from pathlib import Path
from typing import Annotated, Any, TypedDict

if __package__ in (None, ""):  # run as a script: make `statehouse` and `examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from examples.crash_demo import parse_args, record_effect
from statehouse import Statehouse
from statehouse.langgraph import StatehouseSaver, invoke

ENTRY_POINT = "examples.langgraph_agent:resume"
NODES = ("plan", "search", "read", "write", "review")


class State(TypedDict):
    side_file: str
    delay: float
    log: Annotated[list[str], operator.add]


def _node(name: str) -> Any:
    def run(state: State, config: RunnableConfig) -> dict[str, Any]:
        time.sleep(state["delay"])
        thread = config["configurable"]["thread_id"]
        record_effect(state["side_file"], f"ran {thread} {name}")
        return {"log": [name]}

    return run


def build(client: Statehouse) -> Any:
    graph = StateGraph(State)
    previous = START
    for name in NODES:
        graph.add_node(name, _node(name))
        graph.add_edge(previous, name)
        previous = name
    graph.add_edge(previous, END)
    return graph.compile(checkpointer=StatehouseSaver(client))


def resume(client: Statehouse, agent_id: str) -> Any:
    """Resume entry point: continue the thread from its last checkpoint."""
    return invoke(build(client), None, thread_id=agent_id)


def main() -> None:
    options = parse_args(__doc__, "thread_id")
    with Statehouse() as client:
        client.register_resume(options.thread_id, ENTRY_POINT)
        state = {"side_file": options.side_file, "delay": options.delay, "log": []}
        print(invoke(build(client), state, thread_id=options.thread_id)["log"])


if __name__ == "__main__":
    main()
