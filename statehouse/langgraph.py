"""LangGraph checkpoints in Statehouse: a thread is an agent (docs/langgraph.md).

    from statehouse import Statehouse
    from statehouse.langgraph import StatehouseSaver, invoke

    saver = StatehouseSaver(Statehouse())
    graph = builder.compile(checkpointer=saver)
    invoke(graph, {"messages": [...]}, thread_id="t1")

Only the public client API is used (transactions, get_state, list_keys, scan_prefix), so
the saver works over the embedded and the remote client alike. Install with the
`langgraph` extra.

Layout, per thread (the agent `thread_id` in the saver's namespace):
- `lg/cp/<ns>/<checkpoint_id>`: the checkpoint without its channel values, its metadata,
  its parent's id, and its small channel values (None, booleans, numbers, strings of at
  most INLINE_STRING_CHARS characters, empty channels), which every checkpoint holds
  again (each no longer than the channel's version id beside it);
- `lg/v/<ns>/<channel>/<version>`: each other channel value once per channel version,
  shared by every checkpoint that has that version. A list that grew by appending is
  stored as the appended items and the version it extends, so a growing message list
  costs what was added, not the whole list again;
- `lg/w/<ns>/<checkpoint_id>/<task_id>`: a task's pending writes (one key per task;
  `…/<task_id>/<idx>`, one per write, as earlier versions stored them, is still read);
- `task`, `step:<n>` (super-step n: pending while its nodes write, done at the next
  checkpoint, with the node names as `action`) for the root graph, so the dashboard shows
  the thread as an agent and the lease says whether it runs.
`<ns>` and the other parts are written as given when short and plain, else hashed.
The agent `__langgraph__` indexes threads and runs, for list(None) and delete_for_runs.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import builtins
import contextlib
import hashlib
import math
import random
import sys
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    SerializerProtocol,
    get_checkpoint_id,
    get_checkpoint_metadata,
    writes_sort_key,
)

from statehouse._ops import PendingOp
from statehouse._recent import RecentDict, RecentSet
from statehouse.client import Statehouse, Transaction, new_staging
from statehouse.errors import (
    AgentFinishedError,
    AlreadyExistsError,
    ConflictError,
    ValidationError,
)
from statehouse.steps import DONE, FAILED, PENDING

__all__ = ["REGISTRY_AGENT", "AsyncStatehouseSaver", "StatehouseSaver", "ainvoke", "invoke"]

REGISTRY_AGENT = "__langgraph__"
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-+=@")
_INTERRUPT = "__interrupt__"
_ERROR = "__error__"
_HIDDEN_NODES = frozenset({"__input__", "__interrupt__"})
# A checkpoint of the Pregel loop ("input", "loop") is committed with the next pending
# writes, or by the saver's flusher after this long (docs/langgraph.md, "Commits").
FLUSH_AFTER_SECONDS = 0.05
_DEFERRED_SOURCES = frozenset({"input", "loop"})
# A task's writes reach the saver on a background thread, and may come after the
# checkpoint that ends their super-step: their LLM usage is still added to its done step,
# for the last this many super-steps of a thread (docs/langgraph.md, "A thread is an agent").
LATE_WRITES_STEPS = 4
# How many entries each part of a saver's in-process memory keeps (docs/langgraph.md,
# "Memory"): per checkpoint, and per thread (the lists a thread last stored, its done steps).
RECENT_CHECKPOINTS = 16_384
RECENT_THREADS = 4_096
_T = TypeVar("_T")
_P = ParamSpec("_P")


def _token(part: str) -> str:
    """A key segment for `part`: itself when short and plain, else a hash ("~…")."""
    if part == "" or (len(part) <= 64 and part[0] != "~" and set(part) <= _PLAIN):
        return part
    return "~" + hashlib.sha256(part.encode()).hexdigest()[:32]


def _is_json(value: Any) -> bool:
    """True when `value` survives a JSON round trip exactly (types included)."""
    kind = type(value)
    if value is None or kind is str or kind is bool or kind is int:
        return kind is not int or abs(value) < 2**63
    if kind is float:
        return math.isfinite(value)
    if kind is list:
        return all(_is_json(item) for item in value)
    if kind is dict:
        return all(type(k) is str and _is_json(v) for k, v in value.items())
    return False


def _jsonable(value: Any) -> Any:
    """A JSON rendering of any value, for what the dashboard shows (task, answer, steps)."""
    if _is_json(value):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return str(value)
    for attr in ("model_dump", "_asdict"):
        if callable(getattr(value, attr, None)):
            try:
                return _jsonable(getattr(value, attr)())
            except Exception:  # a rendering for people; fall back to repr
                break
    if hasattr(value, "value") and type(value).__name__ == "Interrupt":
        return {"value": _jsonable(value.value), "id": getattr(value, "id", None)}
    return repr(value)


def _llm_usage(values: Any) -> dict[str, Any]:
    """Model and tokens reported by the LLM messages among a task's written values (a
    message, or messages in a list or a dict, one level down)."""
    found: dict[str, Any] = {}
    for value in values:
        items = value if isinstance(value, list | tuple) else [value]
        if isinstance(value, dict):
            items = [m for v in value.values() for m in (v if isinstance(v, list | tuple) else [v])]
        for item in items:
            usage = getattr(item, "usage_metadata", None)
            if not isinstance(usage, dict):
                continue
            tokens_in, tokens_out = usage.get("input_tokens"), usage.get("output_tokens")
            if isinstance(tokens_in, int) and not isinstance(tokens_in, bool):
                found["tokens_in"] = found.get("tokens_in", 0) + max(tokens_in, 0)
            if isinstance(tokens_out, int) and not isinstance(tokens_out, bool):
                found["tokens_out"] = found.get("tokens_out", 0) + max(tokens_out, 0)
            meta = getattr(item, "response_metadata", None) or {}
            model = meta.get("model_name") or meta.get("model") if isinstance(meta, dict) else None
            if isinstance(model, str) and model:
                found["model"] = model[:255]
    return found


# A channel value this small is stored inside each checkpoint record that has it, not
# under a key of its own: no longer, stored, than the channel's version id (49 characters
# or more, `get_next_version`) that every checkpoint records anyway, so storage still grows
# with what changed (docs/langgraph.md, "Storage").
INLINE_STRING_CHARS = 40


def _inline_values(
    versions: ChannelVersions, values: dict[str, Any], new_versions: ChannelVersions
) -> dict[str, dict[str, Any]]:
    """The stored form of the checkpoint's small channel values: a JSON scalar (None, a
    bool, a number, a string of at most INLINE_STRING_CHARS characters), and an empty
    channel (absent from `values`) whose version is new. The same value has the same
    version, so every checkpoint that has a version holds it."""
    inline: dict[str, dict[str, Any]] = {}
    for channel in versions:
        if channel not in values:
            if channel in new_versions:
                inline[channel] = {"empty": True}
            continue
        value = values[channel]
        kind = type(value)
        if kind is str:
            small = len(value) <= INLINE_STRING_CHARS
        else:
            small = kind is not list and kind is not dict and _is_json(value)
        if small:
            inline[channel] = {"j": value}
    return inline


def _writes_of(stored: dict[str, Any]) -> builtins.list[dict[str, Any]]:
    """The pending writes of one `lg/w/…` record, each with task_id, task_path, channel,
    idx and value: a task's record holds a list; older versions stored one per key."""
    if "writes" not in stored:
        return [stored]
    task = {"task_id": stored["task_id"], "task_path": stored["task_path"]}
    return [{**task, **entry} for entry in stored["writes"]]


def _node_name(task_path: str) -> str | None:
    """The node a task runs, from LangGraph's task path ("~__pregel_pull, agent")."""
    if not task_path:
        return None
    name = task_path.rsplit(", ", 1)[-1].strip("()' ")
    return name or None


@dataclass(slots=True)
class _DoneStep:
    """A super-step's done step as the saver wrote it: its number, the checkpoint its
    tasks wrote under, its value without the LLM fields, and the usage it was staged with."""

    step: int
    writes_under: str
    base: dict[str, Any]
    usage: dict[str, dict[str, Any]] = field(default_factory=dict)


class _Staged:
    """Writes a `put` stages for the saver's next transaction, with `tx.write`'s signature:
    validated and encoded at once with the client's limits (so a bad thread id or value
    fails at `put`, and the commit that carries them only adds them)."""

    def __init__(self, client: Statehouse) -> None:
        self._staging = new_staging(client)

    def write(
        self, agent_id: str, key: str, value: Any, expected_version: int | None = None
    ) -> None:
        if expected_version is not None:  # never used by `put`; kept out on purpose
            raise ValueError("a deferred write takes no expected_version")
        self._staging.stage(agent_id, key, value, None, delete=False)

    @property
    def ops(self) -> builtins.list[PendingOp]:
        return self._staging.ops()


def _on_worker(
    method: Callable[Concatenate[StatehouseSaver, _P], _T],
) -> Callable[Concatenate[StatehouseSaver, _P], Coroutine[Any, Any, _T]]:
    """The async twin of a saver operation (`put` -> `aput`): the same call, on the saver's
    worker thread."""

    async def twin(saver: StatehouseSaver, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return await saver._run(getattr(saver, method.__name__), *args, **kwargs)

    twin.__name__ = twin.__qualname__ = f"a{method.__name__}"
    return twin


def _listed_on_worker(
    method: Callable[Concatenate[StatehouseSaver, _P], Iterator[_T]],
) -> Callable[Concatenate[StatehouseSaver, _P], AsyncIterator[_T]]:
    """The async twin of a saver operation that streams (`list` -> `alist`): read to the
    end on the saver's worker thread, then yielded."""

    async def twin(
        saver: StatehouseSaver, *args: _P.args, **kwargs: _P.kwargs
    ) -> AsyncIterator[_T]:
        read = getattr(saver, method.__name__)
        found = await saver._run(lambda: builtins.list(read(*args, **kwargs)))
        for item in found:
            yield item

    twin.__name__ = twin.__qualname__ = f"a{method.__name__}"
    return twin


class StatehouseSaver(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer storing threads as Statehouse agents.

    Its async methods run the same operations on one worker thread of the saver (the
    client is synchronous), so the saver serves `invoke` and `ainvoke` alike.
    """

    def __init__(
        self,
        client: Statehouse | None = None,
        *,
        namespace: str | None = None,
        serde: SerializerProtocol | None = None,
        llm_cost: Callable[[str, int, int], float] | None = None,
    ) -> None:
        super().__init__(serde=serde)
        # LLM metadata of a super-step (docs/langgraph.md): the model and token counts the
        # messages its nodes wrote report (`usage_metadata`, `response_metadata`), and the
        # cost `llm_cost(model, tokens_in, tokens_out)` gives for them.
        self.llm_cost = llm_cost
        self.client = client if client is not None else Statehouse()
        self.namespace = namespace
        self._lock = threading.Lock()
        # One write at a time per saver: LangGraph hands a task's writes to a background
        # thread, and they can arrive after the next checkpoint; a super-step whose next
        # checkpoint is written must stay done (`_finished`).
        self._write_lock = threading.RLock()
        self._executor: ThreadPoolExecutor | None = None
        # Checkpoints of the Pregel loop staged by `put`, not yet committed: the next
        # transaction of this saver (the next super-step's writes, as a rule) commits them
        # first; the flusher thread does after FLUSH_AFTER_SECONDS; every read, delete and
        # copy does before it reads (docs/langgraph.md, "Commits").
        self._deferred: list[PendingOp] = []
        self._deferred_at = 0.0
        self._flushed = threading.Condition(self._write_lock)
        self._flusher: threading.Thread | None = None
        self._closing = False
        # In-process memory of what this saver wrote, to save reads; every entry can be
        # rebuilt from the store (a resumed process starts with none). Each keeps only its
        # newest entries, so a long-lived process does not grow with every super-step it
        # ran (docs/langgraph.md, "Memory").
        # The registry entries written: (run id, or "" for the thread's own; thread id).
        self._registered: RecentSet[tuple[str, str]] = RecentSet(RECENT_CHECKPOINTS)
        # Per (thread, checkpoint id): its step; the checkpoints with a successor (their
        # super-step is done); versions_seen; the nodes that wrote after it, and their
        # LLM usage per task path.
        self._steps: RecentDict[tuple[str, str], int] = RecentDict(RECENT_CHECKPOINTS)
        self._finished: RecentSet[tuple[str, str]] = RecentSet(RECENT_CHECKPOINTS)
        self._seen: RecentDict[tuple[str, str], dict[str, Any]] = RecentDict(RECENT_CHECKPOINTS)
        self._names: RecentDict[tuple[str, str], list[str]] = RecentDict(RECENT_CHECKPOINTS)
        self._usage: RecentDict[tuple[str, str], dict[str, dict[str, Any]]] = RecentDict(
            RECENT_CHECKPOINTS
        )
        # The done steps of a thread's last super-steps, by the checkpoint their tasks
        # write under: LLM usage whose writes come after the step is done is added to it.
        self._done: RecentDict[str, dict[str, _DoneStep]] = RecentDict(RECENT_THREADS)
        # (thread, ns, channel) -> (version, list value) of the last list stored
        self._lists: RecentDict[tuple[str, str, str], tuple[str, list[Any]]] = RecentDict(
            RECENT_THREADS
        )

    # --- encoding ---

    def _encode(self, value: Any) -> dict[str, Any]:
        if _is_json(value):
            return {"j": value}
        kind, data = self.serde.dumps_typed(value)
        return {"t": kind, "b": base64.b64encode(data).decode("ascii")}

    def _decode(self, stored: dict[str, Any]) -> Any:
        if "j" in stored:
            return stored["j"]
        return self.serde.loads_typed((stored["t"], base64.b64decode(stored["b"])))

    # --- keys ---

    def _thread(self, config: RunnableConfig) -> tuple[str, str]:
        configurable = config.get("configurable") or {}
        if "thread_id" not in configurable:
            raise ValidationError("a LangGraph config needs configurable.thread_id")
        return str(configurable["thread_id"]), str(configurable.get("checkpoint_ns") or "")

    @staticmethod
    def _cp_key(ns: str, checkpoint_id: str) -> str:
        return f"lg/cp/{_token(ns)}/{_token(checkpoint_id)}"

    @staticmethod
    def _blob_key(ns: str, channel: str, version: Any) -> str:
        return f"lg/v/{_token(ns)}/{_token(channel)}/{_token(str(version))}"

    @staticmethod
    def _writes_prefix(ns: str, checkpoint_id: str) -> str:
        return f"lg/w/{_token(ns)}/{_token(checkpoint_id)}/"

    # --- put ---

    def get_next_version(self, current: str | None, channel: None) -> str:
        if current is None:
            number = 0
        elif isinstance(current, int):
            number = current
        else:
            number = int(str(current).split(".")[0])
        return f"{number + 1:032}.{random.random():016}"

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        thread_id, ns = self._thread(config)
        parent_id = (config.get("configurable") or {}).get("checkpoint_id")
        saved = dict(checkpoint)
        values: dict[str, Any] = saved.pop("channel_values", {})  # type: ignore[assignment]  # a TypedDict key
        full_metadata = get_checkpoint_metadata(config, metadata)
        step = full_metadata.get("step")
        inline = _inline_values(checkpoint.get("channel_versions", {}), values, new_versions)
        root = ns == "" and type(step) is int and step >= -1
        # Everything is encoded before the write lock, which the previous super-step's
        # commit holds while LangGraph builds this checkpoint (docs/langgraph.md, "Commits").
        staged = _Staged(self.client)
        with self._nothing_stored_on_error(thread_id):
            for channel, version in new_versions.items():
                if channel in inline:
                    continue
                staged.write(
                    agent_id=thread_id,
                    key=self._blob_key(ns, channel, version),
                    value=self._blob(thread_id, ns, channel, str(version), values),
                )
            record = {
                "ns": ns,
                "id": checkpoint["id"],
                "parent": parent_id,
                "checkpoint": self._encode(saved),
                "metadata": self._encode(full_metadata),
            }
            if inline:
                record["inline"] = inline
            staged.write(agent_id=thread_id, key=self._cp_key(ns, checkpoint["id"]), value=record)
            done = None
            if root:
                done = self._mark_checkpoint(
                    staged, thread_id, checkpoint, parent_id, full_metadata
                )
            registered = self._register(staged, thread_id, [full_metadata.get("run_id")])
        with self._write_lock:
            with self._nothing_stored_on_error(thread_id):
                if done is not None:
                    # Usage that a task's writes committed since the step was staged.
                    with self._lock:
                        usage = dict(self._usage.get((thread_id, done.writes_under), {}))
                    if usage != done.usage:
                        self._write_done(staged, thread_id, done, usage)
                ops = staged.ops
            with self._lock:
                # Staged whole: kept, by the next commit if this one's fails.
                self._registered.update(registered)
                if root and parent_id:
                    # The parent's super-step is done: a task's writes that come after
                    # this (under the lock, as they are committed) leave its step done,
                    # and add their LLM usage to it.
                    self._finished.add((thread_id, parent_id))
                if done is not None:
                    self._keep_done(thread_id, done)
            self._deferred.extend(ops)
            if full_metadata.get("source") in _DEFERRED_SOURCES:
                # Its super-step's writes are committed, so the checkpoint can be rebuilt
                # from its parent until it is: commit it with the next writes.
                self._defer()
            else:
                self._commit_deferred()
        return {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": ns,
                "checkpoint_id": checkpoint["id"],
            }
        }

    def _blob(
        self, thread_id: str, ns: str, channel: str, version: str, values: dict[str, Any]
    ) -> dict[str, Any]:
        """The stored form of one channel version: whole, or what it appended to the last."""
        if channel not in values:
            return {"empty": True}
        value = values[channel]
        cache_key = (thread_id, ns, channel)
        with self._lock:
            previous = self._lists.get(cache_key)
            if type(value) is list:
                self._lists[cache_key] = (version, list(value))
        if type(value) is list and previous is not None:
            base_version, base = previous
            if len(value) >= len(base) and all(
                a is b or a == b for a, b in zip(base, value, strict=False)
            ):
                return {"base": base_version, "add": self._encode(value[len(base) :])}
        return self._encode(value)

    def _register(self, tx: Any, thread_id: str, run_ids: Iterable[Any]) -> list[tuple[str, str]]:
        """Stage the index of the thread and of its runs, for list(None) and runs, where
        this saver did not write it before. Returns the markers of what it staged, for
        `_registered` once that is kept: a write that fails or is rolled back is made
        again by the next call."""
        names = dict.fromkeys(["", *(r for r in run_ids if isinstance(r, str) and r)])
        with self._lock:
            new = [(name, thread_id) for name in names if (name, thread_id) not in self._registered]
        for name, _ in new:
            key = (
                f"run/{_token(name)}/{_token(thread_id)}" if name else f"thread/{_token(thread_id)}"
            )
            tx.write(agent_id=REGISTRY_AGENT, key=key, value={"thread_id": thread_id})
        return new

    def _mark_checkpoint(
        self,
        tx: Any,
        thread_id: str,
        checkpoint: Checkpoint,
        parent_id: str | None,
        metadata: CheckpointMetadata,
    ) -> _DoneStep | None:
        """A root checkpoint at step s: the run's task at an input, step s done (returned,
        for the LLM usage of writes that come later)."""
        checkpoint_id = checkpoint["id"]
        step = int(metadata["step"])
        source = metadata.get("source")
        seen = checkpoint.get("versions_seen") or {}
        with self._lock:
            self._steps[(thread_id, checkpoint_id)] = step
            self._seen[(thread_id, checkpoint_id)] = seen
            parent_seen = self._seen.pop((thread_id, parent_id or ""), None)
        if source == "input":
            tx.write(
                agent_id=thread_id,
                key="task",
                value={"task": f"LangGraph thread {thread_id}", "thread_id": thread_id},
            )
        if step < 0:
            return None
        if source != "loop":
            action: Any = str(source)
        else:
            with self._lock:
                names = self._names.pop((thread_id, parent_id or ""), None)
            if parent_seen is not None:
                # The nodes that ran are those whose seen versions moved.
                ran = [
                    node
                    for node, versions in seen.items()
                    if node not in _HIDDEN_NODES and versions != parent_seen.get(node)
                ]
                names = ran or names
            if names is None:
                prior = self.client.get_state(thread_id, f"step:{step}", namespace=self.namespace)
                names = prior.value.get("action") if isinstance(prior.value, dict) else None
            action = names
        done = _DoneStep(
            step,
            parent_id or "",
            {"status": DONE, "action": action, "checkpoint_id": checkpoint_id},
        )
        with self._lock:
            usage = dict(self._usage.get((thread_id, done.writes_under), {}))
        self._write_done(tx, thread_id, done, usage)
        return done

    def _write_done(
        self, tx: Any, thread_id: str, done: _DoneStep, usage: dict[str, dict[str, Any]]
    ) -> None:
        """Write the done step with its tasks' LLM usage."""
        done.usage = usage
        value = {**done.base, **self._llm_fields(usage)}
        tx.write(agent_id=thread_id, key=f"step:{done.step}", value=value)

    def _keep_done(self, thread_id: str, done: _DoneStep) -> None:
        """Keep the done step for writes that come late, with the last LATE_WRITES_STEPS
        of the thread; their usage is forgotten with them (the caller holds `self._lock`).
        Writes later than that leave their step as it is (docs/langgraph.md)."""
        kept = self._done.get(thread_id, {})
        self._done[thread_id] = kept  # set again: the newest thread now (RecentDict)
        kept[done.writes_under] = done
        for old in [k for k, d in kept.items() if d.step <= done.step - LATE_WRITES_STEPS]:
            del kept[old]
            self._usage.pop((thread_id, old), None)

    # --- deferred checkpoints ---

    def _defer(self) -> None:
        """Leave the staged checkpoint to the next transaction, or to the flusher."""
        if not self._deferred_at:
            self._deferred_at = time.monotonic()
        _savers_to_flush.add(self)
        if self._flusher is not None:
            self._flushed.notify_all()
            return
        self._flusher = threading.Thread(
            target=self._flush_later, name="statehouse-saver-flush", daemon=True
        )
        self._flusher.start()

    def _stage_deferred(self, tx: Transaction) -> int:
        """Stage the deferred writes first in `tx` (the caller holds the write lock)."""
        tx._stage_validated(self._deferred)
        return len(self._deferred)

    def _committed(self, count: int) -> None:
        """The first `count` deferred writes are committed (the write lock is held)."""
        if count:
            del self._deferred[:count]
            self._deferred_at = time.monotonic() if self._deferred else 0.0

    def _commit_deferred(self) -> None:
        """Commit what `put` deferred, if anything: before reads, deletes and copies."""
        with self._write_lock:
            if not self._deferred:
                return
            with self.client.begin_transaction(namespace=self.namespace) as tx:
                count = self._stage_deferred(tx)
            self._committed(count)

    def flush(self) -> None:
        """Commit every checkpoint this saver still holds (`close` and exit do too)."""
        self._commit_deferred()

    def _flush_later(self) -> None:
        """The flusher: commit a deferred checkpoint no write came for in time; stop after
        a second with nothing deferred (the next `put` starts another). Its database
        connection is closed as the thread ends (docs/client.md, "Threads")."""
        with self._flushed:
            while not self._closing:
                if not self._deferred:
                    if not self._flushed.wait(1.0) and not self._deferred:
                        break
                    continue
                wait = self._deferred_at + FLUSH_AFTER_SECONDS - time.monotonic()
                if wait > 0:
                    self._flushed.wait(wait)
                    continue
                try:
                    self._commit_deferred()
                except Exception:  # kept: the next put_writes raises it to the graph
                    self._flushed.wait(FLUSH_AFTER_SECONDS)
            self._flusher = None

    # --- writes ---

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        thread_id, ns = self._thread(config)
        checkpoint_id = (config.get("configurable") or {}).get("checkpoint_id")
        if not checkpoint_id:
            raise ValidationError("put_writes needs configurable.checkpoint_id")
        key = self._writes_prefix(ns, checkpoint_id) + _token(task_id)
        entries: dict[int, dict[str, Any]] = {}
        for idx, (channel, value) in enumerate(writes):
            index = WRITES_IDX_MAP.get(channel, idx)
            entries[index] = {"channel": channel, "idx": index, "value": self._encode(value)}
        record = {"task_id": task_id, "task_path": task_path, "writes": [*entries.values()]}
        expected = 0  # the task's first writes, as a rule: one key, created
        for _attempt in range(5):
            try:
                with (
                    self._write_lock,
                    self.client.begin_transaction(namespace=self.namespace) as tx,
                ):
                    deferred = self._stage_deferred(tx)
                    tx.write(agent_id=thread_id, key=key, value=record, expected_version=expected)
                    if ns == "":
                        self._mark_writes(tx, thread_id, checkpoint_id, task_path, writes)
                self._committed(deferred)
                return
            except ConflictError:
                # Written before: a regular write is kept as first written; special ones
                # (interrupts, errors, ...) replace theirs. Compare-and-set on the merge.
                current = self.client.get_state(thread_id, key, namespace=self.namespace)
                expected = current.version if current.exists else 0
                if current.exists:
                    kept = {w["idx"]: w for w in _writes_of(current.value)}
                    for index, entry in entries.items():
                        if index < 0 or index not in kept:
                            kept[index] = entry
                    record = {
                        "task_id": task_id,
                        "task_path": current.value.get("task_path", task_path),
                        "writes": [
                            {k: w[k] for k in ("channel", "idx", "value")} for w in kept.values()
                        ],
                    }
        raise ConflictError(
            f"the writes of task {task_id!r} kept changing; try again",
            agent_id=thread_id,
            key=key,
            expected=expected,
            actual=expected + 1,
        )

    def _mark_writes(
        self,
        tx: Any,
        thread_id: str,
        checkpoint_id: str,
        task_path: str,
        writes: Sequence[tuple[str, Any]],
    ) -> None:
        """The super-step after checkpoint_id: pending, with the nodes that wrote so far;
        or, if the next checkpoint made it done already, done with this task's LLM usage
        added (docs/langgraph.md, "A thread is an agent")."""
        step = self._step_of(thread_id, checkpoint_id)
        if step is None:
            return
        found = _llm_usage(value for _, value in writes)
        with self._lock:
            finished = (thread_id, checkpoint_id) in self._finished
            done = self._done.get(thread_id, {}).get(checkpoint_id) if finished else None
            if finished and (done is None or not found):
                return
            if not finished:
                names = self._names.setdefault((thread_id, checkpoint_id), [])
                name = _node_name(task_path)
                if name is not None and name not in names:
                    names.append(name)
                action = list(names)
            # Per task, replaced if its writes come again (a retried put_writes).
            usage = self._usage.setdefault((thread_id, checkpoint_id), {})
            if found:
                usage[task_path] = found
            usage = dict(usage)
        if done is not None:
            self._write_done(tx, thread_id, done, usage)
            return
        value: dict[str, Any] = {
            "status": PENDING,
            "action": action,
            "checkpoint_id": checkpoint_id,
            **self._llm_fields(usage),
        }
        interrupts = [v for channel, v in writes if channel == _INTERRUPT]
        errors = [v for channel, v in writes if channel == _ERROR]
        if interrupts:
            value["interrupt"] = _jsonable(interrupts[0])
            value["waiting"] = "input"
        if errors:
            value["status"] = FAILED
            value["error"] = f"{type(errors[0]).__name__}: {errors[0]}"
        tx.write(agent_id=thread_id, key=f"step:{step + 1}", value=value)

    def _llm_fields(self, usage: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
        """The step value's LLM fields (docs/contract.md §3) for the tasks' usage."""
        if not usage:
            return {}
        models = [u["model"] for u in usage.values() if u.get("model")]
        fields: dict[str, Any] = {
            "tokens_in": sum(u.get("tokens_in", 0) for u in usage.values()),
            "tokens_out": sum(u.get("tokens_out", 0) for u in usage.values()),
        }
        if models:
            fields["model"] = models[-1]
        if self.llm_cost is not None:
            fields["cost"] = float(
                sum(
                    self.llm_cost(u.get("model", ""), u.get("tokens_in", 0), u.get("tokens_out", 0))
                    for u in usage.values()
                )
            )
        return fields

    def _step_of(self, thread_id: str, checkpoint_id: str) -> int | None:
        with self._lock:
            step = self._steps.get((thread_id, checkpoint_id))
        if step is not None:
            return step
        stored = self.client.get_state(
            thread_id, self._cp_key("", checkpoint_id), namespace=self.namespace
        )
        if not stored.exists:
            return None
        found = self._decode(stored.value["metadata"]).get("step")
        if type(found) is not int or found < -1:
            return None
        with self._lock:
            self._steps[(thread_id, checkpoint_id)] = found
        return found

    # --- reads ---

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        self._commit_deferred()
        thread_id, ns = self._thread(config)
        checkpoint_id = get_checkpoint_id(config)
        if checkpoint_id:
            stored = self.client.get_state(
                thread_id, self._cp_key(ns, checkpoint_id), namespace=self.namespace
            )
            record = stored.value if stored.exists else None
        else:
            record = self._latest(thread_id, ns)
        if record is None:
            return None
        writes = self.client.scan_prefix(
            thread_id, self._writes_prefix(ns, record["id"]), namespace=self.namespace
        )
        return self._tuple(thread_id, record, self._channel_reader(thread_id, ns), writes)

    def _latest(self, thread_id: str, ns: str) -> dict[str, Any] | None:
        prefix = f"lg/cp/{_token(ns)}/"
        keys = self.client.list_keys(thread_id, namespace=self.namespace, prefix=prefix)
        if not keys:
            return None
        if all(not key[len(prefix) :].startswith("~") for key in keys):
            stored = self.client.get_state(thread_id, keys[-1], namespace=self.namespace)
            return stored.value if stored.exists else None
        records = [r.value for r in self.client.scan_prefix(thread_id, prefix, self.namespace)]
        return max(records, key=lambda r: r["id"]) if records else None

    def _channel_reader(self, thread_id: str, ns: str) -> Callable[[str, Any], Any]:
        """Read (channel, version) values one channel at a time, resolving appended lists."""
        loaded: dict[str, dict[str, Any]] = {}

        def read(channel: str, version: Any) -> Any:
            key = self._blob_key(ns, channel, version)
            if channel not in loaded:
                stored = self.client.get_state(thread_id, key, namespace=self.namespace)
                if not stored.exists:
                    return _MISSING
                if "base" not in stored.value:
                    return self._whole(stored.value)
                prefix = f"lg/v/{_token(ns)}/{_token(channel)}/"
                loaded[channel] = {
                    r.key: r.value
                    for r in self.client.scan_prefix(thread_id, prefix, namespace=self.namespace)
                }
            return self._resolve(loaded[channel], ns, channel, str(version))

        return read

    def _bulk_reader(self, thread_id: str, ns: str) -> Callable[[str, Any], Any]:
        """Read every channel value of a namespace with one scan (for list)."""
        blobs = {
            r.key: r.value
            for r in self.client.scan_prefix(
                thread_id, f"lg/v/{_token(ns)}/", namespace=self.namespace
            )
        }
        return lambda channel, version: self._resolve(blobs, ns, channel, str(version))

    def _whole(self, stored: dict[str, Any]) -> Any:
        return _MISSING if stored.get("empty") else self._decode(stored)

    def _resolve(self, blobs: dict[str, Any], ns: str, channel: str, version: str) -> Any:
        chain: list[dict[str, Any]] = []
        stored = blobs.get(self._blob_key(ns, channel, version))
        while stored is not None and "base" in stored:
            chain.append(stored)
            stored = blobs.get(self._blob_key(ns, channel, stored["base"]))
        if stored is None:
            return _MISSING
        value = self._whole(stored)
        if chain:
            value = list(value)
            for link in reversed(chain):
                value.extend(self._decode(link["add"]))
        return value

    def _tuple(
        self,
        thread_id: str,
        record: dict[str, Any],
        read: Callable[[str, Any], Any],
        writes: list[Any],
    ) -> CheckpointTuple:
        ns = record["ns"]
        checkpoint = self._decode(record["checkpoint"])
        inline = record.get("inline", {})
        values = {}
        for channel, version in checkpoint.get("channel_versions", {}).items():
            value = self._whole(inline[channel]) if channel in inline else read(channel, version)
            if value is not _MISSING:
                values[channel] = value
        checkpoint["channel_values"] = values
        metadata = self._decode(record["metadata"])
        step = metadata.get("step")
        if ns == "" and type(step) is int:
            with self._lock:
                self._steps[(thread_id, record["id"])] = step
                self._seen[(thread_id, record["id"])] = checkpoint.get("versions_seen") or {}
        pending = sorted(
            (w for r in writes for w in _writes_of(r.value)),
            key=lambda w: writes_sort_key(w["task_path"], w["task_id"], w["idx"]),
        )

        def config(checkpoint_id: str) -> RunnableConfig:
            return {
                "configurable": {
                    "thread_id": thread_id,
                    "checkpoint_ns": ns,
                    "checkpoint_id": checkpoint_id,
                }
            }

        return CheckpointTuple(
            config=config(record["id"]),
            checkpoint=checkpoint,
            metadata=metadata,
            parent_config=config(record["parent"]) if record["parent"] else None,
            pending_writes=[
                (w["task_id"], w["channel"], self._decode(w["value"])) for w in pending
            ],
        )

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        self._commit_deferred()
        if config is None:
            threads = self._threads()
            ns_wanted: str | None = None
            wanted_id = None
        else:
            thread_id, _ns = self._thread(config)
            threads = [thread_id]
            ns_wanted = (config.get("configurable") or {}).get("checkpoint_ns")
            wanted_id = get_checkpoint_id(config)
        before_id = get_checkpoint_id(before) if before else None
        remaining = limit
        for thread_id in threads:
            prefix = "lg/cp/" if ns_wanted is None else f"lg/cp/{_token(ns_wanted)}/"
            records = [r.value for r in self.client.scan_prefix(thread_id, prefix, self.namespace)]
            records.sort(key=lambda r: r["id"], reverse=True)
            readers: dict[str, Callable[[str, Any], Any]] = {}
            writes: dict[str, dict[str, list[Any]]] = {}
            for record in records:
                if remaining is not None and remaining <= 0:
                    return
                if ns_wanted is not None and record["ns"] != ns_wanted:
                    continue
                if wanted_id and record["id"] != wanted_id:
                    continue
                if before_id and record["id"] >= before_id:
                    continue
                if filter:
                    metadata = self._decode(record["metadata"])
                    if not all(metadata.get(k) == v for k, v in filter.items()):
                        continue
                ns = record["ns"]
                if ns not in readers:
                    readers[ns] = self._bulk_reader(thread_id, ns)
                    writes[ns] = {}
                    for w in self.client.scan_prefix(
                        thread_id, f"lg/w/{_token(ns)}/", namespace=self.namespace
                    ):
                        # lg/w/<ns>/<checkpoint>/<task>/<idx>
                        writes[ns].setdefault(w.key.split("/")[3], []).append(w)
                yield self._tuple(
                    thread_id, record, readers[ns], writes[ns].get(_token(record["id"]), [])
                )
                if remaining is not None:
                    remaining -= 1

    def _threads(self) -> builtins.list[str]:
        return [
            r.value["thread_id"]
            for r in self.client.scan_prefix(REGISTRY_AGENT, "thread/", namespace=self.namespace)
        ]

    # --- deletes and copies ---

    def delete_thread(self, thread_id: str) -> None:
        """Delete the thread's checkpoints, writes, steps and task (the whole agent)."""
        self._commit_deferred()
        thread_id = str(thread_id)
        keys = self.client.list_keys(thread_id, namespace=self.namespace)
        runs = [
            r.key
            for r in self.client.scan_prefix(REGISTRY_AGENT, "run/", namespace=self.namespace)
            if r.value.get("thread_id") == thread_id
        ]
        with self.client.begin_transaction(namespace=self.namespace) as tx:
            for key in keys:
                tx.delete(agent_id=thread_id, key=key)
            for key in [f"thread/{_token(thread_id)}", *runs]:
                tx.delete(agent_id=REGISTRY_AGENT, key=key)
        self._forget(thread_id)
        self.client.release(thread_id, namespace=self.namespace)

    def _forget(self, thread_id: str) -> None:
        with self._lock:
            for marker in [m for m in self._registered if m[1] == thread_id]:
                self._registered.discard(marker)
            for finished in [k for k in self._finished if k[0] == thread_id]:
                self._finished.discard(finished)
            self._done.pop(thread_id, None)
            for cache in (self._steps, self._names, self._seen, self._usage):
                for key in [k for k in cache if k[0] == thread_id]:
                    del cache[key]
        self._forget_lists(thread_id)

    @contextlib.contextmanager
    def _nothing_stored_on_error(self, thread_id: str) -> Iterator[None]:
        """Around a `put`'s staging: if it fails, nothing of the checkpoint is stored, so
        no list of the thread may be stored as appended to what it staged."""
        try:
            yield
        except BaseException:
            self._forget_lists(thread_id)
            raise

    def _forget_lists(self, thread_id: str) -> None:
        """Forget the lists last stored for the thread: the next value of each channel is
        stored whole."""
        with self._lock:
            for listed in [k for k in self._lists if k[0] == thread_id]:
                del self._lists[listed]

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints whose metadata names one of `run_ids`, with their writes."""
        self._commit_deferred()
        wanted = {str(run_id) for run_id in run_ids}
        threads: set[str] = set()
        for run_id in wanted:
            for r in self.client.scan_prefix(
                REGISTRY_AGENT, f"run/{_token(run_id)}/", namespace=self.namespace
            ):
                threads.add(r.value["thread_id"])
        for thread_id in sorted(threads):
            doomed = [
                r
                for r in self.client.scan_prefix(thread_id, "lg/cp/", namespace=self.namespace)
                if self._decode(r.value["metadata"]).get("run_id") in wanted
            ]
            self._delete_checkpoints(thread_id, [r.value for r in doomed])

    def _delete_checkpoints(self, thread_id: str, records: builtins.list[dict[str, Any]]) -> None:
        if not records:
            return
        writes = [
            w
            for record in records
            for w in self.client.list_keys(
                thread_id,
                namespace=self.namespace,
                prefix=self._writes_prefix(record["ns"], record["id"]),
            )
        ]
        with self.client.begin_transaction(namespace=self.namespace) as tx:
            for record in records:
                tx.delete(agent_id=thread_id, key=self._cp_key(record["ns"], record["id"]))
            for key in writes:
                tx.delete(agent_id=thread_id, key=key)
        self._collect_values(thread_id)

    def _collect_values(self, thread_id: str) -> None:
        """Delete channel values no remaining checkpoint reads (appended lists keep bases)."""
        checkpoints = self.client.scan_prefix(thread_id, "lg/cp/", namespace=self.namespace)
        blobs = {
            r.key: r.value
            for r in self.client.scan_prefix(thread_id, "lg/v/", namespace=self.namespace)
        }
        keep: set[str] = set()
        for r in checkpoints:
            ns = r.value["ns"]
            versions = self._decode(r.value["checkpoint"]).get("channel_versions", {})
            for channel, version in versions.items():
                key = self._blob_key(ns, channel, version)
                while key in blobs and key not in keep:
                    keep.add(key)
                    base = blobs[key].get("base")
                    if base is None:
                        break
                    key = self._blob_key(ns, channel, base)
        doomed = [key for key in blobs if key not in keep]
        if doomed:
            with self.client.begin_transaction(namespace=self.namespace) as tx:
                for key in doomed:
                    tx.delete(agent_id=thread_id, key=key)
            self._forget_lists(thread_id)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, channel value and write of a thread to another thread."""
        self._commit_deferred()
        source, target = str(source_thread_id), str(target_thread_id)
        records = self.client.scan_prefix(source, "lg/", namespace=self.namespace)
        if not records:
            return
        runs = {
            self._decode(r.value["metadata"]).get("run_id")
            for r in records
            if r.key.startswith("lg/cp/")
        }
        with self.client.begin_transaction(namespace=self.namespace) as tx:
            for r in records:
                tx.write(agent_id=target, key=r.key, value=r.value)
            registered = self._register(tx, target, runs)
        with self._lock:
            self._registered.update(registered)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """`keep_latest`: keep each namespace's newest checkpoint; `delete`: delete all."""
        self._commit_deferred()
        if strategy not in ("keep_latest", "delete"):
            raise ValidationError(
                f"prune strategy must be 'keep_latest' or 'delete', not {strategy!r}"
            )
        for thread_id in thread_ids:
            if strategy == "delete":
                self.delete_thread(thread_id)
                continue
            records = [
                r.value for r in self.client.scan_prefix(str(thread_id), "lg/cp/", self.namespace)
            ]
            newest: dict[str, str] = {}
            for record in records:
                if record["id"] > newest.get(record["ns"], ""):
                    newest[record["ns"]] = record["id"]
            self._delete_checkpoints(
                str(thread_id), [r for r in records if newest[r["ns"]] != r["id"]]
            )

    # --- async: the same operations on the saver's worker thread ---

    async def _run(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="statehouse-saver")
            executor = self._executor
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, lambda: fn(*args, **kwargs))

    aget_tuple = _on_worker(get_tuple)
    alist = _listed_on_worker(list)
    aput = _on_worker(put)
    aput_writes = _on_worker(put_writes)
    adelete_thread = _on_worker(delete_thread)
    adelete_for_runs = _on_worker(delete_for_runs)
    acopy_thread = _on_worker(copy_thread)
    aprune = _on_worker(prune)

    def close(self) -> None:
        """Commit what is deferred and stop the saver's threads, whose database connections
        close as they end (docs/client.md, "Threads"; the client stays open: it is the
        caller's). A later `put` starts them again."""
        with self._flushed:
            self._closing = True
            self._flushed.notify_all()
            flusher = self._flusher
        try:
            if flusher is not None:
                flusher.join()  # it sees `_closing` at its next wake-up and stops
            self._commit_deferred()
        finally:
            with self._flushed:
                self._closing = False
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)


class AsyncStatehouseSaver(StatehouseSaver):
    """The saver for async graphs (`ainvoke`, `astream`); usable as `async with`.

    Every operation runs on the saver's own worker thread, so the event loop never
    blocks on the database; the sync methods stay available to other threads.
    """

    async def __aenter__(self) -> AsyncStatehouseSaver:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._close_off_the_loop)

    def _close_off_the_loop(self) -> None:
        """`close` on a thread of the event loop's pool, which then closes the connections
        `close` opened there (that thread outlives the saver)."""
        try:
            self.close()
        finally:
            _close_thread_connections()


_savers_to_flush: weakref.WeakSet[StatehouseSaver] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    """A script that ends without closing its saver still commits its last checkpoint."""
    for saver in builtins.list(_savers_to_flush):
        with contextlib.suppress(Exception):  # exiting: nothing left to tell
            saver.flush()


def _close_thread_connections() -> None:
    """Close the embedded client's database connections of the worker thread, if any."""
    django_db = sys.modules.get("django.db")
    if django_db is not None:
        django_db.connections.close_all()


class _Missing:
    pass


_MISSING: Any = _Missing()


# --- running a graph as an agent ---


def _run_config(config: RunnableConfig | None, thread_id: str | None) -> RunnableConfig:
    merged: dict[str, Any] = dict(config or {})
    configurable = dict(merged.get("configurable") or {})
    if thread_id is not None:
        configurable["thread_id"] = thread_id
    if "thread_id" not in configurable:
        raise ValidationError("invoke needs a thread_id (or config.configurable.thread_id)")
    merged["configurable"] = configurable
    return merged  # type: ignore[return-value]  # a RunnableConfig, built as a dict


def _saver_of(graph: Any) -> StatehouseSaver:
    saver = getattr(graph, "checkpointer", None)
    if not isinstance(saver, StatehouseSaver):
        raise ValidationError("the graph must be compiled with checkpointer=StatehouseSaver(...)")
    return saver


def _settle(graph: Any, saver: StatehouseSaver, config: RunnableConfig, state: Any) -> None:
    """After a run: finished graphs get their answer; one stopped at interrupt() asks for a
    decision (an Approval of kind "interrupt", docs/langgraph.md) and is let go."""
    thread_id = str(config["configurable"]["thread_id"])
    if state.next:
        # Stopped at interrupt() (its step says `waiting`): no process runs it now.
        interrupts = list(getattr(state, "interrupts", ()) or ())
        if interrupts:
            _ask(saver, thread_id, interrupts[0])
        saver.client.release(thread_id, namespace=saver.namespace)
        return
    saver.client.finish(thread_id, _jsonable(state.values), namespace=saver.namespace)


def interrupt_approval_name(interrupt: Any) -> str:
    """The Approval that answers a graph's `interrupt()`: one per interrupt id."""
    return f"interrupt:{interrupt.id}"


def resume_value(decision: dict[str, Any]) -> dict[str, Any]:
    """What `interrupt()` returns once an operator decided (docs/langgraph.md)."""
    return {
        "approved": bool(decision["approved"]),
        "comment": decision["comment"],
        "decided_by": decision["decided_by"],
    }


def _ask(saver: StatehouseSaver, thread_id: str, interrupt: Any) -> dict[str, Any] | None:
    """The interrupt's Approval (made on first ask; the same one after); None when the
    agent already waits for another decision (it is asked again at the next stop) or has
    finished (a cancelled thread waits for nothing)."""
    namespace, agent_id = saver.client._agent_args(thread_id, saver.namespace)
    try:
        return saver.client._ready().request_approval(
            namespace,
            agent_id,
            interrupt_approval_name(interrupt),
            _jsonable(interrupt.value),
            "interrupt",
        )
    except (AlreadyExistsError, AgentFinishedError):
        return None


def _resume_input(saver: StatehouseSaver, config: RunnableConfig, state: Any) -> Any:
    """`input=None` on a thread stopped at interrupt(): `Command(resume=…)` with the
    operator's decision if there is one, else None (the graph stops there again)."""
    from langgraph.types import Command

    interrupts = list(getattr(state, "interrupts", ()) or ())
    if not state.next or not interrupts:
        return None
    decision = _ask(saver, str(config["configurable"]["thread_id"]), interrupts[0])
    if decision is None or not decision["decided"]:
        return None
    return Command(resume={interrupts[0].id: resume_value(decision)})


def invoke(
    graph: Any,
    input: Any,
    *,
    thread_id: str | None = None,
    config: RunnableConfig | None = None,
    **kwargs: Any,
) -> Any:
    """Run `graph` on a thread as a Statehouse agent and return what `graph.invoke` returns.

    Checkpoints are written before each super-step goes on (durability "sync"), so a crash
    loses no finished node. A finished graph writes the agent's `answer` (completed); one
    stopped at `interrupt()` asks for a decision (it shows as waiting) and releases its
    lease. `input=None` resumes the thread from its last checkpoint: this is what a resume
    entry point calls (docs/langgraph.md); stopped at an interrupt an operator decided,
    the graph is resumed with `Command(resume=resume_value(decision))`.
    """
    saver = _saver_of(graph)
    run_config = _run_config(config, thread_id)
    kwargs.setdefault("durability", "sync")
    if input is None:
        input = _resume_input(saver, run_config, graph.get_state(run_config))
    result = graph.invoke(input, run_config, **kwargs)
    _settle(graph, saver, run_config, graph.get_state(run_config))
    return result


async def ainvoke(
    graph: Any,
    input: Any,
    *,
    thread_id: str | None = None,
    config: RunnableConfig | None = None,
    **kwargs: Any,
) -> Any:
    """`invoke` for async graphs."""
    saver = _saver_of(graph)
    run_config = _run_config(config, thread_id)
    kwargs.setdefault("durability", "sync")
    if input is None:
        stopped = await graph.aget_state(run_config)
        input = await saver._run(_resume_input, saver, run_config, stopped)
    result = await graph.ainvoke(input, run_config, **kwargs)
    state = await graph.aget_state(run_config)
    await saver._run(_settle, graph, saver, run_config, state)
    return result
