"""``unlearnkit methods`` and ``unlearnkit metrics``: the registries."""

from __future__ import annotations

from . import app
from .common import JsonOpt, clean, out


@app.command()
def methods(as_json: bool = JsonOpt):
    """List the unlearning methods with their hyperparameters and defaults."""
    from ..methods import list_methods

    ms = list_methods()
    lines = []
    for m in ms:
        lines.append(f"{m['name']}{'  (exact)' if m['exact'] else ''}: {m['summary']}")
        lines.append(f"    source: {m['citation']}")
        lines.append(f"    serves: {', '.join(m['modalities'])}")
        for p in m["params"]:
            lm = "".join(f" ({mod}: {d[p['name']]!r})" for mod, d in m["defaults"].items() if p["name"] in d)
            lines.append(f"    --param {p['name']}={p['default']!r}".ljust(38) + f"  {p['help']}{lm}")
    out(clean(ms), as_json, "\n".join(lines))


@app.command()
def metrics(as_json: bool = JsonOpt):
    """List the metrics, what they output, and their sources."""
    from ..evaluation.metrics import list_metrics

    ms = list_metrics()
    lines = []
    for m in ms:
        lines.append(f"{m['name']}: {m['description']}")
        lines.append(f"    outputs: {', '.join(m.get('outputs', []))}")
        lines.append(f"    serves: {', '.join(m.get('modalities', ['classifier']))}")
        lines.append(f"    source: {m.get('citation', '')}")
    out(clean(ms), as_json, "\n".join(lines))
