"""`python manage.py resume_worker`: claim resume requests and run the agents."""

from __future__ import annotations

import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from statehouse_agents.worker import ResumeWorker


class Command(BaseCommand):
    help = "Claim resume requests and run each agent's resume entry point in a supervised process."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--concurrency",
            type=int,
            default=None,
            help="runs at once (default: STATEHOUSE_WORKER_CONCURRENCY)",
        )
        parser.add_argument("--once", action="store_true", help="drain what is queued, then exit")
        parser.add_argument(
            "--poll-interval", type=float, default=1.0, help="seconds between polls (default 1)"
        )
        parser.add_argument(
            "--no-detect",
            action="store_true",
            help="leave crash detection (dead lease holders) to other workers",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        concurrency = options["concurrency"]
        if concurrency is not None and concurrency < 1:
            raise CommandError(f"--concurrency must be at least 1, not {concurrency}")
        if options["poll_interval"] <= 0:
            raise CommandError("--poll-interval must be positive")
        worker = ResumeWorker(
            concurrency=concurrency,
            once=options["once"],
            poll_interval=options["poll_interval"],
            log=lambda message: self.stdout.write(message),
            detect=not options["no_detect"],
        )
        # Restore the handlers afterwards: a command called in-process (call_command, tests,
        # an embedding program) must not leave SIGTERM/SIGINT bound to a finished worker.
        previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
        worker.install_signal_handlers()
        try:
            outcomes = worker.run()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        counts: dict[str, int] = {}
        for _agent, outcome in outcomes:
            counts[outcome] = counts.get(outcome, 0) + 1
        summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "nothing"
        self.stdout.write(self.style.SUCCESS(f"worker stopped: {summary}"))
