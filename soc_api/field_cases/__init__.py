"""Field cases received at the province (issue 16, "Field kit"): a responder's sealed case forwarded by
``soc field forward`` (field/forward.py), kept under ``<data_dir>/field-cases/<case id>/``, verified against its
signed manifest, and shown as an incident of its agency.

One small module per concern: ``settings`` (the ``field_cases`` section: trusted kit keys, size caps), ``names``
(every name a sender gives is hostile input: checked before use, never a path component), ``folder`` (the case's
files on disk: written to a temporary file, hashed while written, renamed; receipts per file), ``verification``
(signature, trust, each file ok / changed / missing / unexpected), ``incident`` (the incident document),
``service`` (announce, upload, complete, re-verify) and ``data`` (reads through the caller's tenancy). The routes
are soc_api/routers/field_cases.py; the protocol is described in docs/field-kit.md.
"""
