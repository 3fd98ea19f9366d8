"""`manage.py serve` (what `make run` calls): the product in one command on a fresh folder."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.multiprocess


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.mark.parametrize("server", ["gunicorn", "granian"])
def test_serve_migrates_makes_an_admin_serves_and_stops_on_ctrl_c(
    tmp_path: Path, server: str
) -> None:
    """On either web server (docs/deploy.md, "The web server"); granian is picked by
    STATEHOUSE_WEB_SERVER here, as a deployment would."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SECRET_KEY"}}
    env.update(STATEHOUSE_DATA_DIR=str(tmp_path), PYTHONUNBUFFERED="1")
    env["STATEHOUSE_WEB_SERVER"] = server
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port), "--web-workers", "1"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        status = 0
        while time.monotonic() < deadline:
            try:
                status, body = get(f"http://127.0.0.1:{port}/healthz")
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.3)
        assert status == 200, log.read_text()
        assert b'"database": "ok"' in body

        printed = log.read_text()
        match = re.search(r"Log in as\s+admin / (\S+)", printed)
        assert match, printed
        saved = (tmp_path / "admin-credentials.txt").read_text()
        assert f"password: {match.group(1)}" in saved
        assert oct((tmp_path / "admin-credentials.txt").stat().st_mode & 0o777) == "0o600"
        assert "worker" in printed  # the resume worker started beside the dashboard

        login_status, login_page = get(f"http://127.0.0.1:{port}/accounts/login/")
        assert login_status == 200
        assert b"/static/css/statehouse.css" in login_page
        css_status, _ = get(f"http://127.0.0.1:{port}/static/css/statehouse.css")
        assert css_status == 200
        dashboard_status, _ = get(f"http://127.0.0.1:{port}/")
        assert dashboard_status == 200  # the login page, after the redirect
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            assert answer.headers["Server"] == server
        assert "GET /accounts/login/" in log.read_text()  # each request is logged
    finally:
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
        code = process.wait(timeout=30)
    assert code == 0, log.read_text()
    assert "Statehouse stopped." in log.read_text()
    with pytest.raises(OSError):
        get(f"http://127.0.0.1:{port}/healthz")


def test_serve_refuses_an_unknown_web_server_by_name(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SECRET_KEY"}}
    env.update(STATEHOUSE_DATA_DIR=str(tmp_path), STATEHOUSE_WEB_SERVER="uwsgi")
    done = subprocess.run(
        [sys.executable, "manage.py", "serve", "--port", str(free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "no web server named 'uwsgi' (known: gunicorn, granian)" in done.stderr
    assert list(tmp_path.iterdir()) == []  # refused before migrating or making an admin
