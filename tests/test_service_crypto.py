"""unlearnkit.service.crypto: RFC 8785 canonical JSON, RFC 6962 Merkle trees, Ed25519 keys
and signatures, HMAC pseudonyms, signed documents and the key files behind them.

Known-answer vectors come from the standards and their reference test suites: the
Merkle roots and audit paths from Certificate Transparency's merkle_tree_test
(RFC 6962's reference implementation), Ed25519 from RFC 8032 section 7.1, HMAC-SHA256
from RFC 4231, and the JCS key order from RFC 8785 section 3.2.3.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import hmac
import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from unlearnkit.errors import ConfigError
from unlearnkit.service import crypto
from unlearnkit.service.crypto import (
    Pseudonymizer,
    SigningKey,
    canonical_json,
    key_id_of,
    merkle_index,
    merkle_proof,
    merkle_root,
    same,
    sha256_hex,
    sign_document,
    verify_document,
    verify_merkle_proof,
    verify_signature,
)

# ── canonical JSON ────────────────────────────────────────────────────────────────────


def test_canonical_json_sorts_members_drops_whitespace_and_formats_numbers():
    assert canonical_json({"b": 1, "a": [1.0, "é", None, True, -0.0]}) == b'{"a":[1,"\xc3\xa9",null,true,0],"b":1}'
    assert canonical_json(1e21) == b"1e+21"
    assert canonical_json(1e-7) == b"1e-7"
    assert canonical_json((1, "x")) == b'[1,"x"]'


def test_canonical_json_orders_keys_by_utf16_code_units_as_rfc8785_3_2_3():
    keys = ["\u20ac", "\r", "\ufb33", "1", "\U0001f600", "\u0080", "\u00f6"]
    out = json.loads(canonical_json({k: i for i, k in enumerate(keys)}))
    # the emoji (surrogates D83D DE00) sorts before U+FB33, unlike code point order
    assert list(out) == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), {"a": [1, float("nan")]}])
def test_canonical_json_rejects_non_finite_floats(bad):
    with pytest.raises(ValueError, match="RFC 8785"):
        canonical_json(bad)


def test_canonical_json_rejects_what_jcs_cannot_represent():
    cyclic: list = []
    cyclic.append(cyclic)
    for bad in ({1: "x"}, object(), 2**60, "\ud800", cyclic):
        with pytest.raises(ValueError, match="cannot canonicalise"):
            canonical_json(bad)


def test_sha256_hex_matches_fips_180_vector():
    assert sha256_hex(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sha256_hex(b"") == hashlib.sha256(b"").hexdigest()


# ── Merkle trees ──────────────────────────────────────────────────────────────────────


def _leaf(item: str) -> bytes:
    return hashlib.sha256(b"\x00" + item.encode()).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


# Certificate Transparency's reference leaves (already in sorted order as strings) ...
CT_LEAVES = ["", "\x00", "\x10", " !", "01", "@ABC", "PQRSTUVW", "`abcdefghijklmno"]
# ... and the roots of their first n leaves, n = 0..8
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (0-based leaf index, tree size, audit path)
CT_PATHS = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]


def test_merkle_roots_match_the_rfc6962_reference_vectors():
    for n in range(len(CT_LEAVES) + 1):
        assert merkle_root(CT_LEAVES[:n]) == CT_ROOTS[n], n


@pytest.mark.parametrize("index,size,path", CT_PATHS)
def test_merkle_proofs_match_the_rfc6962_reference_vectors(index, size, path):
    ids = CT_LEAVES[:size]
    assert merkle_index(ids, ids[index]) == index
    assert merkle_proof(ids, ids[index]) == path
    assert verify_merkle_proof(ids[index], index, size, path, CT_ROOTS[size])


def test_merkle_hand_computed_small_trees():
    a, b, c, d, e, f, g, h = (_leaf(x) for x in "abcdefgh")
    ab, cd, ef, gh = _node(a, b), _node(c, d), _node(e, f), _node(g, h)
    abcd = _node(ab, cd)
    assert merkle_root([]) == hashlib.sha256(b"").hexdigest()
    assert merkle_root(["a"]) == a.hex()
    assert merkle_root(["a", "b"]) == ab.hex()
    assert merkle_root(["a", "b", "c"]) == _node(ab, c).hex()  # split at 2: ((a b) c)
    assert merkle_root(list("abcde")) == _node(abcd, e).hex()  # split at 4: (((a b)(c d)) e)
    assert merkle_root(list("abcdefgh")) == _node(abcd, _node(ef, gh)).hex()

    assert merkle_proof(["a"], "a") == []
    assert merkle_proof(["a", "b"], "a") == [b.hex()]
    assert merkle_proof(["a", "b"], "b") == [a.hex()]
    assert merkle_proof(list("abc"), "a") == [b.hex(), c.hex()]
    assert merkle_proof(list("abc"), "c") == [ab.hex()]
    assert merkle_proof(list("abcde"), "c") == [d.hex(), ab.hex(), e.hex()]
    assert merkle_proof(list("abcde"), "e") == [abcd.hex()]
    assert merkle_proof(list("abcdefgh"), "f") == [e.hex(), gh.hex(), abcd.hex()]


def test_merkle_tree_is_of_the_sorted_deduplicated_set():
    assert merkle_root(["c", "a", "b", "a"]) == merkle_root(["a", "b", "c"])
    assert merkle_root(iter({"b", "a"})) == merkle_root(("a", "b"))
    assert merkle_index(["c", "a", "b", "a"], "c") == 2
    assert merkle_proof(["c", "a", "b", "a"], "a") == merkle_proof(["a", "b", "c"], "a")
    assert merkle_root(["a", "b"]) != merkle_root(["a", "b", "c"])


def test_merkle_unknown_item_raises_key_error():
    for ids, item in (([], "x"), (["a"], "b"), (["a", "c"], "b"), (["a"], 1)):
        with pytest.raises(KeyError):
            merkle_proof(ids, item)
        with pytest.raises(KeyError):
            merkle_index(ids, item)


def test_merkle_rejects_a_bare_string_and_non_string_ids():
    with pytest.raises(TypeError):
        merkle_root("abc")
    with pytest.raises(TypeError):
        merkle_root(["a", 1])


def _flip_hex(h: str, at: int = 0) -> str:
    return h[:at] + ("0" if h[at] != "0" else "1") + h[at + 1 :]


def test_every_proof_of_every_leaf_verifies_and_tampered_ones_do_not():
    for n in range(1, 18):
        ids = [f"ex-{i:03d}" for i in range(n)]
        root = merkle_root(ids)
        for i, item in enumerate(ids):
            proof = merkle_proof(ids, item)
            assert verify_merkle_proof(item, i, n, proof, root), (n, i)
            assert not verify_merkle_proof(item + "x", i, n, proof, root)
            assert not verify_merkle_proof(item, i, n, proof, _flip_hex(root))
            if n > 1:
                assert not verify_merkle_proof(item, (i + 1) % n, n, proof, root)
                assert not verify_merkle_proof(ids[(i + 1) % n], i, n, proof, root)
                for j in range(len(proof)):
                    tampered = proof[:j] + [_flip_hex(proof[j], 17)] + proof[j + 1 :]
                    assert not verify_merkle_proof(item, i, n, tampered, root)
                assert not verify_merkle_proof(item, i, n, proof[:-1], root)
            assert not verify_merkle_proof(item, i, n, proof + [root], root)


def test_verify_merkle_proof_is_false_on_malformed_input():
    ids = list("abcde")
    root, proof = merkle_root(ids), merkle_proof(ids, "c")
    assert verify_merkle_proof("c", 2, 5, [p.upper() for p in proof], root.upper())
    bad_calls = [
        ("c", 5, 5, proof, root),  # index past the end
        ("c", -1, 5, proof, root),
        ("c", True, 5, proof, root),
        ("c", 2, 0, proof, root),
        ("c", 2.0, 5, proof, root),
        ("c", 2, 5, "".join(proof), root),
        ("c", 2, 5, proof[:1] + ["zz" * 32] + proof[2:], root),
        ("c", 2, 5, proof[:1] + [" " + proof[1][1:]] + proof[2:], root),
        ("c", 2, 5, proof, root[:-2]),
        ("c", 2, 5, proof, None),
        (None, 2, 5, proof, root),
        ("\ud800", 2, 5, proof, root),
    ]
    for args in bad_calls:
        assert verify_merkle_proof(*args) is False, args


# ── Ed25519 ───────────────────────────────────────────────────────────────────────────

# RFC 8032 section 7.1, TEST 1 (empty message)
RFC8032_SECRET = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
RFC8032_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
RFC8032_SIGNATURE = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _flip_b64(s: str, at: int = 10) -> str:
    return s[:at] + ("A" if s[at] != "A" else "B") + s[at + 1 :]


def test_signing_key_matches_rfc8032_test_1():
    key = SigningKey(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(RFC8032_SECRET)))
    assert key.sign(b"") == _b64url(bytes.fromhex(RFC8032_SIGNATURE))
    assert key.key_id == hashlib.sha256(bytes.fromhex(RFC8032_PUBLIC)).hexdigest()[:16]
    assert key_id_of(key.public_key_pem()) == key.key_id
    assert verify_signature(key.public_key_pem(), b"", key.sign(b""))


def test_sign_and_verify_round_trip_and_rejections():
    key, other = SigningKey.generate(), SigningKey.generate()
    pem = key.public_key_pem()
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    sig = key.sign(b"forget example 7")
    assert len(sig) == 86 and "=" not in sig and "+" not in sig and "/" not in sig
    assert verify_signature(pem, b"forget example 7", sig)
    assert verify_signature(pem, bytearray(b"forget example 7"), sig)
    assert not verify_signature(pem, b"forget example 8", sig)
    assert not verify_signature(other.public_key_pem(), b"forget example 7", sig)
    assert not verify_signature(pem, b"forget example 7", _flip_b64(sig))
    assert key.key_id != other.key_id and len(key.key_id) == 16
    assert repr(key) == f"SigningKey(key_id={key.key_id!r})"


@pytest.mark.parametrize(
    "pem_case,sig_case",
    [("good", "padded"), ("good", "junk"), ("good", "short"), ("good", "none"), ("good", "bytes"), ("good", "noncanon")]
    + [("garbage", "good"), ("none", "good"), ("ec", "good"), ("private", "good"), ("unicode", "good")],
)
def test_verify_signature_is_false_on_malformed_input(pem_case, sig_case):
    key = SigningKey.generate()
    data = b"payload"
    sig = key.sign(data)
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    pems = {
        "good": key.public_key_pem(),
        "garbage": "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n",
        "none": None,
        "ec": ec_pem,
        "private": key._private_pem().decode(),
        "unicode": "é" + key.public_key_pem(),
    }
    # the last character carries 2 unused bits: changing them gives a non-canonical encoding of the same bytes
    last = sig[-1]
    noncanon = (
        sig[:-1]
        + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(last) ^ 1
        ]
    )
    sigs = {
        "good": sig,
        "padded": sig + "==",
        "junk": "!!!not base64!!!",
        "short": sig[:40],
        "none": None,
        "bytes": sig.encode(),
        "noncanon": noncanon,
    }
    assert verify_signature(pems[pem_case], data, sigs[sig_case]) is False


def test_verify_signature_is_false_for_non_bytes_data():
    key = SigningKey.generate()
    assert verify_signature(key.public_key_pem(), "payload", key.sign(b"payload")) is False


def test_key_id_of_rejects_what_is_not_an_ed25519_public_key():
    for bad in ("", "not a key", None, SigningKey.generate()._private_pem().decode()):
        with pytest.raises(ValueError):
            key_id_of(bad)


# ── key files ─────────────────────────────────────────────────────────────────────────


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_signing_key_load_or_create_creates_once_with_mode_0600(tmp_path):
    path = tmp_path / "keys" / "signing.pem"  # the folder is created too
    key = SigningKey.load_or_create(path)
    assert _mode(path) == 0o600
    text = path.read_text()
    assert text.startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    again = SigningKey.load_or_create(path)
    assert again.key_id == key.key_id
    assert path.read_text() == text
    assert verify_signature(key.public_key_pem(), b"x", again.sign(b"x"))
    assert sorted(p.name for p in path.parent.iterdir()) == ["signing.pem"]  # no temporary file left


def test_signing_key_load_or_create_refuses_a_file_that_is_no_ed25519_key(tmp_path, monkeypatch):
    monkeypatch.setattr(crypto, "_RACE_WAIT_S", 0.0)  # these files are new: do not wait for a writer
    encrypted = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    ec_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    for i, content in enumerate([b"", b"hello", encrypted, ec_key, SigningKey.generate().public_key_pem().encode()]):
        path = tmp_path / f"bad-{i}.pem"
        path.write_bytes(content)
        with pytest.raises(ConfigError) as info:
            SigningKey.load_or_create(path)
        message = str(info.value)
        assert str(path) in message and "\n" not in message
        assert path.read_bytes() == content  # never replaced


def test_signing_key_load_or_create_on_a_folder_raises_config_error(tmp_path):
    with pytest.raises(ConfigError, match=str(tmp_path)):
        SigningKey.load_or_create(tmp_path)


def test_signing_key_race_threads_all_end_with_one_key(tmp_path):
    path = tmp_path / "signing.pem"
    n = 8
    barrier = threading.Barrier(n)
    ids: list[str] = []
    errors: list[BaseException] = []

    def worker():
        barrier.wait()
        try:
            ids.append(SigningKey.load_or_create(path).key_id)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(ids) == n and len(set(ids)) == 1
    assert SigningKey.load_or_create(path).key_id == ids[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["signing.pem"]


def _winner_pem() -> tuple[bytes, str]:
    winner = Ed25519PrivateKey.generate()
    pem = winner.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem, SigningKey(winner).key_id


def test_signing_key_loser_of_the_race_loads_the_winners_key(tmp_path, monkeypatch):
    """Another process creates the file between our look and our publish: ours is dropped."""
    path = tmp_path / "signing.pem"
    pem, winner_id = _winner_pem()
    real_link = os.link

    def link_after_the_winner(src, dst, *args, **kwargs):
        Path(dst).write_bytes(pem)
        return real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(crypto.os, "link", link_after_the_winner)
    assert SigningKey.load_or_create(path).key_id == winner_id
    assert path.read_bytes() == pem
    assert sorted(p.name for p in tmp_path.iterdir()) == ["signing.pem"]


def test_signing_key_without_hard_links_creates_in_place_with_o_excl(tmp_path, monkeypatch):
    def no_links(src, dst, *args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(crypto.os, "link", no_links)
    path = tmp_path / "signing.pem"
    key = SigningKey.load_or_create(path)
    assert _mode(path) == 0o600
    assert SigningKey.load_or_create(path).key_id == key.key_id
    assert sorted(p.name for p in tmp_path.iterdir()) == ["signing.pem"]

    # and the loser of that race, too, loads the winner's key
    other = tmp_path / "other.pem"
    pem, winner_id = _winner_pem()
    real_open = os.open

    def open_after_the_winner(file, flags, *args, **kwargs):
        if Path(file) == other and flags & os.O_EXCL and not other.exists():
            other.write_bytes(pem)
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(crypto.os, "open", open_after_the_winner)
    assert SigningKey.load_or_create(other).key_id == winner_id


def test_a_new_key_file_still_being_written_is_waited_for(tmp_path):
    """Without hard links a reader can see the winner's file before its content: it retries."""
    path = tmp_path / "signing.pem"
    pem, winner_id = _winner_pem()
    path.write_bytes(b"")  # created, not yet written
    writer = threading.Timer(0.1, path.write_bytes, args=(pem,))
    writer.start()
    try:
        assert SigningKey.load_or_create(path).key_id == winner_id
    finally:
        writer.join()


def test_an_old_bad_key_file_fails_at_once(tmp_path):
    path = tmp_path / "signing.pem"
    path.write_bytes(b"")
    os.utime(path, (1_000_000_000, 1_000_000_000))
    start = time.monotonic()
    with pytest.raises(ConfigError):
        SigningKey.load_or_create(path)
    assert time.monotonic() - start < 0.5


# ── pseudonyms ────────────────────────────────────────────────────────────────────────


def test_pseudonym_is_truncated_hmac_sha256_rfc4231_case_6():
    secret = b"\xaa" * 131
    subject = "Test Using Larger Than Block-Size Key - Hash Key First"
    assert Pseudonymizer(secret).pseudonym(subject) == "hs256:60e431591ee0b67f0d8a26aacbf5b77f"


def test_pseudonyms_are_deterministic_keyed_and_distinct():
    p, q = Pseudonymizer(b"k" * 32), Pseudonymizer(b"j" * 32)
    alice = p.pseudonym("alice@example.org")
    assert alice == "hs256:" + hmac.new(b"k" * 32, b"alice@example.org", hashlib.sha256).hexdigest()[:32]
    assert len(alice) == 6 + 32
    assert p.pseudonym("alice@example.org") == alice
    assert q.pseudonym("alice@example.org") != alice
    assert p.pseudonym("Alice@example.org") != alice  # no normalisation
    assert p.pseudonym("ünïcode") != p.pseudonym("unicode")
    assert "k" * 8 not in repr(p)


def test_pseudonymizer_rejects_short_or_non_bytes_secrets():
    with pytest.raises(ValueError, match="32 bytes"):
        Pseudonymizer(b"x" * 31)
    with pytest.raises(TypeError):
        Pseudonymizer("x" * 64)
    with pytest.raises(TypeError):
        Pseudonymizer(b"x" * 32).pseudonym(42)


def test_pseudonymizer_load_or_create_stores_hex_with_mode_0600(tmp_path):
    path = tmp_path / "pseudonym.secret"
    p = Pseudonymizer.load_or_create(path)
    assert _mode(path) == 0o600
    text = path.read_text()
    assert len(text.strip()) == 64 and int(text, 16) >= 0 and text.endswith("\n")
    assert p.pseudonym("bob") == Pseudonymizer(bytes.fromhex(text.strip())).pseudonym("bob")
    assert Pseudonymizer.load_or_create(path).pseudonym("bob") == p.pseudonym("bob")
    assert Pseudonymizer.load_or_create(tmp_path / "another.secret").pseudonym("bob") != p.pseudonym("bob")


def test_pseudonymizer_load_or_create_refuses_a_bad_secret_file(tmp_path, monkeypatch):
    monkeypatch.setattr(crypto, "_RACE_WAIT_S", 0.0)
    for i, content in enumerate([b"", b"zz" * 32, b"ab" * 31, b"abc" * 31, b"\xff" * 64]):
        path = tmp_path / f"bad-{i}.secret"
        path.write_bytes(content)
        with pytest.raises(ConfigError) as info:
            Pseudonymizer.load_or_create(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
        assert path.read_bytes() == content


def test_pseudonymizer_race_threads_all_end_with_one_secret(tmp_path):
    path = tmp_path / "pseudonym.secret"
    n = 8
    barrier = threading.Barrier(n)
    results: list[str] = []

    def worker():
        barrier.wait()
        results.append(Pseudonymizer.load_or_create(path).pseudonym("carol"))

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == n and len(set(results)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pseudonym.secret"]


def test_same_compares_strings():
    assert same("hs256:abc", "hs256:abc")
    assert not same("hs256:abc", "hs256:abd")
    assert not same("hs256:abc", "hs256:ab")
    assert same("ünï", "ünï") and not same("ünï", "uni")
    assert not same("x", None) and not same(b"x", "x")


# ── signed documents ──────────────────────────────────────────────────────────────────


BODY = {"request_id": "r-1", "forgotten": ["ex-3", "ex-1"], "root": "ab" * 32, "epsilon": 0.5, "note": "é"}


def test_signed_document_round_trips_and_survives_json():
    key = SigningKey.generate()
    doc = sign_document(BODY, key)
    assert doc["body"] == BODY
    assert doc["signature"]["alg"] == "Ed25519" and doc["signature"]["key_id"] == key.key_id
    assert verify_signature(key.public_key_pem(), canonical_json(BODY), doc["signature"]["value"])
    assert verify_document(doc, key.public_key_pem()) == []
    assert verify_document(json.loads(json.dumps(doc)), key.public_key_pem()) == []
    # re-serialising the body another way (member order, whitespace) does not matter
    reordered = {"body": dict(reversed(list(BODY.items()))), "signature": doc["signature"]}
    assert verify_document(reordered, key.public_key_pem()) == []


def test_sign_document_copies_the_body():
    key = SigningKey.generate()
    body = {"ids": ["a"]}
    doc = sign_document(body, key)
    body["ids"].append("b")
    assert doc["body"] == {"ids": ["a"]}
    assert verify_document(doc, key.public_key_pem()) == []


def test_sign_document_refuses_bodies_it_cannot_sign():
    key = SigningKey.generate()
    with pytest.raises(ValueError):
        sign_document({"x": float("nan")}, key)
    with pytest.raises(TypeError):
        sign_document(["not", "a", "dict"], key)


def test_flipping_one_byte_of_body_or_signature_fails_verification():
    key = SigningKey.generate()
    pem = key.public_key_pem()
    raw = json.dumps(sign_document(BODY, key)).encode()
    start = raw.index(b'"r-1"') + 2  # the "-" of the request id, inside the body
    flipped_body = raw[:start] + bytes([raw[start] ^ 0x01]) + raw[start + 1 :]
    doc = json.loads(flipped_body)
    assert doc["body"]["request_id"] != "r-1"
    assert any("bad signature" in p for p in verify_document(doc, pem))

    doc = sign_document(BODY, key)
    doc["signature"]["value"] = _flip_b64(doc["signature"]["value"], 20)
    assert any("bad signature" in p for p in verify_document(doc, pem))

    doc = sign_document(BODY, key)
    doc["body"]["epsilon"] = 0.25
    assert verify_document(doc, pem) == ["bad signature: the body is not what the key signed"]


def test_verify_document_against_another_key_reports_key_id_mismatch():
    doc = sign_document(BODY, SigningKey.generate())
    problems = verify_document(doc, SigningKey.generate().public_key_pem())
    assert any(p.startswith("key id mismatch") for p in problems)
    assert any(p.startswith("bad signature") for p in problems)


class _Hostile(dict):
    def get(self, *args):
        raise RuntimeError("boom")


def _good_signature() -> dict:
    return sign_document(BODY, SigningKey.generate())["signature"]


@pytest.mark.parametrize(
    "doc,expect",
    [
        ("a string", "not a JSON object"),
        (None, "not a JSON object"),
        ([], "not a JSON object"),
        ({}, "missing field: body"),
        ({"body": BODY}, "missing field: signature"),
        ({"body": "text", "signature": {}}, "body is not a JSON object"),
        ({"body": BODY, "signature": "sig"}, "signature is not a JSON object"),
        ({"body": BODY, "signature": {}}, "missing field: signature.value"),
        (
            {"body": BODY, "signature": {"alg": "Ed25519", "key_id": 7, "value": "x"}},
            "signature.key_id is not a string",
        ),
        ({"body": BODY, "signature": {"alg": "RS256", "key_id": "k", "value": "x"}}, "unsupported signature algorithm"),
        ({"body": BODY, "signature": {"alg": "Ed25519", "key_id": "k", "value": "@@"}}, "not a base64url"),
        ({"body": {"x": float("nan")}, "signature": {"alg": "Ed25519"}}, "not canonicalisable"),
        ({"body": {1: "x"}, "signature": {"alg": "Ed25519"}}, "not canonicalisable"),
        (_Hostile(body=BODY), "could not be checked"),
    ],
)
def test_verify_document_reports_malformed_documents_without_raising(doc, expect):
    problems = verify_document(doc, SigningKey.generate().public_key_pem())
    assert problems and all(isinstance(p, str) for p in problems)
    assert any(expect in p for p in problems), problems


def test_verify_document_reports_a_bad_public_key():
    doc = sign_document(BODY, SigningKey.generate())
    for pem in ("nope", None, 42):
        problems = verify_document(doc, pem)
        assert any("public key" in p for p in problems)
    assert verify_document({"body": BODY, "signature": _good_signature()}, "nope")
