"""Device drivers, one small file per vendor, all keeping the contract in base.py."""

from __future__ import annotations

from playbooks.drivers.base import Change, Driver, DriverError, Observed, Operation, UnsupportedOperation
from playbooks.drivers.cisco_asa import CiscoAsaDriver
from playbooks.drivers.cisco_ios import CiscoIosDriver
from playbooks.drivers.fortigate import FortigateDriver
from playbooks.drivers.iptables import IptablesDriver
from playbooks.drivers.junos import JunosDriver
from playbooks.drivers.nftables import NftablesDriver
from playbooks.drivers.sonicwall import SonicwallDriver
from playbooks.drivers.sophos_xg import SophosXgDriver

DRIVERS: dict[str, type[Driver]] = {d.name: d for d in (NftablesDriver, IptablesDriver, CiscoIosDriver,
                                                        CiscoAsaDriver, FortigateDriver, SophosXgDriver,
                                                        SonicwallDriver, JunosDriver)}


def get_driver(name: str) -> Driver:
    try:
        return DRIVERS[name]()
    except KeyError:
        raise DriverError(f"no driver {name!r}; drivers are {', '.join(sorted(DRIVERS))}") from None


__all__ = ["Change", "DRIVERS", "Driver", "DriverError", "Observed", "Operation", "UnsupportedOperation",
           "get_driver"]
