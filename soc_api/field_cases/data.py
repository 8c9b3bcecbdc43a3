"""Field cases read through the caller's tenancy, like every other record (soc_api/data): an agency key reads its
own agency's cases only, and another agency's case answers exactly like a missing one (404)."""

from __future__ import annotations

from typing import Callable

from fastapi import Depends, HTTPException, Request

from soc_api.data.core import DataCore
from soc_api.deps import require_roles
from soc_api.field_cases.names import CASE_ID
from soc_api.field_cases.service import FIELD_CASES, FieldCaseService, field_case_service
from soc_api.keys import Principal


class FieldCaseData(DataCore):
    @property
    def service(self) -> FieldCaseService:
        return field_case_service(self.suite)

    def case(self, case_id: str) -> dict:
        """The case, if this caller may see it; 404 otherwise (an id that is not the province's included)."""
        if not CASE_ID.match(case_id or ""):
            raise HTTPException(404, "no such field case")
        doc = self.get(FIELD_CASES, case_id, what="field case")
        if not self.service.folder(case_id).exists():
            raise HTTPException(404, "no such field case")
        return doc


def field_data(*roles: str) -> Callable[..., FieldCaseData]:
    """A dependency: the caller must hold one of ``roles`` (admin always may); gives the caller's FieldCaseData."""
    checker = require_roles(*roles)

    async def build(request: Request, principal: Principal = Depends(checker)) -> FieldCaseData:
        return FieldCaseData(request, principal)

    return build
