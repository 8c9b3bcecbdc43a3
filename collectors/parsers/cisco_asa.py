"""Cisco ASA (and FTD in ASA format) syslog messages, ``%ASA-<sev>-<id>: text``, to ECS.

One small pattern per message id for the messages a SOC acts on (ACL denies and permits, connection build and
teardown, NAT, VPN and AAA logins); categorisation per id follows the current Elastic ``cisco_asa`` integration
(a deny that the firewall carried out is ``event.outcome: success`` with ``event.type: [connection, denied]``).
Messages without a pattern are still kept as events from that firewall, with the id in ``event.code``.
"""

from __future__ import annotations

from datetime import datetime

from collectors.parsers import common as c
from collectors.parsers.registry import ParseContext, ParserSpec
from soc import ecs
from soc import linear_re as rx

# Every pattern here runs on text a sender controls: RE2 (linear time; soc/linear_re.py). Before, the
# lazy groups of 113019/113004 and "message repeated" backtracked in polynomial time on a crafted 64 KB line.
# "%ASA-6-302013:", "%ASA-session-6-106015:", "%FTD-4-106023:"; the id may be missing on old FTD messages.
_HEADER = rx.compile(r"%(?P<product>ASA|FTD|FWSM|PIX)-(?:(?P<suffix>[^0-9\s-]+)-)?(?P<severity>\d)-(?P<id>\d+)?:?\s*")
# A second timestamp some configurations put before the header: "Sep 25 15:47:07 EDT: %ASA-..."
_INNER_TIME = rx.compile(r"(?:\w{3} )?(?P<mon>[A-Z][a-z]{2}) +(?P<day>\d{1,2})(?: (?P<year>\d{4}))? "
                         r"(?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2})(?:\.(?P<frac>\d{1,6}))?(?: (?P<tz>[A-Z]{2,5}))?:? ")
_REPEATED = rx.compile(r"message repeated \d+ times: \[\s*(?P<inner>.*?)\s*\]$")
LEVELS = ("emergency", "alert", "critical", "error", "warning", "notification", "informational", "debug")

DENIED = (("network",), ("connection", "denied"), "success", "firewall-rule")
# id → (category, type, outcome, action); category None keeps the default [network].
CATEGORIES: dict[str, tuple] = {
    **{i: DENIED for i in ("106001", "106002", "106006", "106007", "106010", "106012", "106013", "106014", "106015",
                           "106016", "106017", "106018", "106020", "106021", "106022", "106023", "106027", "106103",
                           "313001", "313004", "313005", "313008", "313009", "322001", "434002", "710003")},
    "110002": (None, ("connection", "info"), "failure", "firewall-rule"),
    "111007": (("configuration",), ("info",), "success", "configuration"),
    "111008": (("configuration",), ("info",), "success", "configuration"),
    "111009": (("configuration",), ("info",), "success", "configuration"),
    "111010": (("configuration",), ("change",), "success", "configuration"),
    **{i: (("authentication", "network"), ("allowed", "info"), "success", "logged-in")
       for i in ("113004", "113008", "113009", "113012", "605005", "611101", "734001")},
    **{i: (("authentication", "network"), ("denied", "info"), "failure", "logon-failed")
       for i in ("113005", "113015", "113021", "605004", "611102", "716039")},
    "611103": (("authentication", "network"), ("info",), "success", "logged-out"),
    "113019": (None, ("connection", "end"), "success", "client-vpn-disconnected"),
    "113022": (None, ("info",), "failure", "server-failed"),
    "113023": (None, ("info",), "success", "server-active"),
    **{i: (None, ("connection", "denied"), "failure", "client-vpn-error")
       for i in ("113029", "113030", "113031", "113032", "113033", "113034", "113035", "113036", "113037", "113038",
                 "113040")},
    "113039": (("network", "session"), ("connection", "start"), "success", "client-vpn-connected"),
    **{i: (None, ("connection", "start"), "success", "flow-creation")
       for i in ("302013", "302015", "302020", "302022", "302024", "302026", "609001")},
    **{i: (None, ("connection", "end"), "success", "flow-expiration")
       for i in ("302014", "302016", "302018", "302021", "302023", "302025", "302027", "302036", "302304", "302306",
                 "609002")},
    "303002": (("network", "file"), ("access",), "success", "ftp"),
    "304001": (None, ("access", "allowed"), "success", "url-access"),
    "304002": (None, ("access", "denied"), "success", "url-access"),
    "305011": (("network", "configuration"), ("creation",), "success", "nat-slot"),
    "305012": (("network", "configuration"), ("deletion",), "success", "nat-slot"),
    "315011": (None, ("connection", "end"), None, "ssh-session-ended"),
    "434004": (None, ("info",), None, "bypass"),
    "502103": (("iam",), ("user", "change"), "success", "privilege-level-changed"),
    "602303": (None, ("connection", "start"), "success", "sa-created"),
    "602304": (None, ("connection", "end"), "success", "sa-deleted"),
    "607001": (None, ("info",), "success", "firewall-rule"),
    "710005": (None, ("connection", "denied"), "failure", "firewall-rule"),
    "710006": (None, ("connection", "denied"), "failure", "firewall-rule"),
    "716002": (None, ("connection", "end"), "success", "client-vpn-disconnected"),
    "716058": (None, ("connection", "end"), "success", "client-vpn-disconnected"),
    "716059": (None, ("connection", "start"), "success", "client-vpn-resumed"),
    "721016": (None, ("connection", "start"), "success", "client-vpn-connected"),
    "721018": (None, ("connection", "end"), "success", "client-vpn-disconnected"),
    "722011": (None, ("info",), None, None),
    "722022": (None, ("connection", "info"), "success", None),
    "722023": (None, ("connection", "end"), "success", None),
    "722028": (None, ("connection", "end"), "success", None),
    "722032": (None, ("connection", "start"), "success", None),
    "722033": (None, ("connection", "start"), "success", None),
    "722034": (None, ("connection", "info"), None, None),
    "722037": (None, ("connection", "end"), None, None),
    "722051": (None, ("connection", "info"), "success", "address-assigned"),
    "722055": (None, ("connection", "info"), None, None),
    "725001": (None, ("connection", "start"), "success", None),
    "725002": (None, ("connection", "info"), "success", None),
    "725007": (None, ("connection", "end"), "failure", None),
    "733100": (None, ("info",), None, None),
    "750002": (None, ("connection", "start"), "success", "connection-started"),
    "750003": (None, ("connection", "start"), "failure", None),
}
# 106100/106102 depend on the verb in the text.
ACL_VERDICT = {"permitted": (("connection", "allowed"), "success"), "est-allowed": (("connection", "allowed"), "success"),
               "denied": (("connection", "denied"), "success")}

# "iface:addr/port" tokens (the *tok groups): interface names may themselves contain colons (v1:outside) and
# addresses may be IPv6.
P = {
    "106001": rx.compile(r"(?P<dir>\w+) (?P<proto>\w+) connection denied from (?P<sa>\S+?)/(?P<sp>\d+) to "
                         r"(?P<da>\S+?)/(?P<dp>\d+) flags .*? on interface (?P<sif>\S+)"),
    "106006": rx.compile(r"Deny (?P<dir>\w+) (?P<proto>\w+) from (?P<sa>\S+?)/(?P<sp>\d+) to (?P<da>\S+?)/(?P<dp>\d+)"
                         r" on interface (?P<sif>\S+)"),
    "106007": rx.compile(r"Deny (?P<dir>\w+) (?P<proto>\w+) from (?P<sa>\S+?)/(?P<sp>\d+) to (?P<da>\S+?)/(?P<dp>\d+)"
                         r" due to"),
    "106010": rx.compile(r"Deny (?P<dir>\w+) (?:protocol (?P<iana>\d+)|(?P<proto>\S+)) src (?P<stok>\S+) "
                         r"(?:.*? )?dst (?P<dtok>[^\s(]+)"),
    "106012": rx.compile(r"Deny IP from (?P<sa>\S+) to (?P<da>\S+?),"),
    "106014": rx.compile(r"Deny (?P<dir>\w+) (?P<proto>\S+) src (?P<stok>\S+) (?:.*? )?dst (?P<dtok>[^\s(]+)"),
    "106015": rx.compile(r"Deny (?P<proto>\S+) \(no connection\) from (?P<sa>\S+?)/(?P<sp>\d+) to "
                         r"(?P<da>\S+?)/(?P<dp>\d+) flags .*? on interface (?P<sif>\S+)"),
    "106016": rx.compile(r"Deny IP spoof from \((?P<sa>[^)]+)\) to (?P<da>\S+) on interface (?P<sif>\S+)"),
    "106017": rx.compile(r"Deny IP due to Land Attack from (?P<sa>\S+) to (?P<da>\S+)"),
    "106021": rx.compile(r"Deny (?P<proto>\S+) reverse path check from (?P<sa>\S+) to (?P<da>\S+) on interface "
                         r"(?P<sif>\S+)"),
    "106022": rx.compile(r"Deny (?P<proto>\S+) connection spoof from (?P<sa>\S+) to (?P<da>\S+) on interface "
                         r"(?P<sif>\S+)"),
    "106023": rx.compile(r"Deny (?:protocol (?P<iana>\d+)|(?P<proto>\S+)) src (?P<stok>\S+?)(?:\((?P<suser>[^)]*)\))?"
                         r" (?:\(.*?\) )?dst (?P<dtok>[^\s(]+?)(?:\((?P<duser>[^)]*)\))?[ (].*?by access-group "
                         r"\"(?P<acl>[^\"]+)\""),
    "106027": rx.compile(r"Deny src (?P<sa>\S+) dst (?P<da>\S+) by access-group \"(?P<acl>[^\"]+)\""),
    "106100": rx.compile(r"access-list (?P<acl>\S+) (?P<verdict>\S+) (?P<proto>\S+) (?P<sif>[^/\s]+)/(?P<sa>[^(\s]+)"
                         r"\((?P<sp>\d+)\).*?-> (?P<dif>[^/\s]+)/(?P<da>[^(\s]+)\((?P<dp>\d+)\)"),
    "106102": rx.compile(r"access-list (?P<acl>\S+) (?P<verdict>\S+) (?P<proto>\S+) for user (?P<user>\S+) "
                         r"(?P<sif>[^/\s]+)/(?P<sa>[^(\s]+)\((?P<sp>\d+)\).*?-> (?P<dif>[^/\s]+)/(?P<da>[^(\s]+)"
                         r"\((?P<dp>\d+)\)"),
    "113004": rx.compile(r"AAA user \S+ Successful\s*: server =\s*(?P<da>\S+)\s*: user =\s*(?P<suser>.+?)\s*$"),
    "113005": rx.compile(r"AAA user \S+ Rejected\s*: reason = (?P<reason>.+?)\s*: server =\s*(?P<da>\S+)\s*: "
                         r"user =\s*(?P<suser>.*?)\s*: user IP =\s*(?P<sa>\S+)"),
    "113008": rx.compile(r"AAA transaction status ACCEPT\s*: user = (?P<suser>.+)"),
    "113012": rx.compile(r"AAA user authentication Successful\s*: local database\s*: [Uu]ser = (?P<suser>\S+)"),
    "113015": rx.compile(r"AAA user authentication Rejected\s*: reason = (?P<reason>.+?)\s*: local database\s*: "
                         r"[Uu]ser = (?P<suser>.*?)\s*: [Uu]ser IP = (?P<sa>\S+)"),
    "113019": rx.compile(r"Group = (?P<group>.*?), Username = (?P<suser>.*?), IP = (?P<da>[^,]+), Session "
                         r"disconnected\. Session Type: (?P<stype>[^,]*), Duration: (?P<dur>[^,]*), Bytes xmt: "
                         r"(?P<sbytes>\d+), Bytes rcv: (?P<dbytes>\d+), Reason: (?P<reason>.*)"),
    "113021": rx.compile(r"Attempted console login failed\. User (?P<suser>\S+) did NOT"),
    "302013": rx.compile(r"Built (?P<dir>\w+) (?P<proto>\S+) connection (?P<conn>\d+) for (?P<ftok>\S+) \((?P<fnat>[^)]*)"
                         r"\)(?:\((?P<fuser>[^)]*)\))? to (?P<ttok>\S+) \((?P<tnat>[^)]*)\)(?:\((?P<tuser>[^)]*)\))?"),
    "302014": rx.compile(r"Teardown (?P<proto>\S+) connection (?P<conn>\d+) for (?P<ftok>[^\s(]+)(?:\((?P<fuser>[^)]*)"
                         r"\))? to (?P<ttok>[^\s(]+)(?:\((?P<tuser>[^)]*)\))?(?: duration (?P<dur>\S+))?(?: bytes "
                         r"(?P<bytes>\d+))?"),
    "302020": rx.compile(r"(?P<verb>Built|Teardown) (?:(?P<dir>inbound|outbound) )?(?P<proto>\S+) connection for faddr "
                         r"(?P<ftok>[^\s/]+)/\d+\s*(?:\([^)]*\) )?gaddr (?P<gtok>[^\s/]+)/\d+ laddr "
                         r"(?P<ltok>[^\s/]+)/\d+"),
    "302022": rx.compile(r"Built \S+ stub (?P<proto>\S+) connection for (?P<ftok>\S+) .*?to (?P<ttok>\S+)"),
    "304001": rx.compile(r"(?:(?P<suser>\S+)@)?(?P<sa>[0-9a-fA-F.:]+)(?:\([^)]*\))? .*?Accessed URL "
                         r"(?P<da>[^\s:]+):(?P<url>\S+)"),
    "304002": rx.compile(r"Access denied URL (?P<url>\S+) SRC (?P<sa>\S+) (?:.*?)DEST (?P<da>\S+) on interface "
                         r"(?P<sif>\S+)"),
    "305011": rx.compile(r"(?:Built|Teardown) \S+ (?P<proto>\S+) translation from (?P<ftok>[^\s(]+)(?:\([^)]*\))?"
                         r"(?:\s*\([^)]*\))? to (?P<ttok>\S+)"),
    "313001": rx.compile(r"Denied (?P<proto>\S+) type=(?P<itype>\d+), code=(?P<icode>\d+) from (?P<sa>\S+) on "
                         r"interface (?P<sif>\S+)"),
    "313004": rx.compile(r"Denied (?P<proto>\S+) type=(?P<itype>\d+), from .*?addr (?P<sa>\S+) on interface "
                         r"(?P<sif>\S+) to (?P<da>[^:\s]+)"),
    "313009": rx.compile(r"Denied invalid (?P<proto>\S+) code (?P<icode>\d+), for (?P<ftok>\S+) \([^)]*\) to "
                         r"(?P<ttok>\S+) \([^)]*\)"),
    "434004": rx.compile(r"process (?P<proto>\S+) flow from (?P<ftok>\S+) to (?P<ttok>\S+)"),
    "605004": rx.compile(r"Login denied from (?P<sa>[^/\s]+)/(?P<sp>\d+) to (?P<dif>[^:\s]+):(?P<da>[^/\s]+)/"
                         r"(?P<service>\S+) for user \"(?P<suser>[^\"]*)\""),
    "605005": rx.compile(r"Login permitted from (?P<sa>[^/\s]+)/(?P<sp>\d+) to (?P<dif>[^:\s]+):(?P<da>[^/\s]+)/"
                         r"(?P<service>\S+) for user \"(?P<suser>[^\"]*)\""),
    "607001": rx.compile(r"Pre-allocate SIP .*?(?P<proto>TCP|UDP) secondary channel for (?P<ttok>\S+) to "
                         r"(?P<ftok>\S+) from"),
    "611101": rx.compile(r"User authentication succeeded: (?:IP address: (?P<sa>[^,]+), )?Uname: (?P<suser>.+)"),
    "611102": rx.compile(r"User authentication failed: (?:IP address: (?P<sa>[^,]+), )?Uname: (?P<suser>.+)"),
    "716039": rx.compile(r"Group <(?P<group>[^>]*)> User <(?P<suser>[^>]*)> IP <(?P<sa>[^>]*)>"),
    "734001": rx.compile(r"DAP: User (?P<suser>[^,]+), Addr (?P<sa>[^,]+), Connection (?P<conn>[^:]+):"),
    "751025": rx.compile(r"Local:(?P<local>\S+) Remote:(?P<remote>\S+) Username:(?P<suser>\S+)"),
}
for _same, _as in (("106002", None), ("106018", None), ("106020", None), ("302015", "302013"),
                   ("302016", "302014"), ("302018", "302014"), ("302023", "302014"), ("302021", "302020"),
                   ("305012", "305011"), ("313008", "313001"), ("106103", "106102"), ("611103", None)):
    if _as:
        P[_same] = P[_as]
# "Group <g> User <u> IP <ip>" and "Group g User u IP ip" (AnyConnect, SVC and many VPN messages).
_GROUP_USER_IP = rx.compile(r"Group <(?P<group>[^>]*)> User <(?P<suser>[^>]*)> IP <(?P<sa>[^>]*)>|"
                            r"Group (?P<group2>\S+) User (?P<suser2>\S+) IP (?P<sa2>[0-9a-fA-F.:]+)")
GROUP_USER_IP_IDS = frozenset({"113029", "113030", "113031", "113032", "113033", "113034", "113035", "113036",
                               "113038", "113039", "716001", "716002", "716058", "716059", "722011", "722022",
                               "722023", "722028", "722032", "722033", "722034", "722037", "722051", "722055"})
_SVC_TRANSPORT = rx.compile(r"(?:First|New) (?P<proto>TCP|UDP) SVC connection")
_TERMINATING = rx.compile(r"Terminating the VPN connection attempt from (\S+?)\.")


def _split_iface(token: str) -> tuple[str | None, str, str | None]:
    """'v1:outside:10.8.1.9/54864' → ('v1:outside', '10.8.1.9', '54864'); 'MG:exp_srv/1' → ('MG', 'exp_srv', '1')."""
    port = None
    slash = token.rfind("/")
    if slash > 0 and token[slash + 1:].isdigit():
        token, port = token[:slash], token[slash + 1:]
    colon = token.find(":")
    if colon < 0:
        return None, token, port
    last = None
    while colon >= 0:
        iface, address = token[:colon], token[colon + 1:]
        if c.is_ip(address):
            return iface, address, port
        last = (iface, address)
        colon = token.find(":", colon + 1)
    if c.is_ip(token):
        return None, token, port
    return last[0], last[1], port


def _host_port(text: str) -> tuple[str, str | None]:
    """'203.0.113.10:4500', '2001:db8::1:4500', 'vpn.example.com:4500' → (address, port)."""
    head, _, tail = text.rpartition(":")
    if head and tail.isdigit():
        return head, tail
    return text, None


def _user_name(raw: str | None) -> str | None:
    """'LOCAL\\alice, 123' → 'alice'; "'username'" → 'username'; strips a domain and an SGT number."""
    if not raw:
        return None
    name = raw.split(",", 1)[0].strip().strip("'\"")
    if "\\" in name:
        name = name.rsplit("\\", 1)[1]
    return name or None


def _side(doc: dict, side: str, token: str | None = None, address: str | None = None, port: str | None = None) -> str | None:
    iface = None
    if token is not None:
        iface, address, port = _split_iface(token)
    c.endpoint(doc, side, address, port)
    return iface


def _interfaces(doc: dict, ingress: str | None, egress: str | None) -> None:
    c.put(doc, "observer.ingress.interface.name", ingress)
    c.put(doc, "observer.egress.interface.name", egress)


def _apply(doc: dict, mid: str, m: rx.Match) -> None:
    g = m.groupdict()
    proto = g.get("proto")
    if g.get("iana"):
        c.transport(doc, g["iana"])
    elif proto and mid not in ("302020",):
        c.transport(doc, proto)
    ingress = g.get("sif")
    egress = g.get("dif")
    if mid in ("302013", "302015"):
        inbound = g["dir"].lower() != "outbound"
        f_if = _side(doc, "source" if inbound else "destination", g["ftok"])
        t_if = _side(doc, "destination" if inbound else "source", g["ttok"])
        ingress, egress = (f_if, t_if) if inbound else (t_if, f_if)
        c.set(doc, "network.direction", g["dir"].lower())
        c.user(doc, _user_name(g.get("tuser" if inbound else "fuser")), "destination.user.name")
        c.user(doc, _user_name(g.get("fuser" if inbound else "tuser")), "source.user.name")
    elif mid in ("302020", "302021"):
        inbound = (g.get("dir") or "").lower() == "inbound"
        f_side, l_side = ("source", "destination") if inbound and mid == "302020" else ("destination", "source")
        _side(doc, f_side, address=g["ftok"].rsplit(":", 1)[-1] if not c.is_ip(g["ftok"]) else g["ftok"])
        _side(doc, l_side, address=g["ltok"].rsplit(":", 1)[-1] if not c.is_ip(g["ltok"]) else g["ltok"])
        if mid == "302021":
            c.transport(doc, proto)
        if g.get("dir"):
            c.set(doc, "network.direction", g["dir"].lower())
    elif mid in ("607001",):
        egress = _side(doc, "destination", g["ttok"])
        ingress = _side(doc, "source", g["ftok"])
    elif mid == "751025":
        _side(doc, "source", None, *_host_port(g["local"]))
        _side(doc, "destination", None, *_host_port(g["remote"]))
    elif "ftok" in g or "stok" in g:
        ingress = _side(doc, "source", g.get("ftok") or g.get("stok")) or ingress
        egress = _side(doc, "destination", g.get("ttok") or g.get("dtok")) or egress
        c.user(doc, _user_name(g.get("fuser") or g.get("suser")), "source.user.name")
        c.user(doc, _user_name(g.get("tuser") or g.get("duser")), "destination.user.name")
    else:
        if g.get("sa") and g["sa"] != "None":
            c.endpoint(doc, "source", g["sa"], g.get("sp"))
        if g.get("da"):
            c.endpoint(doc, "destination", g["da"], g.get("dp"))
    if g.get("user"):
        c.user(doc, _user_name(g["user"]))
    if g.get("suser") and mid not in ("106023",) and "ftok" not in g and "stok" not in g:
        c.user(doc, _user_name(g["suser"]), "source.user.name")
    if g.get("group"):
        c.set(doc, "source.user.group.name", g["group"])
    if g.get("acl"):
        c.set(doc, "cisco.asa.rule_name", g["acl"])
    if g.get("conn") and g["conn"].isdigit():
        c.set(doc, "cisco.asa.connection_id", g["conn"])
    if g.get("dir") and mid not in ("302013", "302015"):
        c.set(doc, "network.direction", g["dir"].lower())
    if g.get("reason"):
        c.set(doc, "event.reason", g["reason"].strip())
    if g.get("url"):
        c.url_parts(doc, g["url"])
    if g.get("verdict"):
        verdict = ACL_VERDICT.get(g["verdict"].lower())
        if verdict:
            c.categorize(doc, types=verdict[0], outcome=verdict[1], action="firewall-rule")
    _interfaces(doc, ingress, egress)


def _inner_time(text: str, ctx: ParseContext) -> datetime | None:
    match = _INNER_TIME.match(text)
    if not match:
        return None
    g = match.groupdict()
    zone = c.abbreviation_zone(g["tz"]) or ctx.zone
    year = int(g["year"]) if g["year"] else ctx.received.astimezone(zone).year
    micro = int((g["frac"] or "0").ljust(6, "0"))
    try:
        moment = datetime(year, c.MONTHS[g["mon"].lower()], int(g["day"]), int(g["h"]), int(g["m"]), int(g["s"]),
                          micro, tzinfo=zone)
    except (KeyError, ValueError):
        return None
    if not g["year"] and moment > ctx.received.astimezone(zone).replace(tzinfo=zone):
        moment = moment.replace(year=year - 1)
    return moment


def parse_cisco_asa(doc: dict, ctx: ParseContext) -> dict:
    text = c.message_text(doc)
    c.set(doc, "event.category", ["network"])
    c.observer(doc, "Cisco", "asa")
    hostname = ecs.get(doc, "host.hostname")
    program = ecs.get(doc, "process.name")
    if not hostname and program and text.startswith("%"):
        hostname = program  # "dev01: %ASA-..." : the word before the colon is the firewall, not a program
    c.put(doc, "observer.hostname", hostname)
    header = _HEADER.search(text)
    if header is None:
        return doc  # a message from the firewall without an ASA id (e.g. "AAA user authentication Rejected ...")
    moment = _inner_time(text[:header.start()], ctx) if header.start() else None
    if moment is not None:
        doc["@timestamp"] = moment
    severity = int(header.group("severity"))
    c.set(doc, "event.severity", severity)
    c.set(doc, "log.level", LEVELS[severity])
    if header.group("product") == "FTD":
        c.set(doc, "observer.product", "ftd")
    body = text[header.end():]
    doc["message"] = body
    mid = header.group("id") or ""
    if not mid:
        return doc
    c.set(doc, "event.code", mid)
    repeated = _REPEATED.match(body) if body.startswith("message repeated ") else None
    if repeated:
        body = repeated.group("inner")
    pattern = P.get(mid)
    if pattern is not None:
        match = pattern.search(body)
        if match:
            _apply(doc, mid, match)
    elif mid in GROUP_USER_IP_IDS:
        match = _GROUP_USER_IP.search(body)
        if match:
            c.endpoint(doc, "source", match.group("sa") or match.group("sa2"))
            c.user(doc, match.group("suser") or match.group("suser2"), "source.user.name")
            c.put(doc, "source.user.group.name", match.group("group") or match.group("group2"))
        svc = _SVC_TRANSPORT.search(body)
        if svc and mid in ("722033", "722034"):
            c.transport(doc, svc.group("proto"))
    elif mid == "113040":
        group = _TERMINATING.match(body)
        if group:
            c.set(doc, "source.user.group.name", group.group(1))
    category = CATEGORIES.get(mid)
    if category is not None:
        cat, types, outcome, action = category
        c.categorize(doc, category=cat, types=types, outcome=outcome, action=action)
    if ecs.get(doc, "user.name") is None:
        c.user(doc, ecs.get(doc, "destination.user.name"))
    return doc


def detect(doc: dict) -> bool:
    text = doc.get("message") or ""
    return "%ASA-" in text or "%FTD-" in text or "%FWSM-" in text or "%PIX-" in text


SPEC = ParserSpec(
    name="cisco_asa",
    dataset="cisco_asa.log",
    carrier="syslog",
    parse=parse_cisco_asa,
    detect=detect,
    programs=("ciscoasa",),
    description="Cisco ASA / FTD syslog (%ASA-<level>-<id>)",
)
