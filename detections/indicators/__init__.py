"""Indicators of compromise: the store (documents + in-memory index), the on-ingest matcher, STIX in and out."""
