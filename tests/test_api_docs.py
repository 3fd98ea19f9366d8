"""The curl session of docs/api.md, run as written (with curl) against the real server."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from .conftest import make_token

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


def curl(url: str, token: str, path: str, body: dict | None = None) -> str:
    command = ["curl", "-s", "-H", f"Authorization: Bearer {token}", url + path]
    if body is not None:
        command += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
    return subprocess.run(command, capture_output=True, text=True, check=True, timeout=30).stdout


def test_the_curl_session_records_a_step(api_server: str, transactional_db: None) -> None:
    _token, secret = make_token(namespaces=["default"])
    assert json.loads(curl(api_server, secret, "/api/v1/health")) == {"status": "ok"}
    curl(api_server, secret, "/api/v1/agents/start", {"agent_id": "curl-1", "task": {"task": "s"}})
    step = {"agent_id": "curl-1", "number": 0, "action": "search"}
    curl(api_server, secret, "/api/v1/agents/step", {**step, "status": "pending"})
    curl(api_server, secret, "/api/v1/agents/step", {**step, "status": "done", "result": 42})
    state = json.loads(curl(api_server, secret, "/api/v1/state?agent_id=curl-1&key=step:0"))
    assert (state["value"], state["version"]) == (
        {"action": "search", "status": "done", "result": 42},
        2,
    )
    status = json.loads(curl(api_server, secret, "/api/v1/agents/status?agent_id=curl-1"))
    assert (status["status"], status["last_completed_step"]) == ("interrupted", 0)
    lines = curl(api_server, secret, "/api/v1/replay?agent_id=curl-1").splitlines()
    assert [json.loads(line)["operations"][0]["key"] for line in lines] == [
        "task",
        "step:0",
        "step:0",
    ]
