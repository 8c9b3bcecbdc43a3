"""Inventory: agencies (with their networks), assets and managed devices. Everyone reads what is theirs (an agency
key: its own agency and assets); admins edit. Devices (what playbooks may change) are for admins and network admins.
"""

from __future__ import annotations

from typing import Annotated, Callable

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi import Path as PathParam

from inventory.model import Agency, Asset, ManagedDevice
from soc_api.data import Data, data_for, invalid
from soc_api.inventory_edit import InventoryEditError, edit_inventory
from soc_api.models import UnknownSender
from soc_api.settings import JSON_BODY_CAP

router = APIRouter(prefix="/inventory", tags=["inventory"], max_body_size=JSON_BODY_CAP)
Reader = Annotated[Data, Depends(data_for("analyst", "network_admin", "agency", "national_centre"))]
DeviceReader = Annotated[Data, Depends(data_for("network_admin"))]
Admin = Annotated[Data, Depends(data_for("admin"))]
ItemId = Annotated[str, PathParam(max_length=128, pattern=r"^[A-Za-z0-9._-]+$")]


def _edit(data: Data, change: Callable[[dict], None]) -> None:
    try:
        edit_inventory(data.suite, change)
    except InventoryEditError as exc:
        raise invalid("body", str(exc)) from exc


# --- agencies ------------------------------------------------------------------------------------------------------
@router.get("/agencies", response_model=list[Agency])
def agencies(data: Reader) -> list[Agency]:
    return [a for a in data.suite.inventory.agencies.values() if data.principal.may_see(a.id)]


@router.get("/agencies/{agency_id}", response_model=Agency)
def agency(agency_id: ItemId, data: Reader) -> Agency:
    found = data.suite.inventory.agencies.get(agency_id)
    if found is None or not data.principal.may_see(agency_id):
        raise HTTPException(404, "no such agency")
    return found


@router.put("/agencies/{agency_id}", response_model=Agency)
def put_agency(agency_id: ItemId, body: Agency, data: Admin) -> Agency:
    """Create or replace an agency (its networks included)."""
    if body.id != agency_id:
        raise invalid("body.id", "the agency id in the body must be the one in the path", body.id)

    def change(doc: dict) -> None:
        item = body.model_dump(mode="json")
        if doc["province"]["id"] == agency_id:
            doc["province"] = item
            return
        doc["agencies"] = [a for a in doc["agencies"] if a["id"] != agency_id] + [item]

    _edit(data, change)
    return data.suite.inventory.agencies[agency_id]


@router.delete("/agencies/{agency_id}", status_code=204)
def delete_agency(agency_id: ItemId, data: Admin) -> None:
    if agency_id not in data.suite.inventory.agencies:
        raise HTTPException(404, "no such agency")

    def change(doc: dict) -> None:
        if doc["province"]["id"] == agency_id:
            raise InventoryEditError("the province itself cannot be deleted")
        doc["agencies"] = [a for a in doc["agencies"] if a["id"] != agency_id]

    _edit(data, change)


# --- assets --------------------------------------------------------------------------------------------------------
@router.get("/assets", response_model=list[Asset])
def assets(data: Reader, agency: Annotated[str | None, Query(max_length=64)] = None) -> list[Asset]:
    scope = data.scope(agency)
    wanted = None if scope is None else ({scope} if isinstance(scope, str) else set(scope))
    return [a for a in data.suite.inventory.assets.values() if wanted is None or a.agency in wanted]


@router.get("/assets/{asset_id}", response_model=Asset)
def asset(asset_id: ItemId, data: Reader) -> Asset:
    found = data.suite.inventory.assets.get(asset_id)
    if found is None or not data.principal.may_see(found.agency):
        raise HTTPException(404, "no such asset")
    return found


@router.put("/assets/{asset_id}", response_model=Asset)
def put_asset(asset_id: ItemId, body: Asset, data: Admin) -> Asset:
    if body.id != asset_id:
        raise invalid("body.id", "the asset id in the body must be the one in the path", body.id)

    def change(doc: dict) -> None:
        doc["assets"] = [a for a in doc["assets"] if a["id"] != asset_id] + [body.model_dump(mode="json")]

    _edit(data, change)
    return data.suite.inventory.assets[asset_id]


@router.delete("/assets/{asset_id}", status_code=204)
def delete_asset(asset_id: ItemId, data: Admin) -> None:
    if asset_id not in data.suite.inventory.assets:
        raise HTTPException(404, "no such asset")
    _edit(data, lambda doc: doc.update(assets=[a for a in doc["assets"] if a["id"] != asset_id]))


# --- managed devices -----------------------------------------------------------------------------------------------
@router.get("/devices", response_model=list[ManagedDevice])
def devices(data: DeviceReader) -> list[ManagedDevice]:
    return list(data.suite.inventory.devices.values())


@router.get("/devices/{device_id}", response_model=ManagedDevice)
def device(device_id: ItemId, data: DeviceReader) -> ManagedDevice:
    found = data.suite.inventory.devices.get(device_id)
    if found is None:
        raise HTTPException(404, "no such device")
    return found


@router.put("/devices/{device_id}", response_model=ManagedDevice)
def put_device(device_id: ItemId, body: ManagedDevice, data: Admin) -> ManagedDevice:
    """Create or replace a managed device. Credentials are references (an environment variable, a key file)."""
    if body.id != device_id:
        raise invalid("body.id", "the device id in the body must be the one in the path", body.id)

    def change(doc: dict) -> None:
        doc["devices"] = [d for d in doc["devices"] if d["id"] != device_id] + [body.model_dump(mode="json")]

    _edit(data, change)
    return data.suite.inventory.devices[device_id]


@router.delete("/devices/{device_id}", status_code=204)
def delete_device(device_id: ItemId, data: Admin) -> None:
    if device_id not in data.suite.inventory.devices:
        raise HTTPException(404, "no such device")
    _edit(data, lambda doc: doc.update(devices=[d for d in doc["devices"] if d["id"] != device_id]))


# --- senders the inventory does not know -------------------------------------------------------------------------
Analyst = Annotated[Data, Depends(data_for("analyst"))]  # not agency keys: these senders are nobody's yet


@router.get("/unknown-senders", response_model=list[UnknownSender])
def unknown_senders(data: Analyst) -> list[UnknownSender]:
    """Who sent events that no agency owns (accepted, tagged ``unknown_sender``): by address and, over TLS, the
    verified certificate name; most recently heard first. In memory since the suite started, bounded."""
    return [UnknownSender(**entry) for entry in data.suite.unknown_senders()]
