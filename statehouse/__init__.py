"""Statehouse: a durable, versioned state store for AI agents.

    from statehouse import Statehouse

    client = Statehouse()
    with client.begin_transaction() as tx:
        tx.write(agent_id="a1", key="task", value={"task": "…"})

Importing this package does not import Django; the embedded client sets Django up on
first use, and the remote one (`Statehouse(url="http://host:8000", token=…)`) never does.
"""

__version__ = "0.1.0"  # before the imports: the client modules read it

from statehouse import errors
from statehouse.aio import AsyncStatehouse, AsyncTransaction
from statehouse.client import Statehouse, Transaction
from statehouse.durable import StepMismatchError, durable, step
from statehouse.errors import *  # noqa: F403  (every error the client raises)
from statehouse.types import ApprovalDecision, Operation, ReplayEvent, StateResult

__all__ = [
    "ApprovalDecision",
    "AsyncStatehouse",
    "AsyncTransaction",
    "Operation",
    "ReplayEvent",
    "StateResult",
    "Statehouse",
    "StepMismatchError",
    "Transaction",
    "__version__",
    "durable",
    "step",
]
__all__ += errors.__all__
