"""Threat updates: indicator feeds pulled on a schedule (TAXII 2.1, STIX bundles, MISP events, plain lists), the
expiry and decay sweep, and sightings fed back to the source that shared an indicator (docs/threat-updates.md)."""
