"""`python manage.py resume_agents`: queue resumes of many agents at once."""

from __future__ import annotations

import json
import sys
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
from statehouse_agents.store.resume import RESUMABLE, request_resumes


class Command(BaseCommand):
    help = "Queue resume requests for the agents matching the filters (default: interrupted)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--status", default="interrupted", help="interrupted (default) or failed"
        )
        parser.add_argument("--namespace", default=None)
        parser.add_argument(
            "--agent", dest="pattern", default=None, help="shell pattern, e.g. 'research-*'"
        )
        parser.add_argument(
            "--idle-for", default=None, help="only agents idle this long, e.g. 10m, 2h"
        )
        parser.add_argument("--limit", type=int, default=None)
        parser.add_argument("--dry-run", action="store_true", help="list what would be resumed")
        parser.add_argument("--json", action="store_true", help="print the result as JSON")
        parser.add_argument("--requested-by", default="", help="recorded on each request")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            status = parse_status(options["status"])
            idle_for = parse_duration(options["idle_for"]) if options["idle_for"] else None
            check_limit(options["limit"])
        except SelectionError as exc:
            raise CommandError(str(exc)) from None
        if status not in RESUMABLE:
            raise CommandError(
                f"agents that are {status} cannot be resumed; use --status interrupted or failed"
            )
        limit = options["limit"]

        selection = AgentFilter(
            status=status,
            namespace=options["namespace"],
            pattern=options["pattern"],
            idle_for=idle_for,
        )
        pks = selection.agent_pks(limit=limit)
        if options["dry_run"]:
            self._report_dry_run(pks, as_json=options["json"])
            return

        queued = 0
        for count in self._progress(
            request_resumes(
                agent_pks=pks,
                source=ResumeRequest.Source.COMMAND,
                requested_by=options["requested_by"] or "resume_agents",
            ),
            total=len(pks),
            quiet=options["json"],
        ):
            queued += count
        skipped = len(pks) - queued
        if options["json"]:
            self.stdout.write(
                json.dumps({"matched": len(pks), "queued": queued, "skipped": skipped})
            )
            return
        message = f"{queued} of {len(pks)} matching agent(s) queued for resume"
        if skipped:
            message += f" ({skipped} skipped: no longer {status} or already queued)"
        self.stdout.write(self.style.SUCCESS(message) if queued else message)

    def _report_dry_run(self, pks: list[int], *, as_json: bool) -> None:
        agents = list(
            Agent.objects.filter(pk__in=pks)
            .order_by("namespace", "agent_id")
            .values_list("namespace", "agent_id")
        )
        if as_json:
            payload = {
                "matched": len(agents),
                "dry_run": True,
                "agents": [{"namespace": ns, "agent_id": agent_id} for ns, agent_id in agents],
            }
            self.stdout.write(json.dumps(payload))
            return
        for namespace, agent_id in agents:
            self.stdout.write(f"{namespace}/{agent_id}")
        self.stdout.write(f"dry run: {len(agents)} agent(s) would be queued for resume")

    def _progress(self, chunks, *, total: int, quiet: bool):  # type: ignore[no-untyped-def]  # rich's progress types are not exported
        """Yield each chunk's count, drawing a progress bar when writing to a terminal."""
        if quiet or total == 0 or not sys.stdout.isatty():
            yield from chunks
            return
        from rich.progress import Progress

        with Progress(transient=True) as progress:
            task = progress.add_task("queueing resumes", total=total)
            done = 0
            for count in chunks:
                yield count
                done = min(total, done + 500)
                progress.update(task, completed=done)
