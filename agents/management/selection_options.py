"""The agent-selection options that the bulk commands share (`resume_agents`,
`cancel_agents`; docs/operations.md): one definition of the flags and of their parsing."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser
from statehouse_agents.selection import (
    AgentFilter,
    SelectionError,
    check_limit,
    parse_duration,
    parse_status,
)


def add_selection_arguments(parser: CommandParser, *, status_help: str, verb: str) -> None:
    """--status, --namespace, --agent, --idle-for, --limit, --dry-run and --json."""
    parser.add_argument("--status", default="interrupted", help=status_help)
    parser.add_argument("--namespace", default=None)
    parser.add_argument(
        "--agent", dest="pattern", default=None, help="shell pattern, e.g. 'research-*'"
    )
    parser.add_argument("--idle-for", default=None, help="only agents idle this long, e.g. 10m, 2h")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--dry-run", action="store_true", help=f"list what would be {verb}")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def selection_from_options(
    options: dict[str, Any], *, allowed: tuple[str, ...], verb: str, hint: str
) -> AgentFilter:
    """The filter the options describe; CommandError naming the bad option, or the status
    that cannot be `verb` (with `hint` on what to use instead)."""
    try:
        status = parse_status(options["status"])
        idle_for = parse_duration(options["idle_for"]) if options["idle_for"] else None
        check_limit(options["limit"])
    except SelectionError as exc:
        raise CommandError(str(exc)) from None
    if status not in allowed:
        raise CommandError(f"agents that are {status} cannot be {verb}; {hint}")
    return AgentFilter(
        status=status, namespace=options["namespace"], pattern=options["pattern"], idle_for=idle_for
    )
