"""Transaction ids: UUIDs of version 7, whose leading bits are the time they were made.

The store keeps a unique index on every commit's `txn_id`. With random ids (version 4)
each commit inserts into a random page of that index, so once a history outgrows the
database's cache, every commit reads a page and, on PostgreSQL, writes the whole 8 KB page
to the WAL the first time it touches it after each checkpoint; PostgreSQL's index also
holds about a quarter fewer ids a page. Ids made in time order land on the index's last
page, as the commit log's own key does (docs/architecture.md, "Transaction ids").

The `uuid6` library makes them: the time is the caller's clock in milliseconds, kept
increasing within a process, and the remaining 74 bits are random, so ids made at once by
many processes or hosts never collide in practice. A caller may still pass any UUID.
"""

from __future__ import annotations

from uuid6 import uuid7


def new_txn_id() -> str:
    """A new transaction id: a time-ordered UUID (version 7), as text."""
    return str(uuid7())
