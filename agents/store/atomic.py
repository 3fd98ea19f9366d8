"""Retrying atomic blocks: one database transaction per store operation, only our errors out."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from django.db import DatabaseError, IntegrityError, OperationalError, transaction

from statehouse.errors import StatehouseError, TransactionError

T = TypeVar("T")

# SQLSTATEs after which the whole operation is safe to run again.
_RETRYABLE_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock detected
_MAX_RETRIES = 5

# A bulk operator action (cancel or resume many agents) takes this many agents per
# transaction (docs/operations.md, "Bulk cancel").
BULK_CHUNK = 500


def run_atomic(
    operation: Callable[[], T], *, what: str, durable: bool = False, statement: bool = False
) -> T:
    """Run `operation` in one transaction; retry deadlocks; raise only StatehouseError.

    `durable=True` refuses to run inside a transaction the caller has open
    (`TransactionError`): its rollback would undo what this call acknowledged
    (docs/client.md, "Durability"). `statement=True` is for an operation of one
    statement, run in autocommit: the statement is its transaction, and no BEGIN or
    COMMIT is sent.
    """
    for attempt in range(_MAX_RETRIES):
        try:
            with contextlib.nullcontext() if statement else transaction.atomic(durable=durable):
                return operation()
        except StatehouseError:
            raise
        except RuntimeError as exc:
            if durable and "durable atomic block" in str(exc):
                raise TransactionError(
                    f"{what} refused: a database transaction of the caller is open "
                    "(django.db.transaction.atomic), and its rollback would undo this "
                    "commit after it was acknowledged. Commit after that block ends, or "
                    "join it explicitly with begin_transaction(join=True); nothing was "
                    "applied"
                ) from exc
            raise
        except OperationalError as exc:
            sqlstate = getattr(exc.__cause__, "sqlstate", None)
            if sqlstate in _RETRYABLE_SQLSTATES and attempt + 1 < _MAX_RETRIES:
                if transaction.get_connection().in_atomic_block:
                    raise StatehouseError(f"{what} failed: {exc}") from exc
                time.sleep(0.01 * (2**attempt))
                continue
            raise StatehouseError(f"{what} failed: database error: {exc}") from exc
        except IntegrityError as exc:
            raise StatehouseError(f"{what} failed: integrity error: {exc}") from exc
        except DatabaseError as exc:
            raise StatehouseError(f"{what} failed: database error: {exc}") from exc
    raise AssertionError("unreachable")


def run_atomic_chunks(
    pks: Sequence[int], operation: Callable[[list[int]], T], *, what: str
) -> Iterator[T]:
    """Run `operation` on `pks` a chunk of BULK_CHUNK at a time, one transaction
    (`run_atomic`) per chunk; yield what each chunk's returned once it committed."""
    for start in range(0, len(pks), BULK_CHUNK):
        chunk = list(pks[start : start + BULK_CHUNK])
        yield run_atomic(functools.partial(operation, chunk), what=what)
