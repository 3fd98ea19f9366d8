"""`statehouse serve` (or `python manage.py serve`): the embedded product in one command,
what `make run` calls.

Migrates, makes a local admin account on first run, then runs the dashboard and the API
(gunicorn, or granian with `--server granian`; static files by whitenoise) and a resume
worker side by side; Ctrl-C stops both.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from statehouse_site import web_servers
from statehouse_site.env import embedded_secret_key


class Command(BaseCommand):
    help = "Run the dashboard and a resume worker together (Ctrl-C stops both)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--web-workers", type=int, default=2)
        parser.add_argument(
            "--server",
            choices=web_servers.SERVERS,
            default=os.environ.get("STATEHOUSE_WEB_SERVER") or "gunicorn",
            help="the web server (default: STATEHOUSE_WEB_SERVER, else gunicorn)",
        )
        parser.add_argument("--no-worker", action="store_true", help="serve the dashboard only")
        parser.add_argument("--demo", action="store_true", help="load demo agents first")

    def handle(self, *args: Any, **options: Any) -> None:
        web = self._web_command(options)  # a wrong server is refused before anything runs
        call_command("migrate", interactive=False, verbosity=0)
        self._ensure_admin()
        if options["demo"]:
            call_command("load_demo", stdout=self.stdout)
        url = f"http://{options['host']}:{options['port']}/"
        # The children find the same settings from a checkout or from a plain install.
        env = dict(os.environ)
        env.setdefault("DJANGO_SETTINGS_MODULE", "statehouse_site.settings")
        if not env.get("SECRET_KEY"):
            # The embedded installation's own key, made once and kept (mode 0600).
            env["SECRET_KEY"] = embedded_secret_key(Path(settings.DATA_DIR))
        children = {"dashboard": self._start(web, env)}
        if not options["no_worker"]:
            children["resume worker"] = self._start(
                [sys.executable, "-m", "django", "resume_worker"], env
            )
        self.stdout.write(self.style.SUCCESS(f"Statehouse is running at {url} (Ctrl-C stops it)"))
        self._supervise(children)

    @staticmethod
    def _web_command(options: dict[str, Any]) -> list[str]:
        """The web server's command line, logging each request to the terminal."""
        try:
            command = web_servers.command(
                options["server"],  # STATEHOUSE_WEB_SERVER's is not checked by argparse
                options["host"],
                options["port"],
                workers=options["web_workers"],
                log_requests=True,
            )
        except ValueError as exc:  # an unknown server, or granian not installed
            raise CommandError(str(exc)) from exc
        return command

    def _ensure_admin(self) -> None:
        users = get_user_model()
        credentials = Path(settings.DATA_DIR) / "admin-credentials.txt"
        if users.objects.filter(is_superuser=True).exists():
            where = f" (password in {credentials})" if credentials.exists() else ""
            self.stdout.write(f"Log in with your admin account{where}.")
            return
        password = secrets.token_urlsafe(12)
        users.objects.create_superuser("admin", "", password)
        credentials.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(credentials, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"username: admin\npassword: {password}\n")
        self.stdout.write(
            self.style.WARNING(
                f"Created a local admin account. Log in as  admin / {password}\n"
                f"(saved in {credentials}; change it in the admin)."
            )
        )

    def _start(self, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        try:
            return subprocess.Popen(command, env=env, start_new_session=True)
        except OSError as exc:
            raise CommandError(f"cannot start {command[0]}: {exc}") from exc

    def _supervise(self, children: dict[str, subprocess.Popen[bytes]]) -> None:
        stopping = False

        def stop(*_: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        failed = ""
        while not stopping and not failed:
            for name, child in children.items():
                if child.poll() is not None:
                    failed = f"the {name} exited with status {child.returncode}"
            time.sleep(0.3)
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children.values():
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
        if failed:
            raise CommandError(failed)
        self.stdout.write("Statehouse stopped.")
