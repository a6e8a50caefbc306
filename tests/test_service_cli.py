"""The service's commands on bad input: one line ``error: ...``, exit status 2, nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("dbos")

UNLEARNKIT = str(Path(sys.executable).with_name("unlearnkit"))


def _run(*args, cwd):
    return subprocess.run([UNLEARNKIT, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")} if root.exists() else {}


BAD = [
    (["serve", "--port", "0"], "--port"),
    (["serve", "--port", "70000"], "--port"),
    (["serve", "--policy", "missing.yaml"], "cannot read policy file"),
    (["serve", "--policy", "bad.yaml"], "policy"),
    (["serve", "--policy", "unknown.yaml"], "unknown field"),
    (["serve", "--worker-id", "a/b"], "--worker-id"),
    (["serve", "--log-level", "loud"], "--log-level"),
    (["serve", "--store", "not a url", "--openapi", "o.json"], "not a database URL"),
    (["serve", "--openapi", "missing-dir/o.json"], "does not exist"),
    (["worker", "--worker-id", "x y"], "--worker-id"),
    (["keys", "create", "--name", "x", "--scopes", "deletion:everything"], "scopes"),
    (["keys", "create", "--name", "x", "--rate", "0"], "rate_per_minute"),
    (["keys", "create", "--name", "", "--scopes", "deletion:read"], "name"),
    (["keys", "list"], "no service database"),
    (["keys", "revoke", "abc"], "no service database"),
    (["audit", "export", "--out", "missing-dir/a.json"], "does not exist"),
    (["audit", "export", "--out", "a.json"], "no service database"),
    (["audit", "verify"], "no service database"),
    (["audit", "verify", "--log", "missing.json"], "cannot read audit log"),
    (["audit", "verify", "--log", "notjson.json"], "not JSON"),
    (["audit", "verify", "--log", "other.json"], "not an exported audit log"),
]


@pytest.mark.parametrize("args,says", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, says):
    (tmp_path / "bad.yaml").write_text("method: [unclosed")
    (tmp_path / "unknown.yaml").write_text("colour: blue\n")
    (tmp_path / "notjson.json").write_text("{nope")
    (tmp_path / "other.json").write_text(json.dumps([1, 2]))
    home = tmp_path / "home"
    before = _tree(tmp_path)
    env_home = ["--home", str(home)] if args[0] != "audit" or "--log" not in args else []
    p = _run(*args, *env_home, cwd=tmp_path)
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], p.stderr
    assert "Traceback" not in p.stderr + p.stdout
    assert _tree(tmp_path) == before  # nothing written, no workspace created


def test_keys_on_an_existing_service(home, tmp_path):
    h, _ = home
    made = _run(
        "keys", "create", "--home", str(h), "--name", "ops", "--scopes", "deletion:read", "--json", cwd=tmp_path
    )
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    assert key["token"].startswith(f"uk_{key['id']}_") and key["scopes"] == ["deletion:read"]
    listed = _run("keys", "list", "--home", str(h), "--json", cwd=tmp_path)
    assert key["token"] not in listed.stdout and json.loads(listed.stdout)[0]["id"] == key["id"]
    assert _run("keys", "revoke", key["id"], "--home", str(h), cwd=tmp_path).returncode == 0
    again = _run("keys", "revoke", key["id"], "--home", str(h), cwd=tmp_path)
    assert again.returncode == 2 and "no active key" in again.stderr
    assert os.stat(h / "service-keys" / "signing-key.pem").st_mode & 0o777 == 0o600
