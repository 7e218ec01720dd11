"""Settings, read from the environment in one place.

Nothing imports a settings object: the entry points (server.py's `main`, manage.py) read them
with `Settings.from_env()` and hand them to what they build (`server.create_app(settings)`,
`schema.build_schema(settings)`), which passes them on (the request context carries them to the
resolvers). So a test, or a second app in the same process, is served with its own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from tortoise.backends.base.config_generator import expand_db_url

ROOT = Path(__file__).resolve().parent


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _list(name: str, default: str = "") -> list[str]:
    raw = os.environ.get(name, default)
    return [item.strip() for item in raw.split(",") if item.strip()]


@dataclass(frozen=True)
class Settings:
    environment: str = "development"
    database_url: str = f"sqlite://{ROOT / 'crm.sqlite3'}"
    broadcast_url: str = "memory://"
    host: str = "127.0.0.1"
    port: int = 8000
    cors_origins: list[str] = field(default_factory=list)
    graphiql: bool = True
    introspection: bool = True
    max_query_depth: int = 12
    max_query_tokens: int = 4000
    max_aliases: int = 30
    max_query_cost: int = 200_000  # fields x the times they resolve (schema/engine/cost.py)
    # Queries run breadth-first on compiled plans where they can (schema/engine/plans.py); off runs
    # every operation on graphql-core alone.
    operation_plans: bool = True
    # Test only: every planned operation runs on graphql-core as well, and any difference is
    # recorded (schema/engine/plans.py MISMATCHES, the suite's helper fails on it). Costs a
    # second execution of every query.
    plans_compare: bool = False
    max_page_size: int = 100
    api_key_max_page_size: int = 1000  # partners' keys page further (documented in README)
    default_page_size: int = 20
    # totalCount counts up to this many records, then says it is at least that many: a count
    # costs at most this many index entries, whatever the organization's size.
    count_limit: int = 10_000
    token_ttl_days: int = 30
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    log_level: str = "INFO"
    # Live updates (subscriptions/): the bus channel, how often each process re-reads the event
    # log without a doorbell, how many events a subscriber may lag before it is cut off, and
    # how often open subscriptions re-check their token.
    bus_channel: str = "crm-events"
    event_poll_seconds: float = 2.0
    subscription_queue_size: int = 1000
    auth_recheck_seconds: float = 30.0
    # permessage-deflate on websockets: off by default, since events are small and each
    # compressed connection holds about 40 KiB of zlib state (bench/fanout.py measures it).
    ws_compression: bool = False
    # Outgoing mail: smtp://user:pass@host:port (smtps:// for TLS, smtp+starttls:// to upgrade).
    # Without it, sent messages wait in the outbox.
    smtp_url: str = ""
    smtp_from: str = "crm@localhost"
    # Rate limits: a token bucket per API key, user or anonymous address (0 switches them off),
    # shared through Redis when RATE_LIMIT_REDIS_URL (default: a redis:// BROADCAST_URL) is set.
    rate_limit_per_second: float = 20.0
    rate_limit_burst: int = 200
    rate_limit_redis_url: str = ""
    # Persisted queries: "auto" (a hash runs a query sent once before), "allowlist" (only
    # registered queries run: `manage.py persist-queries`), "off".
    persisted_queries: str = "auto"
    # How long the change log keeps changes (tombstones included): older cursors must resync.
    sync_retention_days: int = 30
    # Limits checked before any work (schema/engine/gate.py, server.py): the request body,
    # how deep its JSON nests, and the length of a GraphQL document.
    max_body_bytes: int = 1024 * 1024
    max_json_depth: int = 64
    max_query_length: int = 65536
    # Live subscriptions: the cost of one subscription's selection (what each event costs to
    # deliver), subscriptions per websocket, websockets per user (per process).
    max_subscription_cost: int = 10_000
    max_subscriptions_per_connection: int = 20
    max_connections_per_user: int = 10
    # Each organization's own token bucket, drawn from beside its users' and keys' buckets.
    rate_limit_org_per_second: float = 100.0
    rate_limit_org_burst: int = 1000
    # Operations of one organization executing at once in one process (the others wait their
    # turn): a burst from one organization queues behind itself, not in front of the others.
    org_concurrency: int = 4
    # ... and of a user, key or organization at its limits (refused by its own bucket in the
    # last 10 s): it takes turns, and leaves the process's event loop to the others (0: as many
    # as usual).
    org_concurrency_at_limits: int = 1
    # ... and before each step of its operations (parsing, validation, execution, each level of
    # its plan's statements) it waits while another organization's request is in flight in the
    # process, so that its work does not interleave with theirs on the event loop; at most this
    # share of its time and this long at once, so that it is never starved (0: it does not wait).
    at_limits_courtesy_share: float = 0.5
    at_limits_courtesy_longest_seconds: float = 0.05
    # A RATE_LIMITED answer over HTTP waits this long (at most the wait it announces), so that
    # a client resending at once slows itself down; at most this many of an organization's
    # (or an anonymous address's) refusals wait at once, the others are answered at once.
    rate_limit_refusal_delay_seconds: float = 0.5
    rate_limit_parked_per_organization: int = 50
    # Login throttling: failures allowed per account (email) and per address before each further
    # attempt waits, twice as long each time, up to login_max_delay_seconds. Sign-ups per
    # address and hour. 0 switches each off.
    login_failures_per_account: int = 5
    login_failures_per_address: int = 20
    login_max_delay_seconds: int = 900
    signups_per_hour: int = 10
    # Exports: streams at once per process and per organization, and how long a stream may
    # wait for its client to read before it is ended.
    exports_per_process: int = 4
    exports_per_organization: int = 1
    export_send_timeout_seconds: float = 30.0
    # Persisted queries remembered automatically: per organization, the longest kept and how
    # many (the least recently used go first).
    persisted_query_max_length: int = 20_000
    persisted_queries_per_organization: int = 500
    # Redis (rate limits, login throttling): every call's timeout, and the circuit breaker that
    # stops calling a Redis that failed this many times in a row, for this many seconds.
    redis_timeout_seconds: float = 0.1
    redis_breaker_failures: int = 1
    redis_breaker_seconds: float = 10.0
    # On SIGTERM: how long requests and websockets get to finish before they are cut.
    shutdown_timeout_seconds: float = 10.0
    # The server's young-generation GC threshold (server.py `main`; objects alive at start are
    # frozen out of collection). Each collection pauses every request: higher, longer pauses.
    gc_threshold: int = 5_000
    # Background jobs (resolvers/jobs.py): run inside each server process (off: only
    # `manage.py worker` processes run them), how many at once per process and per organization
    # (one tenant's launches leave slots to the others), how often the queue is polled, how long
    # a lease lasts without a heartbeat (a process killed holds its jobs this long), and the
    # retries of a job that fails (exponential, with jitter).
    jobs_embedded: bool = True
    job_slots: int = 4
    job_org_slots: int = 2
    job_poll_seconds: float = 1.0
    job_lease_seconds: float = 30.0
    job_attempts: int = 5
    job_retry_base_seconds: float = 5.0
    # `manage.py worker` lowers its CPU priority by this much (os.nice): on a machine it shares
    # with server processes, their requests win the cores (0 leaves it as started).
    job_worker_niceness: int = 10
    # While this process's requests are recent, a job in it works at most this fraction of the
    # wall time and rests the rest (resolvers/foreground.py; 1: at full speed).
    job_busy_duty: float = 0.3
    # Scheduled upkeep: the lifecycle sweep, the change log's pruning, the outbox's resending.
    lifecycle_sweep_hours: float = 24.0
    prune_changes_hours: float = 1.0
    resend_outbox_minutes: float = 5.0
    # Campaign launches: members messaged per batch (recorded in transactions of 20, then
    # delivered over a few SMTP connections reused for the whole batch); delivery attempts of
    # each message, the first retry after this many seconds, doubling each time (8 attempts
    # from 60 s: the last about two hours after the first).
    campaign_batch_size: int = 100
    smtp_connections: int = 4  # per batch, each sending its share of the batch in turn
    message_attempts: int = 8
    message_retry_base_seconds: float = 60.0
    # A live campaignProgress subscription re-reads its campaign when the job rings the hub
    # (through the bus from a worker), at most once per CAMPAIGN_PROGRESS_MIN_SECONDS (rings
    # meanwhile coalesce), and every CAMPAIGN_PROGRESS_SECONDS without a ring (a lost one).
    campaign_progress_seconds: float = 5.0
    campaign_progress_min_seconds: float = 0.25
    # Webhooks (webhooks/): whether this process delivers them; whether endpoints may be
    # private, loopback or link-local addresses (never in production: tests and local setups);
    # each attempt's time limit and the response bytes read; the backoff between attempts and
    # how long a failing endpoint is retried before it is disabled; the delivery lease a
    # process holds on an endpoint; the poll that covers for lost doorbells; deliveries at once
    # per process and per organization; deliveries kept per endpoint; endpoints the poll looks
    # at per round (it goes round them all, a batch a round).
    webhook_delivery: bool = True
    webhook_allow_private_addresses: bool = False
    webhook_timeout_seconds: float = 5.0
    webhook_response_bytes: int = 4096
    webhook_backoff_seconds: float = 5.0
    webhook_backoff_max_seconds: float = 3600.0
    webhook_retry_window_seconds: float = 24 * 3600.0
    webhook_lease_seconds: float = 30.0
    webhook_poll_seconds: float = 5.0
    webhook_concurrency: int = 32
    webhook_org_concurrency: int = 4
    webhook_deliveries_kept: int = 1000
    webhook_scan_batch: int = 500
    # Keys encrypting the secrets kept in the database (webhook signing secrets): Fernet keys,
    # comma-separated, the first encrypts and all decrypt (`manage.py rotate-secrets`
    # re-encrypts with the first). Without them, outside production, a key generated into
    # SECRETS_KEY_FILE (default: beside the SQLite database) on first use; production refuses
    # to start without them (webhooks/sealing.py).
    secrets_keys: tuple[str, ...] = ()
    secrets_key_file: str = ""

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @classmethod
    def from_env(cls) -> Settings:
        environment = os.environ.get("CRM_ENV", "development")
        production = environment == "production"
        return cls(
            environment=environment,
            database_url=os.environ.get("DATABASE_URL") or cls.database_url,
            broadcast_url=os.environ.get("BROADCAST_URL") or cls.broadcast_url,
            host=os.environ.get("HOST", cls.host),
            port=int(os.environ.get("PORT", cls.port)),
            cors_origins=_list("CORS_ORIGINS"),
            graphiql=_bool("GRAPHIQL", not production),
            introspection=_bool("INTROSPECTION", not production),
            max_query_depth=int(os.environ.get("MAX_QUERY_DEPTH", cls.max_query_depth)),
            max_query_tokens=int(os.environ.get("MAX_QUERY_TOKENS", cls.max_query_tokens)),
            max_aliases=int(os.environ.get("MAX_ALIASES", cls.max_aliases)),
            max_query_cost=int(os.environ.get("MAX_QUERY_COST", cls.max_query_cost)),
            operation_plans=_bool("OPERATION_PLANS", cls.operation_plans),
            plans_compare=_bool("PLANS_COMPARE", cls.plans_compare),
            count_limit=int(os.environ.get("COUNT_LIMIT", cls.count_limit)),
            token_ttl_days=int(os.environ.get("TOKEN_TTL_DAYS", cls.token_ttl_days)),
            argon2_time_cost=int(os.environ.get("ARGON2_TIME_COST", cls.argon2_time_cost)),
            argon2_memory_kib=int(os.environ.get("ARGON2_MEMORY_KIB", cls.argon2_memory_kib)),
            log_level=os.environ.get("LOG_LEVEL", cls.log_level),
            bus_channel=os.environ.get("BUS_CHANNEL") or cls.bus_channel,
            event_poll_seconds=float(os.environ.get("EVENT_POLL_SECONDS", cls.event_poll_seconds)),
            subscription_queue_size=int(
                os.environ.get("SUBSCRIPTION_QUEUE_SIZE", cls.subscription_queue_size)
            ),
            auth_recheck_seconds=float(
                os.environ.get("AUTH_RECHECK_SECONDS", cls.auth_recheck_seconds)
            ),
            ws_compression=_bool("WS_COMPRESSION", cls.ws_compression),
            smtp_url=os.environ.get("SMTP_URL", cls.smtp_url),
            smtp_from=os.environ.get("SMTP_FROM", cls.smtp_from),
            rate_limit_per_second=float(
                os.environ.get("RATE_LIMIT_PER_SECOND", cls.rate_limit_per_second)
            ),
            rate_limit_burst=int(os.environ.get("RATE_LIMIT_BURST", cls.rate_limit_burst)),
            rate_limit_redis_url=os.environ.get("RATE_LIMIT_REDIS_URL")
            or _redis_url(os.environ.get("BROADCAST_URL", "")),
            persisted_queries=os.environ.get("PERSISTED_QUERIES", cls.persisted_queries),
            sync_retention_days=int(os.environ.get("SYNC_RETENTION_DAYS", cls.sync_retention_days)),
            jobs_embedded=_bool("JOBS_EMBEDDED", cls.jobs_embedded),
            webhook_delivery=_bool("WEBHOOK_DELIVERY", cls.webhook_delivery),
            webhook_allow_private_addresses=_bool(
                "WEBHOOK_ALLOW_PRIVATE_ADDRESSES", cls.webhook_allow_private_addresses
            ),
            secrets_keys=tuple(_list("SECRETS_KEYS")),
            secrets_key_file=os.environ.get("SECRETS_KEY_FILE", cls.secrets_key_file),
            **cast(dict[str, Any], {name: _env(name, getattr(cls, name)) for name in _PLAIN}),
        )


# Settings read as they are named (MAX_BODY_BYTES, ...), converted to the type of their default.
_PLAIN = (
    "max_body_bytes",
    "max_json_depth",
    "max_query_length",
    "max_subscription_cost",
    "max_subscriptions_per_connection",
    "max_connections_per_user",
    "rate_limit_org_per_second",
    "rate_limit_org_burst",
    "org_concurrency",
    "org_concurrency_at_limits",
    "at_limits_courtesy_share",
    "at_limits_courtesy_longest_seconds",
    "rate_limit_refusal_delay_seconds",
    "rate_limit_parked_per_organization",
    "login_failures_per_account",
    "login_failures_per_address",
    "login_max_delay_seconds",
    "signups_per_hour",
    "exports_per_process",
    "exports_per_organization",
    "export_send_timeout_seconds",
    "persisted_query_max_length",
    "persisted_queries_per_organization",
    "redis_timeout_seconds",
    "redis_breaker_failures",
    "redis_breaker_seconds",
    "shutdown_timeout_seconds",
    "gc_threshold",
    "job_slots",
    "job_org_slots",
    "job_poll_seconds",
    "job_lease_seconds",
    "job_attempts",
    "job_retry_base_seconds",
    "job_worker_niceness",
    "job_busy_duty",
    "lifecycle_sweep_hours",
    "prune_changes_hours",
    "resend_outbox_minutes",
    "campaign_batch_size",
    "smtp_connections",
    "message_attempts",
    "message_retry_base_seconds",
    "campaign_progress_seconds",
    "campaign_progress_min_seconds",
    "webhook_timeout_seconds",
    "webhook_response_bytes",
    "webhook_backoff_seconds",
    "webhook_backoff_max_seconds",
    "webhook_retry_window_seconds",
    "webhook_lease_seconds",
    "webhook_poll_seconds",
    "webhook_concurrency",
    "webhook_org_concurrency",
    "webhook_deliveries_kept",
    "webhook_scan_batch",
)


def _env(name: str, default: int | float) -> int | float:
    raw = os.environ.get(name.upper())
    if raw is None or raw == "":
        return default
    return type(default)(raw)


def _redis_url(url: str) -> str:
    return url if url.startswith(("redis://", "rediss://")) else ""


MODEL_MODULES = ["models"]


async def _keep_session(connection: object) -> None:
    """What a pooled PostgreSQL connection gets when it goes back to the pool, beyond asyncpg's
    own clean-up (a transaction left open is rolled back, listeners dropped): nothing.

    asyncpg's default runs `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`
    on every release: a round trip, and work for PostgreSQL, after each statement Tortoise runs
    outside a transaction (four per pipeline page). Nothing here leaves session state on a
    pooled connection: advisory locks are transaction-level (pg_advisory_xact_lock), cursors
    live in transactions, LISTEN has a connection of its own (subscriptions/bus.py), and no
    code runs SET outside a transaction."""


def _connection(database_url: str) -> str | dict:
    if not database_url.startswith(("postgres://", "postgresql://", "asyncpg://")):
        return database_url
    config = expand_db_url(database_url)
    config["credentials"]["reset"] = _keep_session
    return config


def tortoise_config(database_url: str) -> dict:
    return {
        "connections": {"default": _connection(database_url)},
        "apps": {
            "models": {
                "models": MODEL_MODULES,
                "migrations": "migrations",
                "default_connection": "default",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


def __getattr__(name: str) -> Any:
    """`config.TORTOISE_ORM`, read by the `tortoise` CLI ([tool.tortoise] in pyproject.toml):
    DATABASE_URL's configuration, read when the CLI asks for it (not on import)."""
    if name == "TORTOISE_ORM":
        return tortoise_config(Settings.from_env().database_url)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
