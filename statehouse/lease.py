"""The background renewal of the leases a client holds (docs/contract.md §3, liveness)."""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger("statehouse.lease")


class LeaseKeeper:
    """Renew every lease of one owner every third of the lease duration, in a daemon thread.

    The thread starts when the client first takes a lease and stops at `stop()`; a process
    killed with SIGKILL stops renewing, so its agents turn interrupted once the lease expires.
    """

    def __init__(self, owner: object, lease_seconds: float) -> None:
        self.owner = owner
        self.lease_seconds = lease_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()

    def start(self) -> None:
        with self._guard:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(
                target=self._run, name="statehouse-lease-keeper", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.lease_seconds)

    def _run(self) -> None:
        from django.db import connection
        from statehouse_agents.store.liveness import verify_handles
        from statehouse_agents.store.writes import renew_all_leases

        try:
            while not self._stop.wait(self.lease_seconds / 3):
                try:
                    renew_all_leases(owner=self.owner, lease_seconds=self.lease_seconds)  # type: ignore[arg-type]  # a LeaseOwner, typed object to keep Django out of this import
                    verify_handles()  # a dropped handle connection is taken again
                except Exception:  # keep renewing: a passing outage must not end the thread
                    logger.exception("lease renewal failed; retrying")
                    connection.close()
        finally:
            connection.close()
