"""`python manage.py import_agent FILE`: recreate an exported agent, all or nothing."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from statehouse_agents.store.lifecycle import import_history

from statehouse.errors import StatehouseError


class Command(BaseCommand):
    help = "Import an agent's history exported by export_agent (into an agent with no records)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the export (JSON lines); - for stdin")
        parser.add_argument("--namespace", default=None, help="import under this namespace")
        parser.add_argument("--agent-id", default=None, help="import under this agent id")
        parser.add_argument(
            "--new-txn-ids",
            action="store_true",
            help="give the transactions new ids (to copy an agent within one database)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # Bytes in: the store decodes each line itself, so a file that is not UTF-8 is an
        # error naming its line rather than a traceback.
        try:
            if options["file"] == "-":
                report = import_history(sys.stdin.buffer, **self._target(options))
            else:
                with open(options["file"], "rb") as lines:
                    report = import_history(lines, **self._target(options))
        except FileNotFoundError:
            raise CommandError(f"no such file: {options['file']}") from None
        except OSError as exc:
            raise CommandError(f"cannot read {options['file']}: {exc.strerror}") from None
        except StatehouseError as exc:
            raise CommandError(str(exc)) from None
        except DatabaseError as exc:
            raise CommandError(f"database error: {exc}") from None
        self.stdout.write(
            self.style.SUCCESS(
                f"imported {report.agent_id!r} in namespace {report.namespace!r}: "
                f"{report.transactions} transaction(s), {report.operations} operation(s)"
            )
        )

    @staticmethod
    def _target(options: dict[str, Any]) -> dict[str, Any]:
        return {
            "namespace": options["namespace"],
            "agent_id": options["agent_id"],
            "new_txn_ids": options["new_txn_ids"],
        }
