"""Settings of the API package, the sections ``api`` (where it listens) and ``soc_api`` (limits, the national-centre
posture push, TAXII collections and pull sources) of the one configuration. Secrets are references (names of
environment variables), never values.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from soc.config import Section
from soc_api.feeds.settings import FeedsConfig

# Hard caps on request bodies, enforced while the body streams in (a plain "413 Content Too Large" before it is read
# whole), for bodies sent without a length. A declared Content-Length over ``max_body_bytes`` (below, lower) is
# refused first, with a JSON message that states the limit.
JSON_BODY_CAP = 8 * 1_048_576
TAXII_BODY_CAP = 32 * 1_048_576
ROLE = Literal["admin", "analyst", "network_admin", "agency", "national_centre"]


class RateLimitConfig(Section):
    # A token bucket per API key: a sustained rate and a burst.
    requests_per_second: float = Field(default=50.0, gt=0)
    burst: int = Field(default=200, ge=1)


class PostureConfig(Section):
    # Where the posture document is pushed (the national centre); None: no push.
    push_url: str | None = None
    # Name of the environment variable holding the HMAC-SHA256 signing key shared with the national centre.
    signing_key_env: str | None = None
    push_interval_seconds: float = Field(default=3600.0, gt=0)
    retry_initial_seconds: float = Field(default=5.0, gt=0)
    retry_max_seconds: float = Field(default=600.0, gt=0)
    timeout_seconds: float = Field(default=15.0, gt=0)
    # A log source that sent nothing for longer than its interval is "silent".
    default_source_interval_seconds: int = Field(default=3600, ge=60)
    source_intervals: dict[str, int] = {}  # per log source kind (sophos-xg, linux-auth, ...)
    # Rates and means are computed over this window.
    window_days: int = Field(default=30, ge=1, le=365)
    # Where the playbook runner keeps its runs, and which field names the agency.
    playbook_runs_collection: str = "playbook_runs"
    playbook_agency_field: str = "agency"
    playbook_state_field: str = "state"


class TaxiiCollectionConfig(Section):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    title: str
    description: str = ""
    source: Literal["indicators", "sightings", "malware", "received_sightings"]  # the last: others' sightings
    read_roles: list[ROLE] = []
    write_roles: list[ROLE] = []


class TaxiiPullSource(Section):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    # The collection's URL on the remote TAXII 2.1 server (…/{api-root}/collections/{id}/).
    collection_url: str
    username: str | None = None
    password_env: str | None = None  # HTTP Basic password (or API key) from this environment variable
    interval_seconds: float = Field(default=3600.0, gt=0)
    page_size: int = Field(default=500, ge=1, le=10_000)
    default_tlp: str = "amber"
    verify_tls: bool = True
    timeout_seconds: float = Field(default=60.0, gt=0)  # each request
    max_response_bytes: int = Field(default=64 * 1_048_576, ge=1)  # each answer, decompressed


def _default_collections() -> list[TaxiiCollectionConfig]:
    return [
        TaxiiCollectionConfig(id="indicators", title="Indicators", source="indicators",
                              description="Indicators the provincial SOC matches on ingest",
                              read_roles=["analyst", "network_admin", "national_centre", "agency"],
                              write_roles=["analyst", "national_centre"]),
        TaxiiCollectionConfig(id="sightings", title="Sightings", source="sightings",
                              description="Where and how often the province saw indicators",
                              read_roles=["analyst", "national_centre"]),
        TaxiiCollectionConfig(id="malware", title="Malware findings", source="malware",
                              description="Malware found in the province (file samples by hash)",
                              read_roles=["analyst", "national_centre"]),
    ]


class TaxiiConfig(Section):
    title: str = "Provincial SOC TAXII server"
    contact: str = ""
    api_root: str = Field(default="soc", pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    max_page: int = Field(default=1000, ge=1, le=10_000)
    collections: list[TaxiiCollectionConfig] = Field(default_factory=_default_collections)
    # TLP levels an agency key may read from the indicator collection (others go to the SOC and national centre).
    agency_tlp: list[str] = ["clear", "green"]
    pull: list[TaxiiPullSource] = []
    state_collection: str = "taxii_state"


class IngestApiConfig(Section):
    # POST /api/v1/ingest: one NDJSON batch. Over either limit: 413 with the limit in the message.
    max_body_bytes: int = Field(default=10 * 1_048_576, ge=1024)
    max_lines: int = Field(default=10_000, ge=1)
    # An admin key may send on behalf of an agency, naming it explicitly (?agency=...); the audit record says so.
    admin_on_behalf: bool = True


class ConsoleLockoutConfig(Section):
    # Failed sign-ins are counted per user name (known or not: the answer never tells) and per client address.
    # After ``free_failures`` each further attempt must wait first_wait_seconds * 2^(failures - free_failures)
    # (at most max_wait_seconds) after the last failure; at ``lock_failures`` the name is refused for lock_seconds.
    # Failures are forgotten lock_seconds after the last one.
    free_failures: int = Field(default=5, ge=1)
    lock_failures: int = Field(default=10, ge=1)
    lock_seconds: float = Field(default=900.0, gt=0)
    first_wait_seconds: float = Field(default=2.0, gt=0)
    max_wait_seconds: float = Field(default=120.0, gt=0)
    # One address may carry many people (an agency behind NAT): its own, higher, thresholds.
    address_free_failures: int = Field(default=10, ge=1)
    address_lock_failures: int = Field(default=30, ge=1)


class ConsolePasswordConfig(Section):
    # argon2id (argon2-cffi); the defaults are RFC 9106's second recommendation (64 MiB, 3 passes, 4 lanes). A stored
    # hash made with other parameters is made again with these at the next sign-in.
    time_cost: int = Field(default=3, ge=1)
    memory_kib: int = Field(default=65536, ge=8)
    parallelism: int = Field(default=4, ge=1)
    min_length: int = Field(default=12, ge=8)
    # Hashes computed at once (each takes memory_kib): more sign-ins wait their turn.
    max_concurrent: int = Field(default=2, ge=1)


class ConsoleConfig(Section):
    # A session ends this long after sign-in whatever happens, or after this long without a request.
    session_seconds: float = Field(default=12 * 3600.0, gt=0)
    idle_seconds: float = Field(default=1800.0, gt=0)
    # How often a session's last use is written back (the idle timeout is exact to within this).
    touch_seconds: float = Field(default=60.0, ge=0)
    # auto: the cookie is Secure when the request came over HTTPS (directly or through a trusted proxy's
    # X-Forwarded-Proto); always: Secure whatever the request (the console is only reached through HTTPS).
    secure_cookie: Literal["auto", "always"] = "auto"
    default_language: Literal["vi", "en"] = "vi"
    lockout: ConsoleLockoutConfig = ConsoleLockoutConfig()
    passwords: ConsolePasswordConfig = ConsolePasswordConfig()


class ApiSettings(Section):
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    ingest: IngestApiConfig = IngestApiConfig()
    rate_limit: RateLimitConfig = RateLimitConfig()
    posture: PostureConfig = PostureConfig()
    taxii: TaxiiConfig = TaxiiConfig()
    feeds: FeedsConfig = FeedsConfig()  # threat updates: indicator feeds, decay, sightings back (soc_api/feeds/)
    # Name of the environment variable with the key that signs pagination cursors (random per process if unset).
    cursor_key_env: str | None = None
    # How long a verified key is trusted before the store is asked again (revocation in this process is immediate).
    key_cache_seconds: float = Field(default=5.0, ge=0)
    # How long an alert-list answer may be served again to the same scope and query (soc_api/cache.py); 0: never.
    alert_list_cache_seconds: float = Field(default=1.0, ge=0, le=60)
    # The console (soc_api/console/): sessions, sign-in back-off and lockout, password hashing.
    console: ConsoleConfig = ConsoleConfig()


class ApiConfig(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # HTTPS: the API's certificate and key (PEM). With tls_ca_file and tls_client_certificates "required", a client
    # must show a certificate that CA signed (mutual TLS: what a downstream suite does, docs/tiers.md).
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_ca_file: str | None = None
    tls_client_certificates: Literal["none", "optional", "required"] = "none"

    @model_validator(mode="after")
    def _tls_whole(self) -> "ApiConfig":
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("api.tls_cert_file and api.tls_key_file go together")
        if self.tls_client_certificates != "none" and not (self.tls_cert_file and self.tls_ca_file):
            raise ValueError("client certificates need api.tls_cert_file, api.tls_key_file and api.tls_ca_file")
        return self


def api_settings(suite) -> ApiSettings:
    """The API's section of the suite's settings (``soc_api``)."""
    return suite.settings.soc_api
