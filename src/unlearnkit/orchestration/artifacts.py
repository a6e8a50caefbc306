"""Model artifacts: safetensors files addressed by content hash, and the model cache.

An artifact is a model's ``state_dict`` written with ``safetensors`` to
``root/<hash[:2]>/<hash>.safetensors``, where ``hash`` is the SHA-256 (hex) of the
file's bytes. Identical content gets the identical name, so saving the same weights
twice stores one file; reading verifies the hash, so a flipped byte is caught.

File format: a plain safetensors file (readable by any safetensors loader) whose
header metadata holds a single key, ``"unlearnkit"``, with a JSON string
``{"digest": ..., "metadata": {...}}``: the caller's ``metadata`` and a SHA-256 over
every tensor's name, dtype, shape and bytes (and the metadata). The digest lets a
checkpoint at a user-chosen path (:func:`save_file` / :func:`load_file`), whose name
carries no hash, be checked for corruption too. One key only, because safetensors
writes several metadata keys in an unstable order, which would break content
addressing.

Shared tensors (tied weights) are written once per name: a tensor whose storage was
already written under another name is cloned, so the file is valid safetensors and
``load_state_dict`` re-ties nothing but restores the same values in both places.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save
from torch import nn

from ..errors import CheckpointError
from ..utils import atomic_write

_META_KEY = "unlearnkit"
_HASH_RE = re.compile(r"[0-9a-f]{64}")


# --------------------------------------------------------------------------- helpers
def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state_dict as CPU, contiguous tensors, each with its own storage."""
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for name, t in model.state_dict().items():
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(
                f"state_dict entry {name!r} is not a tensor; "
                "artifacts hold tensors only (drop extra state before saving)"
            )
        t = t.detach().cpu().contiguous()
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if key in seen or t.storage_offset() != 0 or t.numel() * t.element_size() != key[1]:
            t = t.clone()  # shared or partial storage: give it its own
        seen.add((t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()))
        out[name] = t
    return out


class _TensorHolder(nn.Module):
    """A named set of tensors (a training checkpoint) seen as a state_dict."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        super().__init__()
        self._held = dict(tensors)

    def state_dict(self, *args, **kwargs):  # noqa: D102 - the held tensors, as they are
        return dict(self._held)


def _digest(tensors: dict[str, torch.Tensor], metadata_json: str) -> str:
    h = hashlib.sha256(metadata_json.encode())
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"\n{name}\n{t.dtype}\n{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _serialise(model: nn.Module | dict[str, torch.Tensor], metadata: dict | None) -> bytes:
    tensors = _tensors(model) if isinstance(model, nn.Module) else _tensors(_TensorHolder(model))
    try:
        meta_json = json.dumps(metadata or {}, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"artifact metadata must be JSON-serialisable: {e}") from None
    header = json.dumps({"digest": _digest(tensors, meta_json), "metadata": json.loads(meta_json)}, sort_keys=True)
    return _st_save(tensors, metadata={_META_KEY: header})


def _parse(data: bytes, where: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Decode a file's bytes; check its embedded digest. Returns (tensors, metadata)."""
    try:
        tensors = _st_load(data)
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + n]).get("__metadata__") or {}
        info = json.loads(header[_META_KEY]) if _META_KEY in header else None
    except (SafetensorError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(
            f"{where} is corrupt (not a readable safetensors file: {e}); delete it and save the model again"
        ) from None
    if info is not None:  # files written elsewhere carry no digest; accept them as they are
        meta = info.get("metadata", {})
        if _digest(tensors, json.dumps(meta, sort_keys=True)) != info.get("digest"):
            raise CheckpointError(f"{where} is corrupt (tensor digest mismatch); delete it and save the model again")
        return tensors, meta
    return tensors, {}


def _check_fits(tensors: dict[str, torch.Tensor], model: nn.Module, where: str) -> None:
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in tensors.items()}
    problems = []
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    if missing:
        problems.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if extra:
        problems.append(f"unexpected keys {extra[:5]}{' ...' if len(extra) > 5 else ''}")
    shapes = [f"{k}: file {have[k]} vs model {want[k]}" for k in sorted(set(want) & set(have)) if want[k] != have[k]]
    if shapes:
        problems.append("shape mismatch " + "; ".join(shapes[:3]) + (" ..." if len(shapes) > 3 else ""))
    if problems:
        raise CheckpointError(
            f"{where} does not fit the model ({', '.join(problems)}); "
            "build the model with the architecture it was saved from"
        )


def _load_into(model: nn.Module, tensors: dict[str, torch.Tensor], where: str) -> nn.Module:
    _check_fits(tensors, model, where)
    model.load_state_dict(tensors, strict=True)
    return model


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{what} not found at {path}; check the path or save it again") from None
    except OSError as e:
        raise CheckpointError(f"cannot read {what} at {path}: {e}") from None


# --------------------------------------------------------------------------- user paths
def save_file(model: nn.Module, path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Write ``model``'s weights to ``path`` (atomically) as a checked safetensors file."""
    path = Path(path)
    data = _serialise(model, metadata)
    try:
        with atomic_write(path) as fh:
            fh.write(data)
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoint {path}: {e}") from None
    return path


def load_file(path: str | os.PathLike, model: nn.Module) -> nn.Module:
    """Load the checkpoint at ``path`` into ``model`` (missing, corrupt or misfit → CheckpointError)."""
    path = Path(path)
    where = f"checkpoint {path}"
    tensors, _ = _parse(_read(path, "checkpoint"), where)
    return _load_into(model, tensors, where)


# --------------------------------------------------------------------------- store
class ArtifactStore:
    """Content-addressed safetensors files under ``root``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    # a checkpoint at a path of your choice (the same checks, no content address)
    save_file = staticmethod(save_file)
    load_file = staticmethod(load_file)

    def path(self, hash: str) -> Path:
        """Where the artifact ``hash`` lives (whether or not it exists)."""
        if not _HASH_RE.fullmatch(str(hash)):
            raise CheckpointError(f"{hash!r} is not an artifact hash (64 lowercase hex digits)")
        return self.root / hash[:2] / f"{hash}.safetensors"

    def exists(self, hash: str) -> bool:
        return self.path(hash).is_file()

    def save(self, model: nn.Module | dict[str, torch.Tensor], metadata: dict | None = None) -> str:
        """Write the model's weights (or a dict of named tensors: a training checkpoint);
        return their hash. Same content → same hash, one file.

        ``metadata`` (JSON-serialisable) is part of the content: the same weights with
        other metadata get another hash.
        """
        data = _serialise(model, metadata)
        digest = hashlib.sha256(data).hexdigest()
        path = self.path(digest)
        if path.is_file() and _sha256_file(path) == digest:
            return digest  # already stored, intact
        try:
            with atomic_write(path) as fh:
                fh.write(data)
        except OSError as e:
            raise CheckpointError(f"cannot write artifact under {self.root}: {e}") from None
        return digest

    def _verified(self, hash: str) -> tuple[dict[str, torch.Tensor], dict]:
        path = self.path(hash)
        data = _read(path, f"artifact {hash[:12]}")
        if hashlib.sha256(data).hexdigest() != hash:
            raise CheckpointError(
                f"artifact {hash[:12]} at {path} is corrupt (its SHA-256 does not "
                "match its name); delete it and save the model again"
            )
        return _parse(data, f"artifact {hash[:12]}")

    def load_state_dict(self, hash: str) -> dict[str, torch.Tensor]:
        """The verified tensors of artifact ``hash`` (on CPU)."""
        return self._verified(hash)[0]

    def metadata(self, hash: str) -> dict:
        """The ``metadata`` the artifact was saved with."""
        return self._verified(hash)[1]

    def load(self, hash: str, model: nn.Module) -> nn.Module:
        """Load artifact ``hash`` into ``model`` (verified first; the model is untouched on error)."""
        return _load_into(model, self._verified(hash)[0], f"artifact {hash[:12]}")


# --------------------------------------------------------------------------- cache
class ModelCache:
    """Trained models by key (originals, references): ``root/index/<key>.json`` → artifact.

    Implements the ``ModelCache`` protocol of :mod:`unlearnkit.task`. An index entry
    whose artifact is missing, corrupt or does not fit the model is a cache miss:
    ``get`` removes the entry and returns ``None``.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.artifacts = ArtifactStore(self.root / "artifacts")

    def _index(self, key: str) -> Path:
        name = (
            key
            if re.fullmatch(r"[A-Za-z0-9._-]{1,120}", key) and not key.startswith(".")
            else "k-" + hashlib.sha256(key.encode()).hexdigest()[:40]
        )
        return self.root / "index" / f"{name}.json"

    def get(self, key: str, model: nn.Module) -> dict | None:
        """Load the model stored under ``key`` into ``model`` and return its info, or ``None``."""
        index = self._index(key)
        try:
            entry = json.loads(index.read_text())
            if entry.get("key") != key:
                return None  # a hashed-name collision: not ours
            self.artifacts.load(entry["artifact"], model)
            return dict(entry.get("info") or {})
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError, CheckpointError):
            with contextlib.suppress(OSError):
                index.unlink()  # stale or unreadable entry: drop it, report a miss
            return None

    def put(self, key: str, model: nn.Module, info: dict) -> None:
        """Store ``model``'s weights under ``key`` with JSON-serialisable ``info``."""
        digest = self.artifacts.save(model)
        try:
            text = json.dumps({"key": key, "artifact": digest, "info": info}, sort_keys=True)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"cache info for {key!r} must be JSON-serialisable: {e}") from None
        try:
            with atomic_write(self._index(key), "w") as fh:
                fh.write(text)
        except OSError as e:
            raise CheckpointError(f"cannot write cache index under {self.root}: {e}") from None

    def artifact(self, key: str) -> str | None:
        """The artifact hash stored under ``key`` (not verified), or ``None``."""
        try:
            return json.loads(self._index(key).read_text())["artifact"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
