"""Text catalogues of the reports (catalogues/vi.yaml, catalogues/en.yaml): one key, one sentence, two languages.

``Texts(lang)("rec.silent_source", hostname=...)`` looks the key up by its dotted path and fills the placeholders.
A key missing in one language falls back to English, then to the key itself, so a gap never breaks a report; the
tests check both catalogues have the same keys.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

LANGUAGES = ("vi", "en")
CATALOGUES = Path(__file__).resolve().parent / "catalogues"


@lru_cache(maxsize=4)
def catalogue(lang: str) -> dict[str, Any]:
    if lang not in LANGUAGES:
        raise ValueError(f"unknown report language {lang!r}; choose one of {', '.join(LANGUAGES)}")
    return yaml.safe_load((CATALOGUES / f"{lang}.yaml").read_text(encoding="utf-8"))


def flat_keys(node: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in node.items():
        name = f"{prefix}{key}"
        keys |= flat_keys(value, name + ".") if isinstance(value, dict) else {name}
    return keys


def _lookup(node: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


class Texts:
    def __init__(self, lang: str):
        self.lang = lang
        self._main = catalogue(lang)
        self._fallback = catalogue("en")

    def __call__(self, key: str, **values: Any) -> str:
        text = _lookup(self._main, key)
        if not isinstance(text, str):
            text = _lookup(self._fallback, key)
        if not isinstance(text, str):
            return key
        try:
            return text.format(**values) if values else text
        except (KeyError, IndexError, ValueError):
            return text

    def maybe(self, group: str, key: str) -> str:
        """A label from a group (severity, tactic, ...), or the raw key when the catalogue has none for it."""
        text = _lookup(self._main, f"{group}.{key}") or _lookup(self._fallback, f"{group}.{key}")
        return text if isinstance(text, str) else key

    def yes_no(self, value: bool) -> str:
        return self("text.word_yes") if value else self("text.word_no")
