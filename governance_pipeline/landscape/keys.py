"""Ed25519 signing keys for ledger seals and bundle manifests.

The private key is created on first use under ``$GOVERNANCE_HOME/keys`` (directory 0700, file
0600). Its public half can be exported so a third party can check seals and bundles offline.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from governance_pipeline.contracts.errors import KEY_UNAVAILABLE, OperationalError

PRIVATE_KEY_FILE = "ledger_ed25519.pem"


def key_id_of(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class PublicKey:
    key: Ed25519PublicKey

    @property
    def key_id(self) -> str:
        return key_id_of(self.key)

    def pem(self) -> bytes:
        return self.key.public_bytes(serialization.Encoding.PEM,
                                     serialization.PublicFormat.SubjectPublicKeyInfo)

    def verify(self, signature_hex: str, message: bytes) -> bool:
        try:
            self.key.verify(bytes.fromhex(signature_hex), message)
        except (InvalidSignature, ValueError):
            return False
        return True

    @classmethod
    def from_pem(cls, data: bytes) -> PublicKey:
        key = serialization.load_pem_public_key(data)
        if not isinstance(key, Ed25519PublicKey):
            raise OperationalError("public key is not an Ed25519 key", code=KEY_UNAVAILABLE)
        return cls(key)


@dataclass(frozen=True)
class Signer:
    private_key: Ed25519PrivateKey

    @property
    def public(self) -> PublicKey:
        return PublicKey(self.private_key.public_key())

    @property
    def key_id(self) -> str:
        return self.public.key_id

    def sign(self, message: bytes) -> str:
        return self.private_key.sign(message).hex()

    @classmethod
    def generate(cls) -> Signer:
        return cls(Ed25519PrivateKey.generate())


def load_or_create_signer(keys_dir: Path) -> Signer:
    path = keys_dir / PRIVATE_KEY_FILE
    try:
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise OperationalError(f"{path} is not an Ed25519 private key",
                                       code=KEY_UNAVAILABLE)
            return Signer(key)
        keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        signer = Signer.generate()
        pem = signer.private_key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption())
        # O_EXCL: two processes starting at once must not both write a key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        return signer
    except FileExistsError:
        return load_or_create_signer(keys_dir)
    except (OSError, ValueError) as exc:
        raise OperationalError(f"cannot load or create the signing key at {path}: {exc}",
                               code=KEY_UNAVAILABLE) from exc
