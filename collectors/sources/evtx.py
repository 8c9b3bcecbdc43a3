"""EVTX files as Winlogbeat documents, the form the Windows parsers take and the store keeps.

The ``evtx`` package (a Rust EVTX parser) gives each record as JSON; soc/windows.py turns it into what Winlogbeat
would have sent (``winlog.channel``, ``winlog.event_id``, ``winlog.event_data`` with string values...).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from soc.windows import winlogbeat_from_evtx


def iter_evtx_documents(path: str | Path) -> Iterator[dict]:
    import evtx

    for record in evtx.PyEvtxParser(str(path), number_of_threads=1).records_json():
        yield winlogbeat_from_evtx(json.loads(record["data"]))
