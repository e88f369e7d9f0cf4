"""ed25519 keys and signatures over an entry's fingerprint, written `name:base64` as Nix writes them.

A secret key is the 32-byte seed followed by the 32-byte public key (Nix's layout), a public key
the 32 bytes alone, a signature the 64 bytes; the name says which key signed, so a cache can carry
signatures by several keys and a client checks the one it trusts.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from imagegen.errors import UsageError

_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9+._-]{0,99}")


def check_key_name(name: str) -> str:
    if not _KEY_NAME.fullmatch(name):
        raise UsageError(f"key name {name!r} is not allowed",
                         "use letters, digits and + . _ - (e.g. ci.example.org-1), at most 100 characters")
    return name


def _split(text: str, length: int, what: str, where: str) -> tuple[str, bytes]:
    name, sep, encoded = text.strip().partition(":")
    if not sep or not _KEY_NAME.fullmatch(name):
        raise UsageError(f"{where}: {what} is not NAME:BASE64", "write it as `imagegen key generate` prints it")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise UsageError(f"{where}: {what} {name} is not valid base64", "copy the whole key") from None
    if len(raw) != length:
        raise UsageError(f"{where}: {what} {name} has {len(raw)} bytes, not {length}", "copy the whole key")
    return name, raw


@dataclass(frozen=True)
class PublicKey:
    name: str
    raw: bytes

    @classmethod
    def parse(cls, text: str, where: str = "public key") -> PublicKey:
        name, raw = _split(text, 32, "public key", where)
        return cls(name, raw)

    def __str__(self) -> str:
        return f"{self.name}:{base64.b64encode(self.raw).decode()}"

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True, repr=False)
class SecretKey:
    name: str
    seed: bytes

    def __repr__(self) -> str:
        return f"SecretKey({self.name!r}, <secret>)"

    @classmethod
    def generate(cls, name: str) -> SecretKey:
        key = Ed25519PrivateKey.generate()
        seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return cls(check_key_name(name), seed)

    @classmethod
    def parse(cls, text: str, where: str = "secret key") -> SecretKey:
        name, raw = _split(text, 64, "secret key", where)
        key = cls(name, raw[:32])
        if key.public().raw != raw[32:]:
            raise UsageError(f"{where}: secret key {name}: its public half does not match its seed",
                             "the file is damaged; generate a new key")
        return key

    def public(self) -> PublicKey:
        raw = Ed25519PrivateKey.from_private_bytes(self.seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return PublicKey(self.name, raw)

    def to_text(self) -> str:
        return f"{self.name}:{base64.b64encode(self.seed + self.public().raw).decode()}"

    def sign(self, message: bytes) -> str:
        """The signature as a metadata `Sig:` value, `name:base64`."""
        signature = Ed25519PrivateKey.from_private_bytes(self.seed).sign(message)
        return f"{self.name}:{base64.b64encode(signature).decode()}"


def check_signatures(sigs: tuple[str, ...], message: bytes, trusted: tuple[PublicKey, ...]) -> str | None:
    """None if a trusted key signed message, else why not (for a one-line refusal)."""
    by_name = {key.name: key for key in trusted}
    names, bad = [], []
    for sig in sigs:
        name, _, encoded = sig.partition(":")
        names.append(name)
        key = by_name.get(name)
        if key is None:
            continue
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            bad.append(name)
            continue
        if key.verify(raw, message):
            return None
        bad.append(name)
    if bad:
        return f"the signature by {', '.join(bad)} does not verify (the metadata was altered or the key is wrong)"
    if not names:
        return "it is not signed"
    return f"it is signed by {', '.join(names)}, not by a trusted key"
