"""The step helper: record a step as pending before acting, then done or failed."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, TypedDict, Unpack, get_args

if TYPE_CHECKING:
    from statehouse.client import Statehouse

__all__ = [
    "DONE",
    "FAILED",
    "PENDING",
    "RETRY",
    "REVIEW",
    "SKIP",
    "STEP_POLICIES",
    "STEP_STATUSES",
    "ExcInfo",
    "LlmUsage",
    "StepContext",
    "StepOptions",
    "StepPolicy",
    "StepStatus",
    "check_policy",
]

# The statuses a step's value carries (docs/contract.md §3), defined here once: the client
# writes them, and the server's conventions, models, HTTP schema and SQL import them.
StepStatus = Literal["pending", "done", "failed"]
PENDING: Final[StepStatus] = "pending"
DONE: Final[StepStatus] = "done"
FAILED: Final[StepStatus] = "failed"
STEP_STATUSES: Final[tuple[StepStatus, ...]] = get_args(StepStatus)

# What a resume does with a step left pending by an interrupted run, "in doubt" (its action
# may or may not have run; docs/contract.md §3, §7): `retry` runs it again (the default:
# the action is idempotent), `skip` records it done with no result and goes on, `review`
# waits for an operator's decision. A step's value carries it as `"policy"`.
StepPolicy = Literal["retry", "skip", "review"]
RETRY: Final[StepPolicy] = "retry"
SKIP: Final[StepPolicy] = "skip"
REVIEW: Final[StepPolicy] = "review"
STEP_POLICIES: Final[tuple[StepPolicy, ...]] = get_args(StepPolicy)


def check_policy(value: Any, *, where: str) -> StepPolicy:
    """The step policy a value's `policy` names (`retry` when absent); ValidationError
    naming `where`, the key and the allowed values for anything else."""
    if not isinstance(value, dict) or "policy" not in value:
        return RETRY
    policy = value["policy"]
    if policy not in STEP_POLICIES:
        from statehouse.errors import ValidationError

        allowed = ", ".join(repr(p) for p in STEP_POLICIES)
        raise ValidationError(
            f"{where}: 'policy' must be one of {allowed} (absent means 'retry'), not {policy!r}"
        )
    return policy


# What `__exit__` (and `__aexit__`) receives: the clients' context managers (steps,
# transactions) take it as `*exc_info: Unpack[ExcInfo]`.
ExcInfo = tuple[type[BaseException] | None, BaseException | None, TracebackType | None]


class LlmUsage(TypedDict, total=False):
    """One LLM call's usage, written in its step's value (docs/contract.md §3): the keyword
    arguments of `step.llm(...)`, of `record_llm(...)` and of the clients' `step(...)`."""

    model: str | None
    tokens_in: int | None
    tokens_out: int | None
    cost: float | None


class StepOptions(LlmUsage, total=False):
    """The keyword arguments of the clients' `step(...)`: LLM usage and the step's policy."""

    policy: StepPolicy | None


class StepContext:
    """`with client.step(agent_id, n, action=...) as step: step.result = act()`.

    Entering writes `step:<n>` as {"action", "status": "pending"}; a clean exit writes
    {"action", "status": "done", "result"}; an exception writes {"action", "status":
    "failed", "error"} and propagates. Each write is its own committed transaction.

    `policy=` ("retry", "skip" or "review"; docs/contract.md §3) says what a resume does
    if the run is interrupted while the step is pending; it is written in every value.

    LLM metadata (docs/contract.md §3): `model=` given at the start is written from the
    pending value on; `step.llm(model=, tokens_in=, tokens_out=, cost=)` inside the block
    adds one call's usage (tokens and cost add up over several calls), written with the
    done or failed value. Wrong types raise ValidationError at once.
    """

    def __init__(
        self,
        client: Statehouse,
        agent_id: str,
        number: int,
        action: Any,
        namespace: str | None,
        *,
        policy: StepPolicy | None = None,
        **usage: Unpack[LlmUsage],
    ) -> None:
        from statehouse_agents.conventions import MAX_STEP_NUMBER

        from statehouse.errors import ValidationError

        if (
            isinstance(number, bool)
            or not isinstance(number, int)
            or not 0 <= number <= MAX_STEP_NUMBER
        ):
            raise ValidationError(
                f"step number must be an integer from 0 to {MAX_STEP_NUMBER}, not {number!r}"
            )
        self.client = client
        self.agent_id = agent_id
        self.number = number
        self.action = action
        self.namespace = namespace
        self.result: Any = None
        self.key = f"step:{number}"
        self.usage: dict[str, Any] = {}
        # Written in every value of the step (docs/contract.md §3): None writes none.
        self.marks: dict[str, Any] = {}
        if policy is not None:
            where = f"step {number} of {agent_id!r}"
            self.marks["policy"] = check_policy({"policy": policy}, where=where)
        self.llm(**usage)

    def llm(self, **usage: Unpack[LlmUsage]) -> None:
        """Record one LLM call's usage in this step: the model (the last one named wins),
        input and output tokens and cost (added to what the step recorded before)."""
        from statehouse.validation import check_llm_metadata

        checked = check_llm_metadata(dict(usage), where=f"step {self.number} of {self.agent_id!r}")
        for name, value in checked.items():
            if name == "model" or name not in self.usage:
                self.usage[name] = value
            else:
                self.usage[name] += value

    def _write(self, value: dict[str, Any]) -> None:
        with self.client.begin_transaction(namespace=self.namespace) as tx:
            tx.write(agent_id=self.agent_id, key=self.key, value={**value, **self.usage})

    def entering_value(self) -> dict[str, Any]:
        """What entering writes (the asyncio client's step writes the same)."""
        return {"action": self.action, "status": PENDING, **self.marks}

    def exiting_value(
        self, exc_type: type[BaseException] | None, exc: BaseException | None
    ) -> dict[str, Any] | None:
        """What exiting writes; None for nothing."""
        if exc_type is None:
            return {"action": self.action, "status": DONE, "result": self.result, **self.marks}
        if issubclass(exc_type, Exception):
            return {
                "action": self.action,
                "status": FAILED,
                "error": f"{exc_type.__name__}: {exc}",
                **self.marks,
            }
        # KeyboardInterrupt/SystemExit leave the step pending: the run was stopped, not failed.
        return None

    def __enter__(self) -> StepContext:
        self._write(self.entering_value())
        return self

    def __exit__(self, *exc_info: *ExcInfo) -> None:
        value = self.exiting_value(*exc_info[:2])
        if value is not None:
            self._write(value)
