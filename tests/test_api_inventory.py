"""Inventory through the API: everyone reads what is theirs, admins edit; an edit is validated as a whole, written
to the inventory file (previous version kept), and used for enrichment from the next event on."""

from __future__ import annotations

from datetime import datetime, timezone

from collectors.message import RawMessage
from inventory.lookup import Inventory
from soc import ecs
from tests.api_fixtures import AGENCY_A, AGENCY_B, call, client_for, keys_for, running_suite


def test_read_scopes_and_admin_edits(tmp_path):
    with running_suite(tmp_path) as suite, client_for(suite) as client:
        keys = keys_for(suite.store)
        every = call(client, "GET", "/api/v1/inventory/agencies", keys["analyst"]).json()
        assert len(every) == len(suite.inventory.agencies)
        own = call(client, "GET", "/api/v1/inventory/agencies", keys[AGENCY_A]).json()
        assert [a["id"] for a in own] == [AGENCY_A]
        assert call(client, "GET", f"/api/v1/inventory/agencies/{AGENCY_B}", keys[AGENCY_A]).status_code == 404
        assets = call(client, "GET", "/api/v1/inventory/assets", keys[AGENCY_A]).json()
        assert assets and {a["agency"] for a in assets} == {AGENCY_A}
        assert call(client, "GET", "/api/v1/inventory/devices", keys[AGENCY_A]).status_code == 403
        devices = call(client, "GET", "/api/v1/inventory/devices", keys["network_admin"]).json()
        assert devices and all("password" not in str(d["credentials"]).replace("password_env", "") for d in devices)

        # An analyst cannot edit; an admin can. A new server for agency B, on an address of B's network.
        asset = {"id": "so-yt-his-01", "hostname": "so-yt-his-01", "kind": "server", "agency": AGENCY_B,
                 "addresses": ["10.20.17.20"], "criticality": "high", "log_sources": ["linux-auth"]}
        assert call(client, "PUT", "/api/v1/inventory/assets/so-yt-his-01", keys["analyst"], json=asset
                    ).status_code == 403
        made = call(client, "PUT", "/api/v1/inventory/assets/so-yt-his-01", keys["admin"], json=asset)
        assert made.status_code == 200 and made.json()["agency"] == AGENCY_B
        # A reference that does not resolve is refused whole, and nothing is written.
        bad = dict(asset, id="ghost-01", hostname="ghost-01", agency="no-such-agency")
        refused = call(client, "PUT", "/api/v1/inventory/assets/ghost-01", keys["admin"], json=bad)
        assert refused.status_code == 422 and "no-such-agency" in refused.json()["detail"][0]["msg"]
        on_disk = Inventory.load(suite.settings.inventory.path)
        assert "so-yt-his-01" in on_disk.assets and "ghost-01" not in on_disk.assets
        assert (tmp_path / "province.yaml.bak").exists()
        # Enrichment uses the edit at once: an event from the new server belongs to agency B.
        now = datetime.now(timezone.utc).astimezone(suite.settings.tz)
        line = (f"<38>{now:%b} {now.day:2d} {now:%H:%M:%S} so-yt-his-01 sshd[7]: Failed password for root from "
                f"203.0.113.9 port 4444 ssh2").encode()
        outcome = suite.process([RawMessage(data=line, transport="tcp", peer="10.20.17.20")])
        assert ecs.get(outcome.events[0], "organization.id") == AGENCY_B
        assert ecs.get(outcome.events[0], "soc.asset.id") == "so-yt-his-01"
        assert call(client, "DELETE", "/api/v1/inventory/assets/so-yt-his-01", keys["admin"]).status_code == 204
        assert "so-yt-his-01" not in Inventory.load(suite.settings.inventory.path).assets
        assert call(client, "DELETE", f"/api/v1/inventory/agencies/{suite.inventory.document.province.id}",
                    keys["admin"]).status_code == 422
