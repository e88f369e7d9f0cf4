"""Checks of the kiosk example (examples/base.toml + examples/kiosk.toml) beyond the network scenarios:
run by `imagegen test examples/base.toml examples/kiosk.toml` after them, on the same booted lab VM."""

import time

# foot's background in the profile (/etc/xdg/foot/foot.ini), the colour of the page's own style.
BACKGROUND = (0x1E, 0x6B, 0x52)


def test_cage_runs_in_a_logind_session_on_tty1(machine, lab):
    """cage@tty1 runs as the kiosk user, in a logind session of its own on seat0's first console"""
    machine.wait_for_unit("cage@tty1.service", timeout=600)
    user = machine.succeed("systemctl show -p User --value cage@tty1.service").strip()
    assert user == "kiosk", f"cage@tty1 runs as {user!r}"
    sessions = machine.wait_until_succeeds("loginctl list-sessions --no-legend | grep -w kiosk", timeout=300)
    assert "seat0" in sessions and "tty1" in sessions, sessions
    # The compositor and the application under it are the kiosk user's processes.
    machine.wait_until_succeeds("pgrep -u kiosk -x cage && pgrep -u kiosk -x foot && pgrep -u kiosk -x w3m",
                                timeout=300)


def test_the_page_is_on_the_screen(machine, lab):
    """The display shows the page full screen: the screen is the profile's background colour (a text
    console is black), and OCR reads the page's text on it"""
    # The average of the whole screen: the page's few letters move it a little, a console or a
    # compositor's black screen is far from it.
    machine.wait_for_screen_color(BACKGROUND, tolerance=24, timeout=600)
    # The page's first letter sits at the screen's left edge, where OCR may miss it ("elcome to the
    # kiosk" off the lab's screen): the rest of the line is what identifies the page.
    machine.wait_for_text(r"(?i)w?elcome\s+to\s+the\s+kiosk", timeout=300)
    machine.screenshot("kiosk")


def test_the_kiosk_user_has_no_way_to_a_shell(machine, lab):
    """The kiosk user's shell is nologin, its password locked, and tty1 has no getty"""
    entry = machine.succeed("getent passwd kiosk").strip()
    assert entry.endswith(":/usr/sbin/nologin"), entry
    password = machine.succeed("getent shadow kiosk | cut -d: -f2").strip()
    assert password.startswith("!"), "the kiosk user's password is not locked"
    # su runs the user's shell: nologin refuses, so no command runs as the kiosk user that way.
    out = machine.fail("su -l kiosk -c 'echo reached-a-shell' 2>&1")
    assert "reached-a-shell" not in out, out
    state = machine.execute("systemctl is-active getty@tty1.service")[1].strip()
    assert state != "active", f"getty@tty1 is {state}"
    assert machine.succeed("systemctl is-enabled getty@tty1.service || true").strip() == "masked"


def test_the_console_cannot_be_switched_away_from_the_kiosk(machine, lab):
    """Ctrl-Alt-F2, which would show another console's login prompt, leaves the page on the screen:
    cage keeps the seat's console switching to itself (it is started without -s)"""
    machine.send_key("ctrl-alt-f2")
    time.sleep(5)
    color = machine.screen_color()
    assert max(abs(a - b) for a, b in zip(color, BACKGROUND, strict=True)) <= 24, (
        f"after Ctrl-Alt-F2 the screen is rgb{color}, not the page's rgb{BACKGROUND}")
    active = machine.succeed("cat /sys/class/tty/tty0/active").strip()
    assert active == "tty1", f"the console switched to {active}"
