"""The CLI run in this process (PyG and torch are imported once per test process, not per
command): what the graph tests use where ``test_cli.uk`` would start a subprocess."""

from __future__ import annotations

import json
import sys


def cli(capsys, monkeypatch, *args: str, home) -> tuple[int, str, str]:
    """``unlearnkit ARGS --home HOME`` in process: ``(exit status, stdout, stderr)``."""
    from unlearnkit.cli import main

    monkeypatch.setattr(sys, "argv", ["unlearnkit", *args, "--home", str(home)])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def cli_json(capsys, monkeypatch, *args: str, home) -> dict:
    """:func:`cli` of a command given ``--json`` that must succeed: its JSON document."""
    code, out, err = cli(capsys, monkeypatch, *args, home=home)
    assert code == 0, err
    return json.loads(out)
