"""Create an API token of the HTTP API for USERNAME and print it (shown once: only its
digest is stored). The token alone is the last line of the output."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser
from statehouse_agents.store.tokens import create_token

from statehouse.errors import ValidationError


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--namespace",
            action="append",
            default=[],
            metavar="NS",
            help="a namespace the token may use (repeat for more; none: every namespace)",
        )
        parser.add_argument("--read-only", action="store_true", help="reads only, no writes")
        parser.add_argument("--expires", type=int, metavar="DAYS", help="expire after DAYS days")
        parser.add_argument("--name", default="", help="what the token is for")
        parser.add_argument(
            "--rate-limit", type=int, default=0, metavar="N", help="requests a minute (0: default)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = User.objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"no user {options['username']!r}; create one first")
        days = options["expires"]
        if days is not None and days < 1:
            raise CommandError(f"--expires must be at least 1 day, not {days}")
        try:
            token, secret = create_token(
                user=user,
                name=options["name"],
                namespaces=options["namespace"],
                read_only=options["read_only"],
                expires_in=None if days is None else timedelta(days=days),
                rate_limit=options["rate_limit"],
                actor="create_token",
            )
        except ValidationError as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(f"API token {token.prefix}… for {user} ({token.scope}); shown once:")
        self.stdout.write(secret)
