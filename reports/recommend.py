"""Recommendations derived from a report's data, each pointing at the evidence that supports it.

They are facts with a suggested action, not opinions: a source the inventory expects that sent nothing, a source that
stopped, an asset alerting again and again on the same rule, an address blocked earlier that came back after its
block expired, serious alerts nobody acknowledged, and slow acknowledgement.
"""

from __future__ import annotations

from statistics import median

from reports.model import AssetRow, ReportData, Recommendation
from soc import ecs
from soc.vocabulary import AlertStatus, Severity, severity_at_least, severity_rank

LONG_GAP_HOURS = 24.0
SLOW_ACK_HOURS = 24.0


def recommend(data: ReportData, alerts: list[dict], attackers_of: dict[str, dict[str, list[str]]],
              assets: list[AssetRow], runs_so_far: list, repeated_min: int = 3) -> list[Recommendation]:
    out: list[Recommendation] = []
    for row in data.sources:
        if not row.expected:
            continue
        params = {"asset": row.asset, "hostname": row.hostname, "source": row.source, "agency": row.agency}
        if row.status == "never":
            out.append(Recommendation("never_reported", "high", params, row.key))
        elif row.status == "silent":
            out.append(Recommendation("silent_source", "high", {**params, "last_seen": row.last_seen}, row.key))
        elif row.status == "gaps" and row.longest_gap_hours >= LONG_GAP_HOURS:
            out.append(Recommendation("source_gaps", "medium", {**params, "gaps": len(row.gaps),
                                                                "longest_hours": round(row.longest_gap_hours)},
                                      row.key))
    for asset in assets:
        for rule, count in sorted(asset.rules.items(), key=lambda kv: (-kv[1], kv[0])):
            if count >= repeated_min:
                out.append(Recommendation("repeated_alerts", "high" if count >= 3 * repeated_min else "medium",
                                          {"asset": asset.asset, "hostname": asset.hostname, "rule": rule,
                                           "count": count}, f"repeated:{asset.asset}|{rule}"))
    out.extend(_reoffending(data, alerts, attackers_of, runs_so_far))
    unacked = [a for a in alerts
               if severity_at_least(a.get("severity"), Severity.high) and a.get("status") == AlertStatus.new]
    if unacked:
        ev = data.ev("rec:unacknowledged")
        for alert in unacked:
            ev.add_alert(alert["id"])
        out.append(Recommendation("unacknowledged", "medium", {"count": len(unacked)}, "rec:unacknowledged"))
    ttas = [h.tta_hours for h in data.handled if h.tta_hours is not None]
    if ttas and median(ttas) > SLOW_ACK_HOURS:
        out.append(Recommendation("slow_acknowledgement", "medium", {"median_hours": round(median(ttas), 1)},
                                  "rec:slow_ack"))
        ev = data.ev("rec:slow_ack")
        for row in data.handled:
            if row.tta_hours is not None and row.tta_hours > SLOW_ACK_HOURS:
                for alert_id in row.alert_ids:
                    ev.add_alert(alert_id)
    return sorted(out, key=lambda r: (-severity_rank(r.severity), r.kind, str(sorted(r.params.items()))))


def _reoffending(data: ReportData, alerts: list[dict], attackers_of: dict, runs: list) -> list[Recommendation]:
    """An address blocked by a playbook whose block expired, then seen attacking again after the expiry."""
    out = []
    expiries: dict[str, list[tuple[str, str]]] = {}
    for run in runs:
        for block in run.blocks:
            if block.expires:
                expiries.setdefault(block.address, []).append((_iso(block.expires), run.id))
    for address, blocks in sorted(expiries.items()):
        for expires, run_id in sorted(blocks):
            if expires >= data.period_end:
                continue
            again = [a for a in alerts if address in attackers_of.get(a["id"], {})
                     and _iso(a.get("last_seen") or "") > expires]
            if not again:
                continue
            key = f"rec:reoffending:{address}"
            ev = data.ev(key)
            ev.add_other("playbook_runs", run_id)
            for alert in again:
                ev.add_alert(alert["id"])
                for eid in attackers_of[alert["id"]][address][:5]:
                    ev.add_event(eid)
            out.append(Recommendation("reoffending_block", "high",
                                      {"address": address, "expired": expires, "alerts": len(again)}, key))
            break  # one recommendation per address (the earliest expired block it came back after)
    return out


def _iso(value: str) -> str:
    try:
        return ecs.utc_iso(ecs.parse_time(value))
    except ValueError:
        return value
