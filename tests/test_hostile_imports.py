"""`import_agent` against the hostile corpus in tests/hostile_imports/ (generate.py writes
it): every file gets one line naming its line and field, a non-zero exit, and nothing is
imported; the valid file beside them imports."""

from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from statehouse_agents.models import Agent, Commit, Record, Version

from statehouse import Statehouse

CORPUS = Path(__file__).resolve().parent / "hostile_imports"
EXPECTED: dict[str, str] = json.loads((CORPUS / "expected.json").read_text())
ROOT = CORPUS.parent.parent


def counts() -> tuple[int, int, int, int]:
    return (
        Agent.objects.count(),
        Commit.objects.count(),
        Version.objects.count(),
        Record.objects.count(),
    )


def test_the_corpus_covers_every_kind_of_hostile_file() -> None:
    assert len(EXPECTED) >= 36
    assert sorted(EXPECTED) == sorted(
        p.name for p in CORPUS.glob("*.jsonl") if p.name != "valid.jsonl"
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_hostile_file_gets_one_line_naming_line_and_field_and_imports_nothing(
    sh: Statehouse, name: str
) -> None:
    sh.start("bystander", {"task": "t"})
    before = counts()
    with pytest.raises(CommandError) as caught:
        call_command("import_agent", str(CORPUS / name), stdout=StringIO(), stderr=StringIO())
    message = str(caught.value)
    assert message.startswith(EXPECTED[name]), message
    assert "\n" not in message and "Traceback" not in message
    assert len(message) < 400
    assert counts() == before
    assert not Agent.objects.filter(agent_id="hostile").exists()


def test_the_valid_file_of_the_corpus_imports(sh: Statehouse) -> None:
    out = StringIO()
    call_command("import_agent", str(CORPUS / "valid.jsonl"), stdout=out)
    assert "3 transaction(s), 4 operation(s)" in out.getvalue()
    assert sh.get_state("hostile", "notes").value == "café"
    assert sh.last_completed_step("hostile") == 0


@pytest.mark.multiprocess
@pytest.mark.parametrize(
    "name", ["value_nested_100000_deep.jsonl", "latin1_bytes.jsonl", "string_version.jsonl"]
)
def test_the_command_exits_non_zero_with_one_line(
    subprocess_env: dict[str, str], name: str
) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "import_agent", str(CORPUS / name)],
        cwd=ROOT,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line == f"CommandError: {line.removeprefix('CommandError: ')}"
    assert line.removeprefix("CommandError: ").startswith(EXPECTED[name])
    assert not Agent.objects.filter(agent_id="hostile").exists()
