"""`python manage.py prune`: delete old history of finished agents, by age."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from statehouse_agents.selection import SelectionError, parse_duration
from statehouse_agents.store.lifecycle import PruneReport, prune, prune_by_policy


class Command(BaseCommand):
    help = (
        "Delete finished (completed or failed) agents finished longer ago than --agents, and "
        "superseded versions older than --versions of the finished agents kept. Agents not "
        "finished keep their whole history (replay and resume need it). --policy applies "
        "the retention settings instead (docs/retention.md)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--agents", metavar="AGE", help="e.g. 90d: finished agents to delete")
        parser.add_argument("--versions", metavar="AGE", help="e.g. 30d: old versions to delete")
        parser.add_argument("--namespace", default=None)
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")
        parser.add_argument(
            "--policy",
            action="store_true",
            help="apply STATEHOUSE_RETENTION_FINISHED_DAYS and STATEHOUSE_RETENTION_DROP_DAYS",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["policy"]:
            if options["agents"] or options["versions"]:
                raise CommandError(
                    "--policy takes its ages from the settings: drop --agents/--versions"
                )
            policy = prune_by_policy(dry_run=options["dry_run"], namespace=options["namespace"])
            if policy is None:
                raise CommandError(
                    "no retention policy: set STATEHOUSE_RETENTION_FINISHED_DAYS and/or "
                    "STATEHOUSE_RETENTION_DROP_DAYS (docs/retention.md)"
                )
            self._report(policy, dry_run=options["dry_run"])
            return
        if not options["agents"] and not options["versions"]:
            raise CommandError("say what to prune: --agents AGE and/or --versions AGE, or --policy")
        now = timezone.now()
        try:
            agents_age = parse_duration(options["agents"]) if options["agents"] else None
            versions_age = parse_duration(options["versions"]) if options["versions"] else None
        except SelectionError as exc:
            raise CommandError(str(exc)) from None
        report = prune(
            finished_before=now - agents_age if agents_age is not None else None,
            versions_before=now - versions_age if versions_age is not None else None,
            namespace=options["namespace"],
            dry_run=options["dry_run"],
        )
        self._report(report, dry_run=options["dry_run"])

    def _report(self, report: PruneReport, *, dry_run: bool) -> None:
        verb = "would delete" if dry_run else "deleted"
        self.stdout.write(
            f"prune {verb} {report.agents} finished agent(s) and {report.versions} old "
            f"version(s)" + ("" if dry_run else f"; {report.commits} empty commit(s)")
        )
