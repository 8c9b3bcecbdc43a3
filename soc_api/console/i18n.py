"""Messages in Vietnamese and English. Every module ``soc_api/console/messages_*.py`` defines
``MESSAGES = {"en": {key: text}, "vi": {key: text}}``; they are merged here (a key defined by two modules is an
error, so two pages never fight over one). ``t("key", name=value)`` gives the text in the page's language with its
``{name}`` placeholders filled; a key missing in Vietnamese falls back to English, and a key missing everywhere is
shown as itself (``tests/test_console_auth.py`` holds that every key has both languages)."""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache
from pathlib import Path
from typing import Callable

LANGUAGES = ("vi", "en")
FALLBACK = "en"
_HERE = Path(__file__).resolve().parent
_PACKAGE = __name__.rpartition(".")[0]


class _KeepMissing(dict):
    """A placeholder with no value stays as written (``{name}``), instead of failing the page."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


@lru_cache(maxsize=1)
def catalogue() -> dict[str, dict[str, str]]:
    """Every message, by language then key."""
    merged: dict[str, dict[str, str]] = {lang: {} for lang in LANGUAGES}
    owners: dict[tuple[str, str], str] = {}
    for info in sorted(pkgutil.iter_modules([str(_HERE)]), key=lambda i: i.name):
        if not info.name.startswith("messages_"):
            continue
        module = importlib.import_module(f"{_PACKAGE}.{info.name}")
        for lang, texts in getattr(module, "MESSAGES", {}).items():
            if lang not in merged:
                raise ValueError(f"{info.name}: unknown language {lang!r} (languages: {', '.join(LANGUAGES)})")
            for key, text in texts.items():
                owner = owners.setdefault((lang, key), info.name)
                if owner != info.name:
                    raise ValueError(f"message {key!r} ({lang}) is defined by both {owner} and {info.name}")
                merged[lang][key] = text
    return merged


def translate(lang: str, key: str, **values) -> str:
    texts = catalogue()
    text = texts.get(lang, {}).get(key)
    if text is None:
        text = texts[FALLBACK].get(key)
    if text is None:
        return key
    if not values:
        return text
    try:
        return text.format_map(_KeepMissing(values))
    except (ValueError, IndexError, AttributeError, KeyError):  # a stray brace in a text: show it as written
        return text


def translator(lang: str) -> Callable[..., str]:
    """``t`` of the templates: ``t("key", name=value)`` in ``lang``."""

    def t(key: str, **values) -> str:
        return translate(lang, key, **values)

    return t


def incomplete() -> dict[str, list[str]]:
    """Keys that some language lacks: {language: [keys]} (empty when every key has every language)."""
    texts = catalogue()
    every = set().union(*(set(v) for v in texts.values()))
    return {lang: sorted(every - set(texts[lang])) for lang in LANGUAGES if every - set(texts[lang])}
