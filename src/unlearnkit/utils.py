"""Small shared helpers: seeding, fingerprints, atomic file writes, environment info."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import random
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch Generator seeded the same way.

    Prefer passing the returned generator (or ``numpy.random.default_rng(seed)``)
    to code that draws random numbers; the global seeding only covers libraries
    that cannot take a generator (weight initialisation in ``nn.Module``).
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def derive_seed(seed: int, *parts: object) -> int:
    """A stable 63-bit seed derived from ``seed`` and any labels (for sub-streams)."""
    h = hashlib.sha256(repr((seed,) + parts).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def fingerprint_ids(ids: Iterable[str]) -> str:
    """SHA-256 (hex, 16 chars) of the sorted example ids: names a selection of data."""
    h = hashlib.sha256()
    for i in sorted(str(x) for x in ids):
        h.update(i.encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def stable_hash(obj: object) -> str:
    """SHA-256 (hex, 16 chars) of a JSON-serialisable object with sorted keys."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _default_mode() -> int:
    """The permissions a plain ``open()`` would give a new file (0o666 less the umask);
    ``mkstemp`` creates 0o600, which would make reports unreadable to others."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator:
    """Write to a temporary file beside ``path`` and move it into place on success.

    On any exception the temporary file is removed and ``path`` is left as it was,
    so a failure never leaves a half-written file behind.
    """
    with atomic_path(path) as tmp, open(tmp, mode) as fh:
        yield fh


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for libraries that write by file name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``path``; on success it becomes ``path``.

    For writers that produce a whole folder (``datasets.save_to_disk``, several files).
    An existing directory at ``path`` is swapped out and removed only after the new
    one is in place; on any exception the temporary directory is removed and ``path``
    is left as it was.
    """
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        if path.is_dir():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def environment_info() -> dict:
    """What a run needs to be reproduced: versions, platform, threads, device."""
    import scipy
    import sklearn

    from . import __version__

    return {
        "unlearnkit": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "sklearn": sklearn.__version__,
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/"auto" picks CUDA when present, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
