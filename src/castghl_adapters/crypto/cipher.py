"""Encryption at rest for secrets and tokens kept in a database backend.

A stored value is text with a format prefix, so the format can change later:
``v1:<base64(nonce + ciphertext)>`` for AES-256-GCM, ``plain:<value>`` when no
key is configured. Each value is bound to its owner (a location or company
id) as associated data, so a ciphertext copied onto another owner's row does
not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from castghl_core.errors import CastGhlError, SecretUnreadable

KEY_LENGTH = 32
"""AES-256: the key is 32 bytes."""

_NONCE_LENGTH = 12
_AES_GCM_V1 = "v1:"
_PLAIN = "plain:"
_KEY_HINT = (
    'generate one with: python -c "import base64, os; '
    'print(base64.urlsafe_b64encode(os.urandom(32)).decode())"'
)


class InvalidEncryptionKey(CastGhlError):
    """The configured encryption key is not 32 bytes of base64."""


class SecretDecryptionError(SecretUnreadable):
    """A stored secret cannot be read back with the configured cipher."""


class SecretCipher(Protocol):
    """Turns a secret into stored text and back, bound to its owner's id."""

    def encrypt(self, secret: str, *, associated_data: str) -> str:
        """The stored form of `secret`, readable only with the same owner id."""
        ...

    def decrypt(self, stored: str, *, associated_data: str) -> str:
        """The secret from its stored form; raise SecretDecryptionError."""
        ...


class AesGcmCipher:
    """AES-256-GCM with a random 96-bit nonce per value.

    XXX: the stored format names no key, so rotating the key means re-writing
    every value with the new one (the secret migration command can do it); a
    key id in a ``v2:`` format would allow reading with several keys.
    """

    def __init__(self, key: bytes, *, accept_plaintext: bool = False) -> None:
        """Use `key` (32 bytes); `accept_plaintext` also reads ``plain:`` values.

        Accepting plaintext lets a deployment that started without a key turn
        encryption on and re-write its values; it also lets anyone able to
        write the database plant a value, so it is off unless asked for.
        """
        if len(key) != KEY_LENGTH:
            raise InvalidEncryptionKey(
                f"the encryption key must be {KEY_LENGTH} bytes, got {len(key)}"
            )
        self._aead = AESGCM(key)
        self._accept_plaintext = accept_plaintext

    def __repr__(self) -> str:
        return "AesGcmCipher(key=<hidden>)"

    def encrypt(self, secret: str, *, associated_data: str) -> str:
        """``v1:`` and the base64 of a fresh nonce followed by the ciphertext."""
        nonce = os.urandom(_NONCE_LENGTH)
        sealed = self._aead.encrypt(nonce, secret.encode(), associated_data.encode())
        return _AES_GCM_V1 + base64.b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, stored: str, *, associated_data: str) -> str:
        """The secret, after checking it was sealed with this key for this owner."""
        if stored.startswith(_PLAIN) and self._accept_plaintext:
            return stored.removeprefix(_PLAIN)
        if stored.startswith(_PLAIN):
            raise SecretDecryptionError(
                f"the stored secret of {associated_data} was written without "
                "encryption; set it again to store it encrypted"
            )
        if not stored.startswith(_AES_GCM_V1):
            raise SecretDecryptionError(
                f"the stored secret of {associated_data} is in an unknown format"
            )

        try:
            raw = base64.b64decode(stored.removeprefix(_AES_GCM_V1), validate=True)
            plain = self._aead.decrypt(
                raw[:_NONCE_LENGTH], raw[_NONCE_LENGTH:], associated_data.encode()
            )
        except (InvalidTag, binascii.Error, ValueError) as error:
            raise SecretDecryptionError(
                f"cannot decrypt the stored secret of {associated_data}: the "
                "configured encryption key does not match the one it was "
                "written with, or the stored value was altered"
            ) from error
        return plain.decode()


class PlaintextCipher:
    """Stores secrets as they are, for deployments with no encryption key."""

    def __repr__(self) -> str:
        return "PlaintextCipher()"

    def encrypt(self, secret: str, *, associated_data: str) -> str:  # noqa: ARG002
        """``plain:`` and the secret."""
        return _PLAIN + secret

    def decrypt(self, stored: str, *, associated_data: str) -> str:
        """The secret; encrypted values need the key, which is not configured."""
        if stored.startswith(_PLAIN):
            return stored.removeprefix(_PLAIN)
        if stored.startswith(_AES_GCM_V1):
            raise SecretDecryptionError(
                f"the stored secret of {associated_data} is encrypted but no "
                "encryption key is configured"
            )
        raise SecretDecryptionError(
            f"the stored secret of {associated_data} is in an unknown format"
        )


def load_key(text: str) -> bytes:
    """The 32-byte key from its base64 text (URL-safe or standard alphabet).

    The error never repeats the text: it is a secret even when malformed.
    """
    compact = "".join(text.split())
    if not compact:
        raise InvalidEncryptionKey(f"the encryption key is empty; {_KEY_HINT}")

    standard = compact.replace("-", "+").replace("_", "/")
    padded = standard + "=" * (-len(standard) % 4)
    try:
        key = base64.b64decode(padded, validate=True)
    except binascii.Error as error:
        raise InvalidEncryptionKey(
            f"the encryption key is not valid base64; {_KEY_HINT}"
        ) from error

    if len(key) != KEY_LENGTH:
        raise InvalidEncryptionKey(
            f"the encryption key must decode to {KEY_LENGTH} bytes, got "
            f"{len(key)}; {_KEY_HINT}"
        )
    return key


def generate_key() -> str:
    """A new random key as URL-safe base64 text, for an operator to configure."""
    return base64.urlsafe_b64encode(os.urandom(KEY_LENGTH)).decode("ascii")
