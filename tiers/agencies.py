"""At an upstream tier: the agencies its downstream suites forwarded, each hung under the agency of its link.

A city's suite sends its inventory's agencies (the city itself and its communes). The province keeps those below
the link's agency (the city's id in the province's own inventory) in the ``tier_agencies`` collection, and they join
the agency tree (inventory/tree.py) that decides what each tenant sees. What the sender says is checked against
what its key is bound to: an agency the province already has elsewhere in its tree, or one that would hang outside
the link's subtree, is refused with the reason — a city cannot claim a department or a sibling's commune.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

from inventory.tree import AgencyNode, AgencyTree
from soc import ecs
from soc.storage.base import DocumentQuery, Store

COLLECTION = "tier_agencies"
AGENCY_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
KINDS = {"province", "department", "district", "commune", "datacentre"}
MAX_AGENCIES = 5000  # one downstream's inventory; more is a mistake or an attack


@dataclass(frozen=True)
class Refusal:
    id: str
    reason: str


def _text(value, longest: int = 200) -> str:
    text = str(value or "").strip()[:longest]
    return "".join(c for c in text if c.isprintable() and c not in "<>")


def stored_agencies(store: Store) -> list[AgencyNode]:
    nodes, after = [], None
    while True:  # page by page: a search engine answers at most 10,000 documents a query
        docs = store.find_documents(COLLECTION, DocumentQuery(limit=5000, after=after))
        nodes += [AgencyNode(d["id"], d.get("parent"), d.get("name_vi", ""), d.get("name_en", ""),
                             d.get("kind", "")) for d in docs]
        if len(docs) < 5000:
            return nodes
        after = (docs[-1]["id"], docs[-1]["id"])


class DownstreamAgencies:
    """The forwarded agencies, read from the store and kept a few seconds (several processes may write them)."""

    def __init__(self, store: Store, ttl_seconds: float = 5.0):
        self.store = store
        self.ttl = ttl_seconds
        self._lock = threading.Lock()
        self._nodes: tuple[AgencyNode, ...] = ()
        self._read_at = float("-inf")
        self.version = 0
        self._listeners: list = []
        self._accepting = threading.Lock()

    def subscribe(self, listener) -> None:
        """``listener()`` after agencies were added (a suite in the middle sends its list on up)."""
        self._listeners.append(listener)

    def nodes(self) -> tuple[AgencyNode, ...]:
        with self._lock:
            if time.monotonic() - self._read_at > self.ttl:
                nodes = tuple(stored_agencies(self.store))
                if nodes != self._nodes:
                    self._nodes = nodes
                    self.version += 1
                self._read_at = time.monotonic()
            return self._nodes

    def invalidate(self) -> None:
        with self._lock:
            self._read_at = float("-inf")

    def accept(self, tree: AgencyTree, link_agency: str, offered: list[dict]) -> tuple[list[str], list[Refusal]]:
        """Keep what ``offered`` (a downstream's agency list) may add under ``link_agency``; (accepted ids, refusals).

        The downstream's root is the link's agency itself (kept as the province knows it); every other agency must
        reach it through parents inside the offer, and must not be an agency the tree has outside the link's subtree.
        """
        if len(offered) > MAX_AGENCIES:
            return [], [Refusal("*", f"more than {MAX_AGENCIES} agencies in one offer")]
        by_id: dict[str, dict] = {}
        refused: list[Refusal] = []
        for item in offered:
            agency_id = item.get("id") if isinstance(item, dict) and isinstance(item.get("id"), str) else ""
            if not AGENCY_ID.match(agency_id):
                refused.append(Refusal(_text(item.get("id") if isinstance(item, dict) else "", 64) or "?",
                                       "not a valid agency id"))
                continue
            by_id[agency_id] = item
        with self._accepting:  # two links offering one new id at once: the first takes it
            return self._accept(tree, link_agency, by_id, refused)

    def _accept(self, tree: AgencyTree, link_agency: str, by_id: dict[str, dict],
                refused: list[Refusal]) -> tuple[list[str], list[Refusal]]:
        # The tree as it is now, with what another link's offer stored a moment ago (the cache may be seconds old).
        tree = AgencyTree(list(tree.nodes.values()) + list(stored_agencies(self.store)))
        own_subtree = tree.subtree(link_agency)
        accepted: list[dict] = []
        now = ecs.now_iso()
        for agency_id, item in by_id.items():
            if agency_id == link_agency:
                continue  # the link's own agency: the province's record of it stands
            if agency_id in tree and agency_id not in own_subtree:
                refused.append(Refusal(agency_id, "the agency exists here outside this link's agencies"))
                continue
            if not isinstance(item.get("parent"), str) or not isinstance(item.get("kind", ""), str):
                refused.append(Refusal(agency_id, "parent and kind must be text"))
                continue
            # Walk up inside the offer until the link's agency: the chain must end there.
            parent, seen, reason = item.get("parent"), {agency_id}, None
            while reason is None:
                if parent == link_agency or (parent in own_subtree and parent not in by_id):
                    break
                if not isinstance(parent, str) or parent not in by_id or parent in seen:
                    reason = f"its parent chain does not reach {link_agency}"
                else:
                    seen.add(parent)
                    parent = by_id[parent].get("parent")
            if reason:
                refused.append(Refusal(agency_id, reason))
                continue
            kind = item.get("kind") if item.get("kind") in KINDS else "commune"
            accepted.append({"id": agency_id, "parent": item.get("parent"), "kind": kind,
                             "name_vi": _text(item.get("name_vi")), "name_en": _text(item.get("name_en")),
                             "link": link_agency, "received": now})
        # A parent that was itself refused drops its children too.
        good = {a["id"] for a in accepted} | set(own_subtree)
        changed = True
        while changed:
            changed = False
            for doc in list(accepted):
                if doc["parent"] not in good:
                    accepted.remove(doc)
                    good.discard(doc["id"])
                    refused.append(Refusal(doc["id"], f"its parent {doc['parent']} was refused"))
                    changed = True
        if accepted:
            self.store.put_documents(COLLECTION, accepted)
            self.invalidate()
            for listener in self._listeners:
                listener()
        return [a["id"] for a in accepted], refused
