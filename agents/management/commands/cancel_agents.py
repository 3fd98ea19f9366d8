"""`python manage.py cancel_agents`: cancel many agents at once (docs/operations.md)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from statehouse_agents.management.selection_options import (
    add_selection_arguments,
    selection_from_options,
)
from statehouse_agents.models import Agent, ResumeRequest
from statehouse_agents.store.operator import cancel_agents


class Command(BaseCommand):
    help = "Cancel the agents matching the filters (default: interrupted); each is audited."

    def add_arguments(self, parser: CommandParser) -> None:
        add_selection_arguments(
            parser,
            status_help="interrupted (default), running, resuming, paused or idle",
            verb="cancelled",
        )
        parser.add_argument("--reason", default="", help="recorded in the audit log")
        parser.add_argument("--actor", default="", help="who, for the audit log")

    def handle(self, *args: Any, **options: Any) -> None:
        choices = ", ".join(str(s) for s in Agent.CANCELLABLE_STATUSES)
        selection = selection_from_options(
            options,
            allowed=Agent.CANCELLABLE_STATUSES,
            verb="cancelled",
            hint=f"use one of {choices}",
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
