"""Per-host generated values (DUID, dhcp6c control key, hash key), created once and reused.

Like a NixOS secrets file, the state lives beside the profile, mode 0600, and is ignored by git.
The values are random, never derived from public data such as the host name, and never drawn
anew on each render, so rendering stays deterministic and a host keeps its identity on the network.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from imagegen.errors import UsageError
from imagegen.profile.secretfile import read_secret_file

# RFC 6355 DUID-UUID: type 4 followed by 16 random bytes; unique without any hardware address.
_DUID_UUID = b"\x00\x04"


@dataclass(frozen=True)
class HostState:
    duid: bytes
    dhcp6c_key: str
    # Keys every digest of this host's secrets that reaches a store hash (pipeline/derivations.py): the
    # same on every machine that has this state file, so entry names agree there, and no oracle for a
    # passphrase to anyone without it. A state written before it existed gets one derived from its other
    # secrets, so the file needs no rewrite and its entries keep their names.
    hash_key: bytes = b""

    def __post_init__(self) -> None:
        if not self.hash_key:
            derived = hashlib.sha256(b"imagegen hash key\0" + self.duid + self.dhcp6c_key.encode()).digest()
            object.__setattr__(self, "hash_key", derived)

    @classmethod
    def generate(cls) -> HostState:
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        return cls(duid=_DUID_UUID + secrets.token_bytes(16), dhcp6c_key=key, hash_key=secrets.token_bytes(32))

    def duid_hex(self) -> str:
        return ":".join(f"{b:02x}" for b in self.duid)

    def client_identifier(self, iaid: int = 1) -> str:
        """RFC 4361 node-specific DHCPv4 client identifier: type 255, a 4-byte IAID, the DUID."""
        raw = b"\xff" + iaid.to_bytes(4, "big") + self.duid
        return ":".join(f"{b:02x}" for b in raw)

    def to_toml(self) -> str:
        return (
            "# imagegen host state: generated once, reused on every render. Secret: keep out of git.\n"
            f'duid = "{self.duid_hex()}"\n'
            f'dhcp6c_key = "{self.dhcp6c_key}"\n'
            f'hash_key = "{base64.b64encode(self.hash_key).decode()}"\n'
        )


def state_path(base_dir: Path, hostname: str) -> Path:
    return base_dir / f"{hostname}.state.toml"


def read_state(path: Path) -> HostState:
    text = read_secret_file(path, "host state file", hint="restore it from a backup, or name another "
                            "--state file")
    try:
        data = tomllib.loads(text)
        duid = bytes.fromhex(data["duid"].replace(":", ""))
        key = data["dhcp6c_key"]
        if len(base64.b64decode(key, validate=True)) < 16 or len(duid) < 2:
            raise ValueError("too short")
        hash_key = base64.b64decode(data["hash_key"], validate=True) if "hash_key" in data else b""
        if "hash_key" in data and len(hash_key) < 16:
            raise ValueError("hash_key too short")
    except (KeyError, ValueError, TypeError, AttributeError, tomllib.TOMLDecodeError) as e:
        raise UsageError(
            f"{path}: host state file is unreadable or damaged ({e})",
            hint="restore it from a backup, or delete it to generate a new DUID and key "
            "(the host then gets new leases)",
        ) from None
    return HostState(duid=duid, dhcp6c_key=key, hash_key=hash_key)


def existing_or_new_state(path: Path) -> tuple[HostState, bool]:
    """The state in path, or fresh values (not yet kept) and True when there is no file there."""
    if path.exists() or path.is_symlink():
        return read_state(path), False
    return HostState.generate(), True


def keep_new_state(path: Path, state: HostState) -> HostState:
    """Create path (atomically, mode 0600) holding state; return the state the file holds afterwards,
    which is another process's when it created the file first."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as e:
        raise UsageError(f"host state file {path}: cannot create it: {e.strerror}",
                         hint="name a --state file in an existing, writable directory") from None
    try:
        with os.fdopen(fd, "w") as f:
            f.write(state.to_toml())
        os.chmod(tmp, 0o600)
        # link() fails if another process created the file meanwhile: then theirs wins.
        try:
            os.link(tmp, path)
        except FileExistsError:
            return read_state(path)
    finally:
        os.unlink(tmp)
    return state


def load_or_create_state(path: Path, *, create: bool = True) -> HostState:
    """Read the state file; create it (atomically, mode 0600) when missing and create is set.

    Without create, a missing file gives fresh values that are not kept (for checks that must not write).
    A render creates it only once its plan succeeded: see imagegen.render.planned_overlay.
    """
    state, new = existing_or_new_state(path)
    if new and create:
        return keep_new_state(path, state)
    return state
