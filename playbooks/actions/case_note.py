"""case_note: open or update the alert's case note (collection ``case_notes``, one document per alert, one entry
per run: a run that writes again updates its own entry). Kept apart from the alert document itself, which the
alert manager rewrites as detections come in."""

from __future__ import annotations

from playbooks.actions.base import Action, Impact, Params, PerformContext, PlanContext
from soc import ecs

COLLECTION = "case_notes"


class CaseNoteParams(Params):
    text: str


class CaseNoteAction(Action):
    name = "case_note"
    params_model = CaseNoteParams

    def plan(self, params: CaseNoteParams, ctx: PlanContext):
        return [], Impact(), "write the alert's case note"

    def perform(self, params: CaseNoteParams, ctx: PerformContext) -> dict:
        run = ctx.run
        alert_id = run.get("alert_id")
        if not alert_id:
            return {"status": "skipped", "message": "the run has no alert, so no case note"}
        now = ecs.now_iso()
        note = ctx.store.get_document(COLLECTION, alert_id)
        opened = note is None
        if note is None:
            note = {"id": alert_id, "alert_id": alert_id, "organization": {"id": run.get("agency")}, "created": now,
                    "entries": []}
        entry = {"at": now, "by": f"playbook {run['playbook']}", "run_id": run["id"], "text": params.text}
        note["entries"] = [e for e in note["entries"] if e.get("run_id") != run["id"]] + [entry]
        note["updated"] = now
        ctx.store.put_documents(COLLECTION, [note])
        return {"status": "done", "message": f"{'opened' if opened else 'updated'} the case note of alert {alert_id}"}
