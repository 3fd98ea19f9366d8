"""What the crash demos durable_agent.py and langgraph_agent.py share: their command line
and the effect of a step.

Each runs as `<script> <id> --side-file FILE [--delay SECONDS]` (tests/crashes.py starts
them so, and SIGKILLs them mid-run); every step that really runs appends one line to FILE,
so counting its lines after a crash and a resume tells whether a finished step ran twice.
"""

from __future__ import annotations

import argparse
import os


def parse_args(doc: str, id_name: str) -> argparse.Namespace:
    """The command line `<id_name> --side-file FILE [--delay SECONDS]`, described by the
    first line of the script's `doc`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument(id_name)
    parser.add_argument("--side-file", required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    return parser.parse_args()


def record_effect(side_file: str, line: str) -> None:
    """Append `line` to the side file and fsync it: once this returns, a crash cannot lose
    the record that the step ran."""
    fd = os.open(side_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
