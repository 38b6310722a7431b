"""Ed25519 signing keys for ledger seals and bundle manifests, behind a key-provider interface.

Everything that signs goes through a ``Signer``, which wraps a ``KeyProvider``: anything that
knows its key id and raw public key and can sign bytes (a file, an environment variable, an HSM
or a cloud KMS). This module has the one built-in implementation, ``FileKeyProvider``: an Ed25519
private key held as PKCS#8 PEM, read from a file or from an environment variable.

Where the private key is (``KeySource``): ``GOVERNANCE_SIGNING_KEY`` (the PEM itself, e.g. from a
secret manager), else ``GOVERNANCE_SIGNING_KEY_FILE`` (a path anywhere, e.g. outside
GOVERNANCE_HOME on a mounted secret volume), else ``$GOVERNANCE_HOME/keys/ledger_ed25519.pem``.
A key file that does not exist yet is created on first use (directory 0700, file 0600).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from governance_pipeline.contracts.errors import KEY_UNAVAILABLE, OperationalError
from governance_pipeline.contracts.settings import SIGNING_KEY_ENV, Settings

PRIVATE_KEY_FILE = "ledger_ed25519.pem"


def key_id_of(public_key: Ed25519PublicKey) -> str:
    return key_id_of_raw(raw_public(public_key))


def key_id_of_raw(raw: bytes) -> str:
    """The key id: the first 16 hex digits of SHA-256 over the raw 32-byte public key."""
    return hashlib.sha256(raw).hexdigest()[:16]


def raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class PublicKey:
    key: Ed25519PublicKey

    @property
    def key_id(self) -> str:
        return key_id_of(self.key)

    @property
    def raw(self) -> bytes:
        return raw_public(self.key)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the raw public key, in full (the key id is its first 16 digits)."""
        return hashlib.sha256(self.raw).hexdigest()

    def pem(self) -> bytes:
        return self.key.public_bytes(serialization.Encoding.PEM,
                                     serialization.PublicFormat.SubjectPublicKeyInfo)

    def verify(self, signature_hex: str, message: bytes) -> bool:
        try:
            self.key.verify(bytes.fromhex(signature_hex), message)
        except (InvalidSignature, ValueError, TypeError):
            return False
        return True

    @classmethod
    def from_pem(cls, data: bytes) -> PublicKey:
        key = serialization.load_pem_public_key(data)
        if not isinstance(key, Ed25519PublicKey):
            raise OperationalError("public key is not an Ed25519 key", code=KEY_UNAVAILABLE)
        return cls(key)

    @classmethod
    def from_raw(cls, raw: bytes) -> PublicKey:
        return cls(Ed25519PublicKey.from_public_bytes(raw))


@runtime_checkable
class KeyProvider(Protocol):
    """What signs: an Ed25519 key whose private half may live anywhere (file, env, HSM, KMS).

    An HSM or KMS implementation keeps the private key inside the device or service: it returns
    the raw public key (fetched once) and sends each message to the service to sign. It never
    has to expose the private key; ``location`` says where it is (``kms:…``), for `keys list`.
    """

    @property
    def key_id(self) -> str: ...

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        ...

    @property
    def location(self) -> str:
        """Where the private key is (a path, ``env:NAME``, a KMS key name); never the key."""
        ...

    def sign(self, message: bytes) -> bytes:
        """The raw 64-byte Ed25519 signature of ``message`` (pure Ed25519, no pre-hash)."""
        ...


@dataclass(frozen=True)
class FileKeyProvider:
    """The file-based provider: an Ed25519 private key loaded from PKCS#8 PEM (a file or an
    environment variable) and held in this process's memory."""

    private_key: Ed25519PrivateKey = field(repr=False)
    location: str = "memory"

    @property
    def key_id(self) -> str:
        return key_id_of_raw(self.public_key)

    @property
    def public_key(self) -> bytes:
        return raw_public(self.private_key.public_key())

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)

    def pem(self) -> bytes:
        return self.private_key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())

    @classmethod
    def from_pem(cls, data: bytes, location: str) -> FileKeyProvider:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise OperationalError(f"{location} does not hold an unencrypted PKCS#8 PEM private "
                                   f"key: {exc}", code=KEY_UNAVAILABLE) from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise OperationalError(f"{location} is not an Ed25519 private key",
                                   code=KEY_UNAVAILABLE)
        return cls(key, location)

    @classmethod
    def generate(cls, location: str = "memory") -> FileKeyProvider:
        return cls(Ed25519PrivateKey.generate(), location)


@dataclass(frozen=True)
class Signer:
    """The signer every caller uses: ``sign(message) -> hex`` and ``public`` (kept stable)."""

    provider: KeyProvider

    def __post_init__(self) -> None:
        if isinstance(self.provider, Ed25519PrivateKey):  # Signer(private_key), as before
            object.__setattr__(self, "provider", FileKeyProvider(self.provider))

    @property
    def public(self) -> PublicKey:
        return PublicKey.from_raw(self.provider.public_key)

    @property
    def key_id(self) -> str:
        return self.provider.key_id

    @property
    def location(self) -> str:
        return self.provider.location

    @property
    def private_key(self) -> Ed25519PrivateKey:
        """The private key of a file-based signer (tests and key files); others have none."""
        if not isinstance(self.provider, FileKeyProvider):
            raise AttributeError("this signer's private key is not held in this process")
        return self.provider.private_key

    def sign(self, message: bytes) -> str:
        return self.provider.sign(message).hex()

    @classmethod
    def generate(cls) -> Signer:
        return cls(FileKeyProvider.generate())


@dataclass(frozen=True)
class KeySource:
    """Where this home's signing private key is (see the module docstring)."""

    keys_dir: Path
    key_file: Path | None = None          # GOVERNANCE_SIGNING_KEY_FILE
    key_pem: str | None = field(default=None, repr=False)  # GOVERNANCE_SIGNING_KEY

    @property
    def path(self) -> Path | None:
        """The key file (None when the key comes from the environment)."""
        if self.key_pem:
            return None
        return self.key_file or self.keys_dir / PRIVATE_KEY_FILE

    @property
    def location(self) -> str:
        path = self.path
        return f"env:{SIGNING_KEY_ENV}" if path is None else str(path)

    @classmethod
    def of(cls, settings: Settings) -> KeySource:
        return cls(settings.keys_dir, settings.signing_key_file, settings.signing_key_pem)

    def exists(self) -> bool:
        path = self.path
        return path is None or path.exists()


def load_signer(source: KeySource) -> Signer:
    """The signer of ``source``; a key file that does not exist yet is created."""
    if source.key_pem:
        return Signer(FileKeyProvider.from_pem(source.key_pem.encode(), source.location))
    path = source.path
    assert path is not None
    return _load_or_create_file(path)


def load_or_create_signer(keys_dir: Path) -> Signer:
    return _load_or_create_file(keys_dir / PRIVATE_KEY_FILE)


def write_private_key(path: Path, provider: FileKeyProvider) -> None:
    """Write ``provider``'s key to a new file ``path`` (0600, O_EXCL, fsynced)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(provider.pem())
        fh.flush()
        os.fsync(fh.fileno())


def _load_or_create_file(path: Path) -> Signer:
    try:
        if path.exists():
            return Signer(FileKeyProvider.from_pem(path.read_bytes(), str(path)))
        provider = FileKeyProvider.generate(str(path))
        # O_EXCL: two processes starting at once must not both write a key.
        write_private_key(path, provider)
        return Signer(provider)
    except FileExistsError:
        return _load_or_create_file(path)
    except (OSError, ValueError) as exc:
        raise OperationalError(f"cannot load or create the signing key at {path}: {exc}",
                               code=KEY_UNAVAILABLE) from exc
