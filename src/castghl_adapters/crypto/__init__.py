"""Encryption at rest for secrets kept in the database backends."""

from castghl_adapters.crypto.cipher import (
    KEY_LENGTH,
    AesGcmCipher,
    InvalidEncryptionKey,
    PlaintextCipher,
    SecretCipher,
    SecretDecryptionError,
    generate_key,
    load_key,
)

__all__ = [
    "KEY_LENGTH",
    "AesGcmCipher",
    "InvalidEncryptionKey",
    "PlaintextCipher",
    "SecretCipher",
    "SecretDecryptionError",
    "generate_key",
    "load_key",
]
