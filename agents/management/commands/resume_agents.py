"""`python manage.py resume_agents`: queue resumes of many agents at once."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from statehouse_agents.management.selection_options import (
    add_selection_arguments,
    selection_from_options,
)
from statehouse_agents.models import Agent, ResumeRequest
from statehouse_agents.store.resume import RESUMABLE, request_resumes


class Command(BaseCommand):
    help = "Queue resume requests for the agents matching the filters (default: interrupted)."

    def add_arguments(self, parser: CommandParser) -> None:
        add_selection_arguments(
            parser, status_help="interrupted (default) or failed", verb="resumed"
        )
        parser.add_argument("--requested-by", default="", help="recorded on each request")

    def handle(self, *args: Any, **options: Any) -> None:
        selection = selection_from_options(
            options, allowed=RESUMABLE, verb="resumed", hint="use --status interrupted or failed"
        )
        limit = options["limit"]
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
            message += f" ({skipped} skipped: no longer {selection.status} or already queued)"
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
