"""`python manage.py export_agent AGENT`: an agent's full history as JSON lines."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from statehouse_agents.store.lifecycle import export_history

from statehouse.errors import StatehouseError


class Command(BaseCommand):
    help = "Write an agent's full history as JSON lines (see docs/operations.md)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent_id", metavar="AGENT")
        parser.add_argument("--namespace", default="default")
        parser.add_argument("--output", "-o", default="-", help="file to write (default stdout)")

    def handle(self, *args: Any, **options: Any) -> None:
        lines = export_history(options["namespace"], options["agent_id"])
        try:
            first = next(lines)
        except StatehouseError as exc:
            raise CommandError(str(exc)) from None
        if options["output"] == "-":
            out = self.stdout._out if hasattr(self.stdout, "_out") else sys.stdout
            self._write(out, first, lines)
            return
        with open(options["output"], "w", encoding="utf-8") as out:
            count = self._write(out, first, lines)
        self.stdout.write(f"exported {count} transaction(s) to {options['output']}")

    @staticmethod
    def _write(out: Any, first: str, rest: Any) -> int:
        out.write(first + "\n")
        count = 0
        for line in rest:
            out.write(line + "\n")
            count += 1
        return count
