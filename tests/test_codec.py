"""soc/codec.py: the JSON of every stored document. orjson is fast but refuses some values the standard library
writes; the fallback must keep every document storable and read back equal."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from soc import codec

# What JSON bodies and parsers put in documents: any text (lone surrogates included, as "\udc80" in a JSON body
# decodes to one), integers of any size, finite floats, booleans, null, nested lists and objects.
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                    st.text())
documents = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(st.text(), inner, max_size=4)),
                         max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(), documents, max_size=6))
def test_any_document_round_trips(doc):
    text = codec.dumps(doc)
    assert codec.loads(text) == doc
    assert json.loads(text) == doc  # plain JSON that any reader (SQLite's json_extract too) understands


def test_what_orjson_refuses_falls_back_to_the_standard_library():
    doc = {"big": 2**70, "odd": "caf\udce9", "nested": {"n": -(2**65)}}
    text = codec.dumps(doc)
    assert text.isascii()  # the lone surrogate stays escaped: the text is valid UTF-8 for the store
    assert codec.loads(text) == doc


def test_odd_values_are_stored_as_text_not_refused():
    doc = {"tags": {"a"}, "when": object.__new__(type("Odd", (), {"__str__": lambda self: "odd"}))}
    assert codec.loads(codec.dumps(doc)) == {"tags": ["a"], "when": "odd"}


def test_documents_written_with_nan_by_older_versions_are_still_read():
    assert codec.loads('{"x": NaN}')["x"] != codec.loads('{"x": NaN}')["x"]  # NaN, read back
