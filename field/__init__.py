"""The field kit (`soc field`): incident response on a responder's laptop at an agency, with no server and no network.

One small module per concern: ``case`` (the case folder and its logs), ``keys`` (the kit's Ed25519 signing key),
``collect`` (copying evidence in safely, hashed at collection), ``scan`` (the suite's Sigma, YARA, indicator and
pcap code run locally, writing a timeline), ``manifest`` (seal and verify: chain of custody), ``forward`` (a sealed
case sent to the provincial SOC, whose receiving end is soc_api/field_cases) and ``cli``. Only ``forward`` opens a
network connection. docs/field-kit.md describes the use; docs/security.md what is refused.
"""
