"""Silences and inhibition rules: data the alert manager reads (not per agency: they are the SOC's own)."""

from __future__ import annotations

from fastapi import HTTPException

from detections import inhibition, silences
from detections.silences import silence_state
from soc import ecs
from soc.storage.base import DocumentQuery
from soc_api.data.core import DataCore


class TriageData(DataCore):
    # --- silences ------------------------------------------------------------------------------------------------
    def silences(self, state: str, limit: int) -> list[dict]:
        """Silences in ``state`` (active, pending, expired, or all), soonest to end first (expired: latest first)."""
        now = ecs.now_iso()
        ranges = {} if state in ("expired", "all") else {"ends_at": (now, None)}
        if state == "expired":
            ranges = {"ends_at": (None, now)}
        docs = self.store.find_documents(silences.COLLECTION, DocumentQuery(ranges=ranges, sort="ends_at",
                                                                            descending=state == "expired",
                                                                            limit=limit))
        return [d for d in docs if state == "all" or silence_state(d, now) == state]

    def silence(self, silence_id: str) -> dict:
        doc = self.store.get_document(silences.COLLECTION, silence_id)
        if doc is None:
            raise HTTPException(404, "no such silence")
        return doc

    def create_silence(self, doc: dict) -> dict:
        return self.suite.alerts.silences.create(doc)

    def expire_silence(self, silence_id: str) -> dict:
        """Expire a silence now (it is kept, with who expired it, for the record)."""
        return self.suite.alerts.silences.expire(self.silence(silence_id), by=self.actor)

    # --- inhibition rules ----------------------------------------------------------------------------------------
    def inhibit_rules(self) -> list[dict]:
        return [rule.doc for rule in self.suite.alerts.inhibitor.rules()]

    def add_inhibit_rule(self, doc: dict) -> dict:
        inhibitor = self.suite.alerts.inhibitor
        inhibitor.rules()  # seeds the defaults first, so adding a rule does not suppress them
        self.store.put_documents(inhibition.COLLECTION, [doc])
        inhibitor.invalidate()
        return doc

    def delete_inhibit_rule(self, rule_id: str) -> None:
        if not self.store.delete_document(inhibition.COLLECTION, rule_id):
            raise HTTPException(404, "no such inhibition rule")
        self.suite.alerts.inhibitor.invalidate()
