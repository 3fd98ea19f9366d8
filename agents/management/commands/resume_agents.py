"""`python manage.py resume_agents`: queue resumes of many agents at once."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from statehouse_agents.management.selection_options import (
    add_selection_arguments,
    selection_from_options,
)
from statehouse_agents.models import Agent, ResumeRequest, Step
from statehouse_agents.store.atomic import BULK_CHUNK
from statehouse_agents.store.doubt import ReviewHold
from statehouse_agents.store.resume import RESUMABLE, resume_selected


def _review_json(hold: ReviewHold) -> dict[str, object]:
    """The hold as JSON: its fields but the database key."""
    return {name: value for name, value in asdict(hold).items() if name != "agent_pk"}


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

        result = resume_selected(
            pks,
            source=ResumeRequest.Source.COMMAND,
            requested_by=options["requested_by"] or "resume_agents",
            progress=lambda chunks: self._progress(chunks, total=len(pks), quiet=options["json"]),
        )
        if options["json"]:
            payload = {
                "matched": len(pks),
                "queued": result.queued,
                "skipped": result.skipped,
                "needs_review": [_review_json(hold) for hold in result.needs_review],
            }
            self.stdout.write(json.dumps(payload))
            return
        for hold in result.needs_review:
            self.stdout.write(self.style.WARNING(f"skipped, needs review: {hold}"))
        message = f"{result.queued} of {len(pks)} matching agent(s) queued for resume"
        if result.skipped:
            message += (
                f" ({result.skipped} skipped: no longer {selection.status} or already queued)"
            )
        if result.needs_review:
            message += f"; {len(result.needs_review)} skipped: a step in doubt needs review"
        self.stdout.write(self.style.SUCCESS(message) if result.queued else message)

    def _report_dry_run(self, pks: list[int], *, as_json: bool) -> None:
        """The agents a resume would queue, and apart those a review step holds back."""
        review = {
            step.agent_id: step
            for step in Step.objects.needing_review()
            .filter(agent_id__in=pks)
            .order_by("agent_id", "-number")
        }
        agents = list(
            Agent.objects.filter(pk__in=pks)
            .order_by("namespace", "agent_id")
            .values_list("pk", "namespace", "agent_id")
        )
        held = [
            ReviewHold(pk, ns, agent_id, review[pk].key, review[pk].number)
            for pk, ns, agent_id in agents
            if pk in review
        ]
        queued = [(ns, agent_id) for pk, ns, agent_id in agents if pk not in review]
        if as_json:
            payload = {
                "matched": len(agents),
                "dry_run": True,
                "agents": [{"namespace": ns, "agent_id": agent_id} for ns, agent_id in queued],
                "needs_review": [_review_json(hold) for hold in held],
            }
            self.stdout.write(json.dumps(payload))
            return
        for namespace, agent_id in queued:
            self.stdout.write(f"{namespace}/{agent_id}")
        for hold in held:
            self.stdout.write(
                f"{hold.namespace}/{hold.agent_id}: skipped, step {hold.number} needs review"
            )
        text = f"dry run: {len(queued)} agent(s) would be queued for resume"
        if held:
            text += f"; {len(held)} skipped: a step in doubt needs review"
        self.stdout.write(text)

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
                done = min(total, done + BULK_CHUNK)  # a chunk per transaction
                progress.update(task, completed=done)
