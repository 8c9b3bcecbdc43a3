"""The agency tree: province ⊃ department, city or district ⊃ communes, and what a tenant may see from its place in it.

A tenant (an agency key or user) sees its own agency and every agency below it: a city sees its communes and none of
its siblings; the province's own tenant sees all. The tree is the inventory's agencies (``parent``) plus, at an
upstream tier, the agencies its downstream suites forwarded (tiers/agencies.py), each hung under the agency of the
link that sent it. A cycle or a parent nobody knows ends the walk: an agency is never its own ancestor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping


@dataclass(frozen=True)
class AgencyNode:
    id: str
    parent: str | None
    name_vi: str = ""
    name_en: str = ""
    kind: str = ""


class AgencyTree:
    def __init__(self, nodes: Iterable[AgencyNode]):
        self.nodes: dict[str, AgencyNode] = {}
        for node in nodes:
            self.nodes.setdefault(node.id, node)  # the first word on an agency wins: the inventory's, before a tier's
        self._children: dict[str, list[str]] = {}
        for node in self.nodes.values():
            if node.parent and node.parent != node.id:
                self._children.setdefault(node.parent, []).append(node.id)
        self._subtrees: dict[str, frozenset[str]] = {}

    @classmethod
    def of(cls, inventory, extra: Iterable[AgencyNode] = ()) -> "AgencyTree":
        """The inventory's agencies (the province at the root), then ``extra`` (forwarded by downstream tiers)."""
        own = [AgencyNode(a.id, a.parent, a.name_vi, a.name_en, getattr(a.kind, "value", str(a.kind)))
               for a in inventory.agencies.values()]
        return cls([*own, *extra])

    def __contains__(self, agency_id: object) -> bool:
        return agency_id in self.nodes

    def subtree(self, root: str) -> frozenset[str]:
        """``root`` and every agency below it (``root`` alone when the tree does not know it)."""
        found = self._subtrees.get(root)
        if found is None:
            seen = {root}
            todo = [root]
            while todo:
                for child in self._children.get(todo.pop(), ()):
                    if child not in seen:
                        seen.add(child)
                        todo.append(child)
            found = self._subtrees[root] = frozenset(seen)
        return found

    def ancestors(self, agency_id: str) -> list[str]:
        """The agencies above ``agency_id``, nearest first."""
        out: list[str] = []
        node = self.nodes.get(agency_id)
        while node is not None and node.parent and node.parent not in out and node.parent != agency_id:
            out.append(node.parent)
            node = self.nodes.get(node.parent)
        return out

    def names(self) -> Mapping[str, AgencyNode]:
        return self.nodes
