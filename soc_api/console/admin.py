"""The administration pages of the console, as data for their templates (soc_api/routers/console_admin.py serves
them): the inventory (agencies, assets, devices; an asset's edit form), users and API keys, dead letters, log-source
health.

Nothing here writes or decides who may see what: the router reads and changes through the API's own route functions
(soc_api/routers/inventory.py, users.py, deadletters.py) with the signed-in admin's Data. These functions shape what
those give for the pages: lists in a stable order, an asset's edit form read into the document the API's
``PUT /inventory/assets/{id}`` takes (so its validation, and its error messages, are the API's), a dead letter's
preview made safe to show, and the log sources by agency.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Mapping

from collectors.sources.log_source_table import LOG_SOURCES
from soc import ecs
from soc.storage.base import DocumentQuery
from soc_api.posture import SOURCE_STATUS

TABS = ("inventory", "users", "deadletters", "sources")
CRITICALITIES = ("low", "medium", "high", "critical")
KNOWN_SOURCES = tuple(kind.name for kind in LOG_SOURCES)
KEY_LIFETIMES = ("30", "90", "180", "365", "never")
DEFAULT_KEY_LIFETIME = "90"  # days, as the API's KeyIn
USERS_SHOWN = 1000  # as GET /api/v1/users by default
KEYS_SHOWN = 500
DEAD_LETTER_LIMITS = (20, 50, 100, 200)
DEFAULT_DEAD_LETTERS = 50
PREVIEW_CHARS = 240  # of a dead letter, in the list; the whole preview (4 KiB, as the API's) behind a disclosure
MAX_LIST_TEXT = 4000  # characters of a list field of a form (addresses, other sources)
SOURCE_STATUSES = ("ok", "dropped", "silent", "never", "pending")
NOT_OK = ("dropped", "silent", "never")
ITEM_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")  # as the API's path ids
KEY_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def agency_name(inventory: Any, agency_id: str | None, lang: str) -> str:
    agency = inventory.agencies.get(agency_id) if agency_id else None
    if agency is None:
        return agency_id or ""
    return agency.name_vi if lang == "vi" else agency.name_en


def name_key(text: str) -> str:
    value = unicodedata.normalize("NFKD", text or "").replace("đ", "d").replace("Đ", "D")
    return "".join(ch for ch in value if not unicodedata.combining(ch)).casefold()


# --- inventory ---------------------------------------------------------------------------------------------------
def agency_rows(inventory: Any, lang: str) -> list[dict]:
    """Every agency (the province first), with its networks and how many assets it has."""
    counts: dict[str, int] = {}
    for asset in inventory.assets.values():
        counts[asset.agency] = counts.get(asset.agency, 0) + 1
    rows = []
    for agency in inventory.agencies.values():
        rows.append({"agency": agency, "name": agency.name_vi if lang == "vi" else agency.name_en,
                     "parent": agency_name(inventory, agency.parent, lang) if agency.parent else "",
                     "networks": [n.cidr for n in agency.networks], "assets": counts.get(agency.id, 0)})
    province = inventory.document.province.id
    return sorted(rows, key=lambda r: (r["agency"].id != province, name_key(r["name"])))


def asset_rows(inventory: Any, lang: str, agency: str | None = None) -> list[dict]:
    rows = [{"asset": a, "agency": agency_name(inventory, a.agency, lang)}
            for a in inventory.assets.values() if agency is None or a.agency == agency]
    return sorted(rows, key=lambda r: (name_key(r["agency"]), r["asset"].id))


def device_rows(inventory: Any, lang: str) -> list[dict]:
    rows = []
    for device in inventory.devices.values():
        asset = inventory.assets.get(device.asset)
        rows.append({"device": device, "asset": asset,
                     "agency": agency_name(inventory, asset.agency, lang) if asset is not None else ""})
    return sorted(rows, key=lambda r: r["device"].id)


def split_list(text: str) -> list[str]:
    """A list typed into one field: items separated by commas, spaces or new lines; empty ones dropped."""
    return [item for item in re.split(r"[\s,;]+", text or "") if item]


def asset_document(current: Mapping, *, criticality: str, log_sources: Iterable[str], other_sources: str,
                   addresses: str) -> dict:
    """The asset as the API's ``PUT /inventory/assets/{id}`` would receive it: the current document with the form's
    fields put in. Nothing is checked here: the API's model does it (``Asset.model_validate``)."""
    doc = dict(current)
    doc["criticality"] = criticality
    chosen = list(dict.fromkeys([s.strip() for s in log_sources if s.strip()] + split_list(other_sources)))
    doc["log_sources"] = chosen
    doc["addresses"] = split_list(addresses)
    return doc


def validation_messages(errors: Iterable[Mapping], prefix: str = "body") -> list[str]:
    """Pydantic's (or FastAPI's 422) errors as the API states them: ``body.criticality: Input should be …``."""
    out = []
    for error in errors:
        where = [str(p) for p in error.get("loc") or ()]
        if prefix and (not where or where[0] != prefix):
            where.insert(0, prefix)
        out.append(f"{'.'.join(where)}: {error.get('msg')}")
    return out


def field_of(message: str) -> str:
    """The form field an API error is about (``body.addresses.0: …`` → ``addresses``; ``password: …`` →
    ``password``); "" when it names none."""
    head = message.split(":", 1)[0]
    parts = head.split(".")
    if parts[0] == "body":
        return parts[1] if len(parts) > 1 else ""
    return head if head.isidentifier() else ""


# --- users and keys ----------------------------------------------------------------------------------------------
def user_rows(users: Iterable[Any], with_password: set[str], inventory: Any, lang: str) -> list[dict]:
    rows = []
    for user in users:
        record = user.model_dump() if hasattr(user, "model_dump") else dict(user)
        rows.append({"user": record, "agency": agency_name(inventory, record.get("agency"), lang),
                     "has_password": record["id"] in with_password})
    return sorted(rows, key=lambda r: r["user"]["id"])


def key_rows(keys: Iterable[Any], now: datetime | None = None) -> list[dict]:
    """Public key records, newest first, each with whether it still works (not revoked, not expired)."""
    now_iso = ecs.utc_iso(now or datetime.now(timezone.utc))
    rows = []
    for key in keys:
        record = key.model_dump() if hasattr(key, "model_dump") else dict(key)
        expired = bool(record.get("expires")) and str(record["expires"]) <= now_iso
        state = "revoked" if record.get("revoked") else "expired" if expired else "active"
        rows.append({"key": record, "state": state})
    rows.sort(key=lambda r: (str(r["key"].get("created") or ""), r["key"]["id"]), reverse=True)
    return rows


def key_lifetime(value: str) -> float | None:
    """The form's choice as the API's ``expires_in_days`` (None: never expires)."""
    return None if value == "never" else float(value)


# --- dead letters ------------------------------------------------------------------------------------------------
_VISIBLE = {"\t": "\t", "\n": "\n"}


def visible_text(text: str) -> str:
    """``text`` with every control and format character written out (``\\x1b``, ``\\u202e``): nothing in a dead
    letter can move the cursor of a terminal it is copied to, reorder the text around it (bidirectional overrides)
    or hide itself. The page escapes the rest (HTML autoescape)."""
    out = []
    for ch in text:
        if ch in _VISIBLE:
            out.append(ch)
            continue
        category = unicodedata.category(ch)
        if category in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp"):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)


def dead_letter_rows(letters: Iterable[Any]) -> list[dict]:
    """Each dead letter as GET /api/v1/deadletters gives it, with a short safe preview and the whole one."""
    rows = []
    for letter in letters:
        record = letter.model_dump() if hasattr(letter, "model_dump") else dict(letter)
        preview = str(record.get("preview") or "")
        short = preview[:PREVIEW_CHARS]
        rows.append({"letter": record, "short": visible_text(short), "full": visible_text(preview),
                     "cut": len(preview) > PREVIEW_CHARS or bool(record.get("truncated"))
                     or record.get("raw_size", 0) > len(preview.encode("utf-8", "replace"))})
    return rows


# --- log-source health -------------------------------------------------------------------------------------------
@dataclass
class SourceView:
    origin: str  # "monitor" (the running source-health monitor), "snapshot" (its last stored state), "tracker"
    sources: list[dict] = field(default_factory=list)  # one per (asset, log source) the inventory expects
    agencies: list[dict] = field(default_factory=list)


def monitor_states(suite) -> tuple[str, list[dict]] | None:
    """The source-health monitor's states (collectors/monitoring.py: what /metrics exports as soc_log_source_*), or
    its last stored snapshot when it does not run in this process; None when there is neither."""
    health = suite.service("source_health") if hasattr(suite, "service") else None
    if health is not None:
        return "monitor", [state.to_doc() for state in list(health.states.values())]
    docs = suite.store.find_documents("source_health", DocumentQuery(limit=10_000))
    if docs:
        return "snapshot", docs
    return None


def tracker_states(suite, inventory: Any, intervals: Mapping[str, float], default_interval: float,
                   now: datetime | None = None) -> list[dict]:
    """Without the monitor: what GET /api/v1/posture reads, the source tracker's (or its stored) last-seen time of
    each asset, against the posture's intervals — an expected source reports when its asset was heard within the
    shortest interval of its sources."""
    now = now or datetime.now(timezone.utc)
    now_iso = ecs.utc_iso(now)
    known: dict[str, dict] = {doc["id"]: doc for doc in
                              suite.store.find_documents(SOURCE_STATUS, DocumentQuery(limit=10_000)) if "id" in doc}
    tracker = suite.service("source_tracker") if hasattr(suite, "service") else None
    if tracker is not None:
        known.update(dict(tracker.last_seen))
    out = []
    for asset in inventory.assets.values():
        if not asset.log_sources:
            continue
        interval = min(intervals.get(s, default_interval) for s in asset.log_sources)
        since = ecs.utc_iso(now - timedelta(seconds=interval))
        last = (known.get(asset.id) or {}).get("last_seen")
        if not isinstance(last, str) or last > now_iso:
            last = None
        status = "ok" if last and last >= since else "silent" if last else "never"
        for source in asset.log_sources:
            out.append({"organization": {"id": asset.agency}, "asset": asset.id, "source": source, "status": status,
                        "last_seen": last, "rate": None, "baseline": None, "changed": None})
    return out


def source_view(origin: str, states: Iterable[Mapping], inventory: Any, lang: str) -> SourceView:
    """Every expected source (agency, asset, source, status, last seen, rate, baseline) and, per agency, how many
    report and which do not."""
    view = SourceView(origin)
    per: dict[str, dict] = {}
    for state in states:
        asset = inventory.assets.get(state.get("asset"))
        agency_id = ecs.get(state, "organization.id") or (asset.agency if asset is not None else None)
        status = state.get("status") if state.get("status") in SOURCE_STATUSES else "pending"
        row = {"agency_id": agency_id, "agency": agency_name(inventory, agency_id, lang),
               "asset": state.get("asset"), "hostname": asset.hostname if asset is not None else "",
               "criticality": asset.criticality.value if asset is not None else "",
               "source": state.get("source"), "status": status, "last_seen": state.get("last_seen"),
               "rate": state.get("rate"), "baseline": state.get("baseline"), "changed": state.get("changed")}
        view.sources.append(row)
        entry = per.setdefault(agency_id or "", {"id": agency_id, "name": row["agency"], "expected": 0,
                                                 **{s: 0 for s in SOURCE_STATUSES}, "not_ok": []})
        entry["expected"] += 1
        entry[status] += 1
        if status in NOT_OK:
            entry["not_ok"].append(row)
    view.sources.sort(key=lambda r: (r["status"] not in NOT_OK, name_key(r["agency"]), str(r["asset"]),
                                     str(r["source"])))
    view.agencies = sorted(per.values(), key=lambda a: (-(a["silent"] + a["never"] + a["dropped"]),
                                                        name_key(a["name"])))
    return view


def per_minute(rate: Any) -> str:
    """Events per second as events a minute, to one decimal."""
    if not isinstance(rate, (int, float)):
        return ""
    return f"{rate * 60:.1f}"
