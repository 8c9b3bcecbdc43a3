"""Index templates with ECS mappings, shared by Elasticsearch and OpenSearch (only features both have).

Strings default to ``keyword`` (exact match, aggregations), the free-text fields are ``text``. ``ignore_malformed``
keeps one odd value (a hostname in an IP field) from rejecting a whole event: the event is stored, that field is
just not indexed.
"""

from __future__ import annotations

_KEYWORD_STRINGS = {
    "strings_as_keyword": {
        "match_mapping_type": "string",
        "mapping": {"type": "keyword", "ignore_above": 1024},
    }
}
# Event strings are indexed lowercased (the source keeps the original): Sigma matches strings case-insensitively,
# and so do the Lucene queries that scheduled detection runs (detections/scheduled.py), and so does analyst search.
# Lucene's longest term is 32,766 bytes; 10,922 characters of any Basic Multilingual Plane text (Vietnamese
# included, at most 3 bytes each in UTF-8) always fit, so long values (scheduled-task XML, security descriptors) stay
# searchable by scheduled detection.
EVENT_STRING_MAX_CHARS = 32766 // 3
_EVENT_STRINGS = {
    "strings_as_keyword": {
        "match_mapping_type": "string",
        "mapping": {"type": "keyword", "ignore_above": EVENT_STRING_MAX_CHARS, "normalizer": "soc_lowercase"},
    }
}
# Windows event data is indexed twice: as written, and trimmed of the whitespace around it (Windows writes some values
# with a trailing space; a Sigma condition matches either form: soc/windows.py, detections/sigma/pipelines.py).
_NORMALIZERS = {"analysis": {"normalizer": {
    "soc_lowercase": {"type": "custom", "filter": ["lowercase"]},
    "soc_lowercase_trimmed": {"type": "custom", "filter": ["lowercase", "trim"]},
}}}
_TRIMMED = {"trimmed": {"type": "keyword", "ignore_above": EVENT_STRING_MAX_CHARS, "normalizer": "soc_lowercase_trimmed"}}
# A Windows rule's Sigma keywords search every value of the event (soc/windows.py, docs/windows-events.md): event
# data and the System fields are also copied into one field, WINLOG_VALUES, so a keyword is one query on one field
# rather than a leading wildcard on each of hundreds of event-data fields (which took the node minutes per rule).
WINLOG_VALUES = "winlog.values"
_WINLOG_SYSTEM_FIELDS = ["winlog.channel", "winlog.event_id", "winlog.provider_name", "winlog.computer_name",
                         "winlog.record_id"]
_WINLOG_EVENT_DATA_STRINGS = {
    "winlog_event_data_strings": {
        "path_match": "winlog.event_data.*",
        "match_mapping_type": "string",
        "mapping": {"type": "keyword", "ignore_above": EVENT_STRING_MAX_CHARS, "normalizer": "soc_lowercase",
                    "fields": _TRIMMED, "copy_to": WINLOG_VALUES},
    }
}

_IP_FIELDS = [
    "source.ip", "destination.ip", "client.ip", "server.ip", "host.ip", "observer.ip", "related.ip",
    "source.nat.ip", "destination.nat.ip",
]
# Windows event data addresses stay text ("-" where there is none, matched as such by Sigma rules) with an ip
# sub-field for cidr conditions (the soc-winlog pipeline sends those to <field>.ip).
WINLOG_ADDRESS_FIELDS = ["winlog.event_data.IpAddress", "winlog.event_data.SourceIp",
                         "winlog.event_data.DestinationIp", "winlog.event_data.SourceAddress",
                         "winlog.event_data.DestAddress", "winlog.event_data.ClientAddress"]
_PORT_FIELDS = ["source.port", "destination.port", "client.port", "server.port", "source.nat.port",
                "destination.nat.port"]
_LONG_FIELDS = ["source.bytes", "destination.bytes", "network.bytes", "source.packets", "destination.packets",
                "network.packets", "http.response.status_code", "http.response.bytes", "process.pid",
                "event.severity", "log.syslog.priority", "log.syslog.facility.code", "log.syslog.severity.code",
                "event.duration"]
_DATE_FIELDS = ["@timestamp", "event.created", "event.ingested", "event.start", "event.end"]
_TEXT_FIELDS = ["message", "event.original", "error.message"]


def _nested(flat: dict[str, dict]) -> dict:
    """{"source.ip": {...}} -> {"source": {"properties": {"ip": {...}}}}"""
    root: dict = {}
    for dotted, mapping in flat.items():
        node = root
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {"properties": {}})["properties"]
        node[parts[-1]] = mapping
    return root


def replica_settings(replicas: int | str = 0) -> dict:
    """Index settings for a replica count of the configuration (soc.config.ReplicasConfig): a number of copies, or
    "auto", which the engine's own auto_expand_replicas keeps at one copy while the cluster has two data nodes or more
    and none on a single node (so a cluster that grows gets its copies without the suite restarting, and a single
    node stays green). Nothing else is set: changing the count of an existing index costs a copy of its data."""
    if replicas == "auto":
        return {"auto_expand_replicas": "0-1"}
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise ValueError(f"a replica count is \"auto\" or a whole number of copies, not {replicas!r}")
    return {"number_of_replicas": replicas, "auto_expand_replicas": "false"}


def _settings(shards: int = 1, replicas: int | str = 0) -> dict:
    return {
        "number_of_shards": shards,
        "number_of_replicas": 0,
        **replica_settings(replicas),
        "index.mapping.ignore_malformed": True,
        "index.mapping.total_fields.limit": 5000,
        "refresh_interval": "1s",
    }


def event_template(pattern: str, flavour: str = "opensearch", replicas: int | str = 0) -> dict:
    flat: dict[str, dict] = {}
    flat.update({f: {"type": "ip"} for f in _IP_FIELDS})
    flat.update({f: {"type": "long"} for f in _PORT_FIELDS + _LONG_FIELDS})
    flat.update({f: {"type": "date"} for f in _DATE_FIELDS})
    # The free-text fields also keep a lowercased whole-value copy (.raw): Sigma keywords ("any text containing x")
    # search it with wildcards, exactly as streaming detection searches message and event.original.
    # OpenSearch's wildcard type indexes n-grams, so a leading-wildcard pattern over whole log lines does not scan
    # every term; Elasticsearch's wildcard type takes no normalizer, so there the copy is a lowercased keyword.
    raw = ({"type": "wildcard", "ignore_above": 8191, "normalizer": "soc_lowercase"} if flavour == "opensearch"
           else {"type": "keyword", "ignore_above": 8191, "normalizer": "soc_lowercase"})
    flat.update({f: {"type": "text", "fields": {"raw": raw}} for f in _TEXT_FIELDS})
    flat[WINLOG_VALUES] = dict(raw, ignore_above=EVENT_STRING_MAX_CHARS)
    flat.update({f: {"type": "keyword", "ignore_above": EVENT_STRING_MAX_CHARS, "normalizer": "soc_lowercase",
                     "copy_to": WINLOG_VALUES} for f in _WINLOG_SYSTEM_FIELDS})
    flat.update({"event.id": {"type": "keyword"}, "organization.id": {"type": "keyword"}})
    flat.update({f: {"type": "keyword", "ignore_above": 256, "normalizer": "soc_lowercase",
                     "fields": {"ip": {"type": "ip", "ignore_malformed": True}, **_TRIMMED},
                     "copy_to": WINLOG_VALUES} for f in WINLOG_ADDRESS_FIELDS})
    return {
        "index_patterns": [pattern],
        "priority": 200,
        "template": {
            "settings": {**_settings(replicas=replicas), **_NORMALIZERS},
            "mappings": {"dynamic_templates": [_WINLOG_EVENT_DATA_STRINGS, _EVENT_STRINGS],
                         "properties": _nested(flat)},
        },
    }


def alert_template(index: str, replicas: int | str = 0) -> dict:
    flat = {
        "@timestamp": {"type": "date"},
        "first_seen": {"type": "date"},
        "last_seen": {"type": "date"},
        "count": {"type": "long"},
        "summary": {"type": "text"},
        "entities.ip": {"type": "ip"},
        "id": {"type": "keyword"},
        "fingerprint": {"type": "keyword"},
        "status": {"type": "keyword"},
        "severity": {"type": "keyword"},
        "organization.id": {"type": "keyword"},
        "rule.id": {"type": "keyword"},
    }
    return {
        "index_patterns": [index],
        "priority": 200,
        "template": {
            "settings": _settings(replicas=replicas),
            "mappings": {"dynamic_templates": [_KEYWORD_STRINGS], "properties": _nested(flat)},
        },
    }


def dead_letter_template(index: str, replicas: int | str = 0) -> dict:
    return {
        "index_patterns": [index],
        "priority": 200,
        "template": {
            "settings": _settings(replicas=replicas),
            "mappings": {
                "properties": {
                    "id": {"type": "keyword"},
                    "received": {"type": "date"},
                    "source": {"type": "keyword"},
                    "reason": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 1024}}},
                    "raw": {"type": "binary"},
                    "raw_size": {"type": "long"},
                    "truncated": {"type": "boolean"},
                }
            },
        },
    }


def key_template(index: str, replicas: int | str = 0) -> dict:
    return {
        "index_patterns": [index],
        "priority": 200,
        "template": {
            "settings": _settings(replicas=replicas),
            "mappings": {"dynamic_templates": [_KEYWORD_STRINGS], "properties": {"id": {"type": "keyword"}}},
        },
    }


def document_template(pattern: str | list[str], replicas: int | str = 0, priority: int = 200) -> dict:
    # A collection that needs settings of its own (the indicators' replicas) gets a template with a higher priority
    # over the same mappings: the engine applies the highest-priority template whose pattern matches.
    return {
        "index_patterns": [pattern] if isinstance(pattern, str) else list(pattern),
        "priority": priority,
        "template": {
            "settings": _settings(replicas=replicas),
            "mappings": {"dynamic_templates": [_KEYWORD_STRINGS], "properties": {"id": {"type": "keyword"}}},
        },
    }
