"""The tenancy-enforcing data layer: every router reads and writes through a :class:`Data` made for the caller, never
through the store (or the services beside it) directly. A router parses its input, calls a named method here and
shapes the answer.

The agency a caller may see is decided once, here, from the key (an agency key: its own agency, whatever it asks
for; other roles: what they ask for; soc_api/deps.py ``tenant_scope``) and passed into every store query — events,
alerts, documents, counts, pagination cursors. Cursors are signed and bound to the scope and filters they were
issued for, so a cursor from one agency's listing cannot be replayed in another's. A single record read by id is
checked against the scope after it is read, and a record outside it answers exactly like a missing one (404), so
ids of other agencies cannot be probed.

:class:`Data` is one class assembled from one part per area, each a module of this package:

- ``core``: the caller's scope, a record's visibility, signed cursors, documents by collection (:meth:`Data.find`,
  :meth:`Data.get`, which other modules such as the posture and TAXII code use with the field that names the
  agency, and get the same guarantees);
- ``alerts``: alerts (listing, evidence, analysts' changes), events, incidents;
- ``triage``: silences and inhibition rules;
- ``sharing``: indicators, sightings and malware findings, TAXII statuses, posture pushes, reports;
- ``admin``: users and keys, dead letters, the audit log, the store's health.
"""

from __future__ import annotations

from typing import Callable

from fastapi import Depends, Request

from soc_api.data.admin import AdminData, store_health
from soc_api.data.alerts import SCAN_CAP, SORTS, AlertData, AlertFilter
from soc_api.data.core import Page, invalid, parse_query, valid_time
from soc_api.data.sharing import POSTURE_PUSHES, TAXII_STATUS, SharingData, indicator_service
from soc_api.data.triage import TriageData
from soc_api.deps import require_roles
from soc_api.keys import Principal

__all__ = ["Data", "data_for", "AlertFilter", "Page", "SORTS", "SCAN_CAP", "POSTURE_PUSHES", "TAXII_STATUS",
           "indicator_service", "invalid", "parse_query", "store_health", "valid_time"]


class Data(AlertData, TriageData, SharingData, AdminData):
    """What one caller may read and write: every area's methods, all through the caller's scope."""


def data_for(*roles: str) -> Callable[..., Data]:
    """A dependency: the caller must hold one of ``roles`` (admin always may); gives the caller's Data."""

    checker = require_roles(*roles)

    # The dependency is a default value, not an annotation: annotations are strings here and cannot see ``roles``.
    # Async: building it does no I/O, so it needs no hop to the thread pool.
    async def build(request: Request, principal: Principal = Depends(checker)) -> Data:
        return Data(request, principal)

    return build
