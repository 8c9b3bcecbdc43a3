"""The ``field_cases`` section: which kit keys the province trusts and how much one case may bring.

Until the composition root's settings model has the section, ``field_case_settings`` reads it defensively (the
defaults below)."""

from __future__ import annotations

import base64
import binascii

from pydantic import Field, field_validator

from soc.config import Section


class FieldCaseSettings(Section):
    # Base64 Ed25519 public keys of the field kits the province knows (as `soc field new` prints them and case.json
    # carries them). A case signed by another key is received and shown, marked "kit key not trusted".
    trusted_kit_keys: list[str] = []
    # Caps on what one case may bring, checked against the manifest when it is announced and again while bytes
    # arrive (a body is never read past the size its manifest entry gives).
    max_file_bytes: int = Field(default=4 * 1024 ** 3, ge=1)
    max_case_bytes: int = Field(default=40 * 1024 ** 3, ge=1)
    max_files: int = Field(default=100_000, ge=1)
    max_manifest_bytes: int = Field(default=32 * 1024 ** 2, ge=1024)
    # Detections of the case's timeline kept in its incident; the rest are counted.
    max_timeline_entries: int = Field(default=100_000, ge=0)

    @field_validator("trusted_kit_keys")
    @classmethod
    def _ed25519_keys(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                raw = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ValueError(f"trusted kit key {value[:60]!r} is not base64") from exc
            if len(raw) != 32:
                raise ValueError(f"trusted kit key {value[:60]!r} is not an Ed25519 public key (32 bytes)")
        return [v.strip() for v in values]


def field_case_settings(settings) -> FieldCaseSettings:
    """The suite's ``field_cases`` section, or the defaults when the settings model has none yet."""
    found = getattr(settings, "field_cases", None)
    return found if isinstance(found, FieldCaseSettings) else FieldCaseSettings()
