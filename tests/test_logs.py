"""Structured logs: LOG_FORMAT=json gives one JSON object per line on stdout."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

from statehouse_site.logs import JsonFormatter
from tests.conftest import ROOT


def test_json_formatter_writes_one_object_with_extras_and_exception() -> None:
    logger = logging.getLogger("statehouse.test")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logger.makeRecord(
            "statehouse.test",
            logging.ERROR,
            __file__,
            1,
            "resume of %s failed",
            ("a1",),
            sys.exc_info(),
            extra={"agent_id": "a1", "attempt": 2},
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line.split('"exception"')[0]
    payload = json.loads(line)
    assert payload["level"] == "ERROR"
    assert payload["logger"] == "statehouse.test"
    assert payload["message"] == "resume of a1 failed"
    assert (payload["agent_id"], payload["attempt"]) == ("a1", 2)
    assert "ValueError: boom" in payload["exception"]


def test_log_format_json_sends_statehouse_logs_to_stdout_as_json(tmp_path) -> None:  # type: ignore[no-untyped-def]
    code = (
        "import django, logging; django.setup(); "
        "logging.getLogger('statehouse.worker').info('worker %s started', 'w1')"
    )
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        LOG_FORMAT="json",
        DJANGO_SETTINGS_MODULE="statehouse_site.settings",
        STATEHOUSE_DATA_DIR=str(tmp_path),
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout.strip())
    assert (payload["logger"], payload["message"]) == ("statehouse.worker", "worker w1 started")
