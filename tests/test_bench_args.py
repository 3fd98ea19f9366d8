"""The benchmarks refuse an unknown system by name before they destroy or create anything."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_peer_bench_names_the_unknown_system_and_touches_no_database(tmp_path) -> None:  # type: ignore[no-untyped-def]
    sqlite_dir = tmp_path / "peer-bench"
    result = subprocess.run(
        [
            sys.executable,
            "bench/peer_bench.py",
            "--only",
            "sqlite",
            "--sqlite-dir",
            str(sqlite_dir),
            "--systems",
            "statehouse,floor",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "--systems: no system named floor (known: statehouse, langgraph, dbos, raw)" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    assert not sqlite_dir.exists()
