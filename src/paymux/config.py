"""Settings, read from PAYMUX_* environment variables (pydantic-settings).

Secrets never have a value in code: they come from the environment, or for the
sandbox gateway, from the sandbox's own store (as a provider's dashboard would show them).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PAYMUX_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///./paymux.db"
    db_pool_size: int = Field(
        default=5,
        ge=1,
        description="Pooled database connections per process: on PostgreSQL this many plus "
        "as many again in overflow, on SQLite the readers (one writer besides). Each "
        "PostgreSQL connection keeps its prepared statements (~0.25 MiB): 10 + 10 made a "
        "process ~2.6 MiB larger than 5 + 5 for no more payments/s (docs/operations.md).",
    )
    db_read_connections: int = Field(
        default=5,
        ge=0,
        description="PostgreSQL: connections per process kept outside the pool for reads "
        "of one statement (GET of one object), opened as concurrent reads need them; 0: "
        "none, every read checks a pooled connection out. A process opens at most "
        "2 x PAYMUX_DB_POOL_SIZE + this many (docs/operations.md).",
    )
    api_key: SecretStr | None = Field(
        default=None, description="A bootstrap API key for the default account (PAYMUX_API_KEY)."
    )
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = Field(
        default="",
        description="Where gateways reach us; defaults to http://HOST:PORT (https:// with "
        "PAYMUX_SSL_CERTFILE).",
    )
    trusted_proxies: str = Field(
        default="",
        description="Comma-separated IPs or CIDRs of the reverse proxies whose X-Forwarded-For "
        "and X-Forwarded-Proto are believed; empty: none are.",
    )
    allowed_gateway_hosts: str = Field(
        default="",
        description="Comma-separated hosts (names or IPs, exact, any port, http or https) a "
        "connection's credentials[api_base] may name besides each gateway's published API "
        "hosts: stripe-mock or localstripe on 127.0.0.1 in tests and development. Empty: "
        "only the published hosts, over https.",
    )
    run_worker: bool = True
    worker_poll_interval: float = 0.2
    worker_batch_size: int = 20
    maintenance_interval: float = 5.0
    job_backoff_base: float = Field(
        default=1.0, description="Seconds; a failed job waits up to base * 2**(attempts-1)."
    )
    job_backoff_cap: float = 3600.0
    job_lease_seconds: float = Field(
        default=60.0,
        description="A claimed job is another worker's to take if its lease is not extended "
        "by then (its worker's heartbeat extends it every third of it while the job runs).",
    )
    webhook_apply_max_attempts: int = 12
    job_retention_seconds: float = Field(
        default=7 * 24 * 3600.0,
        description="Finished (done) jobs older than this are deleted by the worker, in small "
        "batches; dead jobs stay for an operator.",
    )
    log_level: str = "INFO"
    log_json: bool = True

    authorization_expiry_seconds: int = 7 * 24 * 3600
    idempotency_ttl_seconds: int = 24 * 3600
    idempotency_lease_seconds: int = 300
    # Longer than a call with its inline retries can take (4 x gateway_timeout + backoff),
    # so the settlement job never races a call that is still in flight.
    attempt_settle_after_seconds: float = 180.0
    # The reconciler asks the provider about an intent left in processing or requires_action
    # (or a refund left pending) with no call of ours in flight, once it is this old.
    reconcile_after_seconds: float = 3600.0
    # Money that lands on a canceled intent (a race with the payer's browser) is given back:
    # an authorization is voided, a capture refunded. Off: only the event tells an operator.
    refund_late_payments: bool = True
    # Billing dunning: days after a renewal's first failure to retry it (Stripe's recommended
    # default: 8 tries within 2 weeks), and what happens when the retries run out.
    billing_retry_days: str = Field(
        default="1,2,3,5,7,10,14",
        description="Comma-separated days after the first failed renewal payment to retry it.",
    )
    billing_dunning_end: Literal["cancel", "unpaid", "past_due"] = "cancel"
    # invoice.upcoming: sent this many days before a subscription renews (Stripe's "upcoming
    # renewal events" setting); 0 sends none.
    billing_upcoming_invoice_days: int = Field(default=7, ge=0, le=60)
    # Requests per API key per window (0: no limit); past it, 429 rate_limited + Retry-After.
    rate_limit_requests: int = 100
    rate_limit_window_seconds: float = 1.0
    # Requests with no key or a key that fails to authenticate, per client address (the
    # peer, or X-Forwarded-For from PAYMUX_TRUSTED_PROXIES) per window (0: no limit).
    rate_limit_unauthenticated_requests: int = 100
    rate_limit_unauthenticated_window_seconds: float = 60.0
    # Cards sent by hosted checkout pages (no key) per 10 minutes, counted before their token
    # resolves: per client address, and per account from every address (0: no limit).
    checkout_payer_address_limit: int = Field(default=100, ge=0)
    checkout_payer_account_limit: int = Field(default=1000, ge=0)
    # How long an API process trusts its cached check of a key: a revoked key stops working
    # everywhere within this many seconds.
    key_cache_seconds: float = 2.0

    encryption_keys: SecretStr | None = Field(
        default=None,
        description="Keys that seal stored gateway credentials: 'id:base64-32-bytes', comma-"
        "separated, the first encrypts (docs/security.md, key rotation).",
    )
    environment_connections: Literal["default", "all"] = Field(
        default="default",
        description="Which accounts may use the gateways configured by environment variables: "
        "the default account only, or all (one merchant with several accounts). The sandbox "
        "is every account's in test mode.",
    )

    gateway_retries: int = 3
    gateway_retry_base_delay: float = 0.2
    gateway_retry_max_delay: float = 5.0
    gateway_max_inline_retry_after: float = 2.0
    gateway_timeout: float = 30.0
    default_gateway: str = "sandbox"
    routes: str = Field(
        default="", description="Gateway per currency, e.g. 'EUR=paypal,GBP=square'."
    )

    sandbox_enabled: bool = True
    sandbox_latency: float = 0.0
    sandbox_db: str = "./paymux-sandbox.db"
    sandbox_webhook_secret: SecretStr | None = None
    sandbox_webhook_delay: float = 0.0
    sandbox_controls: bool = Field(
        default=False,
        description="Serve the sandbox's unauthenticated test knobs under /sandbox/_control "
        "(faults, latency, charge listing). For test suites only.",
    )

    stripe_secret_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("STRIPE_SECRET_KEY", "PAYMUX_STRIPE_SECRET_KEY")
    )
    stripe_publishable_key: str | None = Field(
        default=None,
        validation_alias=AliasChoices("STRIPE_PUBLISHABLE_KEY", "PAYMUX_STRIPE_PUBLISHABLE_KEY"),
    )
    stripe_webhook_secrets: SecretStr | None = Field(
        default=None,
        description="Comma-separated, several during a rotation.",
        validation_alias=AliasChoices("STRIPE_WEBHOOK_SECRETS", "PAYMUX_STRIPE_WEBHOOK_SECRETS"),
    )
    stripe_api_base: str | None = None

    paypal_client_id: str | None = Field(
        default=None, validation_alias=AliasChoices("PAYPAL_CLIENT_ID", "PAYMUX_PAYPAL_CLIENT_ID")
    )
    paypal_client_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("PAYPAL_CLIENT_SECRET", "PAYMUX_PAYPAL_CLIENT_SECRET"),
    )
    paypal_webhook_id: str | None = Field(
        default=None, validation_alias=AliasChoices("PAYPAL_WEBHOOK_ID", "PAYMUX_PAYPAL_WEBHOOK_ID")
    )
    paypal_api_base: str = Field(
        default="https://api-m.sandbox.paypal.com",
        validation_alias=AliasChoices("PAYPAL_API_BASE", "PAYMUX_PAYPAL_API_BASE"),
    )
    paypal_webhook_verification: str = Field(
        default="api", description="'api' (verify-webhook-signature) or 'offline' (cert chain)."
    )
    paypal_trust_roots: str | None = Field(
        default=None, description="PEM file of CA roots for offline PayPal webhook verification."
    )

    square_access_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SQUARE_ACCESS_TOKEN", "PAYMUX_SQUARE_ACCESS_TOKEN"),
    )
    square_location_id: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SQUARE_LOCATION_ID", "PAYMUX_SQUARE_LOCATION_ID"),
    )
    square_webhook_signature_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "SQUARE_WEBHOOK_SIGNATURE_KEY", "PAYMUX_SQUARE_WEBHOOK_SIGNATURE_KEY"
        ),
    )
    square_webhook_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SQUARE_WEBHOOK_URL", "PAYMUX_SQUARE_WEBHOOK_URL"),
    )
    square_api_base: str = Field(
        default="https://connect.squareupsandbox.com",
        validation_alias=AliasChoices("SQUARE_API_BASE", "PAYMUX_SQUARE_API_BASE"),
    )
    square_application_id: str | None = Field(
        default=None,
        description="For the Web Payments SDK in the browser (sandbox-sq0idb-... / sq0idp-...).",
        validation_alias=AliasChoices("SQUARE_APPLICATION_ID", "PAYMUX_SQUARE_APPLICATION_ID"),
    )
    # The providers' browser SDKs the hosted checkout page loads (docs/checkout.md); the page's
    # CSP names the configured URL's origin. Unset: the providers' own (www.paypal.com/sdk/js;
    # Square's web.squarecdn.com, sandbox.web.squarecdn.com in its sandbox).
    paypal_js_url: str | None = None
    square_js_url: str | None = None
    webhook_tolerance_seconds: int = 300
    # Outbound webhooks to merchants' endpoints (paymux/outbound, docs/webhooks.md).
    webhook_retry_schedule: str = Field(
        default="5,300,1800,7200,18000,36000,36000,36000,36000,36000,36000",
        description="Seconds to wait before each retry of a failed delivery (comma-separated); "
        "after the last, the delivery is given up (about 3 days in all).",
    )
    webhook_retry_jitter: float = 0.1
    webhook_disable_after_seconds: float = 5 * 24 * 3600
    webhook_timeout: float = 10.0
    webhook_connect_timeout: float = 5.0
    webhook_endpoint_concurrency: int = 4
    webhook_max_in_flight: int = 64
    webhook_poll_interval: float = 0.2
    webhook_allow_private: bool = Field(
        default=False,
        description="Let live endpoints reach private, loopback and link-local addresses "
        "(cloud metadata addresses stay refused).",
    )
    admin_key: SecretStr | None = Field(
        default=None, description="Bearer token for the /v1/admin API (PAYMUX_ADMIN_KEY)."
    )

    # Operations (docs/operations.md): TLS, /metrics, health, shutdown.
    ssl_certfile: str | None = Field(
        default=None, description="PEM certificate (chain) for `serve` to speak TLS itself."
    )
    ssl_keyfile: str | None = Field(default=None, description="The certificate's PEM key.")
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token for GET /metrics (Prometheus); unset: /metrics answers 404.",
    )
    ready_cache_seconds: float = Field(
        default=1.0,
        ge=0,
        description="How long a process reuses its /health/ready answer.",
    )
    metrics_cache_seconds: float = Field(
        default=10.0,
        ge=0,
        description="How long a process reuses the figures /metrics reads from the database.",
    )
    worker_metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port on which `paymux worker` serves its own /metrics (same token, on "
        "PAYMUX_HOST); unset: a worker serves none.",
    )
    worker_heartbeat_interval: float = Field(
        default=5.0, description="Seconds between a job worker's heartbeats (/health/ready)."
    )
    worker_heartbeat_timeout: float = Field(
        default=60.0,
        description="A worker silent this long is not alive: /health/ready fails when no "
        "worker that ever beat is alive.",
    )
    request_log_keep: int = Field(
        default=10_000,
        ge=0,
        description="API calls kept per account and mode in the dashboard's request log "
        "(the newest; 0: none are kept).",
    )
    shutdown_timeout: float = Field(
        default=30.0,
        description="On SIGTERM: seconds to finish requests in flight and the worker's jobs "
        "before the process exits (unstarted claimed jobs are released at once).",
    )
    # Fraud (issue 13, docs/fraud.md).
    fraud_enabled: bool = Field(
        default=True, description="Decide every confirm with the fraud rules (fraud/)."
    )
    fraud_defaults: bool = Field(
        default=True,
        description="The built-in rules (card-testing defence, block lists); off: only the "
        "account's own rules.",
    )
    fraud_disabled_defaults: str = Field(
        default="", description="Comma-separated names of built-in rules to turn off."
    )
    fraud_usd_rates: str = Field(
        default="",
        description="US dollars per one unit of each currency, for :amount_in_usd:, e.g. "
        "'EUR=1.08,GBP=1.27' (USD is 1). A currency without a rate has no amount_in_usd.",
    )
    fraud_rules_file: str = Field(
        default="",
        description="A file of deployment-wide fraud rules, one per line ('#' comments), "
        "run for every account after its own rules.",
    )
    fraud_geoip_database: str = Field(
        default="",
        description="Path of a MaxMind-format (.mmdb) country database for :ip_country:.",
    )
    fraud_velocity_key: SecretStr | None = Field(
        default=None,
        description="A secret the velocity counters' keys (IP, email, card, customer) are "
        "HMAC'd with, so the stored digests can't be matched to guessed values without it. "
        "Changing it starts the counters afresh.",
    )

    @field_validator("fraud_usd_rates")
    @classmethod
    def _usd_rates_are_code_equals_rate(cls, value: str) -> str:
        """Each entry CODE=RATE, a positive number (the currency is checked against the
        catalog when the fraud engine starts: fraud/rules.py)."""
        for item in value.split(","):
            if not item.strip():
                continue
            code, sep, rate = item.partition("=")
            try:
                number = float(rate.strip()) if sep else 0.0
            except ValueError:
                number = 0.0
            if not (len(code.strip()) == 3 and code.strip().isalpha() and 0 < number < 1e12):
                raise ValueError(f"{item.strip()!r} is not CODE=RATE (e.g. EUR=1.08)")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_addresses(cls, value: str) -> str:
        for item in value.split(","):
            if item.strip():
                ipaddress.ip_network(item.strip(), strict=False)  # ValueError names it
        return value

    def trusted_proxy_list(self) -> list[str]:
        """PAYMUX_TRUSTED_PROXIES as a list (empty: trust no forwarded headers)."""
        return [item.strip() for item in self.trusted_proxies.split(",") if item.strip()]

    def base_url(self) -> str:
        scheme = "https" if self.ssl_certfile else "http"  # serve speaks TLS itself
        return (self.public_url or f"{scheme}://{self.host}:{self.port}").rstrip("/")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
