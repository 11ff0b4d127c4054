"""Settings: read once from environment variables into one typed record.

Every problem is collected, so a bad deployment hears about all of them at
once (`SettingsError`). The table `SETTINGS` is the single source for names,
defaults and descriptions; the README's table mirrors it.
"""

from __future__ import annotations

import enum
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from castghl_adapters.crypto import InvalidEncryptionKey, load_key
from castghl_adapters.ghl.signatures import (
    GHL_RSA_SHA256,
    load_ed25519_public_key,
    load_pinned_rsa_key,
    load_rsa_public_key,
    split_pems,
)


class StateStore(enum.StrEnum):
    """Where jobs, installations and settings live."""

    SQLITE = "sqlite"
    MONGODB = "mongodb"
    MEMORY = "memory"


class SecretBackend(enum.StrEnum):
    """Where Cast API keys live."""

    STATE = "state"
    INFISICAL = "infisical"


DEFAULT_SCOPES = (
    "conversations/message.write",
    "conversations/message.readonly",
    "conversations.readonly",
    "conversations.write",
    "contacts.readonly",
    "contacts.write",
    "oauth.readonly",
    "oauth.write",
)
"""What castghl asks for: the conversation and contact calls, and the OAuth
ones an agency install needs to mint location tokens."""


class SettingsError(Exception):
    """The environment does not describe a runnable deployment."""

    def __init__(self, problems: list[str]) -> None:
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"castghl cannot start; fix these settings:\n{lines}")
        self.problems = problems


def _text(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


def _int(value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise ValueError("must be a whole number") from None


def _positive_int(value: str) -> int:
    number = _int(value)
    if number <= 0:
        raise ValueError("must be a positive whole number")
    return number


def _port(value: str) -> int:
    number = _int(value)
    if not 0 <= number <= 65535:  # noqa: PLR2004
        raise ValueError("must be a TCP port (0 to 65535)")
    return number


def _number(value: str) -> float:
    try:
        number = float(value.strip())
    except ValueError:
        raise ValueError("must be a number") from None
    if not math.isfinite(number):
        raise ValueError("must be a finite number")
    return number


def _positive_float(value: str) -> float:
    number = _number(value)
    if number <= 0:
        raise ValueError("must be a positive number")
    return number


def _non_negative_float(value: str) -> float:
    number = _number(value)
    if number < 0:
        raise ValueError("must not be negative")
    return number


def _url(value: str) -> str:
    value = value.strip().rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value


def _mongodb_uri(value: str) -> str:
    # The URI may hold a password: problems are described, never echoed.
    value = value.strip()
    if not value.startswith(("mongodb://", "mongodb+srv://")):
        raise ValueError("must start with mongodb:// or mongodb+srv://")
    return value


_MONGODB_NAME_FORBIDDEN = frozenset('/\\. "$')
_MONGODB_NAME_MAX = 63


def _mongodb_database(value: str) -> str:
    value = value.strip()
    if not 1 <= len(value) <= _MONGODB_NAME_MAX or _MONGODB_NAME_FORBIDDEN & set(value):
        raise ValueError(
            f"must be a MongoDB database name: 1 to {_MONGODB_NAME_MAX} "
            'characters, none of / \\ . " $ or a space'
        )
    return value


def _admin_token(value: str) -> str:
    value = value.strip()
    if len(value) < 24:  # noqa: PLR2004
        raise ValueError("must be at least 24 characters (use a random token)")
    return value


def _optional_url(value: str) -> str:
    return _url(value) if value.strip() else ""


def _optional_secret(value: str) -> str:
    value = value.strip()
    if value and len(value) < 24:  # noqa: PLR2004
        raise ValueError("must be empty or at least 24 characters")
    return value


def _scopes(value: str) -> tuple[str, ...]:
    scopes = tuple(value.split())
    if not scopes:
        raise ValueError("must name at least one scope")
    return scopes


def _encryption_key(value: str) -> str:
    value = value.strip()
    if value:
        try:
            load_key(value)
        except InvalidEncryptionKey as error:
            raise ValueError(str(error)) from None
    return value


def _ed25519_pems(value: str) -> str:
    for pem in split_pems(value):
        try:
            load_ed25519_public_key(pem)
        except ValueError:
            raise ValueError("holds a PEM that is not an Ed25519 public key") from None
    return value


def _choice(kind: type[enum.StrEnum]) -> Callable[[str], Any]:
    def parse(value: str) -> Any:
        try:
            return kind(value.strip().lower())
        except ValueError:
            allowed = ", ".join(member.value for member in kind)
            raise ValueError(f"must be one of: {allowed}") from None

    return parse


def _flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("must be true or false")


def _log_level(value: str) -> str:
    level = value.strip().upper()
    if level not in {"DEBUG", "INFO", "WARNING"}:
        raise ValueError("must be debug, info or warning")
    return level


@attrs.frozen
class Setting:
    """One environment variable: its field, parser, default and meaning."""

    field: str
    parse: Callable[[str], Any]
    default: str | None
    help: str
    secret: bool = False

    @property
    def env(self) -> str:
        """The environment variable's name."""
        return "CASTGHL_" + self.field.upper()


SETTINGS: tuple[Setting, ...] = (
    Setting("host", _text, "127.0.0.1", "Address the service listens on."),
    Setting("port", _port, "8080", "TCP port the service listens on."),
    Setting(
        "admin_token",
        _admin_token,
        None,
        "Bearer token of the admin API (required, at least 24 characters).",
        secret=True,
    ),
    Setting(
        "state_store",
        _choice(StateStore),
        "sqlite",
        "sqlite (embedded, one file), mongodb, or memory (tests only).",
    ),
    Setting(
        "sqlite_path", _text, "castghl.sqlite3", "SQLite file of the embedded store."
    ),
    Setting(
        "mongodb_uri",
        _mongodb_uri,
        "mongodb://127.0.0.1:27017",
        "MongoDB connection string (mongodb:// or mongodb+srv://) with any "
        "credentials, authSource and TLS options; logged only with the "
        "password masked.",
        secret=True,
    ),
    Setting(
        "mongodb_database",
        _mongodb_database,
        "castghl",
        "MongoDB database holding castghl's collections.",
    ),
    Setting(
        "mongodb_pool_size",
        _positive_int,
        "50",
        "Most connections one process opens to MongoDB (overrides maxPoolSize "
        "in the URI).",
    ),
    Setting(
        "mongodb_timeout_seconds",
        _positive_float,
        "10",
        "How long a MongoDB call waits to select a server, connect or read "
        "before failing (bounds /readyz too; overrides the URI's timeouts).",
    ),
    Setting(
        "secret_store",
        _choice(SecretBackend),
        "state",
        "Where Cast API keys live: state (the state store) or infisical.",
    ),
    Setting(
        "encryption_key",
        _encryption_key,
        "",
        "Base64 32-byte key encrypting API keys and tokens at rest "
        "(strongly advised; without it they are stored in plain text).",
        secret=True,
    ),
    Setting("cast_base_url", _url, "https://api.cast.ph", "Cast API base URL."),
    Setting(
        "ghl_base_url",
        _url,
        "https://services.leadconnectorhq.com",
        "HighLevel API base URL.",
    ),
    Setting(
        "ghl_webhook_public_keys",
        _ed25519_pems,
        "",
        "Ed25519 public key PEM(s) trusted for X-GHL-Signature; empty means "
        "HighLevel's published key (pinned by fingerprint).",
    ),
    Setting(
        "ghl_legacy_rsa_public_key",
        str,
        "",
        "RSA public key PEM for the legacy X-WH-Signature; empty disables it. "
        "Pinned to HighLevel's published fingerprint unless "
        "CASTGHL_GHL_LEGACY_RSA_UNPINNED is true.",
    ),
    Setting(
        "ghl_legacy_rsa_unpinned",
        _flag,
        "false",
        "Trust a legacy RSA key other than HighLevel's (tests only).",
    ),
    Setting(
        "public_url",
        _optional_url,
        "",
        "Public URL of this service (https://…); the OAuth redirect URI is "
        "<url>/oauth/callback. Required for installs off loopback; empty: the "
        "URL a request came in on, for 127.0.0.1/localhost only.",
    ),
    Setting(
        "ghl_client_id",
        str.strip,
        "",
        "The marketplace app's OAuth client id (<appId>-<suffix>). Empty: "
        "installs are off and the OAuth and app-webhook routes answer 503.",
    ),
    Setting(
        "ghl_client_secret",
        str.strip,
        "",
        "The marketplace app's OAuth client secret (needed with the client id).",
        secret=True,
    ),
    Setting(
        "ghl_consent_url",
        _url,
        "https://marketplace.gohighlevel.com",
        "HighLevel's consent host (white-label: "
        "https://marketplace.leadconnectorhq.com).",
    ),
    Setting(
        "ghl_scopes",
        _scopes,
        " ".join(DEFAULT_SCOPES),
        "Scopes asked for at install, space-separated.",
    ),
    Setting(
        "oauth_state_secret",
        _optional_secret,
        "",
        "Key signing the install link's state (24+ characters); empty: derived "
        "from the client secret.",
        secret=True,
    ),
    Setting(
        "oauth_state_seconds",
        _positive_float,
        "900",
        "How long an install link stays valid, from /oauth/install to the callback.",
    ),
    Setting(
        "token_refresh_margin_seconds",
        _non_negative_float,
        "300",
        "A token expiring within this is refreshed before a GHL call uses it.",
    ),
    Setting(
        "token_refresh_lead_seconds",
        _positive_float,
        "3600",
        "The background worker refreshes each token this long before it "
        "expires (spread over the last quarter of this time).",
    ),
    Setting(
        "token_refresh_concurrency",
        _positive_int,
        "4",
        "Tokens the background worker refreshes at once.",
    ),
    Setting(
        "token_refresh_scan_seconds",
        _positive_float,
        "60",
        "How often the background worker looks for tokens to refresh.",
    ),
    Setting(
        "token_inactive_retry_seconds",
        _positive_float,
        "60",
        "First wait before retrying a refresh GHL refused with 'Location is "
        "not active' (doubling, at most an hour); the token is kept.",
    ),
    Setting(
        "app_webhook_window_seconds",
        _positive_float,
        "300",
        "App webhooks (INSTALL, UNINSTALL) stamped further than this from now "
        "are refused.",
    ),
    Setting(
        "uninstall_grace_seconds",
        _non_negative_float,
        "2592000",
        "How long an uninstalled location's settings and Cast key are kept, "
        "so a reinstall finds them (default 30 days).",
    ),
    Setting(
        "max_body_bytes",
        _positive_int,
        "262144",
        "Largest webhook body accepted, in bytes (larger: 413).",
    ),
    Setting(
        "max_backlog",
        _positive_int,
        "100000",
        "Most unfinished outbound jobs held at once; past it, deliveries get "
        "503 and GHL retries them later.",
    ),
    Setting(
        "max_sms_parts",
        _positive_int,
        "10",
        "Longest message sent, in SMS parts; longer ones are reported failed.",
    ),
    Setting(
        "http_timeout_seconds",
        _positive_float,
        "15",
        "Timeout of every call to Cast and GHL.",
    ),
    Setting(
        "dispatch_concurrency",
        _positive_int,
        "16",
        "Outbound jobs worked on at once by one process.",
    ),
    Setting(
        "lease_seconds",
        _positive_float,
        "60",
        "How long a replica holds a job it works on before others may take it.",
    ),
    Setting(
        "dispatch_poll_seconds",
        _positive_float,
        "0.5",
        "How often an idle dispatcher looks for due jobs.",
    ),
    Setting(
        "shutdown_grace_seconds",
        _non_negative_float,
        "10",
        "On shutdown, how long in-flight jobs may finish before they are left "
        "to their leases (other replicas, or the next start, take them over).",
    ),
    Setting(
        "first_poll_seconds",
        _positive_float,
        "3",
        "Wait after a send before the first delivery-status lookup.",
    ),
    Setting(
        "delivery_timeout_seconds",
        _positive_float,
        "1800",
        "How long to follow a sent message's status before reporting it "
        "failed as unconfirmed.",
    ),
    Setting(
        "report_not_ready_seconds",
        _positive_float,
        "120",
        "How long GHL's early 403 on status updates is retried quickly.",
    ),
    Setting(
        "log_level",
        _log_level,
        "info",
        "debug, info or warning.",
    ),
    Setting("log_json", _flag, "true", "Log one JSON object per line."),
)


@attrs.frozen(repr=False)
class Settings:
    """The parsed settings; `repr` never shows a secret."""

    host: str
    port: int
    admin_token: str
    state_store: StateStore
    sqlite_path: Path
    mongodb_uri: str
    mongodb_database: str
    mongodb_pool_size: int
    mongodb_timeout_seconds: float
    secret_store: SecretBackend
    encryption_key: str
    cast_base_url: str
    ghl_base_url: str
    ghl_webhook_public_keys: str
    ghl_legacy_rsa_public_key: str
    ghl_legacy_rsa_unpinned: bool
    public_url: str
    ghl_client_id: str
    ghl_client_secret: str
    ghl_consent_url: str
    ghl_scopes: tuple[str, ...]
    oauth_state_secret: str
    oauth_state_seconds: float
    token_refresh_margin_seconds: float
    token_refresh_lead_seconds: float
    token_refresh_concurrency: int
    token_refresh_scan_seconds: float
    token_inactive_retry_seconds: float
    app_webhook_window_seconds: float
    uninstall_grace_seconds: float
    max_body_bytes: int
    max_backlog: int
    max_sms_parts: int
    http_timeout_seconds: float
    dispatch_concurrency: int
    lease_seconds: float
    dispatch_poll_seconds: float
    shutdown_grace_seconds: float
    first_poll_seconds: float
    delivery_timeout_seconds: float
    report_not_ready_seconds: float
    log_level: str
    log_json: bool

    def __repr__(self) -> str:
        shown = {
            s.field: ("***" if s.secret else getattr(self, s.field)) for s in SETTINGS
        }
        return f"Settings({shown})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Parse every setting; raise SettingsError listing all problems."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        for setting in SETTINGS:
            raw = environ.get(setting.env, setting.default)
            if raw is None:
                problems.append(f"{setting.env} is required: {setting.help}")
                continue
            try:
                values[setting.field] = setting.parse(raw)
            except ValueError as error:
                shown = "" if setting.secret else f" (got {raw!r})"
                problems.append(f"{setting.env} {error}{shown}")
        if not problems:
            problems = _cross_checks(values)
        if problems:
            raise SettingsError(problems)
        values["sqlite_path"] = Path(values["sqlite_path"])
        return cls(**values)

    @property
    def oauth_enabled(self) -> bool:
        """Whether installs can run: the app's client id and secret are set."""
        return bool(self.ghl_client_id and self.ghl_client_secret)


def _cross_checks(values: Mapping[str, Any]) -> list[str]:
    """Problems that only show when settings are read together."""
    problems = []
    if values["lease_seconds"] < 4 * values["http_timeout_seconds"]:
        problems.append(
            "CASTGHL_LEASE_SECONDS must be at least 4 x CASTGHL_HTTP_TIMEOUT_SECONDS "
            "(a step makes up to 4 calls; a shorter lease lets another worker take "
            "a job that is still being worked on)"
        )
    if values["secret_store"] is SecretBackend.INFISICAL:
        problems.append(
            "CASTGHL_SECRET_STORE=infisical is not available in this version; use state"
        )
    rsa_pem = values["ghl_legacy_rsa_public_key"]
    if rsa_pem.strip():
        try:
            if values["ghl_legacy_rsa_unpinned"]:
                load_rsa_public_key(rsa_pem)
            else:
                load_pinned_rsa_key(rsa_pem, GHL_RSA_SHA256)
        except ValueError as error:
            problems.append(f"CASTGHL_GHL_LEGACY_RSA_PUBLIC_KEY {error}")
    if bool(values["ghl_client_id"]) != bool(values["ghl_client_secret"]):
        problems.append(
            "CASTGHL_GHL_CLIENT_ID and CASTGHL_GHL_CLIENT_SECRET must be set "
            "together (or both left empty to turn installs off)"
        )
    return problems


def settings_markdown() -> str:
    """The settings as the README's Markdown table."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for setting in SETTINGS:
        if setting.default is None:
            default = "*(required)*"
        elif setting.default:
            default = f"`{setting.default}`"
        else:
            default = "*(empty)*"
        rows.append(f"| `{setting.env}` | {default} | {setting.help} |")
    return "\n".join(rows)
