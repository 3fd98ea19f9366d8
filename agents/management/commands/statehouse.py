"""`python manage.py statehouse …`: the `statehouse` command line, run inside Django.

A thin shell around `statehouse.cli.main`, so that both entry points parse the same
arguments and print the same output and errors.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from typing import Any, NoReturn

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from statehouse import cli

# Options manage.py applies before it hands the command line over; cli.main knows nothing of them.
_DJANGO_OPTIONS = ("--settings", "--pythonpath")


class Command(BaseCommand):
    help = (
        "The statehouse command line: health, version, get, keys, scan, replay, migrate. "
        "See `manage.py statehouse --help`."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("args", nargs=argparse.REMAINDER, help="a statehouse command line")

    def run_from_argv(self, argv: list[str]) -> NoReturn:
        # Bypass BaseCommand's own parser: `--help` lists the statehouse subcommands, and an
        # error is the one line cli.main prints, not a second "CommandError:" line.
        prog = f"{os.path.basename(argv[0])} {argv[1]}"
        try:
            status = cli.main(_without_django_options(argv[2:]), prog=prog)
        finally:
            connections.close_all()
        sys.exit(status)

    def handle(self, *args: str, **options: Any) -> None:
        prog = "manage.py statehouse"
        errors = io.StringIO()
        status = cli.main(
            list(args), prog=prog, stdout=options.get("stdout") or sys.stdout, stderr=errors
        )
        if status != 0:
            message = errors.getvalue().strip().removeprefix(f"{prog}: error: ")
            raise CommandError(message or f"exit status {status}", returncode=status)


def _without_django_options(args: list[str]) -> list[str]:
    kept: list[str] = []
    skip_value = False
    for arg in args:
        if skip_value:
            skip_value = False
        elif arg in _DJANGO_OPTIONS:
            skip_value = True
        elif not arg.startswith(tuple(f"{option}=" for option in _DJANGO_OPTIONS)):
            kept.append(arg)
    return kept
