"""Sophos Firewall (XG / SFOS) through its XML API.

SFOS's SSH console (netmiko's ``sophos_sfos``) is a menu whose device console cannot create firewall objects, so
this driver speaks the XML API that Sophos documents for automation (System > Backup & firmware > API, with the
suite's address allowed). Each block is an IP host ``soc-<addr>_<len>`` in the IP host group SOC-BLOCKLIST, which the
admin uses in a drop rule at the top. The "commands" are the XML operations; the transport adds the login, whose
password never reaches a transcript.
"""

from __future__ import annotations

import re
from xml.sax.saxutils import escape  # nosec B406 - escapes the values the suite sends; parses nothing

# A device's answer may be hostile (a compromised firewall): parsed without entity expansion or external references.
from defusedxml import ElementTree

from playbooks.drivers.base import Driver, DriverError, Observed, Operation
from playbooks.values import object_name

GROUP = "SOC-BLOCKLIST"
_OK_CODES = {"200", "216"}  # 216: "Operation successful" for Remove


def _host(op: Operation) -> str:
    net, name = op.network, object_name(op.network)
    family = "IPv6" if net.version == 6 else "IPv4"
    if net.is_host:
        address = f"<HostType>IP</HostType><IPAddress>{net.address}</IPAddress>"
    else:
        mask = net.prefixlen if net.version == 6 else net.netmask
        address = f"<HostType>Network</HostType><IPAddress>{net.address}</IPAddress><Subnet>{mask}</Subnet>"
    return (f'<Set operation="add"><IPHost><Name>{escape(str(name))}</Name><IPFamily>{family}</IPFamily>{address}'
            f"<HostGroupList><HostGroup>{GROUP}</HostGroup></HostGroupList></IPHost></Set>")


class SophosXgDriver(Driver):
    name = "sophos_xg"
    transport = "http"
    operations = frozenset({"block", "unblock"})
    config_mode = False

    def commands_for(self, op: Operation, observed: Observed | None) -> list[str]:
        if op.kind == "block":
            return [_host(op)]
        return [f"<Remove><IPHost><Name>{escape(str(object_name(op.network)))}</Name></IPHost></Remove>"]

    def show_commands(self, op: Operation) -> list[str]:
        return [f'<Get><IPHost><Filter><key name="Name" criteria="=">{escape(str(object_name(op.network)))}</key>'
                f"</Filter></IPHost></Get>"]

    def refusal(self, answer: str) -> str | None:
        try:
            root = ElementTree.fromstring(answer)
        except (ElementTree.ParseError, ValueError):  # defusedxml refuses entities and DTDs with a ValueError
            return f"not an XML API answer: {answer[:120]!r}"
        login = root.findtext("Login/status")
        if login and "success" not in login.lower():
            return f"login refused: {login}"
        for status in root.iter("Status"):
            code = status.get("code")
            if code and code not in _OK_CODES:
                return f"code {code}: {(status.text or '').strip()}"
        return None

    def parse(self, op: Operation, answers: list[str]) -> Observed:
        refused = self.refusal(answers[0])
        if refused:
            raise DriverError(refused)
        root = ElementTree.fromstring(answers[0])
        name = str(object_name(op.network))
        present = False
        for host in root.iter("IPHost"):
            if host.findtext("Name") == name:
                groups = [g.text for g in host.iter("HostGroup")]
                present = GROUP in groups
        return Observed(present if op.kind == "block" else not present)


def login_xml(username: str, password: str) -> str:
    return f"<Login><Username>{escape(username)}</Username><Password>{escape(password)}</Password></Login>"


LOGIN_MASK = re.compile(r"(<Password>)(.*?)(</Password>)", re.S)
