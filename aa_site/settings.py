"""Django settings, read from the environment and nothing more.

Every value comes from an environment variable. Malformed values do not raise
here: ``aa_site.env`` records them and the system checks in ``aa_site.checks``
stop start-up naming each one. Nothing in this module touches the network or
reads a secret. docs/settings.md is generated from the ``env.*`` calls here: a
new setting needs its entry in docs/hooks/settings.yml (what it is for, when to
change it), or the documentation's build stops naming it.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from aa_site import env, log_format

BASE_DIR = Path(__file__).resolve().parent.parent

# --- Role and mode -----------------------------------------------------------
SERVICE_ROLES = ("connector", "interceptor", "all")
SERVICE_ROLE = env.choice("SERVICE_ROLE", "all", SERVICE_ROLES)
DEVELOPMENT_MODE = env.flag("DEVELOPMENT_MODE", False)
# aa_site/gc_tuning.py: freeze start-up objects and collect less often once the process serves.
GC_TUNING = env.flag("GC_TUNING", True)

# --- Google Cloud ------------------------------------------------------------
GCP_PROJECT_ID = env.text("GCP_PROJECT_ID", "local-dev-project" if DEVELOPMENT_MODE else "")
SERVICE_REGION = env.text("SERVICE_REGION")
PORT = env.integer("PORT", 8080, minimum=1, maximum=65535)

# --- Redis: events (history and fan-out), sessions, rate limits, integration keys ---
# Events reach desktops through events/history.py and connector/desktops/fanout.py, not a Channels
# channel layer: see "Events in Redis" in docs/concepts.md for why, docs/performance.md for the measurements.
# REDIS_URL (redis:// or rediss:// for TLS, optionally with [user]:password@) or REDISHOST/REDISPORT.
# Memorystore's AUTH string comes from REDIS_AUTH_STRING or, as Cloud Run mounts it from Secret
# Manager, REDIS_AUTH_STRING_FILE (read when a client is made); REDIS_TLS_CA_FILE is the instance's
# server CA (and turns TLS on with REDISHOST). events/redis_config.py turns these into client options.
_redis_url = env.redis_url("REDIS_URL")
if _redis_url is not None and env.text("REDISHOST"):
    env.PROBLEMS.append(("REDISHOST", "must not be set together with REDIS_URL; keep one"))
REDIS_TLS_CA_FILE = env.text("REDIS_TLS_CA_FILE")
REDIS_TLS_CHECK_HOSTNAME = env.flag("REDIS_TLS_CHECK_HOSTNAME", True)
REDIS_AUTH_STRING = env.text("REDIS_AUTH_STRING")
REDIS_AUTH_STRING_FILE = env.text("REDIS_AUTH_STRING_FILE")
if _redis_url is not None:
    REDISHOST, REDISPORT, REDIS_DB, REDIS_TLS = _redis_url.host, _redis_url.port, _redis_url.db, _redis_url.tls
    REDIS_USERNAME, REDIS_PASSWORD = _redis_url.username, _redis_url.password
else:
    REDISHOST = env.text("REDISHOST")
    REDISPORT = env.integer("REDISPORT", 6379, minimum=1, maximum=65535)
    REDIS_DB, REDIS_TLS = 0, bool(REDIS_TLS_CA_FILE)
    REDIS_USERNAME, REDIS_PASSWORD = "", ""
del _redis_url
# REDIS_CLUSTER: the address above is a Redis Cluster's discovery endpoint (Memorystore for Redis Cluster, or any
# Redis Cluster): the clients find every shard from it and send each key to the shard owning its slot
# (events/redis_client.py). TLS and AUTH as above; a cluster has only database 0. See docs/redis-cluster.md.
REDIS_CLUSTER = env.flag("REDIS_CLUSTER", False)
# REDIS_IAM_AUTH: each connection authenticates with the service's own Google access token (Application Default
# Credentials) instead of a password: Memorystore for Redis Cluster with --auth-mode=iam-auth (events/redis_iam.py).
REDIS_IAM_AUTH = env.flag("REDIS_IAM_AUTH", False)
# How long a push may wait on Redis before the interceptor answers 503 (so Pub/Sub
# redelivers) instead of hanging the request.
EVENT_STORE_TIMEOUT = 5.0
# REDIS_ACK_REPLICAS: a push is acknowledged only once its event reached this many replicas (Redis WAIT, within
# REDIS_ACK_REPLICAS_TIMEOUT_MS; fewer: 503, Pub/Sub redelivers). 0: once the primary stored it. Bounded below
# EVENT_STORE_TIMEOUT and the client's socket timeout (5 s) so a WAIT never outlives the push that asked for it.
REDIS_ACK_REPLICAS = env.integer("REDIS_ACK_REPLICAS", 0, minimum=0, maximum=5)
REDIS_ACK_REPLICAS_TIMEOUT_MS = env.integer("REDIS_ACK_REPLICAS_TIMEOUT_MS", 500, minimum=10, maximum=4000)

# --- Event history (events/history.py) -------------------------------------------
# Each conversation keeps its most recent events for replay and de-duplication: at most
# EVENT_HISTORY_MAX_EVENTS, kept EVENT_HISTORY_SECONDS after the conversation's last event.
EVENT_HISTORY_SECONDS = env.integer("EVENT_HISTORY_SECONDS", 3600, minimum=60, maximum=7 * 24 * 3600)
EVENT_HISTORY_MAX_EVENTS = env.integer("EVENT_HISTORY_MAX_EVENTS", 1000, minimum=10, maximum=100_000)
# And at most this many bytes of events (their payload JSON) per conversation, oldest trimmed first: above
# the largest single event (a Pub/Sub message carries at most 10 MB), so such a message is kept, but one
# conversation cannot hold EVENT_HISTORY_MAX_EVENTS of them. The newest event is always kept, even alone
# over the budget (it is bounded by PUSH_MAX_BODY_BYTES).
EVENT_HISTORY_MAX_BYTES = env.integer("EVENT_HISTORY_MAX_BYTES", 16 * 1024 * 1024, minimum=64 * 1024,
                                      maximum=1024 * 1024 * 1024)
# Prefix of every Redis key and channel of the history (the tests give each test its own).
EVENT_KEY_PREFIX = env.text("EVENT_KEY_PREFIX", "aa:")

# --- Identity providers and tokens --------------------------------------------
AUTH_OPTION = env.text("AUTH_OPTION")
APP_AUTH_OPTION = env.text("APP_AUTH_OPTION")
SALESFORCE_DOMAIN = env.text("SALESFORCE_DOMAIN", "login.salesforce.com")
SALESFORCE_ORGANIZATION_ID = env.text("SALESFORCE_ORGANIZATION_ID")
# Genesys Cloud's region domain (mypurecloud.com, usw2.pure.cloud, ...). GENESYS_CLOUD_ENVIRONMENT is the
# sample's name for it; GENESYS_CLOUD_REGION wins when both are set.
GENESYS_CLOUD_REGION = env.renamed("GENESYS_CLOUD_REGION", "GENESYS_CLOUD_ENVIRONMENT", "mypurecloud.com")
TWILIO_FLEX_ENVIRONMENT = env.text("TWILIO_FLEX_ENVIRONMENT")
TWILIO_ACCOUNT_SID = env.text("TWILIO_ACCOUNT_SID")
FIVE9_TRUST_TOKEN = env.text("FIVE9_TRUST_TOKEN")
# Where the providers are called (auth_providers/): derived from the sample's
# settings above; set explicitly only to point at a proxy or a test double.
SALESFORCE_URL = env.text("SALESFORCE_URL", f"https://{SALESFORCE_DOMAIN}")
GENESYS_CLOUD_API_URL = env.text("GENESYS_CLOUD_API_URL", f"https://api.{GENESYS_CLOUD_REGION}")
TWILIO_FLEX_URL = env.text("TWILIO_FLEX_URL", f"https://{TWILIO_FLEX_ENVIRONMENT}" if TWILIO_FLEX_ENVIRONMENT else "")
TWILIO_API_URL = env.text("TWILIO_API_URL", "https://api.twilio.com")
# Seconds; a provider slower than this answers 503 instead of holding /register open.
IDENTITY_PROVIDER_CONNECT_TIMEOUT = env.number("IDENTITY_PROVIDER_CONNECT_TIMEOUT", 3.0, minimum=0.01, maximum=60)
IDENTITY_PROVIDER_READ_TIMEOUT = env.number("IDENTITY_PROVIDER_READ_TIMEOUT", 5.0, minimum=0.01, maximum=120)

JWT_SECRET_NAME = env.text("JWT_SECRET_NAME")
# Where Cloud Run mounts the signing secret (the sample's path). JWT_SECRET_KEY_FILE is this setting's earlier
# name; JWT_SECRET_KEY_PATH wins when both are set.
JWT_SECRET_KEY_PATH = env.renamed("JWT_SECRET_KEY_PATH", "JWT_SECRET_KEY_FILE", "/secret/jwt_secret_key")
JWT_SECRET_KEY = env.text("JWT_SECRET_KEY")
JWT_LIFETIME_MINUTES = env.integer("JWT_LIFETIME_MINUTES", 60, minimum=1, maximum=24 * 60)

# simplejwt provides the token machinery; our own backend (connector.tokens)
# supplies the key, so simplejwt never falls back to SECRET_KEY.
SIMPLE_JWT = {"ALGORITHM": "HS256", "TOKEN_TYPE_CLAIM": "token_type", "JTI_CLAIM": "jti"}

# --- Socket.IO ---------------------------------------------------------------
SOCKETIO_PING_INTERVAL = env.integer("SOCKETIO_PING_INTERVAL", 25, minimum=1, maximum=3600)
SOCKETIO_PING_TIMEOUT = env.integer("SOCKETIO_PING_TIMEOUT", 20, minimum=1, maximum=3600)
SOCKETIO_MAX_PAYLOAD = env.integer("SOCKETIO_MAX_PAYLOAD", 1_000_000, minimum=1024)
# WebSocket-level pings on /ws/ connections (the image's server): a peer that does not answer one within as
# long again is closed (1011). /socket.io/ connections have Engine.IO's heartbeat and get none of these.
WEBSOCKET_KEEPALIVE_SECONDS = env.integer("WEBSOCKET_KEEPALIVE_SECONDS", 20, minimum=1, maximum=3600)
# A client that opens a connection but never authenticates is closed after this.
WEBSOCKET_AUTH_TIMEOUT = env.integer("WEBSOCKET_AUTH_TIMEOUT", 10, minimum=1, maximum=600)
# Socket.IO connection state recovery: how long a disconnected session can be resumed
# (Socket.IO's maxDisconnectionDuration); 0 turns recovery, and the offset argument, off.
SOCKETIO_RECOVERY_SECONDS = env.integer("SOCKETIO_RECOVERY_SECONDS", 120, minimum=0, maximum=24 * 3600)
# Recovery session records one token (its jti) keeps at once: a new one evicts the token's ended records, then its
# oldest. Room for a desktop's tabs sharing a token plus reconnections that could not recover (their old records
# live out the recovery window); a client reconnecting in a loop holds no more.
SOCKETIO_SESSIONS_PER_TOKEN = env.integer("SOCKETIO_SESSIONS_PER_TOKEN", 16, minimum=1, maximum=1000)
# What a join-conversation without options replays: "none" (the sample's behaviour) or "all"
# (the conversation's stored history). Clients can ask either way per join.
SOCKETIO_JOIN_HISTORY = env.choice("SOCKETIO_JOIN_HISTORY", "none", ("none", "all"))
# Close a desktop's WebSocket when its token expires (4401, reason "Token is expired"): clients refresh
# the token (socket.io-client: socket.auth) and reconnect, recovering what came meanwhile.
WEBSOCKET_CLOSE_AT_TOKEN_EXPIRY = env.flag("WEBSOCKET_CLOSE_AT_TOKEN_EXPIRY", True)
# The key named by each joined conversation (projects/P/conversations/C) that Google's companion
# services poll with EXISTS (the sample's connector sets it on join); refreshed while joined.
PRESENCE_KEYS = env.flag("PRESENCE_KEYS", True)
PRESENCE_KEY_TTL_SECONDS = env.integer("PRESENCE_KEY_TTL_SECONDS", 60, minimum=3, maximum=3600)
# Put before presence key names; empty as the companion services expect (the tests set one per test).
PRESENCE_KEY_PREFIX = env.text("PRESENCE_KEY_PREFIX", "")
# How often each connector process rewrites its record of desktops for the operators' live view
# (connector/desktops/instances.py); the record expires after three intervals.
INSTANCE_REPORT_SECONDS = env.number("INSTANCE_REPORT_SECONDS", 10.0, minimum=0.1, maximum=300)
# Live events one connection may have waiting to be sent, in number and in size (characters of their frames);
# a desktop further behind is disconnected (4429; it can recover). Together they bound its memory.
# No more than the history keeps of one conversation by default: a desktop closed for falling this far behind
# has missed at most that many events of any conversation, which its reconnection can then recover.
WEBSOCKET_SEND_QUEUE_LIMIT = env.integer("WEBSOCKET_SEND_QUEUE_LIMIT", 1000, minimum=10)
WEBSOCKET_SEND_QUEUE_BYTES = env.integer("WEBSOCKET_SEND_QUEUE_BYTES", 8 * 2**20, minimum=65536)
# A replay (a join's history, a recovery) is read from Redis and sent a page at a time, the next page read when
# the last is sent: at most this many events and bytes (of their payloads) in one page, and in one long-poll's
# answer. 100 events of a typical 2-3 KB keep a recovery to a few Redis round trips; 1 MiB bounds what one
# desktop holds beyond its live queue, and a poll's answer, whatever the history's size.
REPLAY_PAGE_EVENTS = env.integer("REPLAY_PAGE_EVENTS", 100, minimum=1, maximum=100_000)
REPLAY_PAGE_BYTES = env.integer("REPLAY_PAGE_BYTES", 2**20, minimum=4096, maximum=2**30)
# The replay pages one process holds at once, over all its desktops (connector/desktops/replay_budget.py): a
# page's read waits its turn (first come, first served) until its bounds fit, and what it holds goes back as its
# events are sent. 64 MiB is 64 full pages (thousands of desktops replaying at once after a rolling deploy take
# turns, none is refused); 10,000 events bound the events' own overhead when they are small. An event bigger
# than the whole budget is read alone.
REPLAY_PROCESS_BYTES = env.integer("REPLAY_PROCESS_BYTES", 64 * 2**20, minimum=4096, maximum=2**34)
REPLAY_PROCESS_EVENTS = env.integer("REPLAY_PROCESS_EVENTS", 10_000, minimum=1, maximum=10_000_000)
# A replayed event the desktop does not take within this long (as long again for each further 64 KiB of a bigger
# one) ends its connection (4429): its page's share of the process's budget goes back to the desktops waiting for it.
REPLAY_STALL_SECONDS = env.integer("REPLAY_STALL_SECONDS", 15, minimum=1, maximum=600)
# Conversations one connection may join, a token bucket: this many a second on average, this many at once (a
# whole connection's 64 after connecting, and as many again to switch between them). Every join takes a
# conversation's position in Redis, which makes a key for a name without one: the count of joins over time is
# what bounds the keys a client can make.
DESKTOP_JOINS_PER_SECOND = env.number("DESKTOP_JOINS_PER_SECOND", 10.0, minimum=0.1, maximum=10_000)
DESKTOP_JOIN_BURST = env.integer("DESKTOP_JOIN_BURST", 128, minimum=1, maximum=10_000)
# Open WebSockets per process that have not authenticated yet; further handshakes get 403 until
# some authenticate or close. They hold no Redis resources, only this process's memory.
WEBSOCKET_MAX_UNAUTHENTICATED = env.integer("WEBSOCKET_MAX_UNAUTHENTICATED", 1000, minimum=1)
# Long-polling GETs one process keeps waiting at once (connector/desktops/polling); more are answered 503 at once.
SOCKETIO_MAX_WAITING_POLLS = env.integer("SOCKETIO_MAX_WAITING_POLLS", 10000, minimum=1)
# Packets, and their bytes, that may wait in Redis for a long-polling session's next GET (acknowledgements,
# CONNECT answers, pongs: conversation events are read from the history, not queued). A client that polls while
# it posts holds a few; one that only posts is closed past these (its next GET answers CLOSE; it can recover).
# The byte budget holds the acknowledgements of every join a connection may make (64) with the longest names.
SOCKETIO_POLLING_QUEUE_LIMIT = env.integer("SOCKETIO_POLLING_QUEUE_LIMIT", 1000, minimum=10)
SOCKETIO_POLLING_QUEUE_BYTES = env.integer("SOCKETIO_POLLING_QUEUE_BYTES", 2**20, minimum=65536)
# One client address's share, across instances, of the unauthenticated: WebSockets not yet authenticated and
# waiting long-polls of sessions not yet connected to "/" (connector/desktops/preauth.py); more get 403 (WebSocket) or
# 429 (long-poll). A tenth of the per-process total, so one client cannot take them all.
WEBSOCKET_MAX_UNAUTHENTICATED_PER_ADDRESS = env.integer("WEBSOCKET_MAX_UNAUTHENTICATED_PER_ADDRESS", 100, minimum=1)
# New sessions per client address, counted in Redis across instances like REGISTER_RATE_LIMIT: long-polling
# handshakes (429), /socket.io/ WebSocket handshakes without sid and /ws/ handshakes (403).
HANDSHAKE_RATE_LIMIT = env.rate("HANDSHAKE_RATE_LIMIT", "600/minute")

# --- HTTP ----------------------------------------------------------------------
ALLOWED_HOSTS = env.items("ALLOWED_HOSTS", ["*"])
_cors_origins = env.items("CORS_ALLOWED_ORIGINS")
CORS_ALLOW_ALL_ORIGINS = "*" in _cors_origins
CORS_ALLOWED_ORIGINS = [origin for origin in _cors_origins if origin != "*"]
CORS_URLS_REGEX = r"^/(?!socket\.io/|ws/).*$"

# --- Django ------------------------------------------------------------------
# Signs the admin's sessions (and nothing of the desktops': their tokens use the JWT secret). The random
# fallback suits one local process; deployed, every instance needs the same key (deploy_plan sets it from
# Secret Manager), or an operator is logged out whenever another instance answers.
SECRET_KEY = env.text("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50)
DEBUG = False
INSTALLED_APPS = [
    # daphne's runserver, ahead of staticfiles' (aa_site/apps.py: without daphne's server at set-up).
    "aa_site.apps.DaphneRunserverConfig",
    # The operators' admin (aa_site/admin_site.py), served by the connector and "all" roles under /admin/.
    "aa_site.apps.OperatorAdminConfig",
    "django.contrib.auth",
    # Failed admin logins counted and locked out (aa_site/admin_lockout.py); its tables are created by migrate
    # but stay empty: the counts are in Redis.
    "axes",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "channels",
    "aa_site",
    "auth_providers",
    "connector",
    "interceptor",
    # Operator tooling (deploy_plan, configure_conversation_profile, create_push_subscriptions): commands only.
    "deployment",
]
MIDDLEWARE = [
    "aa_site.middleware.TraceMiddleware",
    "aa_site.middleware.SecurityMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "aa_site.middleware.CommonMiddleware",
    # Sessions, users, messages and framing rules for /admin/ only: no other request pays for them.
    "aa_site.admin_middleware.AdminMiddleware",
]
ROOT_URLCONF = "aa_site.urls"
ASGI_APPLICATION = "aa_site.asgi.application"
# The admin's users and sessions, and nothing else (every other state is in Redis): PostgreSQL (Cloud SQL) from
# DATABASE_URL in production, else a SQLite file at SQLITE_PATH (per instance, so for local runs and one instance).
# Migrations: manage.py migrate (scripts/run-local.sh runs it; on Cloud Run a job, see docs/deploying.md).
DATABASE_URL = env.text("DATABASE_URL")
SQLITE_PATH = env.text("SQLITE_PATH", str(BASE_DIR / "var" / "admin.sqlite3"))
DATABASES = {"default": env.database(DATABASE_URL, sqlite_path=SQLITE_PATH)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
APPEND_SLASH = False
# Only the admin renders templates.
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Ahead of the apps' own: admin/base_site.html here extends the admin's.
        "DIRS": [BASE_DIR / "aa_site" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    }
]
# The admin's own CSS and scripts, served by the connector (aa_site/admin_static.py) from the installed apps.
STATIC_URL = "/admin/static/"
SESSION_COOKIE_PATH = CSRF_COOKIE_PATH = "/admin/"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Strict"
# Cookies only over HTTPS (Cloud Run); false for plain-HTTP runs outside development mode (the tests' servers).
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.flag("ADMIN_SECURE_COOKIES", not DEVELOPMENT_MODE)
SESSION_COOKIE_AGE = 8 * 3600
# Cloud Run's front end terminates TLS and says so in X-Forwarded-Proto (for the admin's secure cookies and CSRF).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env.flag("TRUST_FORWARDED_PROTO", False) else None
CSRF_TRUSTED_ORIGINS = env.items("CSRF_TRUSTED_ORIGINS")
# Django's admin (and django-axes) ask for their middleware in MIDDLEWARE; aa_site.admin_middleware runs them,
# for /admin/ only.
SILENCED_SYSTEM_CHECKS = ["admin.E408", "admin.E409", "admin.E410", "axes.W002"]

# --- The admin's login (aa_site/admin_login.py, aa_site/admin_lockout.py; django-axes) ---
# Failed logins per user name (from any address), and per client address (for any names), after which logins for
# that name, or from that address, are refused (429) for ADMIN_LOGIN_LOCKOUT_SECONDS; counted in Redis across
# instances. An address gets more: several operators may share one (an office's NAT).
ADMIN_LOGIN_FAILURES_PER_USER = env.integer("ADMIN_LOGIN_FAILURES_PER_USER", 5, minimum=1, maximum=1000)
ADMIN_LOGIN_FAILURES_PER_ADDRESS = env.integer("ADMIN_LOGIN_FAILURES_PER_ADDRESS", 20, minimum=1, maximum=100_000)
ADMIN_LOGIN_LOCKOUT_SECONDS = env.integer("ADMIN_LOGIN_LOCKOUT_SECONDS", 900, minimum=1, maximum=7 * 24 * 3600)
# Password checks (about 0.36 s of CPU each) one process runs at once; further logins wait up to
# ADMIN_LOGIN_WAIT_SECONDS, at most ADMIN_LOGIN_QUEUE of them, else get 503 "busy": a login storm takes one core,
# never the one serving desktops too.
ADMIN_LOGIN_CONCURRENCY = env.integer("ADMIN_LOGIN_CONCURRENCY", 1, minimum=1, maximum=64)
ADMIN_LOGIN_QUEUE = env.integer("ADMIN_LOGIN_QUEUE", 8, minimum=0, maximum=1000)
ADMIN_LOGIN_WAIT_SECONDS = env.number("ADMIN_LOGIN_WAIT_SECONDS", 3.0, minimum=0.0, maximum=60)
AUTHENTICATION_BACKENDS = ["aa_site.admin_login.AdminLoginBackend"]
AXES_HANDLER = "aa_site.admin_lockout.RedisLoginHandler"
# What axes and its checks read; the handler keeps one counter per user name and one per address, each with its
# own limit above (axes' own handlers compare the larger count with one limit).
AXES_LOCKOUT_PARAMETERS = [["username"], ["ip_address"]]
# The address the registration rate limit counts (TRUSTED_PROXY_HOPS, IPv6 as its /64).
AXES_CLIENT_IP_CALLABLE = "connector.ratelimit.client_address"
AXES_COOLOFF_TIME = "aa_site.admin_lockout.cool_off"
AXES_LOCKOUT_CALLABLE = "aa_site.admin_login.lockout_response"
# An attempt refused while locked out is not counted: hammering does not prolong the lockout.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# No attempts in the database to show, and no start-up banner.
AXES_ENABLE_ADMIN = False
AXES_VERBOSE = False

# --- Metrics (events/metrics.py, aa_site/metrics_view.py) ------------------------
# The bearer token a Prometheus scraper sends to GET /metrics; empty: /metrics answers 404.
# Several processes on one machine share their metrics through PROMETHEUS_MULTIPROC_DIR (prometheus-client
# reads it from the environment itself, before settings load).
METRICS_TOKEN = env.text("METRICS_TOKEN")

# --- Logging -------------------------------------------------------------------
# Conversation content is logged only at DEBUG; INFO and above carry ids only.
LOG_LEVEL = env.choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"))
# Which requests get an access line (logger aa_site.access, at INFO): "all"; "errors", only those answered
# 4xx/5xx (or not answered) and refused WebSocket handshakes; "off". Cloud Run's request log records every
# request already: the image sets "errors" (Dockerfile), one line less per push.
ACCESS_LOG = env.choice("ACCESS_LOG", "all", ("all", "errors", "off"))
LOGGING_FILE = env.text("LOGGING_FILE")
# json: one object per line for Cloud Logging (aa_site/log_format.py); text: plain lines (scripts/run-local.sh).
LOG_FORMAT = env.choice("LOG_FORMAT", "json", ("json", "text"))
# Lines a client or an outage repeats at will (a 503 per push while Redis is down, a refused stream, the access
# line of a 429 or a 503) are written once, then summed up in one line per this many seconds while they go on
# (common/log_sampling.py); 0 writes each.
LOG_SAMPLE_SECONDS = env.number("LOG_SAMPLE_SECONDS", 60.0, minimum=0, maximum=3600)
LOGGING = log_format.logging_config(log_format=LOG_FORMAT, level=LOG_LEVEL, file=LOGGING_FILE)

# --- The connector's HTTP API on Django REST framework (connector/http/api/) ----------
# Each view declares its own authentication, permission, throttle and parser
# classes; these defaults only make sure nothing is implied (no session
# authentication, no browsable API, no AnonymousUser).
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_THROTTLE_CLASSES": [],
    "DEFAULT_PARSER_CLASSES": ["connector.http.api.parsers.JsonObjectParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "connector.http.api.negotiation.FixedNegotiation",
    "EXCEPTION_HANDLER": "connector.http.api.exceptions.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "UNAUTHENTICATED_TOKEN": None,
}
# Largest JSON body of /register, /register-app and /conversation-name (else 413 {"message"}): a
# registration or a key/name pair is well under 4 KiB; 256 KiB leaves room for any provider's credentials.
API_MAX_BODY_BYTES = env.integer("API_MAX_BODY_BYTES", 256 * 1024, minimum=1024, maximum=10 * 1024 * 1024)
# Largest Pub/Sub push body the interceptor reads (interceptor/push.py): a message carries up to
# 10 MiB of data, base64'd into the envelope (4/3 of it: 13.4 MiB) plus attributes and the envelope's
# fields. Larger bodies cannot come from Pub/Sub and are acknowledged as poison.
PUSH_MAX_BODY_BYTES = env.integer("PUSH_MAX_BODY_BYTES", 14 * 1024 * 1024, minimum=1024)

# --- Registration rate limit and client addresses (connector/ratelimit.py) -----
# POST /register and /register-app together, per client address, counted in
# Redis across all instances: (requests, window seconds), or None when "0"/"off".
REGISTER_RATE_LIMIT = env.rate("REGISTER_RATE_LIMIT", "30/minute")
# How many proxies in front of us append to X-Forwarded-For (Cloud Run: 1). The
# client is the entry that many places from the right; 0 trusts no header.
TRUSTED_PROXY_HOPS = env.integer("TRUSTED_PROXY_HOPS", 0, minimum=0, maximum=10)
# POSTs to /conversation-name per desktop token (its jti), counted in Redis like the above: each
# entry lives CONVERSATION_NAME_TTL_SECONDS, so this bounds what one token can make the store hold.
CONVERSATION_NAME_RATE_LIMIT = env.rate("CONVERSATION_NAME_RATE_LIMIT", "60/minute")
# GETs and DELETEs of /conversation-name per token, likewise: a bound on walking keys (phone numbers) with
# one token, far above a desktop's or a companion service's lookups (one or a few per call).
CONVERSATION_NAME_LOOKUP_RATE_LIMIT = env.rate("CONVERSATION_NAME_LOOKUP_RATE_LIMIT", "1200/minute")
# The same GETs and DELETEs per user (every token of one user together: registering again gives no new budget)
# and per client address (every user behind it together: registering other users neither).
CONVERSATION_NAME_LOOKUP_USER_RATE_LIMIT = env.rate("CONVERSATION_NAME_LOOKUP_USER_RATE_LIMIT", "2400/minute")
CONVERSATION_NAME_LOOKUP_ADDRESS_RATE_LIMIT = env.rate("CONVERSATION_NAME_LOOKUP_ADDRESS_RATE_LIMIT", "6000/minute")
# A browser desktop may read Retry-After on a cross-origin 429.
CORS_EXPOSE_HEADERS = ["Retry-After"]

# --- Authenticated push (interceptor/push_auth.py, common/google_certs.py) ------
# When set, every push must carry Pub/Sub's OIDC token for this service account
# (the subscription's --push-auth-service-account); empty leaves pushes unchecked.
PUSH_AUTH_SERVICE_ACCOUNT = env.text("PUSH_AUTH_SERVICE_ACCOUNT")
# The subscription's --push-auth-token-audience; empty means the push URL itself
# (Pub/Sub's default), scheme from X-Forwarded-Proto when present.
PUSH_AUTH_AUDIENCE = env.text("PUSH_AUTH_AUDIENCE")
# Google's signing certificates (v1 form: key id -> PEM); change only for a test double.
PUSH_AUTH_CERTS_URL = env.text("PUSH_AUTH_CERTS_URL", "https://www.googleapis.com/oauth2/v1/certs")

# --- Service-to-service callers (connector/http/service_callers.py) ------------------
# Service accounts whose Google-signed ID token the connector accepts instead of a desktop JWT
# (/register, /conversation-name, the Dialogflow proxy): exact emails, or
# *@PROJECT.iam.gserviceaccount.com for every user-managed account of one project. Empty: off.
SERVICE_AUTH_ALLOWED_CALLERS = env.items("SERVICE_AUTH_ALLOWED_CALLERS")
# The audience those tokens must carry: the connector's URL(s) as callers request them
# (https://ui-connector-....run.app, a custom domain); required when the allow-list is set.
SERVICE_AUTH_AUDIENCE = env.items("SERVICE_AUTH_AUDIENCE")
# Google's signing certificates (v1 form: key id -> PEM); change only for a test double.
SERVICE_AUTH_CERTS_URL = env.text("SERVICE_AUTH_CERTS_URL", "https://www.googleapis.com/oauth2/v1/certs")

# --- JWT secret rotation and Secret Manager (connector/jwt_secret.py) ----------
# A previous signing secret keeps tokens it signed valid until they expire;
# new tokens are always signed with the current one. Same sources and order.
JWT_PREVIOUS_SECRET_KEY = env.text("JWT_PREVIOUS_SECRET_KEY")
JWT_PREVIOUS_SECRET_KEY_FILE = env.text("JWT_PREVIOUS_SECRET_KEY_FILE", "/secret/jwt_previous_secret_key")
JWT_PREVIOUS_SECRET_NAME = env.text("JWT_PREVIOUS_SECRET_NAME")
# Empty: Google's endpoint. Set only for a proxy or a test double (http://host:port).
SECRET_MANAGER_API_ENDPOINT = env.text("SECRET_MANAGER_API_ENDPOINT")
# Seconds start-up may spend reading a secret, retries included.
SECRET_MANAGER_TIMEOUT = env.number("SECRET_MANAGER_TIMEOUT", 10.0, minimum=0.1, maximum=300)

# --- Dialogflow proxy and /conversation-name (connector) ------------------------
# Where proxied calls go: empty means Google's endpoint for each location
# (https://dialogflow.googleapis.com for "global", https://<location>-dialogflow.googleapis.com
# otherwise); set only to point every location at one proxy or test double.
DIALOGFLOW_API_ROOT = env.text("DIALOGFLOW_API_ROOT").rstrip("/")
# Projects desktops may reach through the proxy; empty means GCP_PROJECT_ID alone.
DIALOGFLOW_ALLOWED_PROJECTS = env.items("DIALOGFLOW_ALLOWED_PROJECTS")
# Seconds: to connect, and for the whole call (LLM-backed generators can take tens of seconds).
DIALOGFLOW_CONNECT_TIMEOUT = env.number("DIALOGFLOW_CONNECT_TIMEOUT", 5.0, minimum=0.01, maximum=60)
DIALOGFLOW_TIMEOUT = env.number("DIALOGFLOW_TIMEOUT", 60.0, minimum=0.01, maximum=600)
# Largest request body forwarded (analyzeContent with base64 audio exceeds Django's 2.5 MB default).
DIALOGFLOW_MAX_REQUEST_BYTES = env.integer("DIALOGFLOW_MAX_REQUEST_BYTES", 10 * 1024 * 1024, minimum=1024)
# Streaming calls over the desktop socket (connector/desktops/streaming): Google's WebChannel host per location
# (https://<location>-dialogflow-webchannel.googleapis.com) unless this names one root for all.
DIALOGFLOW_WEBCHANNEL_ROOT = env.text("DIALOGFLOW_WEBCHANNEL_ROOT").rstrip("/")
# Where manage.py create_push_subscriptions calls Pub/Sub's REST API: empty means Google's (a proxy or test double).
# (manage.py configure_conversation_profile calls Dialogflow at DIALOGFLOW_API_ROOT, as the proxy does.)
PUBSUB_API_ENDPOINT = env.text("PUBSUB_API_ENDPOINT").rstrip("/")
# Open streams one connection, and one process, may hold; a stream-request beyond gets a stream-error.
STREAM_MAX_PER_CONNECTION = env.integer("STREAM_MAX_PER_CONNECTION", 10, minimum=1, maximum=1000)
STREAM_MAX_PER_PROCESS = env.integer("STREAM_MAX_PER_PROCESS", 500, minimum=1, maximum=100_000)
# Bytes (as JSON) of stream requests waiting to be posted upstream: per stream, per connection, per process;
# a stream-request beyond gets a stream-error and ends its stream. A request is one socket frame
# (SOCKETIO_MAX_PAYLOAD, 1 MB) at most: two such wait on a stream, four on a connection.
STREAM_MAX_QUEUED_BYTES_PER_STREAM = env.integer("STREAM_MAX_QUEUED_BYTES_PER_STREAM", 2 * 1024 * 1024,
                                                 minimum=1024, maximum=1024 * 1024 * 1024)
STREAM_MAX_QUEUED_BYTES = env.integer("STREAM_MAX_QUEUED_BYTES", 4 * 1024 * 1024, minimum=1024,
                                      maximum=1024 * 1024 * 1024)
STREAM_MAX_QUEUED_BYTES_PER_PROCESS = env.integer("STREAM_MAX_QUEUED_BYTES_PER_PROCESS", 128 * 1024 * 1024,
                                                  minimum=1024, maximum=16 * 1024 * 1024 * 1024)
# Seconds a stream may go without a request or a response, and stay open in all.
STREAM_IDLE_TIMEOUT = env.number("STREAM_IDLE_TIMEOUT", 300.0, minimum=0.1, maximum=86400)
STREAM_MAX_DURATION = env.number("STREAM_MAX_DURATION", 3600.0, minimum=0.1, maximum=86400)
# How long a /conversation-name entry lives; 0 keeps entries until deleted (the sample's behaviour).
CONVERSATION_NAME_TTL_SECONDS = env.integer("CONVERSATION_NAME_TTL_SECONDS", 24 * 60 * 60, minimum=0)
# Entries the /conversation-name store may hold in all (the deployment, across instances); a POST of a new
# key beyond is answered 507. An entry costs about 200 bytes of Redis: 100,000 of them about 20 MB.
CONVERSATION_NAME_MAX_ENTRIES = env.integer("CONVERSATION_NAME_MAX_ENTRIES", 100_000, minimum=1,
                                            maximum=100_000_000)

ENVIRONMENT_PROBLEMS = list(env.PROBLEMS)
ENVIRONMENT_NOTICES = list(env.NOTICES)
