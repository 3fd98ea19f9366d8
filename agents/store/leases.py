"""Leases (who runs an agent) and their fencing: checked, taken and freed by a commit,
renewed and released by the client (docs/client.md, "Leases")."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from django.db.models.functions import Now
from statehouse_agents.models import Agent
from statehouse_agents.store.atomic import run_atomic
from statehouse_agents.store.operations import LeaseOwner

from statehouse.errors import LeaseHeldError, LeaseLostError


def check_leases(
    leasing: set[str],
    agents: dict[str, Agent],
    owner: LeaseOwner | None,
    now: datetime,
    held: Mapping[str, int],
) -> None:
    """Refuse a commit to an agent another live process holds, or one taken over since
    this owner held it (its lease epoch moved on: fencing)."""
    for agent_id in sorted(leasing):
        agent = agents[agent_id]
        live = agent.lease_expires_at is not None and agent.lease_expires_at > now
        holder = (
            f"{agent.lease_host} pid {agent.lease_pid} until {agent.lease_expires_at.isoformat()}"
            if live and agent.lease_expires_at
            else "nobody now (its lease expired)"
        )
        details = {
            "agent_id": agent_id,
            "host": agent.lease_host,
            "pid": agent.lease_pid,
            "expires_at": agent.lease_expires_at,
        }
        if agent_id in held and held[agent_id] != agent.lease_epoch:
            raise LeaseLostError(
                f"agent {agent_id!r} was taken over since this process held it (lease epoch "
                f"{agent.lease_epoch}, not {held[agent_id]}); it is held by {holder}. "
                "Stop running it: nothing was written",
                **details,
            )
        held_by_other = agent.lease_owner and (owner is None or agent.lease_owner != owner.token)
        if held_by_other and live:
            raise LeaseHeldError(
                f"agent {agent_id!r} is held by {holder}; nothing was written",
                **details,
            )


def take_lease(agent: Agent, owner: LeaseOwner, now: datetime, lease_seconds: float) -> set[str]:
    """Make `owner` the agent's holder until `now + lease_seconds`; return the fields changed.

    An owner that already holds the lease with more than half of it left keeps it as it
    is: its keeper renews it every third of the lease, and leaving the indexed expiry
    alone keeps the step's update of the agent row a cheap in-place (HOT) one.
    """
    lease = timedelta(seconds=lease_seconds)
    expires = agent.lease_expires_at
    same = agent.lease_owner == owner.token and agent.lease_watch == owner.watch
    if same and expires is not None and expires - now > lease / 2:
        return set()
    if agent.lease_owner != owner.token:
        agent.lease_epoch += 1  # a new holder: fence off every earlier one
    agent.lease_owner = owner.token
    agent.lease_host = owner.host
    agent.lease_pid = owner.pid
    agent.lease_expires_at = now + lease
    agent.lease_watch = owner.watch
    return {
        "lease_owner",
        "lease_host",
        "lease_pid",
        "lease_expires_at",
        "lease_epoch",
        "lease_watch",
    }


def clear_lease(agent: Agent) -> set[str]:
    for name, value in Agent.NO_LEASE.items():
        setattr(agent, name, value)
    return set(Agent.NO_LEASE)


def renew_all_leases(*, owner: LeaseOwner, lease_seconds: float) -> int:
    """Extend every lease this owner holds; return how many it still holds."""
    return run_atomic(
        lambda: Agent.objects.filter(lease_owner=owner.token).update(
            lease_expires_at=Now() + timedelta(seconds=lease_seconds)
        ),
        what="lease renewal",
    )


def release_leases(
    *, owner: LeaseOwner, namespace: str | None = None, agent_id: str | None = None
) -> int:
    """Give up this owner's leases: all of them, or the one of `(namespace, agent_id)`."""
    held = Agent.objects.filter(lease_owner=owner.token)
    if agent_id is not None:
        held = held.filter(namespace=namespace, agent_id=agent_id)
    return run_atomic(
        lambda: held.update(**Agent.NO_LEASE),
        what="lease release",
    )
