"""MongoDB connection strings without their secrets, for logs and error messages."""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"

_SCHEMES = ("mongodb://", "mongodb+srv://")

_SECRET_OPTIONS = frozenset(
    {
        # The password of the client certificate's private key, and its
        # deprecated spelling.
        "tlscertificatekeyfilepassword",
        "sslpemkeypassword",
        # May carry AWS_SESSION_TOKEN and other mechanism credentials.
        "authmechanismproperties",
    }
)
"""URI options (lower-cased) whose values are secrets."""

_SECRET_WORDS = re.compile(r"password|secret|token|credential", re.IGNORECASE)
"""Any other option whose name says it holds a secret is masked too."""


def redact_uri(uri: str) -> str:
    """`uri` with the password and secret option values replaced by ``***``.

    The user name, hosts, database and other options stay, so an operator can
    tell which server and account a log line is about. Malformed strings are
    redacted generously rather than echoed: everything up to the last ``@``
    counts as credentials, so a password with an unescaped ``@``, ``/`` or
    ``?`` in it is still hidden.
    """
    scheme = next((s for s in _SCHEMES if uri.lower().startswith(s)), None)
    if scheme is None:
        return "<not a mongodb:// or mongodb+srv:// URI>"

    rest = uri[len(scheme) :]
    credentials, at, after = rest.rpartition("@")
    if at:
        user, colon, _ = credentials.partition(":")
        rest = f"{user}:{MASK}@{after}" if colon else f"{user}@{after}"

    address, question, options = rest.partition("?")
    if question:
        rest = f"{address}?{_redact_options(options)}"
    return uri[: len(scheme)] + rest


def uri_secrets(uri: str) -> list[str]:
    """The secret values in `uri` (password, key password...), longest first.

    Each is given as written and percent-decoded, since a driver's message
    might quote either; `scrub` uses them.
    """
    found: list[str] = []
    scheme = next((s for s in _SCHEMES if uri.lower().startswith(s)), "")
    credentials, at, after = uri[len(scheme) :].rpartition("@")
    if at:
        _, colon, password = credentials.partition(":")
        if colon and password:
            found.append(password)
    _, _, options = (after if at else uri).partition("?")
    for option in re.split(r"[&;]", options):
        name, equals, value = option.partition("=")
        if equals and value and _is_secret_option(name):
            found.append(value)
    decoded = [unquote(secret) for secret in found]
    return sorted(set(found + decoded), key=len, reverse=True)


def scrub(text: str, uri: str) -> str:
    """`text` with every secret of `uri` (and `uri` itself) masked."""
    text = text.replace(uri, redact_uri(uri))
    for secret in uri_secrets(uri):
        text = text.replace(secret, MASK)
    return text


def _redact_options(options: str) -> str:
    # Keep the separators the operator used ("&", or the older ";").
    parts = re.split(r"([&;])", options)
    for index, part in enumerate(parts):
        name, equals, _ = part.partition("=")
        if equals and _is_secret_option(name):
            parts[index] = f"{name}={MASK}"
    return "".join(parts)


def _is_secret_option(name: str) -> bool:
    return name.lower() in _SECRET_OPTIONS or bool(_SECRET_WORDS.search(name))
