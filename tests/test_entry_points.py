"""Resume entry points: one validator on every way in (the client, `import_agent`, the
settings, the admin), a whole-string match, one length limit on both databases, and no
import of the target before the run itself."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from statehouse_agents.conf import get_settings
from statehouse_agents.models import Agent

from statehouse import Statehouse, ValidationError
from statehouse.validation import MAX_ENTRY_POINT_LENGTH

LONGEST = "m" * (MAX_ENTRY_POINT_LENGTH - 2) + ":f"
BAD = [
    "os:getcwd\n",  # `$` would match before this newline
    "os:system\nrm",
    "\nos:getcwd",
    "os:getcwd ",
    "os.:getcwd",
    "a..b:f",
    "module",
    "module:",
    ":function",
    "mod:obj.attr",
    "mödule:f",
    "mod:f\x00",
]


@pytest.mark.parametrize("entry_point", BAD)
def test_register_resume_refuses_anything_but_a_whole_dotted_path(
    sh: Statehouse, entry_point: str
) -> None:
    sh.start("a1", {"task": "t"})
    with pytest.raises(ValidationError, match=r"is not of the form 'package\.module:function'"):
        sh.register_resume("a1", entry_point)
    assert Agent.objects.get(agent_id="a1").resume_entry_point == ""


def test_the_length_limit_is_the_same_error_on_both_databases(sh: Statehouse) -> None:
    sh.start("a1", {"task": "t"})
    sh.register_resume("a1", LONGEST)
    assert Agent.objects.get(agent_id="a1").resume_entry_point == LONGEST
    too_long = "m" * 298 + ":f"
    with pytest.raises(ValidationError) as caught:
        sh.register_resume("a1", too_long)
    assert str(caught.value) == (
        f"resume entry point is 300 characters long; the limit is 255: {too_long[:40]!r}…"
    )
    assert Agent.objects.get(agent_id="a1").resume_entry_point == LONGEST


def test_registering_never_imports_the_target(
    sh: Statehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "sidefx_target.py").write_text(
        f"open({str(marker)!r}, 'w').close()\ndef resume(client, agent_id):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sh.start("a1", {"task": "t"})
    sh.register_resume("a1", "sidefx_target:resume")
    assert Agent.objects.get(agent_id="a1").resume_entry_point == "sidefx_target:resume"
    assert not marker.exists()
    assert "sidefx_target" not in sys.modules


@pytest.mark.parametrize("entry_point", ["os:system\nrm", "m" * 300 + ":f"])
def test_import_agent_checks_the_exported_entry_point(
    sh: Statehouse, tmp_path: Path, entry_point: str
) -> None:
    sh.start("a1", {"task": "t"})
    export = tmp_path / "a1.jsonl"
    call_command("export_agent", "a1", "-o", str(export))
    lines = export.read_text().splitlines()
    header = {**json.loads(lines[0]), "resume_entry_point": entry_point}
    export.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    with pytest.raises(CommandError, match=r"^line 1, field resume_entry_point: resume entry"):
        call_command("import_agent", str(export), "--agent-id", "copy", "--new-txn-ids")
    assert not Agent.objects.filter(agent_id="copy").exists()


@pytest.mark.parametrize(
    "value",
    [["report-*=os:system\nrm"], ["report-*=" + "m" * 300 + ":f"], {"report-*": "os:"}],
)
def test_settings_entry_points_are_checked(settings, value: object) -> None:  # type: ignore[no-untyped-def]
    settings.STATEHOUSE_RESUME_ENTRY_POINTS = value
    with pytest.raises(ImproperlyConfigured, match=r"^STATEHOUSE_RESUME_ENTRY_POINTS: resume"):
        get_settings()


def test_the_admin_checks_the_entry_point_and_clears_it_through_the_store(sh: Statehouse) -> None:
    from tests.test_admin import inline_management_data

    sh.start("a1", {"task": "t"})
    sh.register_resume("a1", "tests.example_agent:resume")
    agent = Agent.objects.get(agent_id="a1")
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(user)
    change = reverse("admin:agents_agent_change", args=[agent.pk])
    management = inline_management_data(client, change)
    for bad in ("os:system\nrm", "m" * 300 + ":f"):
        response = client.post(change, {**management, "resume_entry_point": bad})
        assert response.status_code == 200
        assert b"errorlist" in response.content
        agent.refresh_from_db()
        assert agent.resume_entry_point == "tests.example_agent:resume"
    response = client.post(change, {**management, "resume_entry_point": ""})
    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.resume_entry_point == ""
