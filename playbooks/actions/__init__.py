"""Playbook actions by name."""

from __future__ import annotations

from playbooks.actions.base import Action, DeviceTask, Impact, PlanContext, PlanError, PerformContext
from playbooks.actions.block import BlockAction, UnblockAction
from playbooks.actions.case_note import CaseNoteAction
from playbooks.actions.indicator import IndicatorAction
from playbooks.actions.notify import NotifyAction
from playbooks.actions.null_route import NullRouteAction
from playbooks.actions.quarantine import QuarantineAction

ACTIONS: dict[str, Action] = {a.name: a() for a in (BlockAction, UnblockAction, QuarantineAction, NullRouteAction,
                                                   IndicatorAction, NotifyAction, CaseNoteAction)}

__all__ = ["ACTIONS", "Action", "DeviceTask", "Impact", "PerformContext", "PlanContext", "PlanError"]
