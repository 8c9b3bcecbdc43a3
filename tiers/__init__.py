"""Tiers: a suite forwards what it holds to the suite above it (commune → city → province → national centre).

Downstream (tiers/outbox.py, tiers/forwarder.py): events (all, or a filter), alerts and their later changes, and the
inventory's agencies go into a disk outbox as they are stored, and a sender drains it to the upstream over HTTPS
(with mutual TLS and/or a downstream key), at least once, resumable after any outage, bounded (low-value events are
dropped first, counted; alerts never). It pulls the upstream's changes to its alerts back (tiers/merge.py).

Upstream (tiers/receive.py, soc_api/routers/tiers.py): a ``downstream`` key bound to an agency takes what that
suite sends, below that agency in the agency tree (tiers/agencies.py, inventory/tree.py), with the ids it came with.

docs/tiers.md describes the protocol, the settings and what is shown on both sides.
"""
