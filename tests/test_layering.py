"""The layering of docs/ARCHITECTURE.md, checked on the source:

* no layer outside ``unlearnkit/modalities/`` branches on a modality's name (it asks the
  modality: :func:`unlearnkit.modalities.get_modality`, capabilities, parts);
* imports point down the layers (imports under ``if TYPE_CHECKING:`` are annotations, not
  dependencies, and are not counted; imports inside functions are).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "unlearnkit"
NAMES = r"(classifier|causal_lm)"
BRANCHES = [
    re.compile(rf"""[!=]=\s*["']{NAMES}["']"""),  # x == "causal_lm"
    re.compile(rf"""["']{NAMES}["']\s*[!=]="""),  # "causal_lm" == x
    re.compile(rf"""\bin\s*[(\[{{]\s*["']{NAMES}["']"""),  # x in ("classifier", ...)
    re.compile(rf"""\bin\s*["']{NAMES}["']"""),  # "lm" in "causal_lm"
]


def _sources():
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def test_no_modality_name_branches_outside_the_modality_packages():
    found = []
    for path in _sources():
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith("modalities/"):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if any(r.search(code) for r in BRANCHES):
                found.append(f"src/unlearnkit/{rel}:{n}: {line.strip()}")
    assert not found, "branches on a modality's name outside modalities/ (ask the modality instead):\n" + "\n".join(
        found
    )


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                lines.update(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))
    return lines


def imports_of(path: Path) -> list[tuple[int, str]]:
    """``(line, absolute module)`` of every unlearnkit import in ``path`` (``from .x import
    y`` gives ``unlearnkit.<pkg>.x.y`` as well, since ``y`` may be a module)."""
    module = _module(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    out = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "unlearnkit"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "unlearnkit":
                out.append((node.lineno, target))
                out += [(node.lineno, f"{target}.{a.name}") for a in node.names]
    return out


def _top(module: str) -> str:
    """The layer key of a module: ``unlearnkit.methods.npo`` -> ``methods``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:])
    return (SRC / rel).with_suffix(".py").exists() or (SRC / rel / "__init__.py").exists()


SURFACES = {"requests", "api", "service", "ui", "cli", "testing", "__main__"}
#: layer -> the layers it must not import (docs/ARCHITECTURE.md, "Layers"); imports point
#: down: errors/utils < data < engines < modalities + task < methods < evaluation <
#: orchestration < requests < api, service < ui < cli (testing sits beside the surfaces, over methods)
FORBIDDEN = {
    "errors": {"data", "engines", "modalities", "task", "methods", "evaluation", "orchestration"} | SURFACES,
    "data": {"engines", "modalities", "task", "methods", "evaluation", "orchestration"} | SURFACES,
    "engines": {"task", "methods", "evaluation", "orchestration"} | SURFACES,
    "modalities": {"methods", "orchestration"} | SURFACES,
    "task": {"methods", "evaluation", "orchestration"} | SURFACES,
    "methods": {"evaluation", "orchestration"} | SURFACES,
    "evaluation": {"orchestration"} | SURFACES,
    "orchestration": SURFACES,
    "requests": SURFACES - {"requests"},
    "api": {"service", "ui", "cli", "testing", "__main__"},
    "service": {"api", "ui", "cli", "testing", "__main__"},
    # the comparator reads the service's tables (its db/crypto modules), never the other way
    "ui": {"api", "cli", "testing", "__main__"},
    "testing": {"evaluation", "orchestration", "requests", "api", "service", "ui", "cli", "__main__"},
}
#: the modules of a modality package that may import unlearnkit.evaluation (they register
#: metrics in its catalogue or run its attacks)
EVALUATION_PARTS = {"metrics", "scores", "attacks"}


def test_imports_point_down_the_layers():
    bad = []
    for path in _sources():
        module = _module(path)
        layer = _top(module)
        for line, target in imports_of(path):
            if not _exists(target):  # a name imported from a module, not a module
                continue
            down = _top(target)
            where = f"src/unlearnkit/{path.relative_to(SRC).as_posix()}:{line}"
            if down in FORBIDDEN.get(layer, ()):
                bad.append(f"{where}: {layer} imports {target}")
            if layer == "modalities" and down == "evaluation":
                parts = module.split(".")
                if len(parts) < 4 or parts[3] not in EVALUATION_PARTS:
                    bad.append(
                        f"{where}: {module} imports {target} (only a modality's "
                        f"{'/'.join(sorted(EVALUATION_PARTS))} modules may)"
                    )
    assert not bad, "imports against the layers of docs/ARCHITECTURE.md:\n" + "\n".join(sorted(set(bad)))


def test_the_checker_sees_relative_and_lazy_imports(tmp_path):
    """The import scanner resolves ``from ..x import y`` and counts imports inside functions."""
    found = dict((m, n) for n, m in imports_of(SRC / "methods" / "base.py"))
    assert "unlearnkit.engines.loop" in found and "unlearnkit.modalities" in found
    lazy = {m for _, m in imports_of(SRC / "task.py")}
    assert "unlearnkit.engines.linear" in lazy  # imported inside train_from_scratch
    assert not any(m.startswith("unlearnkit.methods") for m in lazy)  # TYPE_CHECKING only
    sample = 'x = 1\nif task.modality == "causal_lm":\n    pass\n'
    assert any(r.search(sample) for r in BRANCHES)
    assert not any(r.search('modalities = ("classifier", "causal_lm")') for r in BRANCHES)
