"""The cryptography of the deletion-request service: canonical JSON, Merkle trees, Ed25519
signatures, keyed pseudonyms and signed documents.

Pure functions and small classes, no database and no network; the service's signed
certificates and its hash-chained audit log are built on them.

Canonical JSON -- :func:`canonical_json`, :func:`sha256_hex`
    RFC 8785, the JSON Canonicalization Scheme (JCS), through the ``rfc8785`` package:
    members sorted by the UTF-16 code units of their names, no whitespace, ECMAScript
    number formatting, UTF-8. What JCS cannot represent is refused with
    :class:`ValueError`: NaN and the infinities, integers outside the I-JSON range
    ±(2**53 - 1) (RFC 7493, which RFC 8785 requires), keys that are not strings, lone
    surrogates, cycles, and any type but dict, list, tuple, str, int, float, bool, None.

Merkle trees -- :func:`merkle_root`, :func:`merkle_proof`, :func:`merkle_index`, :func:`verify_merkle_proof`
    The Merkle Tree Hash of RFC 6962 section 2.1 (also RFC 9162 section 2.1.1):
    leaf = SHA-256(0x00 || utf8(id)), node = SHA-256(0x01 || left || right), a list of n > 1
    leaves split after the largest power of two smaller than n, the empty tree
    SHA-256 of the empty string. Audit paths are RFC 6962 section 2.1.1's PATH(m, D[n]),
    and are verified with the algorithm of RFC 9162 section 2.1.3.2. Hashes are lowercase
    hex strings (upper case is accepted on input).
    Departure: RFC 6962 hashes an ordered list of byte strings, a log. These functions
    take a *set* of ids: the leaves are the UTF-8 encodings of the sorted, de-duplicated
    ids (sorted by code point, which is also the order of their UTF-8 bytes), so a set
    has exactly one root whatever order its ids come in, and a leaf's index is the
    position of its id in that sorted list (:func:`merkle_index`).

Ed25519 signatures -- :class:`SigningKey`, :func:`verify_signature`, :func:`key_id_of`
    RFC 8032 (PureEd25519) through ``cryptography``. Private keys are stored as
    unencrypted PKCS#8 PEM, public keys travel as SubjectPublicKeyInfo PEM (RFC 8410),
    signatures as base64url without padding (RFC 4648 section 5; only the canonical
    encoding of 64 bytes is accepted). A key id is the first 16 hex digits of SHA-256 of
    the raw 32-byte public key: a label to pick the right key, not a security property
    (64 bits); a verifier must trust the public key itself, never a key id.

Keyed pseudonyms -- :class:`Pseudonymizer`, :func:`same`
    HMAC (RFC 2104) with SHA-256 of the UTF-8 subject identifier under a secret of at
    least 32 bytes, truncated to 128 bits (half the hash, the least RFC 2104 section 5
    recommends), written ``"hs256:" + 32 hex digits``. The subject is hashed exactly as
    given: no Unicode normalisation, case folding or trimming, which is the caller's.
    :func:`same` compares in constant time (:func:`hmac.compare_digest`).

Signed documents -- :func:`sign_document`, :func:`verify_document`
    ``{"body": body, "signature": {"alg": "Ed25519", "key_id": ..., "value": ...}}``, the
    value an Ed25519 signature over ``canonical_json(body)``. This envelope is this
    project's own, not JWS (RFC 7515): only ``body`` is signed, and anything beside it in
    the document is not covered by the signature.

Key files -- :meth:`SigningKey.load_or_create`, :meth:`Pseudonymizer.load_or_create`
    A missing file is created once, with mode 0o600: written and fsynced under a
    temporary name in the same folder, then published with :func:`os.link`, which fails
    when the name already exists. Departure from the usual write-then-:func:`os.replace`:
    replace would let a second process overwrite a key the first already uses; with link
    the first writer wins and every other process loads the winner's file. Where the file
    system has no hard links, the file is created in place with ``O_EXCL`` instead, and a
    process that finds it unreadable while it is new (or lost the race to create it)
    retries for up to a second while the writer finishes. A file that exists but does
    not hold a valid key raises :class:`unlearnkit.errors.ConfigError` naming the path,
    and is never replaced.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import hashlib
import hmac
import os
import re
import secrets
import tempfile
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import rfc8785
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from unlearnkit.errors import ConfigError

__all__ = [
    "Pseudonymizer",
    "SigningKey",
    "canonical_json",
    "key_id_of",
    "merkle_index",
    "merkle_proof",
    "merkle_root",
    "same",
    "sha256_hex",
    "sign_document",
    "verify_document",
    "verify_merkle_proof",
    "verify_signature",
]

ALG = "Ed25519"
PSEUDONYM_PREFIX = "hs256:"
SECRET_BYTES = 32  # the least a pseudonym secret may have, and what load_or_create makes

# ── canonical JSON ────────────────────────────────────────────────────────────────────


def canonical_json(obj: Any) -> bytes:
    """``obj`` as RFC 8785 (JCS) canonical JSON, UTF-8.

    Raises :class:`ValueError` for what JCS cannot represent (NaN, infinities, integers
    beyond ±(2**53 - 1), non-string keys, lone surrogates, cycles, other types)."""
    try:
        return rfc8785.dumps(obj)
    except rfc8785.FloatDomainError as e:
        raise ValueError(f"cannot canonicalise as JSON (RFC 8785): {e}; NaN and infinities have no JSON form") from None
    except rfc8785.IntegerDomainError as e:
        raise ValueError(f"cannot canonicalise as JSON (RFC 8785): {e}; send such numbers as strings") from None
    except rfc8785.CanonicalizationError as e:
        raise ValueError(f"cannot canonicalise as JSON (RFC 8785): {e}") from None
    except RecursionError:
        raise ValueError("cannot canonicalise as JSON (RFC 8785): nested too deeply, or contains itself") from None


def sha256_hex(data: bytes) -> str:
    """SHA-256 of ``data``, lowercase hex."""
    return hashlib.sha256(data).hexdigest()


# ── Merkle trees (RFC 6962 section 2.1, RFC 9162 section 2.1.3) ────────────────────────────

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_HASH_HEX = re.compile(r"[0-9a-fA-F]{64}")


def _sorted_ids(ids: Iterable[str]) -> list[str]:
    if isinstance(ids, (str, bytes, bytearray)):
        raise TypeError("ids must be a collection of example ids, not a single string")
    unique = set()
    for item in ids:
        if not isinstance(item, str):
            raise TypeError(f"example ids must be strings, got {type(item).__name__}")
        unique.add(item)
    return sorted(unique)


def _leaf_hash(item: str) -> bytes:
    return hashlib.sha256(_LEAF_PREFIX + item.encode("utf-8")).digest()


def _node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _mth(leaves: list[bytes], lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi]) of RFC 6962 section 2.1, over leaf hashes."""
    n = hi - lo
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[lo]
    k = _split(n)
    return _node_hash(_mth(leaves, lo, lo + k), _mth(leaves, lo + k, hi))


def _path(m: int, leaves: list[bytes], lo: int, hi: int) -> list[bytes]:
    """PATH(m, D[lo:hi]) of RFC 6962 section 2.1.1, over leaf hashes."""
    n = hi - lo
    if n <= 1:
        return []
    k = _split(n)
    if m < k:
        return _path(m, leaves, lo, lo + k) + [_mth(leaves, lo + k, hi)]
    return _path(m - k, leaves, lo + k, hi) + [_mth(leaves, lo, lo + k)]


def merkle_root(ids: Iterable[str]) -> str:
    """The RFC 6962 Merkle Tree Hash of the sorted, de-duplicated ``ids``, hex."""
    leaves = [_leaf_hash(item) for item in _sorted_ids(ids)]
    return _mth(leaves, 0, len(leaves)).hex()


def merkle_index(ids: Iterable[str], item: str) -> int:
    """The leaf index of ``item``: its position among the sorted, de-duplicated ``ids``.

    Raises :class:`KeyError` if ``item`` is not one of ``ids``."""
    ordered = _sorted_ids(ids)
    i = bisect_left(ordered, item) if isinstance(item, str) else len(ordered)
    if i == len(ordered) or ordered[i] != item:
        raise KeyError(item)
    return i


def merkle_proof(ids: Iterable[str], item: str) -> list[str]:
    """The audit path (RFC 6962 section 2.1.1) of ``item`` in the tree of ``ids``, hex,
    from the leaf's sibling up to the root's child.

    Raises :class:`KeyError` if ``item`` is not one of ``ids``."""
    ordered = _sorted_ids(ids)
    i = bisect_left(ordered, item) if isinstance(item, str) else len(ordered)
    if i == len(ordered) or ordered[i] != item:
        raise KeyError(item)
    leaves = [_leaf_hash(x) for x in ordered]
    return [h.hex() for h in _path(i, leaves, 0, len(leaves))]


def _hash_from_hex(value: object) -> bytes | None:
    if not isinstance(value, str) or not _HASH_HEX.fullmatch(value):
        return None
    return bytes.fromhex(value)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def verify_merkle_proof(item: str, index: int, size: int, proof: list[str], root: str) -> bool:
    """Whether ``proof`` shows ``item`` as leaf ``index`` of a tree of ``size`` leaves
    with root ``root`` (RFC 9162 section 2.1.3.2). False on malformed input; never raises."""
    if not isinstance(item, str) or not _is_count(index) or not _is_count(size) or index >= size:
        return False
    if not isinstance(proof, (list, tuple)):
        return False
    path = [_hash_from_hex(p) for p in proof]
    expected = _hash_from_hex(root)
    if expected is None or any(p is None for p in path):
        return False
    try:
        r = _leaf_hash(item)
    except UnicodeEncodeError:  # a lone surrogate: no id of any tree
        return False
    fn, sn = index, size - 1
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = _node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(r, expected)


# ── key files ───────────────────────────────────────────────────────────────────────────

_T = TypeVar("_T")
_RACE_WAIT_S = 1.0  # how long a reader waits for the writer of a new file it cannot parse yet


def _read(path: Path, what: str) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(f"cannot read the {what} file {path}: {e.strerror or e}") from None


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _create_in_place(path: Path, data: bytes) -> bool:
    """Create ``path`` with ``O_EXCL`` and write ``data``; False if it already exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return True


def _create_once(path: Path, data: bytes) -> bool:
    """Publish ``data`` at ``path`` (mode 0o600) unless something is there already.

    True if this call created the file, False if another writer had."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.chmod(tmp, 0o600)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # no hard links on this file system
            return _create_in_place(path, data)
        _fsync_dir(path.parent)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _is_fresh(path: Path) -> bool:
    """Whether ``path`` was modified so recently that its writer may still be at work."""
    try:
        return time.time() - path.stat().st_mtime < 2 * _RACE_WAIT_S
    except OSError:
        return False


def _load_or_create(path: Path, make: Callable[[], bytes], parse: Callable[[bytes, Path], _T], what: str) -> _T:
    data = _read(path, what)
    if data is None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            won = _create_once(path, make())
        except OSError as e:
            raise ConfigError(f"cannot create the {what} file {path}: {e.strerror or e}") from None
        wait = 0.0 if won else _RACE_WAIT_S
    else:
        # published by os.link a file is complete; created in place (no hard links) it may not be yet
        wait = _RACE_WAIT_S if _is_fresh(path) else 0.0
    deadline = time.monotonic() + wait
    while True:
        if data is None:
            data = _read(path, what)
            if data is None:
                raise ConfigError(f"the {what} file {path} disappeared as soon as it was created")
        try:
            return parse(data, path)
        except ConfigError:
            if time.monotonic() >= deadline:
                raise
        time.sleep(0.02)
        data = None


# ── Ed25519 signatures (RFC 8032) ─────────────────────────────────────────────────────────

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: object) -> bytes | None:
    """The bytes of unpadded, canonical base64url ``text``; None if it is anything else."""
    if not isinstance(text, str) or len(text) % 4 == 1 or not _B64URL.fullmatch(text):
        return None
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if _b64url_encode(data) == text else None


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _key_id(raw_public_key: bytes) -> str:
    return hashlib.sha256(raw_public_key).hexdigest()[:16]


def _load_public_key(public_key_pem: object) -> Ed25519PublicKey | None:
    if isinstance(public_key_pem, str):
        try:
            public_key_pem = public_key_pem.encode("ascii")
        except UnicodeEncodeError:
            return None
    if not isinstance(public_key_pem, bytes):
        return None
    try:
        key = serialization.load_pem_public_key(public_key_pem)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None
    return key if isinstance(key, Ed25519PublicKey) else None


def _parse_signing_key(data: bytes, path: Path) -> SigningKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(
            f"{path} is not an unencrypted Ed25519 private key in PEM (PKCS#8): restore the right file, "
            "or move it away to have a new key created"
        )
    return SigningKey(key)


class SigningKey:
    """An Ed25519 private key (RFC 8032) that signs bytes."""

    def __init__(self, private_key: Ed25519PrivateKey):
        if not isinstance(private_key, Ed25519PrivateKey):
            raise TypeError(f"SigningKey needs an Ed25519PrivateKey, got {type(private_key).__name__}")
        self._key = private_key
        self._key_id = _key_id(_raw_public(private_key.public_key()))

    @classmethod
    def generate(cls) -> SigningKey:
        """A new random key."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, path: Path | str) -> SigningKey:
        """The key stored at ``path`` (unencrypted PKCS#8 PEM), created there (mode 0o600,
        parent folders too) if there is no file; when processes race to create it, all
        end up with the first writer's key. Raises :class:`ConfigError` if the file
        exists but is not an Ed25519 private key, or cannot be read or created."""
        return _load_or_create(Path(path), lambda: cls.generate()._private_pem(), _parse_signing_key, "signing key")

    def _private_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @property
    def key_id(self) -> str:
        """First 16 hex digits of SHA-256 of the raw 32-byte public key."""
        return self._key_id

    def public_key_pem(self) -> str:
        """The public key as SubjectPublicKeyInfo PEM."""
        return (
            self._key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode("ascii")
        )

    def sign(self, data: bytes) -> str:
        """The Ed25519 signature of ``data``, base64url without padding (86 characters)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"sign needs bytes, got {type(data).__name__}")
        return _b64url_encode(self._key.sign(bytes(data)))

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self._key_id!r})"


def verify_signature(public_key_pem: str, data: bytes, signature: str) -> bool:
    """Whether ``signature`` (base64url, no padding) is the Ed25519 signature of ``data``
    under the key in ``public_key_pem`` (SubjectPublicKeyInfo PEM). False for a bad
    signature and for malformed input of any kind; never raises."""
    key = _load_public_key(public_key_pem)
    sig = _b64url_decode(signature)
    if key is None or sig is None or len(sig) != 64 or not isinstance(data, (bytes, bytearray, memoryview)):
        return False
    try:
        key.verify(sig, bytes(data))
    except InvalidSignature:
        return False
    return True


def key_id_of(public_key_pem: str) -> str:
    """The key id (see :attr:`SigningKey.key_id`) of an Ed25519 public key in PEM.

    Raises :class:`ValueError` if ``public_key_pem`` is not one."""
    key = _load_public_key(public_key_pem)
    if key is None:
        raise ValueError("not an Ed25519 public key in PEM (SubjectPublicKeyInfo)")
    return _key_id(_raw_public(key))


# ── keyed pseudonyms (RFC 2104) ───────────────────────────────────────────────────────────

_SECRET_HEX = re.compile(r"(?:[0-9a-fA-F]{2}){%d,}" % SECRET_BYTES)


def _parse_secret(data: bytes, path: Path) -> Pseudonymizer:
    text = data.decode("ascii", errors="replace").strip()
    if not _SECRET_HEX.fullmatch(text):
        raise ConfigError(
            f"{path} is not a pseudonym secret (at least {2 * SECRET_BYTES} hex digits): restore the right file; "
            "a new secret would give every subject a new pseudonym"
        )
    return Pseudonymizer(bytes.fromhex(text))


class Pseudonymizer:
    """Keyed pseudonyms of raw subject identifiers: HMAC-SHA256 (RFC 2104) under a secret."""

    def __init__(self, secret: bytes):
        if not isinstance(secret, (bytes, bytearray, memoryview)):
            raise TypeError(f"the pseudonym secret must be bytes, got {type(secret).__name__}")
        secret = bytes(secret)
        if len(secret) < SECRET_BYTES:
            raise ValueError(f"the pseudonym secret must be at least {SECRET_BYTES} bytes, got {len(secret)}")
        self._secret = secret

    @classmethod
    def load_or_create(cls, path: Path | str) -> Pseudonymizer:
        """The secret stored (hex) at ``path``, created there (32 random bytes from
        :mod:`secrets`, mode 0o600, parent folders too) if there is no file; when
        processes race to create it, all end up with the first writer's secret. Raises
        :class:`ConfigError` if the file exists but holds no secret, or cannot be read
        or created."""

        def make() -> bytes:
            return (secrets.token_bytes(SECRET_BYTES).hex() + "\n").encode("ascii")

        return _load_or_create(Path(path), make, _parse_secret, "pseudonym secret")

    def pseudonym(self, subject: str) -> str:
        """``"hs256:"`` and the first 32 hex digits of HMAC-SHA256(secret, utf8(subject))."""
        if not isinstance(subject, str):
            raise TypeError(f"a subject identifier must be a string, got {type(subject).__name__}")
        digest = hmac.new(self._secret, subject.encode("utf-8"), hashlib.sha256).hexdigest()
        return PSEUDONYM_PREFIX + digest[:32]

    def __repr__(self) -> str:
        return "Pseudonymizer(<secret>)"


def same(a: str, b: str) -> bool:
    """Whether two strings (pseudonyms, digests, tokens) are equal, compared in constant
    time for equal lengths (:func:`hmac.compare_digest`). False if either is not a string."""
    if not isinstance(a, str) or not isinstance(b, str):
        return False
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


# ── signed documents ──────────────────────────────────────────────────────────────────────


def sign_document(body: dict, key: SigningKey) -> dict:
    """``{"body": <a copy of body>, "signature": {"alg": "Ed25519", "key_id": ..., "value": ...}}``,
    the value the signature of ``canonical_json(body)``.

    Raises :class:`ValueError` if ``body`` cannot be canonicalised."""
    if not isinstance(body, dict):
        raise TypeError(f"a document body must be a dict, got {type(body).__name__}")
    if not isinstance(key, SigningKey):
        raise TypeError(f"sign_document needs a SigningKey, got {type(key).__name__}")
    value = key.sign(canonical_json(body))
    return {"body": copy.deepcopy(body), "signature": {"alg": ALG, "key_id": key.key_id, "value": value}}


def _show(value: object) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 40 else text[:37] + "..."


_MISSING = object()


def _check_document(doc: object, public_key_pem: str) -> list[str]:
    problems: list[str] = []
    key = _load_public_key(public_key_pem)
    if key is None:
        problems.append("the public key to verify with is not an Ed25519 public key in PEM (SubjectPublicKeyInfo)")
    if not isinstance(doc, dict):
        return problems + [f"the document is not a JSON object (got {type(doc).__name__})"]

    body = doc.get("body", _MISSING)
    payload = None
    if body is _MISSING:
        problems.append("missing field: body")
    elif not isinstance(body, dict):
        problems.append(f"body is not a JSON object (got {type(body).__name__})")
    else:
        try:
            payload = canonical_json(body)
        except Exception as e:
            problems.append(f"body is not canonicalisable: {e}")

    signature = doc.get("signature", _MISSING)
    if signature is _MISSING:
        return problems + ["missing field: signature"]
    if not isinstance(signature, dict):
        return problems + [f"signature is not a JSON object (got {type(signature).__name__})"]
    fields = {}
    for name in ("alg", "key_id", "value"):
        value = signature.get(name, _MISSING)
        if value is _MISSING:
            problems.append(f"missing field: signature.{name}")
        elif not isinstance(value, str):
            problems.append(f"signature.{name} is not a string (got {type(value).__name__})")
        else:
            fields[name] = value
    alg, key_id, value = fields.get("alg"), fields.get("key_id"), fields.get("value")
    if alg is not None and alg != ALG:
        problems.append(f"unsupported signature algorithm {_show(alg)} (expected {ALG!r})")
    if key_id is not None and key is not None and key_id != _key_id(_raw_public(key)):
        problems.append(
            f"key id mismatch: the document names {_show(key_id)}, the key is {_key_id(_raw_public(key))!r}"
        )
    if value is not None:
        sig = _b64url_decode(value)
        if sig is None or len(sig) != 64:
            problems.append("signature.value is not a base64url (unpadded) Ed25519 signature of 64 bytes")
        elif alg == ALG and key is not None and payload is not None:
            try:
                key.verify(sig, payload)
            except InvalidSignature:
                problems.append("bad signature: the body is not what the key signed")
    return problems


def verify_document(doc: dict, public_key_pem: str) -> list[str]:
    """The problems with a signed document (:func:`sign_document`) checked against
    ``public_key_pem``: an empty list if it is valid. Reports (never raises on) a
    document that is not a dict, missing or mistyped fields, an unsupported algorithm,
    a key id that is not the key's, a body that cannot be canonicalised, a bad signature.

    Only ``body`` is signed: trust nothing else in ``doc``."""
    try:
        return _check_document(doc, public_key_pem)
    except Exception as e:  # a hostile dict subclass, say: report, never raise
        return [f"the document could not be checked: {type(e).__name__}: {e}"]
