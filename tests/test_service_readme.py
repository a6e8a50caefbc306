"""The README's service story, run as written: bash, a real server on loopback, curl."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _story() -> str:
    text = README.read_text()
    section = text[text.index("## The deletion-request service") :]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("curl") is None, reason="the README's story uses curl")
@pytest.mark.timeout(240)
def test_the_readme_service_story_runs_as_written(tmp_path):
    pytest.importorskip("dbos")
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parents[1])  # the story calls .venv/bin/unlearnkit
    script = "set -euo pipefail\n" + _story().replace("8000", str(_free_port()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNLEARNKIT_")}
    p = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=200)
    log = (tmp_path / "service.log").read_text() if (tmp_path / "service.log").exists() else ""
    assert p.returncode == 0, f"{p.stdout[-3000:]}\n{p.stderr[-3000:]}\n{log[-3000:]}"
    assert '"state":"answered"' in p.stdout and '"version":1' in p.stdout
    assert "log: OK" in p.stdout and "certificate certificate.json: OK" in p.stdout
    assert "subject-042" not in log  # raw subject ids never reach the log
