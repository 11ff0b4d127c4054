"""`castghl serve` as an operator runs it: clear start-up errors, clean stops."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

SERVE = [sys.executable, "-m", "castghl_app.cli", "serve"]
ADMIN = "serve-test-admin-token-0123456789"


def environment(tmp_path, **overrides):
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CASTGHL_")
    }
    env.update(
        {
            "CASTGHL_ADMIN_TOKEN": ADMIN,
            "CASTGHL_SQLITE_PATH": str(tmp_path / "castghl.sqlite3"),
            "CASTGHL_PORT": "0",
            "CASTGHL_CAST_BASE_URL": "http://127.0.0.1:9",
            "CASTGHL_GHL_BASE_URL": "http://127.0.0.1:9",
            **overrides,
        }
    )
    return env


def run_to_exit(env):
    return subprocess.run(  # noqa: S603
        SERVE, env=env, capture_output=True, text=True, timeout=30, check=False
    )


def test_missing_settings_are_listed_and_exit_2(tmp_path):
    """Every problem in one message; no traceback."""
    env = environment(tmp_path, CASTGHL_PORT="http", CASTGHL_HTTP_TIMEOUT_SECONDS="nan")
    del env["CASTGHL_ADMIN_TOKEN"]
    result = run_to_exit(env)
    assert result.returncode == 2
    for name in ("CASTGHL_ADMIN_TOKEN", "CASTGHL_PORT", "CASTGHL_HTTP_TIMEOUT_SECONDS"):
        assert name in result.stderr
    assert "Traceback" not in result.stderr


def test_a_database_in_a_missing_folder_fails_clearly(tmp_path):
    """The path and the likely cause are named; exit code 2."""
    path = tmp_path / "no" / "such" / "folder" / "db.sqlite3"
    result = run_to_exit(environment(tmp_path, CASTGHL_SQLITE_PATH=str(path)))
    assert result.returncode == 2
    assert "castghl cannot start" in result.stderr
    assert str(path) in result.stderr
    assert "Traceback" not in result.stderr


def test_a_port_in_use_fails_clearly(tmp_path):
    """A busy port is one line naming it, not a traceback."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_to_exit(environment(tmp_path, CASTGHL_PORT=str(port)))
    assert result.returncode == 2
    assert f"127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_service_logs_its_address_and_stops_cleanly_on_sigterm(tmp_path):
    """The listening URL is logged; SIGTERM ends the process with code 0."""
    process = subprocess.Popen(  # noqa: S603
        SERVE,
        env=environment(tmp_path),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = None
        deadline = time.monotonic() + 20
        while url is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            event = json.loads(line)
            if event["event"] == "service.listening":
                url = event["url"]
        assert url is not None, "service.listening was never logged"
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "/healthz", timeout=5) as answer:  # noqa: S310
            assert answer.status == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        rest = process.stderr.read()
        assert "service.stopped" in rest
        assert ADMIN not in rest
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()


@pytest.fixture(autouse=True)
def _run_from_source(monkeypatch):
    """The subprocess imports this checkout's code."""
    src = Path(__file__).resolve().parents[2] / "src"
    monkeypatch.setenv("PYTHONPATH", str(src))
