"""What a syslog sender writes reaches the console's pages as text, never as markup (attacker: syslog sender).

A sender chooses the user name in its sshd lines; through the real path (the suite's syslog TCP listener → parser
→ store → the SSH Brute Force rule → alert) it lands in the alert, its evidence and its entities, and so in the alert
queue, the alert page, the event search, the event page and the user's entity page an analyst opens. Each page must
show it escaped (and the strict Content-Security-Policy forbids inline script besides)."""

from __future__ import annotations

import re
import socket
import time
from datetime import datetime, timezone
from urllib.parse import quote

from tests.api_fixtures import running_suite
from tests.console_fixtures import ConsoleClient, add_user, console_api

PAYLOAD = "<script>alert(1)</script>"
ADDRESS = "203.0.113.66"


def test_a_senders_markup_is_shown_as_text_on_every_page_it_reaches(tmp_path):
    with running_suite(tmp_path / "suite", api=console_api()) as suite:
        add_user(suite, "ana", "analyst")
        now = datetime.now(timezone.utc).astimezone(suite.settings.tz)
        lines = b"".join((f"<38>{now:%b} {now.day:2d} {now:%H:%M:%S} so-tttt-web-01 sshd[7]: Failed password for "
                          f"invalid user {PAYLOAD} from {ADDRESS} port {4440 + i} ssh2\n").encode() for i in range(5))
        with socket.create_connection(("127.0.0.1", suite.bound["syslog_tcp"])) as sock:
            sock.sendall(lines)
        analyst = ConsoleClient(suite)
        try:
            analyst.signin("ana")
            deadline, found = time.monotonic() + 30, None
            while found is None and time.monotonic() < deadline:
                queue = analyst.get("/console/alerts", params={"entity": ADDRESS})
                match = re.search(r'data-alert-id="([^"]+)"', queue.text)
                found = match.group(1) if match else None
                time.sleep(0.3)
            assert found, "the brute force raised no alert"
            event_search = analyst.get("/console/events", params={"q": "invalid", "range": "24h"})
            event_id = re.search(r'href="/console/events/([^"?#]+)"', event_search.text)
            pages = {
                "queue": queue,
                "alert": analyst.get(f"/console/alerts/{found}"),
                "events": event_search,
                "entity": analyst.get(f"/console/entities/user/{quote(PAYLOAD, safe='')}"),
            }
            if event_id:
                pages["event"] = analyst.get(f"/console/events/{event_id.group(1)}")
            for name, page in pages.items():
                assert page.status_code in (200, 404), (name, page.status_code)
                assert PAYLOAD not in page.text, f"{name}: the sender's markup is in the page as markup"
                assert "script-src 'self'" in page.headers["content-security-policy"], name
            # The payload did reach the pages, as text: the test is not passing for want of it.
            shown = [name for name, page in pages.items() if "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text]
            assert "alert" in shown and ("events" in shown or "event" in shown), shown
        finally:
            analyst.close()
