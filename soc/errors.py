"""Errors every part of the suite may raise or catch, kept in a module that imports nothing heavy."""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration problem, told as: file, key, reason."""

    def __init__(self, source: str, key: str, reason: str):
        self.source, self.key, self.reason = source, key, reason
        super().__init__(f"configuration error in {source}: {key or '(top level)'}: {reason}")
