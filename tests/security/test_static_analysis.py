"""The static security linter (bandit) over the suite's own code: every finding is fixed, or justified in place with
``# nosec BXXX - why`` on the line it concerns. A new finding fails the run."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import PROJECT

PACKAGES = ["soc", "collectors", "detections", "playbooks", "inventory", "soc_api", "reports", "tiers", "field",
            "assessment"]


def test_bandit_finds_nothing_unjustified():
    proc = subprocess.run([sys.executable, "-m", "bandit", "-q", "-r", *PACKAGES, "-f", "json"], cwd=PROJECT,
                          capture_output=True, text=True, timeout=300)
    report = json.loads(proc.stdout)
    assert not report["errors"], report["errors"]
    findings = [f"{r['filename']}:{r['line_number']}: {r['test_id']} {r['issue_text']}" for r in report["results"]]
    assert findings == [], "bandit findings (fix them, or justify in place with # nosec):\n" + "\n".join(findings)


def test_every_nosec_says_why():
    """A justification is a reason beside the switch-off, on the line or the line above."""
    bare = []
    for package in PACKAGES:
        for path in sorted((PROJECT / package).rglob("*.py")):
            lines = path.read_text(encoding="utf-8").splitlines()
            for number, line in enumerate(lines, 1):
                if "# nosec" not in line:
                    continue
                after = line.split("# nosec", 1)[1].strip()
                reason = after.split(" - ", 1)[1].strip() if " - " in after else ""
                above = lines[number - 2].strip() if number > 1 else ""
                if not reason and "#" not in above:
                    bare.append(f"{path.relative_to(PROJECT)}:{number}")
    assert bare == [], f"# nosec without a reason: {bare}"
