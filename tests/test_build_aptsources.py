from pathlib import Path

import pytest

from imagegen.errors import UsageError
from imagegen.image.aptsources import (
    DebianMirror,
    debian_sources,
    host_debian_mirror,
    mirror_from_url,
    parse_deb822,
    parse_one_line,
)

# Host names here are reserved .example names (RFC 2606), not mirrors.
DEB822 = """\
Types: deb
# http://mirror.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security/
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm
Components: main
"""


def test_deb822_reads_uris_suites_and_skips_deb_src() -> None:
    sources = parse_deb822(DEB822)
    assert [s.uri for s in sources] == ["http://mirror.example/debian", "http://mirror.example/debian-security"]
    assert sources[0].suites == ("bookworm", "bookworm-updates")
    assert not sources[0].is_security and sources[1].is_security


def test_deb822_disabled_stanza_is_ignored() -> None:
    text = "Types: deb\nURIs: http://a.example/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n"
    assert parse_deb822(text) == []


def test_one_line_format_with_options() -> None:
    text = (
        "# comment\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://b.example/debian bookworm main contrib\n"
        "deb-src http://b.example/debian bookworm main\n"
        "deb http://b.example/debian-security bookworm-security main\n"
    )
    sources = parse_one_line(text)
    assert [(s.uri, s.suites, s.signed_by) for s in sources] == [
        ("http://b.example/debian", ("bookworm",), "/k.gpg"),
        ("http://b.example/debian-security", ("bookworm-security",), None),
    ]


def test_host_mirror_from_sources_dir(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d/debian.sources").write_text(DEB822)
    (tmp_path / "sources.list.d/other.sources").write_text(
        "Types: deb\nURIs: https://vendor.example/apt\nSuites: stable\nComponents: main\n"
    )
    mirror = host_debian_mirror(tmp_path)
    assert mirror == DebianMirror("http://mirror.example/debian", "http://mirror.example/debian-security")


def test_no_debian_mirror_is_a_usage_error_naming_the_option(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as e:
        host_debian_mirror(tmp_path)
    assert "--mirror" in str(e.value)


def test_mirror_option_must_be_a_url() -> None:
    assert mirror_from_url("http://c.example/debian/") == DebianMirror("http://c.example/debian")
    with pytest.raises(UsageError):
        mirror_from_url("c.example/debian")


def test_image_sources_name_release_updates_and_security_only() -> None:
    text = debian_sources(DebianMirror("http://m.example/debian", "http://m.example/debian-security"), "trixie")
    assert "Suites: trixie trixie-updates\n" in text
    assert "Suites: trixie-security\n" in text
    assert "debug" not in text
    assert text.count("Types: deb\n") == 2
    without_security = debian_sources(DebianMirror("http://m.example/debian"), "trixie")
    assert "security" not in without_security
