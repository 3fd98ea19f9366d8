"""The store's atomic writes, re-exported from the modules that hold them.

The commit path lives in `commit.py` (read it top to bottom); the staged operation types
in `operations.py`, the row locks in `locking.py`, leases in `leases.py`, the projection in
`projection.py` and the retrying atomic block in `atomic.py`.
"""

from __future__ import annotations

from statehouse_agents.store.atomic import run_atomic
from statehouse_agents.store.commit import commit
from statehouse_agents.store.leases import release_leases, renew_all_leases
from statehouse_agents.store.locking import lock_agents
from statehouse_agents.store.operations import CommitResult, LeaseOwner, StagedOp

__all__ = [
    "CommitResult",
    "LeaseOwner",
    "StagedOp",
    "commit",
    "lock_agents",
    "release_leases",
    "renew_all_leases",
    "run_atomic",
]
