"""The data-protection secret and what is derived from it: the key-encryption key that wraps
every subject data key, and the HMAC key of the subject index.

The secret lives outside the database (``$GOVERNANCE_HOME/keys/data_protection.key``, 32 random
bytes, file 0600, created on first use), so a copy of the database alone opens no payload and
guesses no indexed value. Both keys come from it by HKDF-SHA256 with distinct ``info`` strings;
each has a short id (the first 16 hex digits of a SHA-256 over it) recorded next to what it made.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from governance_pipeline.contracts.errors import DATA_KEY_UNAVAILABLE, OperationalError

SECRET_FILE = "data_protection.key"
_SECRET_BYTES = 32
_NONCE = 12
_KEK_INFO = b"governance-pipeline/data-protection/kek/v1"
_INDEX_INFO = b"governance-pipeline/data-protection/subject-index/v1"


def _derive(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def _key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


class KeyUnavailable(OperationalError):
    default_code = DATA_KEY_UNAVAILABLE


@dataclass(frozen=True)
class Keyring:
    kek: bytes
    index_key: bytes

    @property
    def kek_id(self) -> str:
        return _key_id(self.kek)

    @property
    def index_key_id(self) -> str:
        return _key_id(self.index_key)

    @classmethod
    def from_secret(cls, secret: bytes) -> Keyring:
        return cls(_derive(secret, _KEK_INFO), _derive(secret, _INDEX_INFO))

    # -- data keys --------------------------------------------------------------------------------
    def wrap(self, key_id: str, data_key: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + AESGCM(self.kek).encrypt(nonce, data_key, key_id.encode())

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        try:
            return AESGCM(self.kek).decrypt(wrapped[:_NONCE], wrapped[_NONCE:], key_id.encode())
        except InvalidTag as exc:
            raise KeyUnavailable(
                f"data key {key_id} does not unwrap under key-encryption key {self.kek_id}: "
                "the secret changed or the wrapped key was altered",
                details={"key_id": key_id, "kek_id": self.kek_id}) from exc

    # -- the keyed subject index -------------------------------------------------------------------
    def hmac(self, *parts: str) -> str:
        """Keyed HMAC-SHA256 of ``parts`` (unit-separated, so ``("a", "bc") != ("ab", "c")``)."""
        message = "\x1f".join(parts).encode()
        return hmac.new(self.index_key, message, hashlib.sha256).hexdigest()


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def seal(cipher: AESGCM, content_hash: str, plaintext: bytes) -> bytes:
    """``nonce || AES-256-GCM(plaintext)`` under ``cipher`` (``AESGCM(data_key)``, made once
    per key), bound to its content hash as associated data. A random 96-bit nonce per payload:
    far below the 2^32 encryptions per key where random nonces start to risk a collision."""
    nonce = os.urandom(_NONCE)
    return nonce + cipher.encrypt(nonce, plaintext, content_hash.encode())


def open_sealed(data_key: bytes, content_hash: str, stored: bytes) -> bytes | None:
    """The plaintext, or None when the ciphertext (or its binding to the hash) was altered."""
    try:
        return AESGCM(data_key).decrypt(stored[:_NONCE], stored[_NONCE:], content_hash.encode())
    except (InvalidTag, ValueError):
        return None


def load_or_create_keyring(keys_dir: Path) -> Keyring:
    path = keys_dir / SECRET_FILE
    try:
        if not path.exists():
            keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            _create_secret(path)
        secret = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError) as exc:
        raise KeyUnavailable(f"cannot read the data-protection secret {path}: {exc}",
                             details={"path": str(path)}) from exc
    if len(secret) != _SECRET_BYTES:
        raise KeyUnavailable(f"{path} does not hold a {_SECRET_BYTES}-byte secret",
                             details={"path": str(path)})
    return Keyring.from_secret(secret)


def _create_secret(path: Path) -> None:
    """Write a new secret complete, then link it into place: of two processes creating it at
    once, one link wins and both then read the same, whole file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(_SECRET_BYTES).hex().encode())
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
