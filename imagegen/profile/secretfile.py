"""Read a file a profile names for a secret (psk_file, EAP password_file, certificates, the host state).

Such a path is text from a profile: it may name a FIFO (which would block a plain open for ever), a
device such as /dev/zero (which a plain read would follow until memory runs out), a directory, or a
file of any size. The file is opened without blocking and checked on the open descriptor (no race
between the check and the read): a regular file, at most `limit` bytes, UTF-8. A symbolic link is
followed — secret managers hand secrets out as links into /run — but what it leads to must pass the same
checks. Errors name the file and the key, never a byte of the content.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from imagegen.errors import UsageError

log = logging.getLogger("imagegen.profile.secretfile")

SECRET_LIMIT = 64 * 1024
CERT_LIMIT = 1024 * 1024


def read_secret_file(path: Path, where: str, *, limit: int = SECRET_LIMIT,
                     hint: str = "create the file or fix the path") -> str:
    """The text of the secret file at path; `where` ("FILE: KEY") starts every message about it.

    UsageError (exit 2) when it is missing, not a regular file, larger than limit or not UTF-8; a
    warning on stderr when group or others may read it.
    """
    data = read_file_bytes(path, where, limit=limit, hint=hint)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{where}: {path} is not UTF-8 text", hint="save the secret as UTF-8 text") from None


def read_file_bytes(path: Path, where: str, *, limit: int = SECRET_LIMIT,
                    hint: str = "create the file or fix the path", secret: bool = True) -> bytes:
    """The bytes of the file at path, by the rules above (a certificate may be binary DER); secret:
    warn when group or others may read it (not for public material such as a CA certificate)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as e:
        raise UsageError(f"{where}: cannot read {path}: {e.strerror}", hint=hint) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"{where}: {path} is {_kind(st.st_mode)}, not a regular file",
                             hint="name a regular file that holds the secret")
        if st.st_size > limit:
            raise UsageError(f"{where}: {path} is larger than {_size(limit)}",
                             hint="name the file that holds the secret alone")
        chunks = []
        size = 0
        # st_size is only what the file held a moment ago: the bound is on what is read.
        while chunk := os.read(fd, 65536):
            size += len(chunk)
            if size > limit:
                raise UsageError(f"{where}: {path} is larger than {_size(limit)}",
                                 hint="name the file that holds the secret alone")
            chunks.append(chunk)
    except OSError as e:
        raise UsageError(f"{where}: cannot read {path}: {e.strerror}", hint=hint) from None
    finally:
        os.close(fd)
    if secret and stat.S_IMODE(st.st_mode) & 0o044:
        log.warning("warning: %s: %s is readable by %s; chmod 600 it", where, path,
                    "group and others" if stat.S_IMODE(st.st_mode) & 0o044 == 0o044 else
                    "others" if st.st_mode & 0o004 else "its group")
    return b"".join(chunks)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"


def _size(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MiB" if limit >= 1024 * 1024 else f"{limit // 1024} KiB"
