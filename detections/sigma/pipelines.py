"""pySigma processing pipelines that map Sigma's taxonomy onto the suite's event fields.

A pipeline is a list of small transformations, each limited to the log sources it is for. Windows rules need no field
mapping: Windows events (EVTX files, Winlogbeat documents) are presented to the rules with their own field names
(Image, CommandLine, TargetUserName, ...) by soc/windows.py's view, which is what Sigma's Windows rules are
written against. Other sources are stored as ECS, so their Sigma field names are mapped to ECS names here.
Pipelines are built by name inside each loader process (they are code, not data to pickle).
"""

from __future__ import annotations

from sigma.processing.conditions import LogsourceCondition
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
import dataclasses
from dataclasses import dataclass

from sigma.processing.transformations import (
    FieldFunctionTransformation,
    FieldMappingTransformation,
    ValueListPlaceholderTransformation,
)
from sigma.processing.transformations.base import DetectionItemTransformation
from sigma.rule import SigmaDetectionItem
from sigma.types import SigmaString, SpecialChars

from soc import windows

KEYWORDS_FIELD = "_keywords"

# Sigma taxonomy field -> ECS field, per log source category (Sigma's field names for these categories).
WEB_FIELDS = {
    "c-ip": "source.ip", "cs-method": "http.request.method", "cs-uri-query": "url.query",
    "cs-uri-stem": "url.path", "cs-uri": "url.original", "cs-user-agent": "user_agent.original",
    "sc-status": "http.response.status_code", "cs-referer": "http.request.referrer", "cs-host": "url.domain",
    "cs-username": "user.name", "sc-bytes": "http.response.body.bytes", "cs-bytes": "http.request.body.bytes",
    "cs-version": "http.version", "s-ip": "destination.ip", "s-port": "destination.port",
}
PROXY_FIELDS = {
    "c-ip": "source.ip", "c-uri": "url.original", "c-uri-extension": "url.extension", "c-uri-query": "url.query",
    "c-uri-stem": "url.path", "c-useragent": "user_agent.original", "cs-host": "url.domain",
    "cs-method": "http.request.method", "r-dns": "url.domain", "sc-status": "http.response.status_code",
    "cs-referrer": "http.request.referrer", "cs-cookie": "http.request.cookie", "dst_ip": "destination.ip",
    "cs-bytes": "http.request.body.bytes", "sc-bytes": "http.response.body.bytes",
}
FIREWALL_FIELDS = {
    "src_ip": "source.ip", "dst_ip": "destination.ip", "src_port": "source.port", "dst_port": "destination.port",
    "action": "event.action", "protocol": "network.transport", "username": "user.name",
}
DNS_FIELDS = {
    "query": "dns.question.name", "answer": "dns.answers.data", "record_type": "dns.question.type",
    "QueryName": "dns.question.name", "src_ip": "source.ip", "dst_ip": "destination.ip",
}
LINUX_PROCESS_FIELDS = {
    "Image": "process.executable", "CommandLine": "process.command_line", "ParentImage": "process.parent.executable",
    "ParentCommandLine": "process.parent.command_line", "User": "user.name", "LogonId": "process.user.id",
    "CurrentDirectory": "process.working_directory", "ProcessId": "process.pid", "ParentProcessId": "process.parent.pid",
}
LINUX_NETWORK_FIELDS = {
    "Image": "process.executable", "DestinationIp": "destination.ip", "DestinationPort": "destination.port",
    "DestinationHostname": "destination.domain", "SourceIp": "source.ip", "SourcePort": "source.port",
    "User": "user.name", "Initiated": "network.initiated",
}
LINUX_FILE_FIELDS = {"Image": "process.executable", "TargetFilename": "file.path", "User": "user.name"}


def _mapping(identifier: str, fields: dict[str, str], **logsource: str) -> ProcessingItem:
    return ProcessingItem(identifier=identifier, transformation=FieldMappingTransformation(fields),
                          rule_conditions=[LogsourceCondition(**logsource)])


def soc_pipeline(placeholders: dict[str, list[str]] | None = None) -> ProcessingPipeline:
    items: list[ProcessingItem] = []
    if placeholders:
        # %name% in |expand values -> the listed values (inventory and configuration); unknown names stay and the
        # rule fails to load with the name in its health reason.
        items.append(ProcessingItem(identifier="soc_placeholders",
                                    transformation=ValueListPlaceholderTransformation(include=sorted(placeholders))))
    return ProcessingPipeline(
        name="SOC suite: Sigma taxonomy to ECS",
        priority=20,
        vars=dict(placeholders or {}),
        items=items + [
            _mapping("soc_webserver", WEB_FIELDS, category="webserver"),
            _mapping("soc_proxy", PROXY_FIELDS, category="proxy"),
            _mapping("soc_firewall", FIREWALL_FIELDS, category="firewall"),
            _mapping("soc_dns", DNS_FIELDS, category="dns"),
            _mapping("soc_linux_process", LINUX_PROCESS_FIELDS, product="linux", category="process_creation"),
            _mapping("soc_linux_network", LINUX_NETWORK_FIELDS, product="linux", category="network_connection"),
            _mapping("soc_linux_file", LINUX_FILE_FIELDS, product="linux", category="file_event"),
        ],
    )


@dataclass
class KeywordsToFieldTransformation(DetectionItemTransformation):
    """Bind field-less keywords to one field, as "contains" — for backends without full-text search (SQLite), over a
    column holding the text streaming searches (message, event.original)."""

    field: str = KEYWORDS_FIELD

    def apply_detection_item(self, detection_item: SigmaDetectionItem) -> None:
        if detection_item.field is not None:
            return
        detection_item.field = self.field
        wrapped = []
        for value in detection_item.value:
            if isinstance(value, SigmaString):
                if not value.startswith(SpecialChars.WILDCARD_MULTI):
                    value = SigmaString("*") + value
                if not value.endswith(SpecialChars.WILDCARD_MULTI):
                    value = value + SigmaString("*")
            wrapped.append(value)
        detection_item.value = wrapped


def soc_sql_pipeline(placeholders: dict[str, list[str]] | None = None) -> ProcessingPipeline:
    pipeline = soc_pipeline(placeholders)
    pipeline.items.append(ProcessingItem(identifier="soc_keywords_to_field",
                                         transformation=KeywordsToFieldTransformation()))
    return pipeline


# Windows fields in stored Winlogbeat documents (scheduled detection queries the store, not an EVTX view).
WINLOG_FIELDS = {name: f"winlog.{key}" for name, key in windows.SYSTEM_FIELDS.items()}


def _winlog_field(field: str | None) -> str | None:
    return None if field is None else f"winlog.event_data.{field}"


@dataclass
class CidrToIpFieldTransformation(DetectionItemTransformation):
    """cidr conditions on a text field go to its ``.ip`` sub-field (soc/storage/mappings.py WINLOG_ADDRESS_FIELDS)."""

    fields: tuple[str, ...] = ()

    def apply_detection_item(self, detection_item: SigmaDetectionItem) -> None:
        from sigma.types import SigmaCIDRExpression

        if detection_item.field in self.fields and any(isinstance(v, SigmaCIDRExpression)
                                                       for v in detection_item.value):
            detection_item.field = f"{detection_item.field}.ip"


TRIMMED_SUFFIX = ".trimmed"  # soc/storage/mappings.py: event data indexed a second time, trimmed


@dataclass
class TrimmedTwinTransformation(DetectionItemTransformation):
    """A string condition on Windows event data matches the value as written or trimmed of the whitespace around it
    (soc/windows.py TRIMMED_WHITESPACE; streaming: compiler._trimming). The index keeps a trimmed copy of every
    event-data string (``<field>.trimmed``), so each value becomes ``field:v OR field.trimmed:v`` — per value, so
    that ``|all`` asks each value of either form, as streaming does."""

    prefix: str = "winlog.event_data."

    def apply_detection_item(self, detection_item: SigmaDetectionItem):
        from sigma.conditions import ConditionAND, ConditionOR
        from sigma.rule import SigmaDetection

        field = detection_item.field
        # Strings only, as streaming (compiler.TEXT_TESTS): a regular expression sees the value as written.
        if not field or not field.startswith(self.prefix) or field.endswith((".ip", TRIMMED_SUFFIX)) \
                or not detection_item.value or not all(isinstance(v, SigmaString) for v in detection_item.value):
            return None
        per_value = [SigmaDetection([dataclasses.replace(detection_item, field=name, value=[value],
                                                         auto_modifiers=False)
                                     for name in (field, field + TRIMMED_SUFFIX)], item_linking=ConditionOR)
                     for value in detection_item.value]
        linking = ConditionAND if detection_item.value_linking is ConditionAND else ConditionOR
        return per_value[0] if len(per_value) == 1 else SigmaDetection(per_value, item_linking=linking)


def soc_winlog_pipeline(placeholders: dict[str, list[str]] | None = None) -> ProcessingPipeline:
    from soc.storage.mappings import WINLOG_ADDRESS_FIELDS

    pipeline = soc_pipeline(placeholders)
    pipeline.items.append(ProcessingItem(
        identifier="soc_winlog_fields",
        transformation=FieldFunctionTransformation(transform_func=_winlog_field, mapping=WINLOG_FIELDS),
        rule_conditions=[LogsourceCondition(product="windows")]))
    pipeline.items.append(ProcessingItem(
        identifier="soc_winlog_cidr", transformation=CidrToIpFieldTransformation(tuple(WINLOG_ADDRESS_FIELDS)),
        rule_conditions=[LogsourceCondition(product="windows")]))
    pipeline.items.append(ProcessingItem(
        identifier="soc_winlog_trimmed", transformation=TrimmedTwinTransformation(),
        rule_conditions=[LogsourceCondition(product="windows")]))
    return pipeline


PIPELINES = {"soc": soc_pipeline, "soc-sql": soc_sql_pipeline, "soc-winlog": soc_winlog_pipeline}


def build_pipeline(name: str | None, placeholders: dict[str, list[str]] | None = None) -> ProcessingPipeline | None:
    if not name or name == "none":
        return None
    try:
        return PIPELINES[name](placeholders)
    except KeyError:
        raise ValueError(f"unknown Sigma processing pipeline {name!r}; known: {', '.join(PIPELINES)}") from None
