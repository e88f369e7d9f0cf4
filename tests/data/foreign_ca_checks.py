"""The wired 802.1X scenario on a machine whose supplicant trusts another CA than the one that signed the
switch port's certificate (the lab's CA unmounted, so the image's own copy of the office's CA is back, and
`systemctl reload supplicant@enp3s0`): the port must not be authorized, for that reason alone, and the
verdict must say so. The lab's CA is mounted again afterwards."""

from imagegen.scenarios.catalog import wired_8021x

CA = "/etc/wpa_supplicant/certs/1-ca_cert.pem"


def test_wired_8021x_with_a_ca_that_did_not_sign_the_server_fails(machine, lab, results):
    machine.succeed(f"mountpoint -q {CA}", f"umount {CA}", "systemctl reload supplicant@enp3s0.service")
    try:
        machine.wait_until_succeeds("wpa_cli -i enp3s0 status | grep -qx 'EAP state=FAILURE'", timeout=120)
        wired_8021x(machine, lab, results)
    finally:
        machine.succeed(f"mount --bind /run/imagegen-lab/eap/ca.pem {CA}", "systemctl reload supplicant@enp3s0.service")
