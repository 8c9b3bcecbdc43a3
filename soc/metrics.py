"""Prometheus metrics of the suite, served at /metrics by the API.

Label values are small closed sets (transport, parser name, a reason *kind*), never raw text or addresses, so the
series count stays bounded however hostile the input.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_RECEIVED = Counter("soc_events_received", "Messages received by a collector source", ["transport"])
EVENTS_PARSED = Counter("soc_events_parsed", "Messages parsed to ECS", ["parser"])
EVENTS_FAILED = Counter("soc_events_failed", "Messages that could not be parsed or stored (sent to dead letters)",
                        ["reason"])
DEAD_LETTERS = Counter("soc_dead_letters", "Messages written to the dead-letter store", ["reason"])
EVENTS_STORED = Counter("soc_events_stored", "Events written to the store", ["store"])
STORE_ERRORS = Counter("soc_store_errors", "Store writes that failed (retried)", ["store"])
ALERTS_RAISED = Counter("soc_alerts_raised", "New alerts raised", ["rule", "severity"])
ALERTS_UPDATED = Counter("soc_alerts_updated", "Repeats folded into an existing alert (deduplicated)", ["rule"])
SPOOL_DEPTH = Gauge("soc_spool_depth", "Messages accepted but not yet processed, per spool", ["spool"])
QUEUE_DEPTH = Gauge("soc_pipeline_queue_depth", "Messages accepted and not yet stored (the disk spool's depth)")
BATCH_SECONDS = Histogram("soc_pipeline_batch_seconds", "Time to parse, enrich, store and detect one batch",
                          buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
STORE_WRITE_SECONDS = Histogram("soc_store_write_seconds", "Time of one bulk write to the store",
                                buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
RULES_LOADED = Gauge("soc_rules_loaded", "Detection rules loaded", ["kind"])
RULES_FAILED = Gauge("soc_rules_failed", "Detection rules that failed to load", ["kind"])
RULE_EVAL_SECONDS = Histogram("soc_rule_evaluation_seconds", "Time to evaluate the detection rules on one batch",
                              buckets=(0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
