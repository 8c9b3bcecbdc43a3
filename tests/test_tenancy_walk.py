"""Tenancy, proven over every route: each agency's key walks every operation of the OpenAPI document (every router,
whoever wrote it) with the other agency's ids in every path parameter, its agency in ``agency=``, its cursors in
``cursor=`` / ``next=``, its markers in search queries, and bodies naming its objects; no answer may carry anything
of the other agency, and none of the other agency's records may change.

Each agency's records carry a secret marker (in events, alerts, incidents, sightings, malware findings, playbook
runs, reports and audit records). A 2xx answer must contain none of the other agency's markers, ids or its agency id;
a 4xx answer (which may echo what was sent) none of its markers. The owner's own key is checked to find its markers
on the listing routes, so the absence for the other agency means something. Runs on SQLite and on the real OpenSearch
node.

Forging, too: a third agency's key sends, through the real HTTP ingest, documents that claim to be A's and B's in
every way a body can (top-level dotted ``organization.id`` / ``soc.asset.id`` / ``event.id`` naming their events and
assets, nested-dotted mixes, failed SSH logins that raise a brute-force alert, dotted keys contradicting nested ones).
Its events and alerts must stay its own: the walk also checks that neither A nor B ever sees the forger's marker or
its attacking address, that their stored events were not overwritten, and that their silent assets stay silent."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import uuid

import pytest

from datetime import datetime, timezone

from detections.indicators.model import build
from detections.indicators.stix import stix_id_for
from soc_api.keys import create_key
from soc_api.taxii.server import collection_uuid
from soc import ecs
from tests.api_fixtures import AGENCY_A, AGENCY_B, alert_doc, call, client_for, event_doc, running_suite

WRITE = {"post", "put", "patch", "delete"}
# Writes an agency key may make: into its own agency only (the answer names it; the snapshot checks the other's data).
OWN_AGENCY_WRITES = {"/api/v1/ingest"}
TAXII = "application/taxii+json;version=2.1"
FORGER = "so-gddt"  # a third agency whose key forges A's and B's fields
FORGED_IP = "203.0.113.250"  # the address of its failed SSH logins (a brute-force alert: the forger's own)


def _hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]




class World:
    """Two agencies' records, each with its own secret marker, and the ids a walker may try."""

    def __init__(self, suite, keys):
        self.suite, self.keys = suite, keys
        self.secret = {a: f"SECRET-{a}-{uuid.uuid4().hex[:8]}" for a in (AGENCY_A, AGENCY_B)}
        self.amber_secret = f"AMBER-ONLY-{uuid.uuid4().hex[:8]}"
        self.forger_secret = f"FORGED-{uuid.uuid4().hex[:8]}"
        self.ids: dict[str, dict[str, list[str]]] = {}
        self.assets = {a: next(x.id for x in suite.inventory.assets.values() if x.agency == a)
                       for a in (AGENCY_A, AGENCY_B)}
        # Assets that send nothing in this test and expect log sources: posture must keep them silent.
        self.silent_assets = {a: next(x.id for x in suite.inventory.assets.values() if x.agency == a and x.log_sources)
                              for a in (AGENCY_A, AGENCY_B)}

    def seed(self) -> None:
        store = self.suite.store
        shared = build([{"type": "ipv4", "value": "192.0.2.10"}], source="soc", tlp="green", confidence=90)
        amber = build([{"type": "domain", "value": "amber.example"}], source="soc", tlp="amber",
                      name=self.amber_secret)
        self.suite.service("indicators").upsert([shared, amber])
        self.amber_id = amber["id"]
        for n, agency in enumerate((AGENCY_A, AGENCY_B)):
            secret = self.secret[agency]
            offset = 40 * n
            store.write_events([event_doc(offset + i, agency, marker=secret) for i in range(3)])
            alerts = [alert_doc(offset + i, agency, marker=secret, entities={"ip": [f"198.51.100.{offset + i}"]})
                      for i in range(3)]
            store.upsert_alerts(alerts)
            incident = {"id": f"inc-{agency}", "title": f"incident {secret}", "organization": {"id": agency},
                        "alerts": [alerts[0]["id"]], "primary": alerts[0]["id"], "severity": "high",
                        "created_at": "2026-11-22T10:00:00.000Z", "created_by": "t"}
            store.put_documents("incidents", [incident])
            sighting_id = _hex(f"sighting-{agency}")
            store.put_documents("sightings", [{
                "id": sighting_id, "stix_id": stix_id_for("sighting", sighting_id), "indicator_id": shared["id"], "organization": {"id": agency}, "count": 2,
                "first_seen": "2026-11-22T10:00:00.000Z", "last_seen": "2026-11-22T10:05:00.000Z",
                "events": [f"{agency}-e{offset}"], "observed": [{"field": "source.ip", "value": secret}],
                "modified": "2026-11-22T10:05:00.000Z"}])
            finding_id = _hex(f"finding-{agency}")
            store.put_documents("malware_findings", [{
                "id": finding_id, "stix_id": stix_id_for("malware", finding_id), "alert_id": alerts[1]["id"], "name": f"webshell {secret}",
                "hashes": {"sha256": _hex(secret) * 2}, "organization": {"id": agency},
                "first_seen": "2026-11-22T10:00:00.000Z", "last_seen": "2026-11-22T10:00:00.000Z",
                "modified": "2026-11-22T10:00:00.000Z"}])
            store.put_documents("playbook_runs", [{
                "id": f"run-{agency}", "playbook": "block-ip", "agency": agency, "state": "pending_approval",
                "alert_id": alerts[0]["id"], "created": "2026-11-22T10:00:00.000Z", "reason": secret,
                "steps": [], "devices": []}])
            store.put_documents("reports", [{
                "id": f"rep-{agency}", "scope": agency, "rollup": False, "period": "2026-10",
                "period_start": "2026-10-01", "period_end": "2026-11-01", "lang": "en", "title": f"report {secret}",
                "subtitle": "", "generated": "2026-11-01T00:00:00.000Z", "files": {}, "summary": {"note": secret}}])
            key, record = create_key(store, "agency", agency=agency, name=f"other key {agency}")
            self.ids[agency] = {
                "alert": [a["id"] for a in alerts], "event": [f"{agency}-e{offset + i}" for i in range(3)],
                "incident": [incident["id"]], "sighting": [sighting_id], "finding": [finding_id],
                "run": [f"run-{agency}"], "report": [f"rep-{agency}"], "key": [record["id"]],
                "asset": [self.assets[agency]], "ip": [f"198.51.100.{offset}"],
                "stix": [stix_id_for("sighting", sighting_id), stix_id_for("malware", finding_id)],
            }
        store.refresh()
        with client_for(self.suite) as client:
            for agency in (AGENCY_A, AGENCY_B):
                # An audit record of this agency whose path carries its secret (a refused TAXII write).
                response = call(client, "POST", f"/taxii2/soc/collections/{self.secret[agency]}/objects/",
                                self.keys[agency], headers={"Content-Type": TAXII}, content=b'{"objects": []}')
                assert response.status_code == 404
        store.refresh()
        self.forge()

    def forgeries(self) -> tuple[list[dict], list[dict]]:
        """(documents to be stored as the forger's, documents to be refused) naming A's and B's events and assets."""
        now = ecs.utc_iso(datetime.now(timezone.utc))
        stored, refused = [], []
        for victim in (AGENCY_A, AGENCY_B):
            events, asset = self.ids[victim]["event"], self.silent_assets[victim]

            def doc(n: int, **fields) -> dict:
                return {"@timestamp": now, "message": f"{self.forger_secret} {victim} {n}",
                        "event": {"dataset": "custom.app", "kind": "event"}, **fields}

            stored += [
                doc(1, **{"organization.id": victim, "organization.name": "claimed"}),
                doc(2, **{"soc.asset.id": asset, "soc.asset.criticality": "critical", "soc.sender.trusted": True,
                          "soc.sender.agency": victim}),
                doc(3, **{"event.id": events[0], "organization.id": victim, "event.ingested": now}),
                doc(4, **{"soc.asset": {"id": asset}, "organization": {"name.en": "claimed"}},
                    event={"dataset": "custom.app", "id.x": events[1]}),
                doc(5, organization={"id": victim}, event={"dataset": "custom.app", "id": events[2]},
                    tags=["unknown_sender"]),
            ]
            stored += [{"@timestamp": now, "message": f"Failed password {self.forger_secret} {victim} ssh {i}",
                        "organization.id": victim, "soc.asset.id": asset, "process": {"name": "sshd"},
                        "event": {"dataset": "system.auth", "action": "ssh_login", "outcome": "failure",
                                  "category": ["authentication"]},
                        "source": {"ip": FORGED_IP}, "user": {"name": "root"}} for i in range(3)]
            refused.append(doc(6, organization={"id": FORGER}, **{"organization.id": victim}))
        return stored, refused

    def forge(self) -> None:
        stored, refused = self.forgeries()
        body = b"\n".join(json.dumps(d).encode() for d in stored + refused) + b"\n"
        with client_for(self.suite) as client:
            answer = call(client, "POST", "/api/v1/ingest", self.keys[FORGER], content=body,
                          headers={"Content-Type": "application/x-ndjson"})
        assert answer.status_code == 202 and answer.json()["agency"] == FORGER, answer.text
        assert self.suite.drain(30)
        self.suite.store.refresh()
        self.forged = len(stored), len(refused)

    def check_forgeries(self, client) -> None:
        """What the forger sent is its own; A's and B's records are as they were seeded."""
        store = self.suite.store
        assert store.count_events(FORGER) == self.forged[0]
        for agency in (AGENCY_A, AGENCY_B):
            assert store.count_events(agency) == 3
            kept = store.get_events(self.ids[agency]["event"])
            assert len(kept) == 3
            for event in kept:
                assert event["organization"]["id"] == agency and self.secret[agency] in event["event"]["original"]
            posture = call(client, "GET", "/api/v1/posture", self.keys[agency])
            assert posture.status_code == 200, posture.text
            silent = [s["asset"] for a in posture.json()["agencies"] for s in a["log_sources"]["silent"]]
            assert self.silent_assets[agency] in silent, (agency, posture.json())
        letters = [d for d in store.list_dead_letters(500) if self.forger_secret.encode() in d.raw]
        assert len(letters) == self.forged[1] and all(d.reason.startswith("dotted_conflict") for d in letters)
        mine = call(client, "GET", "/api/v1/events", self.keys[FORGER], params={"limit": 500}).json()["events"]
        assert len([e for e in mine if self.forger_secret in e["event"]["original"]]) == self.forged[0]
        assert all(e["organization"]["id"] == FORGER for e in mine)

    def forbidden(self, other: str, success: bool) -> list[str]:
        found = [self.secret[other], self.amber_secret, self.forger_secret, FORGED_IP]
        if success:
            found.append(other)
            found += [i for kind, values in self.ids[other].items() if kind not in ("ip",) for i in values]
        return found

    def path_values(self, name: str, other: str) -> list[str]:
        ids = self.ids[other]
        table = {
            "alert_id": ids["alert"], "incident_id": ids["incident"], "event_id": ids["event"],
            "indicator_id": [self.amber_id], "agency_id": [other], "asset_id": ids["asset"],
            "run_id": ids["run"], "report_id": ids["report"], "key_id": ids["key"], "user_id": ["nobody"],
            "api_root": ["soc"], "collection_id": [collection_uuid(c) for c in ("indicators", "sightings", "malware")],
            "object_id": ids["stix"] + [self.amber_id], "status_id": [str(uuid.uuid4())],
            "device_id": [next(iter(self.suite.inventory.devices), "none")], "name": ["block-ip"],
        }
        return table.get(name, ids["alert"] + ids["incident"] + ids["run"] + [other])

    def query_values(self, name: str, other: str) -> list[str]:
        ids = self.ids[other]
        table = {
            "agency": [other], "q": [f"organization.id:{other}", self.secret[other], f"event.id:{ids['event'][0]}"],
            "entity": ids["ip"], "incident": ids["incident"], "alert_id": ids["alert"][:1],
            "indicator_id": [self.amber_id], "match[id]": ids["stix"] + [self.amber_id], "user": ["nobody"],
            "key_id": ids["key"], "rule_id": ["r1"], "scope": [other],
        }
        return table.get(name, [])


def _body(schema: dict, components: dict, world: World, other: str, depth: int = 0):
    """A plausible request body naming the other agency's objects wherever an id fits."""
    if "$ref" in schema:
        return _body(components[schema["$ref"].rsplit("/", 1)[1]], components, world, other, depth)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"]
            return _body(options[0], components, world, other, depth) if options else None
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object" or "properties" in schema:
        if depth > 4:
            return {}
        out = {}
        for name, prop in (schema.get("properties") or {}).items():
            if name in ("ids",):
                out[name] = world.ids[other]["alert"]
            elif name in ("alert_id",):
                out[name] = world.ids[other]["alert"][0]
            elif name in ("agency", "organization"):
                out[name] = other if prop.get("type") != "object" else {"id": other}
            elif name in (schema.get("required") or []):
                out[name] = _body(prop, components, world, other, depth + 1)
        return out
    if kind == "array":
        return [_body(schema.get("items", {}), components, world, other, depth + 1)]
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return False
    return world.ids[other]["alert"][0] if schema.get("pattern") is None else "x"


def _requests(op: dict, path: str, method: str, world: World, other: str, cursors: dict, components: dict):
    names = re.findall(r"{([^}]+)}", path)
    combos = itertools.product(*[world.path_values(n, other) for n in names]) if names else [()]
    params = [p for p in op.get("parameters", []) if p["in"] == "query"]
    for combo in combos:
        url = path
        for name, value in zip(names, combo):
            url = url.replace("{" + name + "}", value)
        variants: list[dict] = [{}]
        for p in params:
            for value in world.query_values(p["name"], other):
                variants.append({p["name"]: value})
            if p["name"] in ("cursor", "next") and (path, other) in cursors:
                variants.append({p["name"]: cursors[(path, other)]})
        bodies = [None]
        if method in WRITE:
            schema = ((op.get("requestBody") or {}).get("content") or {})
            json_schema = (schema.get("application/json") or {}).get("schema")
            bodies = [{}] + ([_body(json_schema, components, world, other)] if json_schema else [])
        for query, body in itertools.product(variants, bodies):
            yield url, query, body


@pytest.fixture(params=["sqlite", "opensearch"])
def world(request, tmp_path):
    if request.param == "sqlite":
        context = running_suite(tmp_path)
    else:
        url, prefix = request.getfixturevalue("opensearch_prefix")
        context = running_suite(tmp_path, store_url=url, index_prefix=prefix)
    with context as suite:
        keys = {a: create_key(suite.store, "agency", agency=a)[0] for a in (AGENCY_A, AGENCY_B, FORGER)}
        keys["analyst"] = create_key(suite.store, "analyst")[0]
        w = World(suite, keys)
        w.seed()
        yield w


def _snapshot(world: World, agency: str) -> str:
    store = world.suite.store
    docs = [store.get_alert(i) for i in world.ids[agency]["alert"]]
    docs += [store.get_document("incidents", i) for i in world.ids[agency]["incident"]]
    docs += [store.get_document("playbook_runs", i) for i in world.ids[agency]["run"]]
    docs += [store.get_api_key(i) for i in world.ids[agency]["key"]]
    docs.append(world.suite.inventory.agencies[agency].model_dump(mode="json"))
    world.suite.drain(30)  # what the walk sent to the ingest route is processed before counting
    world.suite.store.refresh()
    docs.append({"events": store.count_events(agency)})
    return json.dumps(docs, sort_keys=True, default=str)


def test_every_route_keeps_each_agency_to_its_own(world):
    suite = world.suite
    with client_for(suite) as client:
        spec = client.get("/openapi.json").json()
        components = spec.get("components", {}).get("schemas", {})
        operations = {(path, method): op for path, ops in spec["paths"].items() for method, op in ops.items()}
        # The owners' own cursors, to replay from the other agency's key.
        cursors = {}
        for (path, method), op in operations.items():
            names = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
            if method != "get" or "{" in path or not names & {"cursor", "next"}:
                continue
            for owner in (AGENCY_A, AGENCY_B):
                params = {"limit": 1} if "limit" in names else {}
                body = call(client, "GET", path, world.keys[owner], params=params,
                            headers={"Accept": TAXII} if path.startswith("/taxii2") else {})
                if body.status_code == 200:
                    token = body.json().get("next_cursor") or body.json().get("next")
                    if token:
                        cursors[(path, owner)] = token
        assert len(cursors) >= 5, cursors  # alerts, events, incidents, sightings, audit, runs...
        # The owners see their own markers where they should: the negative results below mean something.
        for owner in (AGENCY_A, AGENCY_B):
            for path in ("/api/v1/alerts", "/api/v1/events", "/api/v1/incidents", "/api/v1/indicators/sightings",
                         "/api/v1/indicators/export", "/api/v1/playbooks/runs", "/api/v1/reports", "/api/v1/audit"):
                text = call(client, "GET", path, world.keys[owner]).text
                assert world.secret[owner] in text, (owner, path, text[:300])
        analyst_view = call(client, "GET", "/api/v1/alerts", world.keys["analyst"]).text
        assert world.secret[AGENCY_A] in analyst_view and world.secret[AGENCY_B] in analyst_view
        # The forger's documents are its own events (the walk below checks A and B never see them).
        world.check_forgeries(client)

        before = {a: _snapshot(world, a) for a in (AGENCY_A, AGENCY_B)}
        walked, leaks, server_errors = set(), [], []
        requests = 0
        # Reads before writes: the viewer's own audit records echo what it sent in its writes (the other agency's
        # ids), which is its own history, not the other agency's data.
        ordered = sorted(operations.items(), key=lambda item: item[0][1] in WRITE)
        for viewer, other in ((AGENCY_A, AGENCY_B), (AGENCY_B, AGENCY_A)):
            for (path, method), op in ordered:
                for url, query, body in _requests(op, path, method, world, other, cursors, components):
                    headers = {"Accept": TAXII} if path.startswith("/taxii2") else {}
                    kwargs = {"params": query, "headers": headers}
                    if method in WRITE:
                        if path.startswith("/taxii2"):
                            headers["Content-Type"] = TAXII
                            kwargs["content"] = json.dumps(body or {"objects": []}).encode()
                        elif body is not None:
                            kwargs["json"] = body
                    response = call(client, method.upper(), url, world.keys[viewer], **kwargs)
                    requests += 1
                    walked.add((path, method))
                    if response.status_code >= 500:
                        server_errors.append((viewer, method, url, query, response.status_code, response.text[:200]))
                        continue
                    success = 200 <= response.status_code < 300
                    for needle in world.forbidden(other, success):
                        if needle in response.text:
                            leaks.append((viewer, method.upper(), url, query, response.status_code, needle))
                    if success and method in WRITE and path in OWN_AGENCY_WRITES:
                        if response.json().get("agency") != viewer:
                            leaks.append((viewer, method.upper(), url, query, response.status_code,
                                          "an own-agency write went to another agency"))
                    elif success and method in WRITE:
                        leaks.append((viewer, method.upper(), url, query, response.status_code, "a write succeeded"))
        assert walked == set(operations), set(operations) - walked
        assert not leaks, leaks[:20]
        assert not server_errors, server_errors[:10]
        assert requests > 2 * len(operations)
        suite.store.refresh()
        assert {a: _snapshot(world, a) for a in (AGENCY_A, AGENCY_B)} == before


def test_a_city_key_sees_its_subtree_on_every_read_and_nothing_of_the_departments(world):
    """A district's key (An Binh City, with communes below it: its scope is a subtree of agencies, not one id) reads
    every route with each department's ids, cursors and markers: no answer fails, none carries their data."""
    city = create_key(world.suite.store, "agency", agency="h-an-binh", name="city walk")[0]
    with client_for(world.suite) as client:
        spec = client.get("/openapi.json").json()
        components = spec.get("components", {}).get("schemas", {})
        leaks, server_errors, requests = [], [], 0
        for path, ops in spec["paths"].items():
            op = ops.get("get")
            if op is None:
                continue
            for other in (AGENCY_A, AGENCY_B):
                for url, query, _ in _requests(op, path, "get", world, other, {}, components):
                    headers = {"Accept": TAXII} if path.startswith("/taxii2") else {}
                    response = call(client, "GET", url, city, params=query, headers=headers)
                    requests += 1
                    if response.status_code >= 500:
                        server_errors.append((url, query, response.status_code, response.text[:200]))
                        continue
                    for needle in world.forbidden(other, 200 <= response.status_code < 300):
                        if needle in response.text:
                            leaks.append((url, query, response.status_code, needle))
        assert requests > 50
        assert not server_errors, server_errors[:10]
        assert not leaks, leaks[:20]
