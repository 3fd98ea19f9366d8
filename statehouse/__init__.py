"""Statehouse: a durable, versioned state store for AI agents.

    from statehouse import Statehouse

    client = Statehouse()
    with client.begin_transaction() as tx:
        tx.write(agent_id="a1", key="task", value={"task": "…"})

Importing this package does not import Django; the client sets Django up on first use.
"""

from statehouse.client import Statehouse, Transaction
from statehouse.durable import StepMismatchError, durable, step
from statehouse.errors import (
    ConflictError,
    LeaseHeldError,
    LeaseLostError,
    NotFoundError,
    NotResumableError,
    SchemaMissingError,
    StatehouseError,
    TransactionError,
    ValidationError,
)
from statehouse.types import Operation, ReplayEvent, StateResult

__version__ = "0.1.0"

__all__ = [
    "ConflictError",
    "LeaseHeldError",
    "LeaseLostError",
    "NotFoundError",
    "NotResumableError",
    "Operation",
    "ReplayEvent",
    "SchemaMissingError",
    "StateResult",
    "Statehouse",
    "StatehouseError",
    "StepMismatchError",
    "Transaction",
    "TransactionError",
    "ValidationError",
    "__version__",
    "durable",
    "step",
]
