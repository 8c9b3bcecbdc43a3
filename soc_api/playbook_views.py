"""What the API and the console share about playbook runs: the playbook service of the suite, which runs a caller may
see, and what of a run an agency caller is shown (no device answers)."""

from __future__ import annotations

import re
from typing import Any

from fastapi import HTTPException, Request

from soc_api.keys import Principal


def playbook_service(request: Request):
    """The suite's playbook service; without the playbook extension, one of the API's own (built once)."""
    from playbooks.service import build_service
    from soc_api.state import service

    suite = request.app.state.suite
    return service(suite, "playbooks", lambda: build_service(suite.services))


def visible_run(run: dict | None, principal: Principal) -> dict:
    if run is None or not principal.may_see(run.get("agency")):
        raise HTTPException(404, "no such run")
    return shown_run(run, principal)


# What a device answered lists what is on it: on a device shared by agencies (the province's firewall) that is
# every agency's blocks. An agency key gets its runs without the device's answers: no transcripts (``exchanges``:
# each command with its answer), no state observed before a change (``before``), and messages without the answer
# fragments drivers quote (what covered a target, an answer they could not read, a refusal, a failed command's
# output). The plan, its own targets, the commands the suite sent for them, states and outcomes stay. Analysts and
# network admins see everything.
DEVICE_ANSWERS = frozenset({"exchanges", "before"})
_COVERED = re.compile(r" \(covered by [^)]*\)")
_QUOTED_ANSWER = re.compile(r"((?:answered something|the answer to|failed \(exit -?\d+\)|refused the change|"
                            r"cannot read)[^:\n]*:)\s.*", re.S)
WITHHELD = "[the device's answer is shown to analysts]"


def without_answers(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_answers(v) for k, v in value.items() if k not in DEVICE_ANSWERS}
    if isinstance(value, list):
        return [without_answers(v) for v in value]
    if isinstance(value, str):
        if "(covered by " in value:
            value = _COVERED.sub(" (covered by a rule already on the device)", value)
        return _QUOTED_ANSWER.sub(rf"\1 {WITHHELD}", value)
    return value


def shown_run(run: dict, principal: Principal) -> dict:
    return without_answers(run) if principal.is_tenant else run
