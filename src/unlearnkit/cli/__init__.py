"""The ``unlearnkit`` command line: one module per command group.

Every command takes ``--json`` for scripts. Errors print one line ``error: ...`` on
stderr and exit with status 2; nothing is half-written. Commands that only read
(``runs``, ``report``, ``evaluate`` of a read-only workspace) never create a store or a
workspace.

Modules: ``common`` (options, output, parsing, the workspace), ``train``, ``unlearn``,
``evaluate``, ``connect``, ``bench``, ``sweep`` (Optuna on Ray), ``risk`` (conformal
unlearning risk), ``report``, ``runs``, ``registries`` (``methods``,
``metrics``), ``demo``, ``data`` (``data ids``), ``federated`` (``federated train``,
``unlearn``, ``evaluate``: clients on Flower) and ``service`` (``serve``, ``worker``,
``keys``, ``audit``). No module tests a modality's name:
each asks the modality registry (:mod:`unlearnkit.modalities`).
"""

from __future__ import annotations

import sys

import typer

from ..errors import UnlearnkitError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Machine unlearning: forget chosen training data, verify it against "
    "retraining, keep a record of every request.",
)
runs_app = typer.Typer(no_args_is_help=True, help="List and show stored runs.")
data_app = typer.Typer(no_args_is_help=True, help="Look at datasets (example and subject ids).")
keys_app = typer.Typer(no_args_is_help=True, help="API keys of the deletion-request service.")
audit_app = typer.Typer(no_args_is_help=True, help="Verify certificates and the audit log offline; export the log.")
app.add_typer(runs_app, name="runs")
app.add_typer(data_app, name="data")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")

# the command modules register their commands on the apps above (order: `--help` order)
from . import demo, train, unlearn, evaluate, connect, bench, sweep, risk, report, runs  # noqa: E402,F401,I001
from . import registries, data, federated, service, ui  # noqa: E402,F401,I001


def main() -> None:
    try:
        app()
    except UnlearnkitError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)


__all__ = ["app", "main"]
