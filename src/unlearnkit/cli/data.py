"""``unlearnkit data ids``: a dataset's example or subject ids, one per line, so that a
forget file (``unlearn --forget-ids`` / ``--forget-subjects``) can be written without Python."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import ConfigError
from . import data_app
from .common import JsonOpt, out


def _table_ids(modality, dataset, subjects: bool, o: dict) -> list[str]:
    """Ids of a built-in classifier dataset or a table/npz/image-folder file."""
    from ..data import load_dataset
    from ..data.scenarios import partition

    if not dataset:
        raise ConfigError("name the DATASET (a built-in name such as digits, or a file)")
    p = Path(dataset)
    source = str(p.resolve()) if p.exists() else dataset
    kwargs = {k: o[k] for k in ("label", "id_column", "subject_column") if o.get(k)}
    split, seed = o["split"], o["seed"]
    data = load_dataset(source, **kwargs)
    if split == "train":  # exactly the rows `unlearnkit train --seed SEED` trains on
        data = partition(data, seed).train
    if subjects:
        if data.subject_ids is None:
            raise ConfigError(f"{dataset} has no subject ids; name a table's column with --subject-column")
        return list(dict.fromkeys(str(s) for s in data.subject_ids))
    return [str(i) for i in data.example_ids]


def _qa_ids(modality, ds, subjects: bool) -> list[str]:
    """Ids of the rows a language model is trained on (and their people)."""
    try:  # the kinds of rows the modality's task trains on, where it says
        kinds = tuple(getattr(modality.part("task"), "TRAIN_KINDS"))
    except Exception:  # noqa: BLE001
        kinds = ("direct", "retain", "world")
    rows = ds.training_rows(kinds=kinds) if hasattr(ds, "training_rows") else ds.rows
    if subjects:
        return list(dict.fromkeys(str(r["subject_id"]) for r in rows if r.get("subject_id")))
    return [str(r["example_id"]) for r in rows]


def _profiles(modality, dataset, subjects: bool, o: dict) -> list[str]:
    from ..data import generate_profiles

    ds = generate_profiles(n_people=o["people"], seed=0, qa_per_person=o["qa_per_person"], n_other=10)
    return _qa_ids(modality, ds, subjects)


def _qa_folder(modality, dataset, subjects: bool, o: dict) -> list[str]:
    from ..data import load_profiles_jsonl, load_tofu

    if not dataset or not Path(dataset).exists():
        raise ConfigError(f"--task qa needs DATASET: a folder of QA files; {dataset} does not exist")
    p = Path(dataset)
    tofu = (
        any(
            f.name.startswith(("full", "forget", "retain")) and f.suffix == ".json"
            for f in (p.iterdir() if p.is_dir() else [p])
        )
        or (p / "full").is_dir()
    )
    return _qa_ids(modality, load_tofu(p) if tofu else load_profiles_jsonl(p), subjects)


#: `--task` value -> how its ids are listed
_SOURCES = {"classifier": _table_ids, "profiles": _profiles, "qa": _qa_folder}


@data_app.command("ids")
def ids(
    dataset: Optional[str] = typer.Argument(
        None,
        help="Built-in name (digits, iris, ...) or a .csv/.parquet/"
        ".npz file or image folder; with --task qa, the QA folder; "
        "not needed with --task profiles.",
    ),
    subjects: bool = typer.Option(False, "--subjects", help="List subject (person) ids instead of example ids."),
    task_kind: str = typer.Option("classifier", "--task", help="classifier, profiles or qa (as `train --task`)."),
    split: str = typer.Option(
        "all",
        "--split",
        help="classifier datasets: all rows, or train (the rows "
        "`train --seed SEED` trains on: only those can be forgotten).",
    ),
    seed: int = typer.Option(0, "--seed", help="With --split train: the seed given to `train`."),
    label: Optional[str] = typer.Option(None, "--label", help="Label column of a CSV/parquet file."),
    id_column: Optional[str] = typer.Option(None, "--id-column", help="Example-id column of a table."),
    subject_column: Optional[str] = typer.Option(None, "--subject-column", help="Subject-id column of a table."),
    people: int = typer.Option(100, "--people", help="--task profiles: training people (as `train --people`)."),
    qa_per_person: int = typer.Option(10, "--qa-per-person", help="--task profiles: as `train --qa-per-person`."),
    as_json: bool = JsonOpt,
):
    """Print a dataset's example ids (or, with --subjects, subject ids), one per line."""
    from ..modalities import modality_for_task_kind

    modality = modality_for_task_kind(task_kind)  # a known --task value
    if split not in ("all", "train"):
        raise ConfigError(f"--split must be all or train, not {split!r}")
    if task_kind not in _SOURCES:
        raise ConfigError(f"data ids lists --task {', '.join(_SOURCES)}; not --task {task_kind}")
    options = dict(
        split=split,
        seed=seed,
        label=label,
        id_column=id_column,
        subject_column=subject_column,
        people=people,
        qa_per_person=qa_per_person,
    )
    found = _SOURCES[task_kind](modality, dataset, subjects, options)
    out(found, as_json, "\n".join(found))
