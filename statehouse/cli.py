"""The `statehouse` command line: look into the store from a shell or a script.

    statehouse health
    statehouse get a1 task
    statehouse replay a1 --limit 20

Also reachable as `python manage.py statehouse …`, which delegates here, so the rules
live in one place. Nothing here imports Django at module level: the client sets Django
up on first use, and `DATABASE_URL` in the environment picks the database.

Each subcommand is one `add_<name>(subparsers)` function that declares its arguments and
its handler, listed in `COMMANDS`; a handler takes a `Context` and returns the exit status.
Errors are one line on stderr (`statehouse: error: …`): exit status 2 for a bad command
line, 1 for everything else (a missing key, a store error, an unreachable database).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn, TextIO

from statehouse import Statehouse, __version__, _django, server_cli
from statehouse._wire import state_to_json
from statehouse.errors import NotFoundError, StatehouseError, ValidationError
from statehouse.formatting import (
    format_event_json,
    format_operation,
    format_ts,
    format_value_summary,
)
from statehouse.types import Operation, ReplayEvent, StateResult
from statehouse.validation import check_identifier

__all__ = ["COMMANDS", "Context", "UsageError", "add_command", "build_parser", "main"]

PROG = "statehouse"
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A bad command line: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line (no usage block) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


Subparsers = argparse._SubParsersAction  # the object `add_subparsers()` returns


@dataclass
class Context:
    """What a handler gets: its arguments, where to write, and a client made on first use."""

    args: argparse.Namespace
    stdout: TextIO
    _client: Statehouse | None = None

    @property
    def client(self) -> Statehouse:
        if self._client is None:
            args = self.args
            self._client = Statehouse(
                getattr(args, "url", None),
                namespace=args.namespace,
                token=getattr(args, "token", None),
            )
        return self._client

    @property
    def namespace(self) -> str:
        return self.client.namespace

    def out(self, line: str = "") -> None:
        print(line, file=self.stdout)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


Handler = Callable[[Context], int]


# --- argument types -----------------------------------------------------------------


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, not {text!r}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


positive_int = _int_at_least(1)
non_negative_int = _int_at_least(0)


# --- registration -------------------------------------------------------------------


def _common_options(*, short: bool = True) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        *(["-n"] if short else []),
        "--namespace",
        default="default",
        help="namespace of the records (default: %(default)s)",
    )
    return common


def add_command(
    subparsers: Subparsers,
    name: str,
    handler: Handler,
    *,
    help: str | None = None,
    short_namespace: bool = True,
) -> argparse.ArgumentParser:
    """Register subcommand `name`, run by `handler`; return its parser to add arguments to.

    Its help is `help`, else the handler's docstring. `short_namespace=False` leaves `-n`
    free for the command (as `tail -n N`)."""
    help = help or (handler.__doc__ or "").strip()
    parser = subparsers.add_parser(
        name, help=help, description=help, parents=[_common_options(short=short_namespace)]
    )
    parser.set_defaults(handler=handler)
    return parser


def add_health(subparsers: Subparsers) -> None:
    add_command(subparsers, "health", cmd_health)


def add_version(subparsers: Subparsers) -> None:
    add_command(subparsers, "version", cmd_version)


def add_get(subparsers: Subparsers) -> None:
    parser = add_command(subparsers, "get", cmd_get)
    parser.add_argument("agent_id", metavar="AGENT")
    parser.add_argument("key", metavar="KEY")
    parser.add_argument(
        "--version", type=positive_int, metavar="N", help="the value as it was at version N"
    )
    parser.add_argument(
        "--json", "--json-output", dest="json", action="store_true", help="print one JSON object"
    )
    parser.add_argument("--pretty", action="store_true", help="print one indented JSON object")


def add_keys(subparsers: Subparsers) -> None:
    parser = add_command(subparsers, "keys", cmd_keys)
    parser.add_argument("agent_id", metavar="AGENT")
    parser.add_argument("--prefix", metavar="P", help="only keys starting with P")
    parser.add_argument("--json", action="store_true", help="print one JSON array")


def add_scan(subparsers: Subparsers) -> None:
    parser = add_command(subparsers, "scan", cmd_scan)
    parser.add_argument("agent_id", metavar="AGENT")
    parser.add_argument("prefix", metavar="PREFIX")
    parser.add_argument("--json", action="store_true", help="print JSON lines")


def add_replay(subparsers: Subparsers) -> None:
    parser = add_command(subparsers, "replay", cmd_replay)
    parser.add_argument("agent_id", metavar="AGENT")
    parser.add_argument(
        "--start-ts", type=non_negative_int, metavar="TS", help="from commit_ts TS (inclusive)"
    )
    parser.add_argument(
        "--end-ts", type=non_negative_int, metavar="TS", help="up to commit_ts TS (inclusive)"
    )
    parser.add_argument("--limit", type=positive_int, metavar="N", help="stop after N operations")
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "-v", "--verbose", action="store_true", help="full values, commit_ts and txn_id"
    )
    output.add_argument("--json", action="store_true", help="print JSON lines")


def add_migrate(subparsers: Subparsers) -> None:
    parser = add_command(subparsers, "migrate", cmd_migrate)
    parser.add_argument(
        "--check",
        action="store_true",
        help="apply nothing; exit 1 if the schema is not up to date",
    )
    parser.add_argument(
        "--verbosity", type=int, choices=[0, 1, 2, 3], default=1, help="Django's verbosity"
    )


def add_agents(subparsers: Subparsers) -> None:
    parser = add_command(subparsers, "agents", cmd_agents)
    parser.set_defaults(namespace=None)  # every namespace unless one is named
    parser.add_argument(
        "--status", metavar="S", help="running, interrupted, resuming, completed, failed or idle"
    )
    parser.add_argument("--agent", metavar="PATTERN", help="shell pattern of agent ids")
    parser.add_argument("--limit", type=positive_int, default=100, metavar="N")
    parser.add_argument("--json", action="store_true", help="print JSON lines")


def add_controls(subparsers: Subparsers) -> None:
    """`cancel`, `pause`, `unpause` AGENT [--reason R]: operator controls (docs/operations.md)."""
    helps = {
        "cancel": "cancel an agent: its next step raises AgentCancelledError",
        "pause": "pause an agent: its next step waits until it is unpaused",
        "unpause": "unpause a paused agent",
    }
    for action, text in helps.items():
        parser = add_command(subparsers, action, cmd_control, help=text)
        parser.set_defaults(control=action)
        parser.add_argument("agent_id", metavar="AGENT")
        parser.add_argument("--reason", default="", help="recorded in the audit log")


def add_tail(subparsers: Subparsers) -> None:
    parser = add_command(subparsers, "tail", cmd_tail, short_namespace=False)
    parser.add_argument("agent_id", metavar="AGENT")
    parser.add_argument(
        "-n", "--lines", type=non_negative_int, default=10, metavar="N", help="last N (10)"
    )
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new ones")
    parser.add_argument(
        "--interval", type=float, default=1.0, metavar="S", help="seconds between polls (-f)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="full values, ts and txn")


def add_dump(subparsers: Subparsers) -> None:
    parser = add_command(subparsers, "dump", cmd_dump)
    parser.add_argument("agent_id", metavar="AGENT")
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default: stdout)")
    parser.add_argument("--format", choices=["json", "text"], default="json")


def add_inspect(subparsers: Subparsers) -> None:
    parser = add_command(subparsers, "inspect", cmd_inspect)
    parser.add_argument("agent_id", metavar="AGENT")


# The subcommands, in the order `--help` lists them. Add one: write add_<name> and list it.
COMMANDS: list[Callable[[Subparsers], None]] = [
    add_health,
    add_version,
    add_get,
    add_keys,
    add_scan,
    add_replay,
    add_tail,
    add_dump,
    add_inspect,
    add_agents,
    add_controls,
    add_migrate,
]

# Server subcommands (serve, worker, …) run a Django management command of the project in
# this process; register one with `add_server_command` and list its adder here.
SERVER_COMMANDS: list[Callable[[Subparsers], None]] = []


def add_server_command(
    subparsers: Subparsers, name: str, management_command: str, *, help: str
) -> argparse.ArgumentParser:
    """Register `statehouse NAME ARGS…` as `manage.py MANAGEMENT_COMMAND ARGS…`."""
    parser = subparsers.add_parser(name, help=help, description=help)
    parser.add_argument("command_args", nargs=argparse.REMAINDER, metavar="ARGS")
    parser.set_defaults(handler=_run_management_command, management_command=management_command)
    return parser


def _run_management_command(ctx: Context) -> int:
    _django.setup_django()
    from django.core.management import call_command

    call_command(ctx.args.management_command, *ctx.args.command_args, stdout=ctx.stdout)
    return EXIT_OK


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog,
        description="Inspect a Statehouse store. DATABASE_URL picks the database "
        "(default: the embedded SQLite file).",
        epilog=server_cli.EPILOG,
    )
    parser.add_argument("-V", "--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--traceback", action="store_true", help="raise unexpected errors with a traceback"
    )
    parser.add_argument(
        "--url",
        "--address",
        dest="url",
        metavar="URL",
        help="a Statehouse server (http://host:port or host:port) or a database URL "
        "(default: STATEHOUSE_URL, else DATABASE_URL or the embedded SQLite file)",
    )
    parser.add_argument(
        "--token", metavar="TOKEN", help="API token of the server (default: STATEHOUSE_TOKEN)"
    )
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_Parser
    )
    for add in [*COMMANDS, *SERVER_COMMANDS]:
        add(subparsers)
    return parser


# --- handlers -----------------------------------------------------------------------


def cmd_health(ctx: Context) -> int:
    """check that the database answers"""
    ctx.out(ctx.client.health())
    return EXIT_OK


def cmd_version(ctx: Context) -> int:
    """show the package version and schema revision"""
    version, revision = ctx.client.version()
    ctx.out(f"statehouse {version} ({revision})")
    return EXIT_OK


def cmd_get(ctx: Context) -> int:
    """show the value of one key"""
    args = ctx.args
    if args.version is None:
        result = ctx.client.get_state(args.agent_id, args.key)
        if not result.exists:
            raise _missing_key(ctx, args.agent_id, args.key, result)
    else:
        result = ctx.client.get_state_at_version(args.agent_id, args.key, args.version)
    if args.json or args.pretty:
        ctx.out(
            json.dumps(state_to_json(result), ensure_ascii=False, indent=2 if args.pretty else None)
        )
        return EXIT_OK
    # A version read may land on a delete (a tombstone): say so instead of printing null.
    pretty = json.dumps(result.value, indent=2, ensure_ascii=False)
    ctx.out(pretty if result.exists else "(deleted)")
    ctx.out(f"version: {result.version}")
    ctx.out(f"commit_ts: {result.commit_ts}")
    return EXIT_OK


def cmd_keys(ctx: Context) -> int:
    """list an agent's live keys"""
    keys = ctx.client.list_keys(ctx.args.agent_id, prefix=ctx.args.prefix)
    if not keys:
        _require_agent(ctx, ctx.args.agent_id)
    if ctx.args.json:
        ctx.out(_json(keys))
        return EXIT_OK
    for key in keys:
        ctx.out(key)
    return EXIT_OK


def cmd_scan(ctx: Context) -> int:
    """show the live keys starting with PREFIX, with values"""
    results = ctx.client.scan_prefix(ctx.args.agent_id, ctx.args.prefix)
    if not results:
        _require_agent(ctx, ctx.args.agent_id)
    for result in results:
        if ctx.args.json:
            ctx.out(_json(state_to_json(result)))
        else:
            # Tab-separated: ids cannot hold control characters, and JSON escapes them.
            ctx.out(f"{result.key}\t{result.version}\t{_json(result.value)}")
    return EXIT_OK


def cmd_replay(ctx: Context) -> int:
    """show an agent's history, one operation a line"""
    args = ctx.args
    if args.start_ts is not None and args.end_ts is not None and args.end_ts < args.start_ts:
        raise UsageError(
            f"--end-ts ({args.end_ts}) must not be less than --start-ts ({args.start_ts})"
        )
    if args.json:
        render = _replay_json
    elif args.verbose:
        render = _replay_line_verbose
    else:
        render = _replay_line
    shown = 0
    for event, op in _operations(ctx, args.start_ts, args.end_ts):
        if args.limit is not None and shown >= args.limit:
            break
        ctx.out(render(event, op))
        shown += 1
    if not shown:
        _require_agent(ctx, args.agent_id)
    return EXIT_OK


def cmd_tail(ctx: Context) -> int:
    """show an agent's last operations; -f: follow new ones"""
    args = ctx.args
    last: collections.deque[tuple[ReplayEvent, Operation]] = collections.deque(maxlen=args.lines)
    after = None
    for event, op in _operations(ctx, None, None):
        last.append((event, op))
        after = event.commit_ts
    if after is None:
        _require_agent(ctx, args.agent_id)
    for event, op in last:
        ctx.out(format_operation(event, op, verbose=args.verbose))
    while args.follow:
        ctx.stdout.flush()
        time.sleep(args.interval)
        start = None if after is None else after + 1
        for event, op in _operations(ctx, start, None):
            ctx.out(format_operation(event, op, verbose=args.verbose))
            after = event.commit_ts
    return EXIT_OK


def cmd_dump(ctx: Context) -> int:
    """write an agent's state and whole history"""
    args = ctx.args
    agent_id = args.agent_id
    status = ctx.client.status(agent_id)
    if status is None:
        _require_agent(ctx, agent_id)
    records = ctx.client.scan_prefix(agent_id, "")
    with _output(args.output, ctx.stdout) as out:
        if args.format == "text":
            print(f"# {ctx.namespace}/{agent_id}: {status}", file=out)
            for result in records:
                print(f"# {result.key} v{result.version}: {_json(result.value)}", file=out)
            for line in ctx.client.replay_pretty(agent_id, verbose=True):
                print(line, file=out)
            return EXIT_OK
        # One JSON document, written as the history streams (memory stays flat).
        head = {
            "namespace": ctx.namespace,
            "agent_id": agent_id,
            "status": status,
            "state": {r.key: {"value": r.value, "version": r.version} for r in records},
        }
        out.write(_json(head)[:-1] + ', "events": [')
        for index, event in enumerate(ctx.client.replay(agent_id)):
            out.write(("," if index else "") + "\n" + format_event_json(event))
        out.write("\n]}\n")
    return EXIT_OK


def cmd_inspect(ctx: Context) -> int:
    """summarize an agent: status, steps, keys"""
    agent_id = ctx.args.agent_id
    status = ctx.client.status(agent_id)
    if status is None:
        _require_agent(ctx, agent_id)
    records = ctx.client.scan_prefix(agent_id, "")
    events = 0
    first = last = None
    for event in ctx.client.replay(agent_id):
        events += 1
        first = first or event
        last = event
    ctx.out(f"agent: {ctx.namespace}/{agent_id}")
    ctx.out(f"status: {status}")
    ctx.out(f"last completed step: {ctx.client.last_completed_step(agent_id)}")
    ctx.out(f"keys: {len(records)}")
    ctx.out(f"commits: {events}")
    if first is not None and last is not None:
        ctx.out(f"first commit: {format_ts(first.committed_at)} (ts {first.commit_ts})")
        ctx.out(f"last commit: {format_ts(last.committed_at)} (ts {last.commit_ts})")
    for result in records:
        ctx.out(f"  {result.key}\tv{result.version}\t{format_value_summary(result.value)}")
    return EXIT_OK


@contextlib.contextmanager
def _output(path: str | None, default: TextIO) -> Iterator[TextIO]:
    if path is None:
        yield default
        return
    with open(path, "w", encoding="utf-8") as file:
        yield file


def cmd_agents(ctx: Context) -> int:
    """list agents with status, task and steps"""
    try:
        rows = ctx.client.agents(
            status=ctx.args.status,
            namespace=ctx.args.namespace,
            pattern=ctx.args.agent,
            limit=ctx.args.limit,
        )
    except ValidationError as exc:
        raise UsageError(str(exc)) from None
    for row in rows:
        if ctx.args.json:
            ctx.out(_json(row))
        else:
            ctx.out(
                f"{row['namespace']}/{row['agent_id']}\t{row['status']}\t"
                f"{row['steps_done']} done, {row['steps_pending']} pending\t"
                f"{format_ts(datetime.fromisoformat(str(row['last_activity'])))}\t{row['task']}"
            )
    return EXIT_OK


def cmd_control(ctx: Context) -> int:
    args = ctx.args
    action = {"cancel": ctx.client.cancel, "pause": ctx.client.pause, "unpause": ctx.client.unpause}
    status = action[args.control](args.agent_id, reason=args.reason)
    ctx.out(f"{args.agent_id}\t{status}")
    return EXIT_OK


def cmd_migrate(ctx: Context) -> int:
    """create or update the schema in the database of DATABASE_URL"""
    # Not ctx.client: the client refuses to work on a PostgreSQL database without the
    # schema, which is what this command is for.

    check_identifier("namespace", ctx.args.namespace)  # rejected like everywhere else
    _django.setup_django()
    from django.core.management import call_command
    from django.db import DatabaseError, connection

    if ctx.args.check:
        pending = _django.pending_migrations()
        if pending:
            shown = ", ".join(pending[:3]) + (", ..." if len(pending) > 3 else "")
            raise StatehouseError(
                f"the schema is not up to date: {len(pending)} unapplied migrations "
                f"({shown}); run `statehouse migrate`"
            )
        ctx.out("the schema is up to date")
        return EXIT_OK
    _django.pending_migrations()  # refuses a database part-way through squashed ones
    try:
        with _django.sqlite_migrate_lock(connection):
            call_command(
                "migrate", interactive=False, verbosity=ctx.args.verbosity, stdout=ctx.stdout
            )
    except DatabaseError as exc:
        raise StatehouseError(f"migrate failed: {exc}") from exc
    return EXIT_OK


# --- helpers ------------------------------------------------------------------------


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _require_agent(ctx: Context, agent_id: str) -> None:
    """Tell an agent with nothing to show (exit 0) from one never heard of (exit 1)."""
    if ctx.client.status(agent_id) is None:
        raise NotFoundError(f"unknown agent {agent_id!r} in namespace {ctx.namespace!r}")


def _missing_key(ctx: Context, agent_id: str, key: str, result: StateResult) -> NotFoundError:
    where = f"agent {agent_id!r} in namespace {ctx.namespace!r}"
    if result.version:
        hint = f"; read the value before with --version {result.version - 1}"
        return NotFoundError(
            f"key {key!r} of {where} was deleted at version {result.version}"
            + (hint if result.version > 1 else "")
        )
    _require_agent(ctx, agent_id)
    return NotFoundError(f"key {key!r} not found for {where}")


def _operations(
    ctx: Context, start_ts: int | None, end_ts: int | None
) -> Iterator[tuple[ReplayEvent, Operation]]:
    events = ctx.client.replay(ctx.args.agent_id, start_ts=start_ts, end_ts=end_ts)
    # Closing the generator on an early stop (--limit, a closed pipe) ends the stream.
    with contextlib.closing(events):  # type: ignore[type-var]  # the replay iterator has a close()
        for event in events:
            for op in event.operations:
                yield event, op


def _time(moment: datetime) -> str:
    return format_ts(moment)


def _replay_line(event: ReplayEvent, op: Operation) -> str:
    return format_operation(event, op)


def _replay_line_verbose(event: ReplayEvent, op: Operation) -> str:
    return format_operation(event, op, verbose=True)


def _replay_json(event: ReplayEvent, op: Operation) -> str:
    return _json(
        {
            "commit_ts": event.commit_ts,
            "txn_id": event.txn_id,
            "committed_at": event.committed_at.astimezone(UTC).isoformat(),
            "namespace": event.namespace,
            "agent_id": event.agent_id,
            "op": op.op,
            "key": op.key,
            "version": op.version,
            "value": op.value,
        }
    )


def _one_line(message: object) -> str:
    return " ".join(str(message).split())


def _silence(stream: TextIO) -> None:
    """Point `stream` at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # not a real file (e.g. captured by a test): nothing will flush it at exit


# --- entry point --------------------------------------------------------------------


def main(
    argv: Sequence[str] | None = None,
    *,
    prog: str = PROG,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the command line `argv` (default: sys.argv[1:]); return the exit status."""
    if server_cli.handles(sys.argv[1:] if argv is None else argv):  # serve, worker, …
        return server_cli.main(sys.argv[1:] if argv is None else argv, prog=prog)
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr

    def fail(message: object, status: int) -> int:
        print(f"{prog}: error: {_one_line(message)}", file=err)
        return status

    parser = build_parser(prog)
    try:
        with contextlib.redirect_stdout(out):  # --help and --version
            args = parser.parse_args(argv)
    except UsageError as exc:
        return fail(exc, EXIT_USAGE)
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK

    ctx = Context(args, out)
    try:
        status = args.handler(ctx)
        out.flush()  # a closed pipe shows here, not at interpreter exit
        return status
    except BrokenPipeError:
        # The reader stopped reading (`statehouse replay a1 | head`): not an error.
        _silence(out)
        return EXIT_OK
    except KeyboardInterrupt:
        return 130
    except UsageError as exc:
        return fail(exc, EXIT_USAGE)
    except StatehouseError as exc:
        if args.traceback:
            raise
        return fail(exc, EXIT_ERROR)
    except Exception as exc:
        if args.traceback:
            raise
        return fail(f"{type(exc).__name__}: {exc} (run with --traceback for details)", EXIT_ERROR)
    finally:
        with contextlib.suppress(Exception):
            ctx.close()


if __name__ == "__main__":
    raise SystemExit(main())
