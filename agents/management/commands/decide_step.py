"""Decide an in-doubt step: run it again (--retry), mark it done with a JSON result
(--done RESULT) or mark it failed (--failed ERROR); audited. As the agent page does
(docs/operations.md, "In-doubt steps")."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from statehouse_agents.store.decisions import decide_step

from statehouse.errors import StatehouseError


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent_id")
        parser.add_argument("key", help="the step's key, such as step:3")
        decision = parser.add_mutually_exclusive_group(required=True)
        decision.add_argument("--retry", action="store_true", help="run it again")
        decision.add_argument("--done", metavar="RESULT", help="mark it done; RESULT is JSON")
        decision.add_argument("--failed", metavar="ERROR", help="mark it failed with ERROR")
        parser.add_argument("--namespace", default="default")
        parser.add_argument("--reason", default="", help="recorded in the audit log")
        parser.add_argument("--actor", default="", help="who, for the audit log")
        parser.add_argument("--json", action="store_true", help="print the result as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["retry"]:
            decision = "retry"
        elif options["done"] is not None:
            decision = "done"
        else:
            decision = "failed"
        try:
            result = decide_step(
                namespace=options["namespace"],
                agent_id=options["agent_id"],
                key=options["key"],
                decision=decision,
                actor=options["actor"] or "decide_step",
                reason=options["reason"],
                result_text=options["done"] or "",
                error=options["failed"] or "",
            )
        except StatehouseError as exc:
            raise CommandError(f"not decided: {exc}") from None
        if options["json"]:
            payload = {
                "decision": decision,
                "version": result.version,
                "commit_ts": result.commit_ts,
                "after": result.after,
            }
            self.stdout.write(json.dumps(payload))
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"{options['key']} of {options['agent_id']}: {decision} "
                f"(v{result.version}, commit {result.commit_ts})"
            )
        )
