"""The worked examples of docs/adding-a-method.md and docs/adding-a-modality.md run.

Every ```python block of a page is taken in order: a block whose first line is
``# file: <path>`` is written to that path in a scratch folder; the other blocks, joined,
are the page's script, run there in a fresh interpreter (so the example's registrations
do not leak into the other tests), on one thread."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["adding-a-method.md", "adding-a-modality.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def page_code(text: str) -> tuple[dict[str, str], str]:
    """``({path: file text}, script)`` of a page's python blocks."""
    files, script = {}, []
    for block in BLOCK.findall(text):
        first, _, rest = block.partition("\n")
        m = re.fullmatch(r"#\s*file:\s*(\S+)", first.strip())
        if m:
            files[m.group(1)] = rest
        else:
            script.append(block)
    return files, "\n\n".join(script)


def test_page_code_splits_files_and_script():
    files, script = page_code(
        "x\n```python\n# file: pkg/a.py\nA = 1\n```\n```bash\nls\n```\n```python\nimport pkg.a\n```\n"
    )
    assert files == {"pkg/a.py": "A = 1\n"} and script.strip() == "import pkg.a"


@pytest.mark.parametrize("page", PAGES)
def test_worked_example_runs(page, tmp_path):
    files, script = page_code((ROOT / "docs" / page).read_text())
    assert script.strip(), f"{page} has no example script"
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "example.py").write_text(script)
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    )
    proc = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"docs/{page} example failed:\n{proc.stdout}\n{proc.stderr}"
