"""The escape functions, each checked against the program that reads its syntax where one is at hand,
and the renderer's refusal of any value not escaped for the template's file."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from readback import Str, have_wpa_supplicant, read_env_file, read_wpa, statements

from imagegen.profile.model import Dhcp4
from imagegen.render import escape as esc
from imagegen.render.plan import UnescapedValue, _template_root, render_template, syntax_of

# Text without NUL, which no argv, file name or environment can hold.
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=30)
LINE = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=30)


@settings(max_examples=50, deadline=None)
@given(TEXT)
def test_sh_word_is_one_word_that_sh_expands_to_the_value(value: str) -> None:
    out = subprocess.run(["sh", "-c", f"printf '%s|' {esc.sh_word(value)}"], capture_output=True, check=True).stdout
    assert out.decode() == value + "|"


def test_sh_word_is_bare_when_it_can_be() -> None:
    assert esc.sh_word("/usr/bin/ip") == "/usr/bin/ip"
    assert esc.sh_word("a b") == "'a b'"
    assert esc.sh_word("it's") == "'it'\\''s'"


@settings(max_examples=30, deadline=None)
@given(LINE.filter(lambda v: "'" not in v))
def test_env_value_is_read_by_sh_as_the_value(tmp_path_factory: pytest.TempPathFactory, value: str) -> None:
    conf = tmp_path_factory.mktemp("env") / "network.conf"
    conf.write_text(f"X={esc.env_value(value)}\n")
    assert read_env_file(conf)["X"] == value


@pytest.mark.parametrize("value", ["it's", "a\nb", "a\rb", "\u2028"])
def test_env_value_refuses_what_ends_it(value: str) -> None:
    with pytest.raises(ValueError, match="network.conf value"):
        esc.env_value(value)


@pytest.mark.parametrize("word", ["a b", "*", "a?", "[x]", "$(id)", "`id`", "a;b", '"', "", "a\tb"])
def test_words_that_sh_would_split_glob_or_run_are_refused(word: str) -> None:
    with pytest.raises(ValueError, match="sh splits and globs it"):
        esc.env_words(["ok", word])
    with pytest.raises(ValueError, match="sh splits and globs it"):
        esc.env_quoted_word_lists([["to", word]])


def test_word_lists_quote_each_list() -> None:
    assert esc.env_quoted_word_lists([["to", "::/0", "via", "fe80::1%bond0"], ["to", "default"]]).text == (
        "'\"to ::/0 via fe80::1%bond0\" \"to default\"'"
    )


def test_env_name_is_a_variable_name() -> None:
    assert esc.env_name("bond0").text == "bond0"
    for bad in ("0bond", "bo-nd", "a b", ""):
        with pytest.raises(ValueError):
            esc.env_name(bad)


def test_unit_words_escape_specifiers_variables_and_quotes() -> None:
    assert esc.unit_exec_word("/usr/sbin/dhclient").text == "/usr/sbin/dhclient"
    assert esc.unit_exec_word("/a%b").text == "/a%%b"
    assert esc.unit_exec_word("/my dir/$x").text == '"/my dir/$$x"'
    assert esc.unit_exec_word('a"b\\c').text == '"a\\"b\\\\c"'
    assert esc.unit_exec_word("a\nb").text == '"a\\x0ab"'
    # Inside sh -c '...': first an sh word, then escaped for systemd's quoting around the script.
    assert esc.unit_exec_sh_word("/usr/bin/ip").text == "/usr/bin/ip"
    assert esc.unit_exec_sh_word("/x y/ip").text == "\\'/x y/ip\\'"
    assert esc.unit_exec_sh_word("/50%").text == "/50%%"


def test_exec_programs_are_plain_absolute_paths() -> None:
    assert esc.unit_exec_path("/usr/sbin/wpa_supplicant").text == "/usr/sbin/wpa_supplicant"
    for bad in ("sh", "/my dir/sh", "/a$b", "/a%b", "/a;b"):
        with pytest.raises(ValueError, match="Exec= program"):
            esc.unit_exec_path(bad)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_escaped_words(tmp_path: Path) -> None:
    word = esc.unit_exec_word('/my dir/$x"q\\ %i').text
    script = esc.unit_exec_sh_word("/it's 50% \"q\" $HOME").text
    unit = tmp_path / "t.service"
    unit.write_text(f"[Service]\nType=oneshot\nExecStart=/bin/echo {word} -c 'echo {script}'\n")
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_unit_values_refuse_line_ends() -> None:
    assert esc.unit_value("dhcp6c").text == "dhcp6c"
    assert esc.unit_value("a%i").text == "a%%i"
    for bad in ("a\nb", "a\\"):
        with pytest.raises(ValueError):
            esc.unit_value(bad)


def test_wpa_string_is_quoted_ascii_or_hex() -> None:
    assert esc.wpa_string("MyHome").text == '"MyHome"'
    assert esc.wpa_string("a#b\\c").text == '"a#b\\c"'
    assert esc.wpa_string('pa"ss').text == b'pa"ss'.hex()
    assert esc.wpa_string("Café").text == "Café".encode().hex()
    assert esc.wpa_string("a\nb").text == "610a62"
    for bad in ("", "a\0b"):
        with pytest.raises(ValueError):
            esc.wpa_string(bad)


@pytest.mark.skipif(not have_wpa_supplicant(), reason="wpa_supplicant (wpasupplicant) is not installed")
@settings(max_examples=40, deadline=None)
@given(TEXT.filter(bool))
def test_wpa_string_is_read_by_wpa_supplicant_as_the_value(tmp_path_factory: pytest.TempPathFactory,
                                                           value: str) -> None:
    conf = tmp_path_factory.mktemp("wpa") / "w.conf"
    identity = esc.wpa_field("identity", esc.wpa_string(value)).text
    conf.write_text(f'network={{\n\tssid="x"\n\tkey_mgmt=WPA-EAP\n\teap=PEAP\n\t{identity}\n}}\n')
    read = read_wpa(conf)
    assert read.loaded and not read.errors
    assert read.networks == [{"ssid": b"x", "key_mgmt": "0x1", "eap methods": bytes.fromhex("0000000019" + "00" * 11),
                              "identity": value.encode()}]


@pytest.mark.parametrize("value", ["a#b", '"x', "x y\nz", "P\"x\""])
def test_wpa_tokens_refuse_what_would_be_parsed_as_something_else(value: str) -> None:
    with pytest.raises(ValueError):
        esc.wpa_token(value)


@settings(max_examples=50, deadline=None)
@given(LINE)
def test_dhclient_string_is_one_string_token(value: str) -> None:
    text = f"send host-name {esc.dhclient_string(value)};\n"
    assert statements(text, escapes=True) == (("send", "host-name", Str(value)),)


def test_dhcp6c_strings_cannot_hold_a_quote() -> None:
    assert esc.dhcp6c_string("/etc/wide-dhcpv6/dhcp6c-script").text == '"/etc/wide-dhcpv6/dhcp6c-script"'
    for bad in ('a"b', "a\nb"):
        with pytest.raises(ValueError, match="dhcp6c"):
            esc.dhcp6c_string(bad)
    assert esc.dhcp6c_list(["domain-name", "ntp-servers"]).text == "domain-name, ntp-servers"
    with pytest.raises(ValueError):
        esc.dhcp6c_list(["domain-name;", "x"])


def test_modprobe_options_and_deb822_words() -> None:
    assert esc.modprobe_options(["max_bonds=0", "mode=active-backup"]).text == "max_bonds=0 mode=active-backup"
    for bad in ("mode=a b", "mode", "x=#", "a=b\nc"):
        with pytest.raises(ValueError):
            esc.modprobe_options([bad])
    assert esc.deb822_word("http://h/debian").text == "http://h/debian"
    for bad in ("http://h/debian\nTrusted: yes", "a b", "", "#x"):
        with pytest.raises(ValueError):
            esc.deb822_word(bad)


# --- the renderer --------------------------------------------------------------------------------------

def test_every_template_has_a_declared_syntax() -> None:
    root = _template_root()
    templates = [str(p.relative_to(root))[: -len(".j2")] for p in root.rglob("*.j2")]
    assert len(templates) >= 13
    for template in templates:
        assert issubclass(syntax_of(template), esc.Escaped)


def test_a_bare_string_in_a_template_is_refused() -> None:
    with pytest.raises(UnescapedValue, match="str"):
        render_template("etc/dhcp/dhclient.conf", dhcp4=Dhcp4(), client_identifier=None, host_name="laptop")


def test_a_value_escaped_for_another_file_is_refused() -> None:
    with pytest.raises(UnescapedValue, match="WpaText"):
        render_template("etc/dhcp/dhclient.conf", dhcp4=Dhcp4(), client_identifier=None,
                        host_name=esc.wpa_string("laptop"))


def test_a_model_field_printed_raw_is_refused() -> None:
    # A template that printed a profile string straight from the model would fail the same way.
    with pytest.raises(UnescapedValue):
        render_template("etc/dhcp/dhclient.conf", dhcp4=Dhcp4(host_name="x"), client_identifier=None,
                        host_name=Dhcp4(host_name="x").host_name)


def test_numbers_and_escaped_values_pass() -> None:
    text = render_template("etc/dhcp/dhclient.conf", dhcp4=Dhcp4(initial_interval=3), client_identifier=None,
                           host_name=esc.dhclient_string('we"ird'))
    assert "initial-interval 3;" in text and 'send host-name "we\\"ird";' in text
