"""The host's apt sources, read at run time, and the deb822 source lists imagegen derives from them.

No mirror is ever written into the repository: the image and the private apt configuration that fetches
mkosi both take the mirror the host already uses (or one given on the command line).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from imagegen.errors import UsageError
from imagegen.profile.model import check_mirror_url
from imagegen.render.escape import deb822_word

DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
APT_ETC = Path("/etc/apt")


@dataclass(frozen=True)
class AptSource:
    """One `deb` entry of the host's apt configuration."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str | None = None

    @property
    def is_security(self) -> bool:
        return any(s.endswith("-security") or s.endswith("/updates") for s in self.suites)


@dataclass(frozen=True)
class DebianMirror:
    """Where the Debian archive and its security archive are, as URLs."""

    archive: str
    security: str | None = None


def parse_deb822(text: str) -> list[AptSource]:
    """Parse a .sources file (deb822): stanzas separated by blank lines, `Key: value` fields."""
    sources: list[AptSource] = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        last: str | None = None
        for line in stanza.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0] in " \t" and last is not None:
                # A continuation line belongs to the field above (e.g. an inline Signed-By key).
                fields[last] += "\n" + line.strip()
                continue
            key, sep, value = line.partition(":")
            if not sep:
                continue
            last = key.strip().lower()
            fields[last] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        signed_by = fields.get("signed-by")
        if signed_by is not None and "\n" in signed_by:
            signed_by = None  # an inline key block cannot be passed on as a path
        for uri in fields.get("uris", "").split():
            sources.append(
                AptSource(
                    uri=uri.rstrip("/"),
                    suites=tuple(fields.get("suites", "").split()),
                    components=tuple(fields.get("components", "").split()),
                    signed_by=signed_by,
                )
            )
    return sources


def parse_one_line(text: str) -> list[AptSource]:
    """Parse a classic sources.list: `deb [options] URI suite component...`."""
    sources: list[AptSource] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        rest = line[4:].strip()
        options: dict[str, str] = {}
        if rest.startswith("["):
            opts, _, rest = rest[1:].partition("]")
            for opt in opts.split():
                k, _, v = opt.partition("=")
                options[k.lower()] = v
        words = rest.split()
        if len(words) < 2:
            continue
        sources.append(
            AptSource(
                uri=words[0].rstrip("/"),
                suites=(words[1],),
                components=tuple(words[2:]),
                signed_by=options.get("signed-by"),
            )
        )
    return sources


def host_sources(apt_etc: Path = APT_ETC) -> list[AptSource]:
    """Every enabled `deb` source of the host, in apt's reading order."""
    sources: list[AptSource] = []
    main_list = apt_etc / "sources.list"
    if main_list.is_file():
        sources += parse_one_line(main_list.read_text(errors="replace"))
    parts = apt_etc / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if path.suffix == ".sources":
                sources += parse_deb822(path.read_text(errors="replace"))
            elif path.suffix == ".list":
                sources += parse_one_line(path.read_text(errors="replace"))
    return sources


def looks_like_debian(source: AptSource) -> bool:
    # The Debian archive's own layout: .../debian or .../debian-security, whatever the host name.
    return bool(re.search(r"/debian(-security)?$", source.uri)) and "main" in source.components


def host_debian_mirror(apt_etc: Path = APT_ETC) -> DebianMirror:
    """The Debian mirror this host uses, or a UsageError saying how to name one."""
    sources = [s for s in host_sources(apt_etc) if looks_like_debian(s)]
    archive = next((s.uri for s in sources if not s.is_security), None)
    if archive is None:
        raise UsageError(
            f"no Debian mirror found in {apt_etc}/sources.list or {apt_etc}/sources.list.d/",
            hint="pass --mirror URL (a Debian archive URL ending in /debian) or set image.mirror in the profile",
        )
    security = next((s.uri for s in sources if s.is_security), None)
    return DebianMirror(archive=archive, security=security)


def mirror_from_url(url: str) -> DebianMirror:
    """A mirror given by the person: the archive only; the security archive cannot be guessed."""
    try:
        check_mirror_url(url)
    except ValueError as e:
        raise UsageError(str(e), hint="give the archive's URL, e.g. --mirror http://HOST/debian") from None
    return DebianMirror(archive=url.rstrip("/"))


def debian_sources(mirror: DebianMirror, release: str, *, keyring: str = DEBIAN_KEYRING) -> str:
    """The deb822 list an image (or mkosi's tools tree) of `release` installs from."""

    def stanza(uri: str, suites: list[str]) -> str:
        # Each value one word: a line break or a space in a URL would start a field or name another source.
        return "\n".join([
            "Types: deb",
            f"URIs: {deb822_word(uri)}",
            f"Suites: {' '.join(deb822_word(s).text for s in suites)}",
            "Components: main",
            f"Signed-By: {deb822_word(keyring)}",
        ])

    stanzas = [stanza(mirror.archive, [release, f"{release}-updates"])]
    if mirror.security is not None:
        stanzas.append(stanza(mirror.security, [f"{release}-security"]))
    return "\n\n".join(stanzas) + "\n"
