"""What every command shares: options, output, parsing, the workspace, summary columns."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer

from ..errors import ConfigError

HomeOpt = typer.Option(
    None, "--home", help="Workspace folder (store, artifacts, cache). Default: $UNLEARNKIT_HOME or ./unlearnkit-home."
)
StoreOpt = typer.Option(
    None,
    "--store",
    help="SQLAlchemy URL of the run store (default: SQLite file <home>/runs.db), e.g. postgresql+psycopg://u@h/db.",
)
JsonOpt = typer.Option(False, "--json", help="Print one JSON document instead of text.")
SeedOpt = typer.Option(0, "--seed", help="Seed (data split, scenario, training, method).")

#: the summary columns of each modality, until the metric catalogue names its headlines
SUMMARY_COLUMNS = {
    "classifier": [
        "acc_forget",
        "acc_retain",
        "acc_test",
        "mia_lr_auc",
        "forget_quality",
        "js_forget",
        "cost_ratio_time",
    ],
    "causal_lm": [
        "forget_quality",
        "model_utility",
        "rouge_forget",
        "paraphrase_rouge",
        "privleak",
        "relearn_rouge",
        "fade_sym_kl",
        "cost_ratio_time",
    ],
}
#: the two numbers `runs list` shows per run: (label, metric) of utility-after-forgetting pairs
LIST_COLUMNS = {
    "classifier": (("acc_forget", "acc_forget"), ("acc_test", "acc_test")),
    "causal_lm": (("FQ", "forget_quality"), ("MU", "model_utility")),
}


def summary_keys(modality, available=None) -> list[str]:
    """The metrics a summary table shows for ``modality`` (a Modality or its name): the
    catalogue's headline columns (those with a finite value among ``available``, a dict or
    dicts of metric values, where given), else the fixed per-modality list above."""
    name = getattr(modality, "name", modality)
    try:
        from ..evaluation import metrics as catalogue
    except ImportError:  # pragma: no cover
        catalogue = None
    keys: list[str] = []
    try:
        if available is not None and hasattr(catalogue, "pick_headline"):
            dicts = [available] if isinstance(available, dict) else list(available)
            have = {k for d in dicts for k, v in (d or {}).items() if isinstance(v, (int, float)) and math.isfinite(v)}
            keys = list(catalogue.pick_headline(have, name))
        elif hasattr(catalogue, "headline_metrics"):
            keys = list(catalogue.headline_metrics(name))
    except Exception:  # noqa: BLE001 - fall back to the fixed columns
        keys = []
    return keys or list(SUMMARY_COLUMNS.get(name, SUMMARY_COLUMNS["classifier"]))


def out(obj, as_json: bool, text: str | None = None) -> None:
    if as_json:
        typer.echo(json.dumps(obj, indent=2, default=_json_default, allow_nan=False))
    elif text is not None:
        typer.echo(text)


def _json_default(o):
    if isinstance(o, float):
        return None
    return str(o)


def clean(obj):
    """Replace NaN/inf by None so that --json output is strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    return obj


def fmt(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def table(rows: list[list], header: list[str]) -> str:
    cells = [header] + [[fmt(c) for c in r] for r in rows]
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def workspace(home, store, mode: str = "rw"):
    """The workspace; ``mode="r"`` for commands that only read (never creates anything, works
    read-only), ``"existing"`` for those that read and record where they may."""
    from ..orchestration.experiment import Workspace

    return Workspace.open(home, store, mode=mode)


def parse_params(items: list[str]) -> dict:
    params = {}
    for it in items or []:
        k, sep, v = it.partition("=")
        if not sep or not k.strip():
            raise ConfigError(f"--param expects NAME=VALUE, got {it!r}")
        params[k.strip()] = value(v.strip())
    return params


def value(v: str):
    """int, float (``1e-3`` included), true/false, null, a YAML/JSON list, or the string."""
    import yaml

    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    try:
        return yaml.safe_load(v)
    except yaml.YAMLError:
        return v


def read_lines(path: Path) -> list[str]:
    """The non-empty, non-comment lines of a UTF-8 text file of ids."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{path} is not a UTF-8 text file of ids, one per line (undecodable byte at offset {e.start})"
        ) from None
    if "\x00" in text:
        raise ConfigError(f"{path} is not a text file of ids, one per line (it holds NUL bytes)")
    lines = [ln.strip() for ln in text.splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def finite(name: str, v: float | None, minimum: float | None = None, strict: bool = True) -> None:
    """Refuse a non-finite (or too small) numeric option before any work."""
    if v is None:
        return
    if not math.isfinite(v):
        raise ConfigError(f"{name} must be a finite number, not {v}")
    if minimum is not None and (v <= minimum if strict else v < minimum):
        raise ConfigError(f"{name} must be {'>' if strict else '>='} {minimum}, not {v}")


def rows_text(rows: list[dict], keys: list[str]) -> str:
    """Summary rows (``orchestration.report.summarise``) as one table per scenario."""
    lines = []
    for scen in dict.fromkeys(r["scenario"] for r in rows):
        lines.append(f"\n== {scen} ==")
        tab = [
            [r["method"], r.get("n_seeds")] + [r.get("mean", {}).get(k) for k in keys]
            for r in rows
            if r["scenario"] == scen
        ]
        lines.append(table(tab, ["method", "seeds"] + keys))
    return "\n".join(lines)


def not_computed_text(missing: dict[str, str]) -> str:
    """The headline values that could not be computed, each with why (empty when none)."""
    if not missing:
        return ""
    return "\nnot computed:\n" + "\n".join(f"  {k:<20} {why}" for k, why in sorted(missing.items()))
