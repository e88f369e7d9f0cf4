"""The two-masters scenario on a machine whose second bond was made with the first one's miimon instead of
its own (bond1OPTIONS edited in network.conf and master@bond1 restarted, as an image that mixed the two
bonds' options up would be): the options check must fail, for that reason alone. The file and the bond are
put back afterwards."""

from imagegen.scenarios.catalog import two_masters

CONF = "/etc/conf.d/network.conf"


def test_two_masters_with_the_first_bond_s_miimon_fails(machine, lab, results):
    machine.succeed(f"cp {CONF} {CONF}.orig",
                    f"sed -i \"/^bond1OPTIONS=/s/miimon 200/miimon 100/\" {CONF}",
                    f"grep -q \"^bond1OPTIONS='.*miimon 100 \" {CONF}",
                    "systemctl restart master@bond1.service")
    try:
        two_masters(machine, lab, results)
    finally:
        machine.succeed(f"mv {CONF}.orig {CONF}", "systemctl restart master@bond1.service")
