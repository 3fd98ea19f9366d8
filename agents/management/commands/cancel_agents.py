"""`python manage.py cancel_agents`: cancel many agents at once (docs/operations.md)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from statehouse_agents.models import Agent, ResumeRequest
from statehouse_agents.selection import (
    AgentFilter,
    SelectionError,
    check_limit,
    parse_duration,
    parse_status,
)
from statehouse_agents.store.operator import cancel_agents


class Command(BaseCommand):
    help = "Cancel the agents matching the filters (default: interrupted); each is audited."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--status",
            default="interrupted",
            help="interrupted (default), running, resuming, paused or idle",
        )
        parser.add_argument("--namespace", default=None)
        parser.add_argument(
            "--agent", dest="pattern", default=None, help="shell pattern, e.g. 'research-*'"
        )
        parser.add_argument(
            "--idle-for", default=None, help="only agents idle this long, e.g. 10m, 2h"
        )
        parser.add_argument("--limit", type=int, default=None)
        parser.add_argument("--dry-run", action="store_true", help="list what would be cancelled")
        parser.add_argument("--json", action="store_true", help="print the result as JSON")
        parser.add_argument("--reason", default="", help="recorded in the audit log")
        parser.add_argument("--actor", default="", help="who, for the audit log")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            status = parse_status(options["status"])
            idle_for = parse_duration(options["idle_for"]) if options["idle_for"] else None
            check_limit(options["limit"])
        except SelectionError as exc:
            raise CommandError(str(exc)) from None
        if status not in Agent.CANCELLABLE_STATUSES:
            choices = ", ".join(str(s) for s in Agent.CANCELLABLE_STATUSES)
            raise CommandError(
                f"agents that are {status} cannot be cancelled; use one of {choices}"
            )
        selection = AgentFilter(
            status=status,
            namespace=options["namespace"],
            pattern=options["pattern"],
            idle_for=idle_for,
        )
        pks = selection.agent_pks(limit=options["limit"])
        if options["dry_run"]:
            agents = list(
                Agent.objects.filter(pk__in=pks)
                .order_by("namespace", "agent_id")
                .values_list("namespace", "agent_id")
            )
            if options["json"]:
                listed = [{"namespace": ns, "agent_id": agent_id} for ns, agent_id in agents]
                payload = {"matched": len(agents), "dry_run": True, "agents": listed}
                self.stdout.write(json.dumps(payload))
                return
            for namespace, agent_id in agents:
                self.stdout.write(f"{namespace}/{agent_id}")
            self.stdout.write(f"dry run: {len(agents)} agent(s) would be cancelled")
            return
        cancelled = sum(
            cancel_agents(
                agent_pks=pks,
                actor=options["actor"] or "cancel_agents",
                reason=options["reason"],
                source=ResumeRequest.Source.COMMAND,
            )
        )
        skipped = len(pks) - cancelled
        if options["json"]:
            self.stdout.write(
                json.dumps({"matched": len(pks), "cancelled": cancelled, "skipped": skipped})
            )
            return
        message = f"{cancelled} of {len(pks)} matching agent(s) cancelled"
        if skipped:
            message += f" ({skipped} skipped: finished meanwhile)"
        self.stdout.write(self.style.SUCCESS(message) if cancelled else message)
