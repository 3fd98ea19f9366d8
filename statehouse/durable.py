"""Durable functions: an agent function whose steps record themselves (docs/durable.md).

    import statehouse

    @statehouse.step
    def fetch(url: str) -> str: ...

    @statehouse.durable
    def research(topic: str) -> str:
        page = fetch(f"https://example.org/{topic}")
        return page[:100]

    research.run("agent-1", "volcanoes")

Each step call inside a run is step n of the agent (the n-th step call, from 0): `step:<n>`
is written pending, then done with its result (or failed with its error), through the
client's step helper. Run again after a crash, a step whose `done` was recorded returns
the recorded result without executing; the first incomplete step runs again. A step
whose name differs from the recorded one raises StepMismatchError (the code changed).
The run registers `statehouse.durable:resume`, so the resume worker can re-run it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import importlib
import inspect
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, ParamSpec, TypeVar, Unpack, overload

from statehouse.client import Statehouse
from statehouse.errors import StatehouseError, ValidationError
from statehouse.steps import DONE, LlmUsage, StepContext, StepPolicy, check_policy
from statehouse.validation import check_llm_metadata

__all__ = ["DurableFunction", "StepMismatchError", "durable", "record_llm", "resume", "step"]

P = ParamSpec("P")
R = TypeVar("R")
RESUME_ENTRY_POINT = "statehouse.durable:resume"


class StepMismatchError(StatehouseError):
    """A re-run called a different step than the one recorded at that position."""

    def __init__(self, agent_id: str, number: int, recorded: str, called: str) -> None:
        super().__init__(
            f"agent {agent_id!r} step {number}: the recorded run called {recorded!r} here, "
            f"this run calls {called!r}; the code changed since the agent ran "
            "(start a new agent, or fork this one from an earlier step)"
        )
        self.agent_id = agent_id
        self.number = number
        self.recorded = recorded
        self.called = called


@dataclass
class _Run:
    client: Statehouse
    agent_id: str
    namespace: str | None
    recorded: dict[int, Any]
    next_number: int = 0
    in_step: bool = False
    sequence: list[str] = field(default_factory=list)

    def take_number(self) -> int:
        number = self.next_number
        self.next_number += 1
        return number


_current: contextvars.ContextVar[_Run | None] = contextvars.ContextVar(
    "statehouse_durable_run", default=None
)
_current_step: contextvars.ContextVar[StepContext | None] = contextvars.ContextVar(
    "statehouse_durable_step", default=None
)


def record_llm(**usage: Unpack[LlmUsage]) -> None:
    """Record one LLM call's usage in the step being run (docs/durable.md): written with
    its done or failed value; tokens and cost add up over several calls. Outside a
    recorded step (a plain call) only the types are checked."""
    current = _current_step.get()
    if current is None:
        check_llm_metadata(dict(usage), where="record_llm")
        return
    current.llm(**usage)


def _step_number(key: str) -> int | None:
    head, _, tail = key.partition(":")
    return int(tail) if head == "step" and tail.isdigit() else None


def _recordable(value: dict[str, Any], problem: str) -> dict[str, Any]:
    """`value` if it is JSON (what a step's or a task's value must be); else a
    ValidationError saying `problem`, before anything is written."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{problem} ({exc})") from None
    return value


def _json_args(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    return _recordable(
        {"step": name, "args": list(args), "kwargs": kwargs},
        f"step {name!r}: its arguments must be JSON values to be recorded",
    )


def _qualified(fn: Callable[..., Any]) -> str:
    """ "module:qualname" of `fn`, importable by a resume process (a script's too)."""
    module = fn.__module__
    if module == "__main__":
        module = _main_module_name() or module
    return f"{module}:{fn.__qualname__}"


def _main_module_name() -> str | None:
    """The import name of the script being run: its most qualified name on sys.path."""
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        return str(spec.name)  # run with python -m
    main_file = getattr(main, "__file__", None)
    if not main_file:
        return None
    path = Path(main_file).resolve().with_suffix("")
    best: list[str] = []
    for entry in {Path(p or ".").resolve() for p in sys.path}:
        if not path.is_relative_to(entry):
            continue
        parts = list(path.relative_to(entry).parts)
        packages = [entry.joinpath(*parts[:i]) for i in range(1, len(parts))]
        if all((d / "__init__.py").exists() for d in packages) and len(parts) > len(best):
            best = parts
    return ".".join(best) or None


@overload
def step(fn: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def step(
    *, model: str | None = None, policy: StepPolicy | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def step(
    fn: Callable[P, R] | None = None,
    /,
    *,
    model: str | None = None,
    policy: StepPolicy | None = None,
) -> Any:
    """Record each call of `fn` inside a durable run as the run's next step.

    Outside a durable run, and inside another step, `fn` runs as a plain function.
    Its arguments and result must be JSON values (the result comes back from JSON on a
    re-run: a tuple as a list). `@step(model="…")` records the LLM model the step calls;
    `record_llm(...)` inside it records each call's tokens and cost. `@step(policy=…)`
    ("retry", the default, "skip" or "review") says what a resume does with the step if
    the run was interrupted inside it (docs/durable.md, "In-doubt steps").
    """
    if model is not None:
        check_llm_metadata({"model": model}, where="@statehouse.step")
    if policy is not None:
        check_policy({"policy": policy}, where="@statehouse.step")
    if fn is None:
        return lambda f: _recorded_step(f, model, policy)
    return _recorded_step(fn, model, policy)


def _step_context(
    run: _Run, number: int, action: Any, model: str | None, policy: StepPolicy | None
) -> StepContext:
    """The step helper recording call `number` of the run (pending, then done or failed)."""
    return run.client.step(
        run.agent_id, number, action=action, namespace=run.namespace, model=model, policy=policy
    )


def _recorded_step(
    fn: Callable[P, R], model: str | None, policy: StepPolicy | None
) -> Callable[P, R]:
    name = fn.__qualname__
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async_step(*args: Any, **kwargs: Any) -> Any:
            run = _current.get()
            if run is None or run.in_step:
                return await fn(*args, **kwargs)
            number, replayed = _enter(run, name, args, kwargs)
            if number is None:
                return replayed
            step_context = _step_context(run, number, replayed, model, policy)
            await asyncio.to_thread(step_context.__enter__)
            run.in_step = True
            token = _current_step.set(step_context)
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                run.in_step = False
                _current_step.reset(token)
                await asyncio.to_thread(step_context.__exit__, type(exc), exc, None)
                raise
            run.in_step = False
            _current_step.reset(token)
            step_context.result = result
            await asyncio.to_thread(step_context.__exit__, None, None, None)
            return result

        return run_async_step  # type: ignore[return-value]  # a coroutine function, as fn is

    @functools.wraps(fn)
    def run_step(*args: Any, **kwargs: Any) -> Any:
        run = _current.get()
        if run is None or run.in_step:
            return fn(*args, **kwargs)
        number, replayed = _enter(run, name, args, kwargs)
        if number is None:
            return replayed
        with _step_context(run, number, replayed, model, policy) as s:
            run.in_step = True
            token = _current_step.set(s)
            try:
                s.result = fn(*args, **kwargs)
            finally:
                run.in_step = False
                _current_step.reset(token)
        return s.result

    return run_step


def _enter(
    run: _Run, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[int | None, Any]:
    """(None, recorded result) for a step done before; else (its number, its action)."""
    number = run.take_number()
    run.sequence.append(name)
    recorded = run.recorded.get(number)
    if isinstance(recorded, dict):
        action = recorded.get("action")
        recorded_name = action.get("step") if isinstance(action, dict) else None
        if recorded_name != name:
            raise StepMismatchError(run.agent_id, number, str(recorded_name), name)
        if recorded.get("status") == DONE:
            return None, recorded.get("result")
    return number, _json_args(name, args, kwargs)


class DurableFunction(Generic[P, R]):
    """An agent function made durable by `@durable`; call it plainly or `.run(agent_id, …)`."""

    def __init__(self, fn: Callable[P, R]) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.name = _qualified(fn)
        self.is_async = inspect.iscoroutinefunction(fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def _begin(
        self,
        client: Statehouse,
        agent_id: str,
        namespace: str | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[_Run | None, Any]:
        """Load what the agent recorded and write its task; (None, answer) if it finished."""
        answer = client.get_state(agent_id, "answer", namespace=namespace)
        if answer.exists:
            return None, answer.value
        task = _recordable(
            {"task": self.fn.__name__, "function": self.name, "args": list(args), "kwargs": kwargs},
            f"{self.name}: the arguments of a durable function must be JSON values",
        )
        recorded = {
            number: r.value
            for r in client.scan_prefix(agent_id, "step:", namespace=namespace)
            if (number := _step_number(r.key)) is not None
        }
        prior = client.get_state(agent_id, "task", namespace=namespace)
        if prior.value != task:
            client.start(agent_id, task, namespace=namespace)
        client.register_resume(agent_id, RESUME_ENTRY_POINT, namespace=namespace)
        return _Run(client, agent_id, namespace, recorded), None

    def run(
        self,
        agent_id: str,
        *args: Any,
        client: Statehouse | None = None,
        namespace: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run as agent `agent_id`, skipping the steps it completed before.

        The return value becomes the agent's `answer` (completed); an exception marks it
        failed and propagates. For an async function this returns a coroutine.
        """
        if self.is_async:
            return self._run_async(agent_id, args, kwargs, client, namespace)
        client = client or Statehouse()
        run, answer = self._begin(client, agent_id, namespace, args, kwargs)
        if run is None:
            return answer
        token = _current.set(run)
        try:
            result = self.fn(*args, **kwargs)
        except Exception as exc:
            if not isinstance(exc, StepMismatchError):
                client.fail(agent_id, f"{type(exc).__name__}: {exc}", namespace=namespace)
            raise
        finally:
            _current.reset(token)
        client.finish(agent_id, result, namespace=namespace)
        return result

    async def _run_async(
        self,
        agent_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        client: Statehouse | None,
        namespace: str | None,
    ) -> Any:
        client = client or Statehouse()
        run, answer = await asyncio.to_thread(
            self._begin, client, agent_id, namespace, args, kwargs
        )
        if run is None:
            return answer
        token = _current.set(run)
        try:
            result = await self.fn(*args, **kwargs)  # type: ignore[misc]  # async fn here
        except Exception as exc:
            if not isinstance(exc, StepMismatchError):
                message = f"{type(exc).__name__}: {exc}"
                await asyncio.to_thread(client.fail, agent_id, message, namespace)
            raise
        finally:
            _current.reset(token)
        await asyncio.to_thread(client.finish, agent_id, result, namespace)
        return result


def durable(fn: Callable[P, R]) -> DurableFunction[P, R]:
    """Make `fn` an agent function: `fn.run(agent_id, *args)` runs it durably."""
    return DurableFunction(fn)


def resume(client: Statehouse, agent_id: str) -> Any:
    """The resume entry point of durable agents: re-run the function its task names."""
    task = client.get_state(agent_id, "task").value
    if not isinstance(task, dict) or not isinstance(task.get("function"), str):
        raise ValidationError(f"agent {agent_id!r} was not started by a durable function")
    module_name, _, qualname = task["function"].partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    if not isinstance(target, DurableFunction):
        raise ValidationError(f"{task['function']} is not a @durable function")
    outcome = target.run(agent_id, *task["args"], client=client, **task["kwargs"])
    if inspect.iscoroutine(outcome):
        return asyncio.run(outcome)
    return outcome
