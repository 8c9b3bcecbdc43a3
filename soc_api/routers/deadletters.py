"""Dead letters: what the collectors could not parse or store, with the raw bytes, the source and the reason.

For analysts and admins: a dead letter is raw input from any sender, not yet attributed to an agency, so agency keys
do not see them. ``soc deadletters`` shows the same from the command line; ``soc_dead_letters_total{reason}`` counts
them on /metrics.
"""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from soc_api.data import Data, data_for
from soc_api.models import DeadLetterOut, DeadLetters

router = APIRouter(prefix="/deadletters", tags=["dead letters"])
Reader = Annotated[Data, Depends(data_for("analyst"))]
PREVIEW_BYTES = 4096


@router.get("", response_model=DeadLetters)
def dead_letters(data: Reader, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> DeadLetters:
    """The newest dead letters first: the raw bytes (base64, and a text preview), who sent them and why."""
    letters, total = data.dead_letters(limit)
    return DeadLetters(total=total, dead_letters=[
        DeadLetterOut(id=letter.id or "", received=letter.received, source=letter.source, reason=letter.reason,
                      raw_base64=base64.b64encode(bytes(letter.raw)).decode("ascii"), raw_size=len(letter.raw),
                      preview=bytes(letter.raw[:PREVIEW_BYTES]).decode("utf-8", "replace"),
                      truncated=letter.truncated)
        for letter in letters])
