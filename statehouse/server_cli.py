"""`statehouse serve`, `statehouse worker` and the other server commands of a plain install.

`statehouse.cli` hands a command line over here when its first word names one of
`SERVER_COMMANDS`; everything else (health, get, replay, migrate, …) stays there. These
commands run Django's management commands with the product's settings, so an installed
package needs no checkout and no manage.py (docs/packaging.md):

    statehouse serve                # dashboard + resume worker (what `make run` runs)
    statehouse worker               # a resume worker alone (manage.py resume_worker)
    statehouse createsuperuser      # Django's own command
    statehouse resume_agents …      # each of the product's management commands
    statehouse cancel_agents …      # (cancel_agents takes resume_agents' filters)
    statehouse manage COMMAND …     # any other Django management command
"""

from __future__ import annotations

import os
from collections.abc import Sequence

__all__ = ["ALIASES", "EPILOG", "SERVER_COMMANDS", "handles", "main"]

SETTINGS_MODULE = "statehouse_site.settings"
# Short names for the commands an operator types most.
ALIASES = {"worker": "resume_worker"}
# Management commands reachable as `statehouse <command>`; `statehouse manage` runs any.
SERVER_COMMANDS = frozenset(
    {
        "serve",
        "worker",
        "manage",
        "createsuperuser",
        "changepassword",
        "check",
        "collectstatic",
        "cancel_agents",
        "export_agent",
        "import_agent",
        "load_demo",
        "prune",
        "resume_agents",
        "resume_worker",
    }
)

EPILOG = (
    "server commands (Django's): serve, worker, createsuperuser, "
    + ", ".join(sorted(SERVER_COMMANDS - {"serve", "worker", "createsuperuser", "manage"}))
    + "; 'manage COMMAND' runs any other management command"
)


def handles(argv: Sequence[str]) -> bool:
    """Whether `argv` (without the program name) is a server command."""
    return bool(argv) and argv[0] in SERVER_COMMANDS


def main(argv: Sequence[str], *, prog: str = "statehouse") -> int:
    """Run the management command `argv` names; return its exit status."""
    words = list(argv)
    if words[0] == "manage":
        words = words[1:] or ["help"]
    words[0] = ALIASES.get(words[0], words[0])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS_MODULE)
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line([prog, *words])
    except SystemExit as exc:  # Django exits on a failed command or a bad command line
        return exc.code if isinstance(exc.code, int) else 1
    except KeyboardInterrupt:
        return 130
    return 0
