"""The product as a new user gets it: a built wheel, `pip install`ed (not editable) into a
fresh virtual environment beside the OpenAI Agents SDK, run from a folder that is not a
checkout (docs/packaging.md).

One wheel and one environment per test session (pip's cache keeps the installs quick);
every step is bounded in time.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_serve import free_port

pytestmark = pytest.mark.multiprocess

# What a source checkout holds beyond the distribution's inputs: never copied to the build.
_NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "data", "build", "dist", "*.egg-info", "__pycache__", "test-results"
)


@dataclass(frozen=True)
class Installed:
    bin: Path  # the fresh environment's bin/ folder
    home: Path  # a folder outside any checkout, to run its commands from

    def env(self, **extra: str) -> dict[str, str]:
        """The user's environment: nothing of the checkout or of the test run leaks in."""
        leaked = (
            "PYTHONPATH",
            "DJANGO_SETTINGS_MODULE",
            "DATABASE_URL",
            "SECRET_KEY",
            "VIRTUAL_ENV",
        )
        env = {k: v for k, v in os.environ.items() if k not in leaked}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        return {**env, "PYTHONUNBUFFERED": "1", **extra}

    def run(self, *command: str, env: dict[str, str], timeout: float = 120) -> str:
        result = subprocess.run(
            command, cwd=self.home, env=env, capture_output=True, text=True, timeout=timeout
        )
        assert result.returncode == 0, f"{command} exited {result.returncode}\n{result.stderr}"
        return result.stdout


def _pip(*args: str, timeout: float) -> None:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("install")
    source, dist, venv = base / "source", base / "dist", base / "venv"
    # Build from a copy, so that no build/ left in the checkout can slip stale files in.
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCES)
    pip = [sys.executable, "-m", "pip", "--quiet"]
    _pip(*pip, "wheel", "--no-deps", "--wheel-dir", str(dist), str(source), timeout=300)
    (wheel,) = dist.glob("statehouse_store-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    venv_pip = [str(venv / "bin" / "python"), "-m", "pip", "--quiet"]
    _pip(*venv_pip, "install", str(wheel), "openai-agents", timeout=600)
    home = base / "home"
    home.mkdir()
    return Installed(bin=venv / "bin", home=home)


def test_the_wheel_carries_templates_and_static_files(installed: Installed) -> None:
    code = "import statehouse_site, pathlib; print(pathlib.Path(statehouse_site.__file__).parent)"
    site = Path(
        installed.run(str(installed.bin / "python"), "-c", code, env=installed.env()).strip()
    )
    for shipped in ("templates", "static"):
        expected = sorted(p.relative_to(ROOT / shipped) for p in (ROOT / shipped).rglob("*.*"))
        found = sorted(p.relative_to(site / shipped) for p in (site / shipped).rglob("*.*"))
        assert found == [p for p in expected if p.name != ".gitkeep"]
    assert not (site.parent / "agents" / "models.py").exists()  # the name stays the SDK's


def test_statehouse_and_the_openai_agents_sdk_work_in_one_environment(
    installed: Installed,
) -> None:
    code = """
        import agents
        from agents import Agent, Runner
        from statehouse import Statehouse
        import statehouse_agents

        agent = Agent(name="helper", instructions="Say hello.")
        print(agent.name, Agent.__module__, Runner.__name__, statehouse_agents.__name__)
        print(Statehouse().health())
    """
    env = installed.env(DATABASE_URL=f"sqlite:///{installed.home / 'coexist.sqlite3'}")
    out = installed.run(str(installed.bin / "python"), "-c", textwrap.dedent(code), env=env)
    assert out.split() == ["helper", "agents.agent", "Runner", "statehouse_agents", "ok"]


class Browser:
    """Just enough of a browser: cookies, the CSRF token of a form, and redirects."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def get(self, path: str) -> tuple[int, str]:
        return self._open(urllib.request.Request(self.base + path))

    def post(self, path: str, form: dict[str, str]) -> tuple[int, str]:
        data = urllib.parse.urlencode(form).encode()
        request = urllib.request.Request(
            self.base + path, data=data, headers={"Referer": self.base}
        )
        return self._open(request)

    def _open(self, request: urllib.request.Request) -> tuple[int, str]:
        try:
            with self.opener.open(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()


@pytest.fixture
def served(installed: Installed) -> Iterator[tuple[Browser, dict[str, str], Path]]:
    """`statehouse serve` on a free port against a fresh SQLite file, stopped by Ctrl-C."""
    folder = installed.home / f"serve-{time.monotonic_ns()}"
    env = installed.env(
        DATABASE_URL=f"sqlite:///{folder / 'statehouse.sqlite3'}",
        STATEHOUSE_DATA_DIR=str(folder / "data"),
    )
    port = free_port()
    log = installed.home / f"{folder.name}.log"
    command = [
        str(installed.bin / "statehouse"),
        "serve",
        "--port",
        str(port),
        "--web-workers",
        "1",
    ]
    with open(log, "w") as out:
        process = subprocess.Popen(
            command,
            cwd=installed.home,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    browser = Browser(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 60
        status = 0
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status, _ = browser.get("/healthz")
            except OSError:
                status = 0
            if status == 200:
                break
            time.sleep(0.3)
        assert status == 200, log.read_text()
        yield browser, env, log
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
        code = process.wait(timeout=30)
    assert code == 0, log.read_text()
    assert "Statehouse stopped." in log.read_text()


def test_statehouse_serve_from_a_plain_install(
    installed: Installed, served: tuple[Browser, dict[str, str], Path]
) -> None:
    browser, env, log = served
    printed = log.read_text()
    assert "No directory at" not in printed  # whitenoise expects no collected folder
    password = re.search(r"Log in as\s+admin / (\S+)", printed)
    assert password, printed

    status, login_page = browser.get("/accounts/login/")
    assert status == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page)
    assert token, login_page
    form = {
        "csrfmiddlewaretoken": token.group(1),
        "username": "admin",
        "password": password.group(1),
        "next": "/",
    }
    status, overview = browser.post("/accounts/login/", form)
    assert status == 200
    assert "<h1>Overview</h1>" in overview, overview
    stylesheet = re.search(r'<link rel="stylesheet" href="(/static/[^"]+\.css)"', overview)
    assert stylesheet, overview
    status, css = browser.get(stylesheet.group(1))
    assert status == 200
    assert css == (ROOT / "static" / "css" / "statehouse.css").read_text()

    script = installed.home / "record_a_step.py"
    script.write_text(
        textwrap.dedent(
            """
            from statehouse import Statehouse

            client = Statehouse()
            client.start("installed-agent", "check the installed package")
            with client.step("installed-agent", 0, action={"tool": "look-around"}) as step:
                step.result = {"seen": "the dashboard"}
            client.close()
            """
        )
    )
    installed.run(str(installed.bin / "python"), str(script), env=env)

    status, listing = browser.get("/agents/?q=installed-agent")
    assert status == 200
    link = re.search(r'href="(/agents/\d+/)"', listing)
    assert link, listing
    status, page = browser.get(link.group(1))
    assert status == 200
    assert "installed-agent" in page
    assert "<strong>Step 0</strong>" in page
    assert "look-around" in page
    assert "the dashboard" in page


def test_the_management_commands_are_statehouse_subcommands(installed: Installed) -> None:
    env = installed.env(
        DATABASE_URL=f"sqlite:///{installed.home / 'commands.sqlite3'}",
        STATEHOUSE_DATA_DIR=str(installed.home / "commands-data"),
    )
    statehouse = str(installed.bin / "statehouse")
    assert "the schema is up to date" not in installed.run(statehouse, "migrate", env=env)
    assert "[X] 0001_squashed_0021_bulk_dashboard_indexes" in installed.run(
        statehouse, "manage", "showmigrations", "agents", env=env
    )
    assert "--once" in installed.run(statehouse, "worker", "--help", env=env)
    assert "resume_worker" in installed.run(statehouse, "--help", env=env)
    dry_run = [statehouse, "resume_agents", "--status", "interrupted", "--dry-run", "--json"]
    assert json.loads(installed.run(*dry_run, env=env)) == {
        "matched": 0,
        "dry_run": True,
        "agents": [],
        "needs_review": [],
    }
    failed = subprocess.run(
        [statehouse, "no-such-command"], cwd=installed.home, env=env, capture_output=True, text=True
    )
    assert failed.returncode == 2 and "invalid choice: 'no-such-command'" in failed.stderr
