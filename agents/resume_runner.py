"""The process a resume worker starts for one agent: `python -m agents.resume_runner NS AGENT EP`.

It loads the entry point "package.module:function", checks that it accepts
`(client, agent_id)`, and calls it with a client whose lease token is the one the worker
claimed (STATEHOUSE_LEASE_TOKEN), so the run holds the agent without a gap.
Exit codes: 0 returned, 1 raised, 3 bad entry point (not worth retrying).
"""

from __future__ import annotations

import importlib
import inspect
import sys
import traceback
from collections.abc import Callable
from typing import Any

EXIT_RAISED = 1
EXIT_BAD_ENTRY_POINT = 3


class EntryPointError(Exception):
    pass


def load_entry_point(entry_point: str) -> Callable[[Any, str], Any]:
    module_name, sep, attribute = entry_point.partition(":")
    if not sep or not module_name or not attribute:
        raise EntryPointError(f"{entry_point!r} is not of the form 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EntryPointError(f"cannot import module {module_name!r}: {exc}") from None
    function = getattr(module, attribute, None)
    if function is None:
        raise EntryPointError(f"module {module_name!r} has no attribute {attribute!r}")
    if not callable(function):
        raise EntryPointError(f"{entry_point!r} is not callable")
    try:
        inspect.signature(function).bind(object(), "agent-id")
    except TypeError as exc:
        raise EntryPointError(
            f"{entry_point!r} cannot be called as function(client, agent_id): {exc}"
        ) from None
    except ValueError:
        pass  # no signature to inspect (a builtin): let the call decide
    return function


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(
            "usage: python -m agents.resume_runner NAMESPACE AGENT_ID ENTRY_POINT", file=sys.stderr
        )
        return 2
    namespace, agent_id, entry_point = argv
    try:
        function = load_entry_point(entry_point)
    except EntryPointError as exc:
        print(f"bad resume entry point: {exc}", file=sys.stderr)
        return EXIT_BAD_ENTRY_POINT

    from statehouse import Statehouse

    client = Statehouse(namespace=namespace)
    try:
        function(client, agent_id)
    except Exception as exc:
        traceback.print_exc()
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_RAISED
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
