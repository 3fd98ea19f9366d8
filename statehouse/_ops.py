"""Staging of a transaction's operations, the same for every backend (docs/client.md).

Django-free: the remote client stages with it on the agent's side and the HTTP API stages
with it again on the server's side, so both reject bad input with the same message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from statehouse.errors import ValidationError
from statehouse.validation import (
    check_expected_version,
    check_identifier,
    check_step_key,
    encode_value,
)

__all__ = ["PendingOp", "Staging"]


@dataclass(frozen=True, slots=True)
class PendingOp:
    """One validated operation: a write (`value_json` set) or a delete (`value_json` None)."""

    agent_id: str
    key: str
    value_json: str | None
    expected_version: int | None = None

    @property
    def is_delete(self) -> bool:
        return self.value_json is None


class Staging:
    """The operations of one transaction, in staging order, one per (agent_id, key)."""

    def __init__(self, *, max_value_bytes: int, max_operations: int) -> None:
        self.max_value_bytes = max_value_bytes
        self.max_operations = max_operations
        self._ops: dict[tuple[str, str], PendingOp] = {}

    def stage(
        self, agent_id: str, key: str, value: Any, expected: object, *, delete: bool
    ) -> PendingOp:
        """Validate and stage one operation; raise ValidationError and stage nothing."""
        check_identifier("agent_id", agent_id)
        check_step_key(check_identifier("key", key))
        expected = check_expected_version(expected)
        value_json = (
            None if delete else encode_value(value, key=key, max_bytes=self.max_value_bytes)
        )
        return self.add(PendingOp(agent_id, key, value_json, expected))

    def add(self, op: PendingOp) -> PendingOp:
        """Stage an operation validated by `stage` (of this staging or of another with the
        same limits); raise ValidationError and stage nothing if it cannot join."""
        agent_id, key, expected = op.agent_id, op.key, op.expected_version
        earlier = self._ops.get((agent_id, key))
        if earlier is not None and earlier.expected_version is not None:
            if expected is not None and expected != earlier.expected_version:
                raise ValidationError(
                    f"key {key!r} of agent {agent_id!r} is already staged with "
                    f"expected_version={earlier.expected_version}, not {expected}"
                )
            expected = earlier.expected_version
        if earlier is None and len(self._ops) >= self.max_operations:
            raise ValidationError(
                f"the transaction already stages {self.max_operations:,} operations, the most "
                f"STATEHOUSE_MAX_TRANSACTION_OPERATIONS allows; {key!r} of agent {agent_id!r} "
                "was not staged (commit this one and stage the rest in another)"
            )
        # A later write to the same key replaces the earlier one (keeping its expectation),
        # and moves to the end of the staging order.
        self._ops.pop((agent_id, key), None)
        if expected != op.expected_version:
            op = PendingOp(agent_id, key, op.value_json, expected)
        self._ops[(agent_id, key)] = op
        return op

    def ops(self) -> list[PendingOp]:
        return list(self._ops.values())

    def clear(self) -> None:
        self._ops.clear()

    def __len__(self) -> int:
        return len(self._ops)
