"""Where playbook records live in the store: runs (with their whole audit trail), blocks (every block and null route
the suite put in force, with its expiry) and audit events (who did what, when). All searchable."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from soc import ecs
from soc.storage.base import DocumentQuery, Store

RUNS = "playbook_runs"
BLOCKS = "blocks"
AUDIT = "playbook_audit"

STATES = ("pending_approval", "running", "succeeded", "failed", "rolled_back", "reverted", "rejected")
FINAL = ("succeeded", "failed", "rolled_back", "reverted", "rejected")


def block_id(device: str, target: str, kind: str = "block") -> str:
    return hashlib.blake2b(f"{kind}|{device}|{target}".encode(), digest_size=12).hexdigest()


@dataclass
class RunFilter:
    state: str | list[str] | None = None
    playbook: str | None = None
    device: str | None = None
    agency: str | None = None
    alert_id: str | None = None
    since: str | None = None  # created >= since
    until: str | None = None  # created < until
    limit: int = 50
    after: tuple[Any, str] | None = None


class Records:
    def __init__(self, store: Store):
        self.store = store

    # --- runs ------------------------------------------------------------------------------------------------
    def save_run(self, run: dict) -> dict:
        run["updated"] = ecs.now_iso()
        self.store.put_documents(RUNS, [run])
        return run

    def get_run(self, run_id: str) -> dict | None:
        return self.store.get_document(RUNS, run_id)

    def find_runs(self, f: RunFilter) -> list[dict]:
        terms: dict[str, Any] = {}
        if f.state:
            terms["state"] = f.state
        if f.playbook:
            terms["playbook"] = f.playbook
        if f.device:
            terms["devices"] = f.device
        if f.agency:
            terms["agency"] = f.agency
        if f.alert_id:
            terms["alert_id"] = f.alert_id
        ranges = {"created": (f.since, f.until)} if f.since or f.until else {}
        return self.store.find_documents(RUNS, DocumentQuery(terms=terms, ranges=ranges, sort="created",
                                                             descending=True, limit=f.limit, after=f.after))

    # --- blocks ----------------------------------------------------------------------------------------------
    def save_block(self, block: dict) -> dict:
        block["updated"] = ecs.now_iso()
        self.store.put_documents(BLOCKS, [block])
        return block

    def get_block(self, block_id_: str) -> dict | None:
        return self.store.get_document(BLOCKS, block_id_)

    def find_blocks(self, *, state: str | list[str] | None = None, device: str | None = None,
                    expires_before: str | None = None, run_id: str | None = None, limit: int = 500) -> list[dict]:
        terms: dict[str, Any] = {}
        if state:
            terms["state"] = state
        if device:
            terms["device"] = device
        if run_id:
            terms["run_ids"] = run_id
        ranges = {"expires_at": (None, expires_before)} if expires_before else {}
        return self.store.find_documents(BLOCKS, DocumentQuery(terms=terms, ranges=ranges, sort="expires_at",
                                                               limit=limit))

    # --- audit events ----------------------------------------------------------------------------------------
    def audit(self, event: str, *, run: dict | None = None, actor: dict | None = None, **detail: Any) -> None:
        at = ecs.now_iso()
        doc = {"id": uuid.uuid4().hex, "at": at, "event": event,
               "run_id": (run or {}).get("id"), "playbook": (run or {}).get("playbook"),
               "agency": (run or {}).get("agency"), "actor": actor or {"kind": "system", "name": "soc"}}
        doc.update(detail)
        self.store.put_documents(AUDIT, [doc])

    def find_audit(self, *, run_id: str | None = None, event: str | None = None, limit: int = 200) -> list[dict]:
        terms: dict[str, Any] = {}
        if run_id:
            terms["run_id"] = run_id
        if event:
            terms["event"] = event
        return self.store.find_documents(AUDIT, DocumentQuery(terms=terms, sort="at", limit=limit))
