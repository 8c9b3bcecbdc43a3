"""notify: a webhook (JSON POST) or an e-mail through the configured SMTP server. Not configured means skipped, and
the step says so; a configured channel that fails fails the step."""

from __future__ import annotations

import os
import smtplib
from email.message import EmailMessage
from typing import Literal

import httpx

from playbooks.actions.base import Action, Impact, Params, PerformContext, PlanContext


class NotifyParams(Params):
    channel: Literal["webhook", "email"] = "webhook"
    url: str | None = None  # webhook; default from the settings
    to: list[str] = []  # e-mail recipients
    subject: str = "SOC playbook"
    message: str


class NotifyAction(Action):
    name = "notify"
    params_model = NotifyParams

    def plan(self, params: NotifyParams, ctx: PlanContext):
        where = (params.url or ctx.settings.webhook.url or "(no webhook configured)") if params.channel == "webhook" \
            else ", ".join(params.to) or "(no recipient)"
        return [], Impact(), f"notify by {params.channel} to {where}"

    def perform(self, params: NotifyParams, ctx: PerformContext) -> dict:
        run = ctx.run
        if params.channel == "webhook":
            url = params.url or ctx.settings.webhook.url
            if not url:
                return {"status": "skipped", "message": "no webhook URL configured (playbooks.webhook.url)"}
            headers = {}
            if ctx.settings.webhook.token_env and os.environ.get(ctx.settings.webhook.token_env):
                headers["Authorization"] = f"Bearer {os.environ[ctx.settings.webhook.token_env]}"
            body = {"text": params.message, "subject": params.subject, "run_id": run["id"],
                    "playbook": run["playbook"], "alert_id": run.get("alert_id"), "agency": run.get("agency"),
                    "state": run["state"]}
            response = httpx.post(url, json=body, headers=headers, timeout=ctx.settings.webhook.timeout_seconds)
            if response.status_code >= 300:
                raise RuntimeError(f"webhook {url} answered {response.status_code}")
            return {"status": "done", "message": f"webhook {url} answered {response.status_code}"}
        smtp = ctx.settings.smtp
        if not smtp.host:
            return {"status": "skipped", "message": "no SMTP server configured (playbooks.smtp.host)"}
        if not params.to:
            return {"status": "skipped", "message": "no recipients"}
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = smtp.sender, ", ".join(params.to), params.subject
        mail.set_content(f"{params.message}\n\nrun {run['id']} of playbook {run['playbook']}"
                         f"{' for alert ' + run['alert_id'] if run.get('alert_id') else ''}\n")
        client = smtplib.SMTP_SSL if smtp.ssl else smtplib.SMTP
        with client(smtp.host, smtp.port, timeout=smtp.timeout_seconds) as server:
            if smtp.starttls and not smtp.ssl:
                server.starttls()
            if smtp.username:
                server.login(smtp.username, os.environ.get(smtp.password_env or "", ""))
            refused = server.send_message(mail)
        if refused:
            raise RuntimeError(f"the SMTP server refused {', '.join(refused)}")
        return {"status": "done", "message": f"e-mail sent to {', '.join(params.to)} via {smtp.host}:{smtp.port}"}
