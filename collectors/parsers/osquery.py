"""osquery scheduled-query results as osqueryd's filesystem/TLS logger writes them, one JSON object per line.

Event format (``--logger_event_type``, the default): ``{"name", "hostIdentifier", "calendarTime", "unixTime",
"epoch", "counter", "numerics", "decorations", "columns": {...}, "action": "added"|"removed"}``; snapshot queries:
``"action": "snapshot"`` with ``"snapshot": [{...}, ...]``; batch format: ``"diffResults": {"added": [...],
"removed": [...]}``. Fields as the Elastic osquery module names them (``osquery.result.*``), plus the ECS fields the
common columns give (process, user, file, hashes).
"""

from __future__ import annotations

from datetime import datetime, timezone

from collectors.message import ParseError
from collectors.parsers import common as c
from collectors.parsers.registry import ParseContext, ParserSpec
from soc import ecs

# Column name -> ECS field, for the columns osquery's common tables share (processes, users, file, hash, ...).
COLUMNS = {"pid": "process.pid", "parent": "process.parent.pid", "cmdline": "process.command_line",
           "username": "user.name", "uid": "user.id", "sha256": "file.hash.sha256", "md5": "file.hash.md5",
           "sha1": "file.hash.sha1", "remote_address": "destination.ip", "remote_port": "destination.port",
           "local_address": "source.ip", "local_port": "source.port"}


def _record(doc: dict) -> dict:
    record = doc.get("_json")
    if not detect(doc):
        raise ParseError("not_osquery", "not an osquery result (needs name, hostIdentifier and columns, snapshot "
                                        "or diffResults)")
    return record  # type: ignore[return-value]


def _moment(record: dict) -> datetime | None:
    unix = record.get("unixTime")
    if isinstance(unix, str) and unix.strip().isdigit():
        unix = int(unix)
    if isinstance(unix, (int, float)) and not isinstance(unix, bool) and 0 < unix < 32503680000:
        return datetime.fromtimestamp(unix, tz=timezone.utc)
    calendar = record.get("calendarTime")  # "Tue Sep 30 17:37:30 2014 UTC"
    if isinstance(calendar, str):
        try:
            return datetime.strptime(calendar.replace(" UTC", ""), "%a %b %d %H:%M:%S %Y").replace(
                tzinfo=timezone.utc)
        except ValueError:
            return None
    return None


def _strings(row: dict) -> dict:
    return {str(k): (v if isinstance(v, str) else str(v) if isinstance(v, (int, float)) and not isinstance(v, bool)
                     else v) for k, v in row.items()}


def parse_osquery(doc: dict, ctx: ParseContext | None = None) -> dict:
    # The event is built anew from the named osquery fields; column and decoration names (dotted or not) stay names
    # under osquery.result.*: nothing of the record can reach organization.*, soc.* or event.id.
    record = _record(doc)
    out: dict = {}
    moment = _moment(record)
    if moment is not None:
        out["@timestamp"] = moment
    result = {"name": record["name"], "host_identifier": record["hostIdentifier"]}
    for key, name in (("calendarTime", "calendar_time"), ("unixTime", "unix_time"), ("epoch", "epoch"),
                      ("counter", "counter"), ("action", "action")):
        if isinstance(record.get(key), (str, int)) and not isinstance(record.get(key), bool):
            result[name] = str(record[key])
    if isinstance(record.get("decorations"), dict):
        result["decorations"] = _strings(record["decorations"])
    columns = record.get("columns")
    if isinstance(columns, dict):
        result["columns"] = _strings(columns)
    elif isinstance(record.get("snapshot"), list):
        result["snapshot"] = [_strings(row) for row in record["snapshot"] if isinstance(row, dict)]
        result.setdefault("action", "snapshot")
    elif isinstance(record.get("diffResults"), dict):
        diff = record["diffResults"]
        result["diff_results"] = {side: [_strings(row) for row in diff.get(side) or [] if isinstance(row, dict)]
                                  for side in ("added", "removed") if isinstance(diff.get(side), list)}
    out["osquery"] = {"result": result}
    c.put(out, "host.name", record["hostIdentifier"])
    c.put(out, "rule.name", record["name"])
    c.put(out, "event.module", "osquery")
    c.put(out, "event.kind", "event")
    c.put(out, "event.action", result.get("action"))
    c.put(out, "agent.type", "osquery")
    if isinstance(columns, dict):
        for column, field in COLUMNS.items():
            value = columns.get(column)
            if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value) not in ("", "-1"):
                if field.endswith((".pid", ".port")):
                    # (a pid or port has at most 10 digits: int() of a 64 KB digit string raises, "²" too)
                    if str(value).isdecimal() and len(str(value)) <= 10 and int(value) < 2 ** 31:
                        c.set(out, field, int(value))
                elif field.endswith(".ip"):
                    if c.is_ip(str(value)):
                        c.set(out, field, str(value))
                else:
                    c.set(out, field, str(value))
        path = columns.get("path")
        if isinstance(path, str) and path:
            c.set(out, "process.executable" if "pid" in columns else "file.path", path)
    doc.clear()
    doc.update(out)
    return doc


def detect(doc: dict) -> bool:
    record = doc.get("_json")
    return (isinstance(record, dict) and isinstance(record.get("name"), str)
            and isinstance(record.get("hostIdentifier"), str) and bool(record["hostIdentifier"])
            and (isinstance(record.get("columns"), dict) or isinstance(record.get("snapshot"), list)
                 or isinstance(record.get("diffResults"), dict)))


SPEC = ParserSpec(name="osquery", dataset="osquery.result", carrier="json", parse=parse_osquery, detect=detect,
                  description="osquery scheduled-query results (event, snapshot and batch formats)")
