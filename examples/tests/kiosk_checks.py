"""Checks of the kiosk example (examples/base.toml + examples/kiosk.toml) beyond the network scenarios:
run by `imagegen test examples/base.toml examples/kiosk.toml` after them, on the same booted lab VM."""

import time

# foot's background in the profile (/etc/xdg/foot/foot.ini), the colour of the page's own style.
BACKGROUND = (0x1E, 0x6B, 0x52)


def _share_of(png, colour, tolerance=8):
    """The share of the screenshot's pixels within tolerance of colour in each channel."""
    from PIL import Image

    with Image.open(png) as image:
        rgb = image.convert("RGB")
        # A fixed-size sample is enough to tell a screen of one colour from a black or text console.
        small = rgb.resize((160, 100))
        pixels = list(small.getdata())
    near = sum(1 for p in pixels if all(abs(a - b) <= tolerance for a, b in zip(p, colour, strict=True)))
    return near / len(pixels)


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
    """The display shows the page full screen: most of the screen is the profile's background colour"""
    deadline = time.monotonic() + 300
    share = 0.0
    n = 0
    while time.monotonic() < deadline:
        n += 1
        shot = machine.screenshot(f"kiosk-{n:02d}")
        share = _share_of(shot, BACKGROUND)
        if share > 0.6:
            break
        time.sleep(5)
    assert share > 0.6, f"only {share:.0%} of the screen is the kiosk's background colour (see {shot})"
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
