"""Operator filters give the same typed one-line error on both databases, never the
database's own ("datatype mismatch", "bigint out of range")."""

from __future__ import annotations

import pytest
from statehouse_agents.selection import AgentFilter, SelectionError

from statehouse import Statehouse
from tests.test_cli_agents import fleet, run  # noqa: F401 (fixtures)

HUGE = "99999999999999999999999"


def test_statehouse_agents_with_a_limit_no_database_takes(capsys, fleet) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    status, out, err = run(capsys, "agents", "--limit", HUGE)
    assert (status, out) == (2, [])
    assert len(err) == 1
    # The client's listing takes at most 10,000 agents a call, checked before any database.
    assert err[0].endswith(f"limit must be an integer in [1, 10000], not {HUGE}")


def test_the_largest_limit_lists_everything(capsys, fleet) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    status, out, _err = run(capsys, "agents", "--limit", "10000")
    assert status == 0
    assert len(out) == 3


@pytest.mark.parametrize("limit", [0, -1, 2**63, int(HUGE)])
def test_agent_pks_refuses_a_limit_out_of_range(sh: Statehouse, limit: int) -> None:
    with pytest.raises(SelectionError, match=r"^--limit must be an integer from 1 to"):
        AgentFilter(pattern="a*").agent_pks(limit=limit)
