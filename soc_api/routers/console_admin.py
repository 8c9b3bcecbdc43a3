"""The console's administration pages, for admins only: the inventory (agencies, assets, devices; edit an asset and
an agency's responsible person), users and API keys, dead letters, log-source health.

Every read and change is the API's own route function called with the signed-in admin's Data, so what is written is
what the API writes and what is refused is refused with the API's words:

| page or change                                        | as the API's                                          |
|-------------------------------------------------------|-------------------------------------------------------|
| /console/admin/inventory                              | GET /inventory/agencies, /assets, /devices            |
| POST /console/admin/inventory/assets/{id}             | PUT /inventory/assets/{id} (the model, then the whole |
|                                                       | inventory validated, written and swapped in)          |
| POST /console/admin/inventory/agencies/{id}/contact   | PUT /inventory/agencies/{id}                          |
| /console/admin/users, /console/admin/users/{id}       | GET /users, /users/{id}, /keys                        |
| POST /console/admin/users                             | POST /users (+ the console password: console/auth.py  |
|                                                       | set_password, as `soc users password`)                |
| POST …/users/{id}/disable, …/enable                   | PATCH /users/{id} {"disabled": …}                     |
| POST …/users/{id}/password                            | console/auth.py set_password (every session ends)     |
| POST …/users/{id}/keys                                | POST /users/{id}/keys (the key shown this once)       |
| POST /console/admin/keys/{id}/revoke                  | DELETE /keys/{id}                                     |
| /console/admin/deadletters                            | GET /deadletters                                      |
| /console/admin/sources                                | the source-health monitor (/metrics soc_log_source_*) |
| /console/admin/tiers                                  | GET /tier/upstream, /tier/links (docs/tiers.md)       |

Each change is a POST form with the session's CSRF token (web.CsrfChecked, which writes the audit record with what
was done, never a password or a key) and answers 303 back to its page with a notice, or the page again with the
API's reason (404, 409, 422). A new API key is the one exception: it is shown on the page that answers the POST,
once, and never again (the store keeps only its hash).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from inventory.model import Agency, Asset
from soc.storage.base import DocumentQuery
from soc_api.console import admin, auth, web
from soc_api.console.web import CsrfChecked, console_data, redirect, render
from soc_api.data import Data
from soc_api.keys import ROLES
from soc_api.models import KeyIn, UserIn, UserUpdate
from soc_api.routers import deadletters as deadletters_api
from soc_api.routers import tiers as tiers_api
from soc_api.routers import inventory as inventory_api
from soc_api.routers import users as users_api
from soc_api.settings import api_settings

PREFIX = ""  # the console lives at /console, beside the API's /api/v1
install = web.install  # static files and the console's error pages (app.py calls each install once)
router = APIRouter(include_in_schema=False, max_body_size=64 * 1024)

Admin = Annotated[Data, Depends(console_data("admin"))]
ItemId = Annotated[str, PathParam(max_length=128, pattern=r"^[A-Za-z0-9._-]+$")]  # as the API's
UserId = Annotated[str, PathParam(max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
KeyId = Annotated[str, PathParam(max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
ADMIN = "/console/admin"
INVENTORY = ADMIN + "/inventory"
USERS = ADMIN + "/users"
DEADLETTERS = ADMIN + "/deadletters"
SOURCES = ADMIN + "/sources"
TIERS = ADMIN + "/tiers"
TEXT = Annotated[str, Form(max_length=admin.MAX_LIST_TEXT)]
SHORT = Annotated[str, Form(max_length=200)]
# No max_length: a form value that failed validation would be quoted in the audit record (web.verify_csrf);
# auth.check_password_rules refuses a password over its length, and the body is capped.
PASSWORD = Annotated[str, Form()]


def _lang(request: Request) -> str:
    return web.language(request)


def _done(request: Request, allowed: tuple[str, ...]) -> str | None:
    done = request.query_params.get("done") if request.method == "GET" else None
    return done if done in allowed else None


@router.get(ADMIN, name="console_admin")
def admin_home(data: Admin) -> Response:
    return redirect(INVENTORY)


# --- inventory -----------------------------------------------------------------------------------------------------
@router.get(INVENTORY, response_class=HTMLResponse, name="console_admin_inventory")
def inventory_page(request: Request, data: Admin) -> Response:
    inventory = data.suite.inventory
    lang = _lang(request)
    problems = []
    agency = request.query_params.get("agency") or ""
    if agency and agency not in inventory.agencies:
        problems.append("admin.problem.agency")
        agency = ""
    context = {
        "active": "admin",
        "tab": "inventory",
        "problems": problems,
        "agency": agency,
        "agencies": admin.agency_rows(inventory, lang),
        "assets": admin.asset_rows(inventory, lang, agency or None),
        "devices": admin.device_rows(inventory, lang),
        "notice": _done(request, ("contact",)),
        "notice_agency": admin.agency_name(inventory, request.query_params.get("agency_saved"), lang)
        if request.query_params.get("agency_saved") in inventory.agencies else "",
    }
    return render(request, "admin_inventory.html", context)


def _asset_page(request: Request, data: Data, asset_id: str, *, form: dict | None = None,
                errors: list[str] | None = None, contact_errors: list[str] | None = None,
                status_code: int = 200) -> Response:
    inventory = data.suite.inventory
    asset = inventory_api.asset(asset_id, data)  # GET /inventory/assets/{id}: 404 when there is none
    lang = _lang(request)
    current = asset.model_dump(mode="json")
    form = form or {"criticality": current["criticality"], "log_sources": current["log_sources"],
                    "other_sources": ", ".join(s for s in current["log_sources"] if s not in admin.KNOWN_SOURCES),
                    "addresses": "\n".join(current["addresses"])}
    agency = inventory.agencies.get(asset.agency)
    context = {
        "active": "admin",
        "tab": "inventory",
        "asset": asset,
        "agency": agency,
        "agency_label": admin.agency_name(inventory, asset.agency, lang),
        "devices": [d for d in inventory.devices.values() if d.asset == asset.id],
        "form": form,
        "errors": errors or [],
        "error_fields": {admin.field_of(e) for e in errors or []},
        "contact_errors": contact_errors or [],
        "criticalities": admin.CRITICALITIES,
        "known_sources": admin.KNOWN_SOURCES,
        "notice": _done(request, ("saved", "contact")),
    }
    return render(request, "admin_asset.html", context, status_code=status_code)


@router.get(INVENTORY + "/assets/{asset_id}", response_class=HTMLResponse, name="console_admin_asset")
def asset_page(asset_id: ItemId, request: Request, data: Admin) -> Response:
    return _asset_page(request, data, asset_id)


@router.post(INVENTORY + "/assets/{asset_id}", dependencies=[CsrfChecked], name="console_admin_asset_save")
def save_asset(asset_id: ItemId, request: Request, data: Admin,
               criticality: SHORT = "",
               log_sources: Annotated[list[str], Form(max_length=100)] = [],  # noqa: B006 (FastAPI copies it)
               other_sources: TEXT = "",
               addresses: TEXT = "") -> Response:
    """PUT /api/v1/inventory/assets/{id} with the asset as it is now and the form's criticality, expected log
    sources and addresses: the API's model validates it (422 with its message), then the whole inventory (422 when
    a reference would no longer resolve), and it is written to the inventory file and used from the next batch."""
    current = inventory_api.asset(asset_id, data).model_dump(mode="json")  # 404 when there is none
    form = {"criticality": criticality, "log_sources": log_sources, "other_sources": other_sources,
            "addresses": addresses}
    document = admin.asset_document(current, criticality=criticality, log_sources=log_sources,
                                    other_sources=other_sources, addresses=addresses)
    try:
        body = Asset.model_validate(document)
        inventory_api.put_asset(asset_id, body, data)
    except ValidationError as exc:  # what FastAPI answers for the body of PUT /assets/{id}: 422
        errors = admin.validation_messages(exc.errors())
    except RequestValidationError as exc:  # the API's own 422 (the inventory as a whole would be invalid)
        errors = admin.validation_messages(exc.errors())
    else:
        request.state.audit_detail = (f"asset {asset_id}: criticality {body.criticality.value}, log sources "
                                      f"{', '.join(body.log_sources) or '-'}, "
                                      f"addresses {', '.join(body.addresses) or '-'}")
        return redirect(f"{INVENTORY}/assets/{quote(asset_id, safe='')}?done=saved")
    request.state.audit_detail = f"refused 422: asset {asset_id}: {'; '.join(errors)}"[:1000]
    return _asset_page(request, data, asset_id, form=form, errors=errors, status_code=422)


@router.post(INVENTORY + "/agencies/{agency_id}/contact", dependencies=[CsrfChecked],
             name="console_admin_agency_contact")
def save_contact(agency_id: ItemId, request: Request, data: Admin,
                 contact: Annotated[str, Form(max_length=500)] = "",
                 back: Annotated[str, Form(max_length=140)] = "") -> Response:
    """The agency's responsible person (its ``contact``): PUT /api/v1/inventory/agencies/{id} with the agency as it
    is and the new contact. ``back`` (an asset id) returns to that asset's page."""
    current = inventory_api.agency(agency_id, data).model_dump(mode="json")  # 404 when there is none
    current["contact"] = contact.strip()
    back_asset = back if back and admin.ITEM_ID.match(back) and back in data.suite.inventory.assets else ""
    try:
        body = Agency.model_validate(current)
        inventory_api.put_agency(agency_id, body, data)
    except (ValidationError, RequestValidationError) as exc:
        errors = admin.validation_messages(exc.errors())
        request.state.audit_detail = f"refused 422: agency {agency_id}: {'; '.join(errors)}"[:1000]
        if back_asset:
            return _asset_page(request, data, back_asset, contact_errors=errors, status_code=422)
        raise HTTPException(422, "; ".join(errors)) from exc
    request.state.audit_detail = f"agency {agency_id}: contact {body.contact or '-'}"[:1000]
    if back_asset:
        return redirect(f"{INVENTORY}/assets/{quote(back_asset, safe='')}?done=contact")
    return redirect(f"{INVENTORY}?{urlencode({'done': 'contact', 'agency_saved': agency_id})}")


# --- users and keys ------------------------------------------------------------------------------------------------
def _with_password(data: Data) -> set[str]:
    """Users who have a console password (only the ids of the credentials are kept)."""
    return {doc["id"] for doc in data.store.find_documents(auth.CREDENTIALS, DocumentQuery(limit=10_000))
            if "id" in doc}


def _users_page(request: Request, data: Data, *, form: dict | None = None, errors: list[str] | None = None,
                status_code: int = 200) -> Response:
    inventory = data.suite.inventory
    lang = _lang(request)
    users = users_api.users(data, admin.USERS_SHOWN)  # GET /api/v1/users
    keys = admin.key_rows(users_api.keys(data, None))  # GET /api/v1/keys
    done = _done(request, ("revoked",))
    context = {
        "active": "admin",
        "tab": "users",
        "users": admin.user_rows(users, _with_password(data), inventory, lang),
        "users_limit": admin.USERS_SHOWN,
        "keys": keys[:admin.KEYS_SHOWN],
        "keys_total": len(keys),
        "keys_limit": admin.KEYS_SHOWN,
        "roles": ROLES,
        "agencies": sorted(((a, admin.agency_name(inventory, a, lang)) for a in inventory.agencies),
                           key=lambda x: admin.name_key(x[1])),
        "form": form or {},
        "errors": errors or [],
        "error_fields": {admin.field_of(e) for e in errors or []},
        "notice": done,
        "notice_key": request.query_params.get("key") if done and admin.KEY_ID.match(
            request.query_params.get("key") or "") else None,
        "min_password": web.console_config(request).passwords.min_length,
    }
    return render(request, "admin_users.html", context, status_code=status_code)


@router.get(USERS, response_class=HTMLResponse, name="console_admin_users")
def users_page(request: Request, data: Admin) -> Response:
    return _users_page(request, data)


@router.post(USERS, dependencies=[CsrfChecked], name="console_admin_user_create")
def create_user(request: Request, data: Admin,  # nosec B107 - empty form defaults, not passwords
                user_id: Annotated[str, Form(alias="id", max_length=200)] = "",
                name: SHORT = "", email: SHORT = "", role: SHORT = "",
                agency: Annotated[str, Form(max_length=200)] = "",
                password: PASSWORD = "", password_again: PASSWORD = "") -> Response:  # nosec B107 - empty form defaults
    """POST /api/v1/users (the API's model and checks: the id, the role, an agency for an agency user and only
    then), then, when a password is given, the console password as `soc users create --password-prompt` sets it."""
    user_id = user_id.strip()
    form = {"id": user_id, "name": name, "email": email, "role": role, "agency": agency}
    config = web.console_config(request)
    errors: list[str] = []
    body = None
    try:
        body = UserIn.model_validate({"id": user_id, "role": role, "agency": agency or None, "name": name.strip(),
                                      "email": email.strip()})
    except ValidationError as exc:
        errors = admin.validation_messages(exc.errors())
    if password or password_again:
        if password != password_again:
            errors.append("password: " + web.translate(_lang(request), "admin.users.password_mismatch"))
        else:
            try:
                auth.check_password_rules(user_id, password, config.passwords)
            except auth.PasswordError as exc:
                errors.append(f"password: {exc}")
    if not errors and body is not None:
        try:
            users_api.add_user(body, data)
        except HTTPException as exc:  # 409: the user exists
            errors.append(str(exc.detail))
        except RequestValidationError as exc:  # 422: the role and agency do not fit
            errors = admin.validation_messages(exc.errors())
    if errors:
        request.state.audit_detail = f"refused: user {user_id[:64]}: {'; '.join(errors)}"[:1000]
        return _users_page(request, data, form=form, errors=errors, status_code=422)
    if password:
        auth.set_password(data.store, user_id, password, config.passwords, by=data.actor)
    request.state.audit_detail = (f"created user {user_id} ({body.role}{', ' + body.agency if body.agency else ''})"
                                  f"{'; console password set' if password else ''}")
    return redirect(f"{USERS}/{quote(user_id, safe='')}?done=created")


def _user_page(request: Request, data: Data, user_id: str, *, new_key: dict | None = None,
               password_errors: list[str] | None = None, key_errors: list[str] | None = None,
               failure: str | None = None, status_code: int = 200) -> Response:
    inventory = data.suite.inventory
    lang = _lang(request)
    user = users_api.get_user(user_id, data).model_dump()  # GET /api/v1/users/{id}: 404 when there is none
    keys = admin.key_rows(users_api.keys(data, user_id))
    context = {
        "active": "admin",
        "tab": "users",
        "account": user,
        "agency_label": admin.agency_name(inventory, user.get("agency"), lang),
        "has_password": auth.has_password(data.store, user_id),
        "keys": keys,
        "new_key": new_key,
        "password_errors": password_errors or [],
        "key_errors": key_errors or [],
        "failure": failure,
        "myself": user_id == data.principal.user,
        "lifetimes": admin.KEY_LIFETIMES,
        "default_lifetime": admin.DEFAULT_KEY_LIFETIME,
        "notice": _done(request, ("created", "disabled", "enabled", "password", "revoked")),
        "min_password": web.console_config(request).passwords.min_length,
    }
    return render(request, "admin_user.html", context, status_code=status_code)


@router.get(USERS + "/{user_id}", response_class=HTMLResponse, name="console_admin_user")
def user_page(user_id: UserId, request: Request, data: Admin) -> Response:
    return _user_page(request, data, user_id)


def _set_disabled(request: Request, data: Data, user_id: str, disabled: bool) -> Response:
    """PATCH /api/v1/users/{id} {"disabled": …}: a disabled user's keys stop working at once and its console
    sessions end at its next request. Admins cannot disable themselves here (they would lock themselves out)."""
    if disabled and user_id == data.principal.user:
        request.state.audit_detail = f"refused 409: {user_id} cannot disable their own account"
        return _user_page(request, data, user_id, failure="admin.users.error.self_disable", status_code=409)
    users_api.update_user(user_id, UserUpdate(disabled=disabled), data)  # 404 when there is none
    request.state.audit_detail = f"{'disabled' if disabled else 'enabled'} user {user_id}"
    return redirect(f"{USERS}/{quote(user_id, safe='')}?done={'disabled' if disabled else 'enabled'}")


@router.post(USERS + "/{user_id}/disable", dependencies=[CsrfChecked], name="console_admin_user_disable")
def disable_user(user_id: UserId, request: Request, data: Admin) -> Response:
    return _set_disabled(request, data, user_id, True)


@router.post(USERS + "/{user_id}/enable", dependencies=[CsrfChecked], name="console_admin_user_enable")
def enable_user(user_id: UserId, request: Request, data: Admin) -> Response:
    return _set_disabled(request, data, user_id, False)


@router.post(USERS + "/{user_id}/password", dependencies=[CsrfChecked], name="console_admin_user_password")
def set_password(user_id: UserId, request: Request, data: Admin,  # nosec B107 - empty form defaults
                 password: PASSWORD = "", password_again: PASSWORD = "") -> Response:  # nosec B107 - empty form defaults
    """The user's console password, set as `soc users password` sets it (console/auth.py set_password): argon2id,
    the password rules checked, every session of the user ended."""
    users_api.get_user(user_id, data)  # 404 when there is none
    errors = []
    if password != password_again:
        errors.append(web.translate(_lang(request), "admin.users.password_mismatch"))
    else:
        try:
            auth.set_password(data.store, user_id, password, web.console_config(request).passwords, by=data.actor)
        except auth.PasswordError as exc:
            errors.append(str(exc))
    if errors:
        request.state.audit_detail = f"refused 422: password of {user_id}: {'; '.join(errors)}"[:1000]
        return _user_page(request, data, user_id, password_errors=errors, status_code=422)
    request.state.audit_detail = f"set the console password of {user_id} (their sessions ended)"
    return redirect(f"{USERS}/{quote(user_id, safe='')}?done=password")


@router.post(USERS + "/{user_id}/keys", dependencies=[CsrfChecked], name="console_admin_user_key")
def new_key(user_id: UserId, request: Request, data: Admin,
            name: SHORT = "", lifetime: Annotated[str, Form(max_length=10)] = admin.DEFAULT_KEY_LIFETIME
            ) -> Response:
    """POST /api/v1/users/{id}/keys: a new API key with the user's role and agency. The answer is this page with the
    key in it, the one time it is shown (the store keeps its hash); the audit record names the key's id only."""
    if lifetime not in admin.KEY_LIFETIMES:
        return _user_page(request, data, user_id, key_errors=[web.translate(_lang(request), "admin.keys.bad_lifetime")],
                          status_code=422)
    try:
        answer = users_api.new_key(user_id, KeyIn(name=name.strip(), expires_in_days=admin.key_lifetime(lifetime)),
                                   data)
    except HTTPException as exc:
        if exc.status_code == 404:
            raise
        request.state.audit_detail = f"refused {exc.status_code}: key for {user_id}: {exc.detail}"[:1000]
        return _user_page(request, data, user_id, key_errors=[str(exc.detail)], status_code=exc.status_code)
    except ValidationError as exc:
        return _user_page(request, data, user_id, key_errors=admin.validation_messages(exc.errors()),
                          status_code=422)
    request.state.audit_detail = f"new API key {answer.record.id} for {user_id}"
    return _user_page(request, data, user_id, new_key={"key": answer.key, "record": answer.record.model_dump()},
                      status_code=201)


@router.post(ADMIN + "/keys/{key_id}/revoke", dependencies=[CsrfChecked], name="console_admin_key_revoke")
def revoke_key(key_id: KeyId, request: Request, data: Admin,
               back: Annotated[str, Form(max_length=80)] = "") -> Response:
    """DELETE /api/v1/keys/{id}: the key stops working at once. ``back`` (a user id) returns to that user's page."""
    record = users_api.revoke(key_id, data)  # 404 when there is none
    request.state.audit_detail = f"revoked API key {key_id}" + (f" of {record.user}" if record.user else "")
    if back and admin.ITEM_ID.match(back):
        return redirect(f"{USERS}/{quote(back, safe='')}?{urlencode({'done': 'revoked', 'key': key_id})}")
    return redirect(f"{USERS}?{urlencode({'done': 'revoked', 'key': key_id})}")


# --- dead letters --------------------------------------------------------------------------------------------------
@router.get(DEADLETTERS, response_class=HTMLResponse, name="console_admin_deadletters")
def dead_letters_page(request: Request, data: Admin) -> Response:
    problems = []
    try:
        limit = int(request.query_params.get("limit") or admin.DEFAULT_DEAD_LETTERS)
    except ValueError:
        limit = 0
    if limit not in admin.DEAD_LETTER_LIMITS:
        problems.append("admin.problem.limit")
        limit = admin.DEFAULT_DEAD_LETTERS
    answer = deadletters_api.dead_letters(data, limit)  # GET /api/v1/deadletters?limit=…
    context = {
        "active": "admin",
        "tab": "deadletters",
        "problems": problems,
        "limit": limit,
        "limits": admin.DEAD_LETTER_LIMITS,
        "total": answer.total,
        "rows": admin.dead_letter_rows(answer.dead_letters),
        "preview_chars": admin.PREVIEW_CHARS,
    }
    return render(request, "admin_deadletters.html", context)


# --- log-source health ---------------------------------------------------------------------------------------------
@router.get(SOURCES, response_class=HTMLResponse, name="console_admin_sources")
def sources_page(request: Request, data: Admin) -> Response:
    suite = data.suite
    inventory = suite.inventory
    lang = _lang(request)
    problems = []
    agency = request.query_params.get("agency") or ""
    if agency and agency not in inventory.agencies:
        problems.append("admin.problem.agency")
        agency = ""
    show_all = request.query_params.get("all") in ("1", "on")
    found = admin.monitor_states(suite)
    if found is None:
        posture = api_settings(suite).posture
        found = ("tracker", admin.tracker_states(suite, inventory, posture.source_intervals,
                                                 posture.default_source_interval_seconds))
    view = admin.source_view(found[0], found[1], inventory, lang)
    rows = [r for r in view.sources if (not agency or r["agency_id"] == agency)
            and (show_all or r["status"] in admin.NOT_OK)]
    context = {
        "active": "admin",
        "tab": "sources",
        "problems": problems,
        "view": view,
        "rows": rows,
        "agency": agency,
        "show_all": show_all,
        "agency_choices": sorted(((a["id"], a["name"]) for a in view.agencies if a["id"]),
                                 key=lambda x: admin.name_key(x[1])),
        "statuses": admin.SOURCE_STATUSES,
        "per_minute": admin.per_minute,
        "totals": {s: sum(a[s] for a in view.agencies) for s in admin.SOURCE_STATUSES},
        "expected": sum(a["expected"] for a in view.agencies),
    }
    return render(request, "admin_sources.html", context)


@router.get(TIERS, response_class=HTMLResponse, name="console_admin_tiers")
def tiers_page(request: Request, data: Admin) -> Response:
    inventory = data.suite.inventory
    lang = _lang(request)
    links = tiers_api.links(request, data.principal)
    for link in links:
        agency = inventory.agencies.get(link["id"])
        link["name"] = (agency.name_vi if lang == "vi" else agency.name_en) if agency is not None else link["id"]
    return render(request, "admin_tiers.html", {"active": "admin", "tab": "tiers",
                                                "upstream": tiers_api.upstream(request, data.principal),
                                                "links": links})
