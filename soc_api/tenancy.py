"""What a tenant may see: its agency and everything below it in the agency tree (inventory/tree.py).

The tree is the current inventory plus, at an upstream tier, the agencies downstream suites forwarded (the
``tier_agencies`` service, tiers/agencies.py). It is worked out once per inventory and forwarded-agency version,
and every request's principal carries its tenant's subtree (``Principal.sees``), so the data layer's filters and
checks (soc_api/data/core.py) hold for a city exactly as for a commune.
"""

from __future__ import annotations

from dataclasses import replace

from inventory.tree import AgencyTree
from soc_api.keys import Principal


def agency_tree(suite) -> AgencyTree:
    inventory = suite.inventory
    forwarded = suite.service("tier_agencies")
    if forwarded is None:
        return inventory.memo(("agency_tree", 0), lambda: AgencyTree.of(inventory))
    nodes = forwarded.nodes()
    return inventory.memo(("agency_tree", forwarded.version), lambda: AgencyTree.of(inventory, nodes))


def known_agencies(suite) -> set[str]:
    """Every agency a key or user may be bound to: the inventory's and those forwarded by downstream tiers."""
    return set(agency_tree(suite).nodes)


def scoped(suite, principal: Principal) -> Principal:
    """The principal with its tenant's subtree (unchanged for roles that see every agency)."""
    if not principal.is_tenant or not principal.agency:
        return principal
    sees = agency_tree(suite).subtree(principal.agency)
    return principal if sees == principal.sees else replace(principal, sees=sees)
