"""Checks that a webhook body was signed by HighLevel, and loads its keys.

Ed25519 (`X-GHL-Signature`) is current; RSA (`X-WH-Signature`) is legacy and
only considered when switched on and no Ed25519 signature came with the body.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from castghl_core.errors import SignatureRejected

GHL_SIGNATURE_HEADER = "X-GHL-Signature"
LEGACY_SIGNATURE_HEADER = "X-WH-Signature"

GHL_ED25519_PUBLIC_KEY_PEM = """\
-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAi2HR1srL4o18O8BRa7gVJY7G7bupbN3H9AwJrHCDiOg=
-----END PUBLIC KEY-----
"""
"""HighLevel's published Ed25519 webhook key (the same for every app)."""

GHL_ED25519_SHA256 = "5a2c1b2749d3efcc233fb27d4ab43d56b8d20818c42cd226f6c9a3ff20d3097c"
"""SHA-256 of the DER SubjectPublicKeyInfo of GHL_ED25519_PUBLIC_KEY_PEM."""

GHL_RSA_SHA256 = "2f62045d413b1b7747e26770ce7f57840cbf86288cd20ceb90d299a62501fd25"
"""SHA-256 of the DER of HighLevel's legacy RSA key. The PEM itself comes from
configuration: copies in circulation carry corruptions that still parse."""

_ED25519_SIGNATURE_BYTES = 64
_MIN_RSA_BITS = 2048
_UNSIGNED = "N/A"

PublicKey = Ed25519PublicKey | RSAPublicKey


class KeyFingerprintMismatch(ValueError):
    """A configured public key is not the one it was pinned to."""


class GhlSignatureVerifier:
    """A SignatureVerifier for HighLevel webhooks, with key rotation.

    A body is accepted when its signature verifies under any of the given keys
    of its algorithm, so a rotated key can be added before the old one goes.
    """

    def __init__(
        self,
        ed25519_keys: Sequence[Ed25519PublicKey],
        rsa_keys: Sequence[RSAPublicKey] = (),
        *,
        accept_legacy_rsa: bool = False,
    ) -> None:
        # A verifier that can never accept is a configuration mistake, not a
        # policy: say so at start-up instead of rejecting every webhook.
        if not ed25519_keys:
            raise ValueError("at least one Ed25519 public key is required")
        if accept_legacy_rsa and not rsa_keys:
            raise ValueError("accept_legacy_rsa needs at least one RSA public key")
        self._ed25519_keys = tuple(ed25519_keys)
        self._rsa_keys = tuple(rsa_keys)
        self._accept_legacy_rsa = accept_legacy_rsa

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Return if `body` is signed by a trusted key; raise SignatureRejected."""
        current = _header(headers, GHL_SIGNATURE_HEADER)
        legacy = _header(headers, LEGACY_SIGNATURE_HEADER)

        # An empty or N/A Ed25519 header carries no signature, so falling back
        # to a legacy one then is no weaker than when the header is absent.
        if self._accept_legacy_rsa and _is_unsigned(current) and legacy is not None:
            self._verify_rsa(body, legacy)
            return
        if current is None:
            raise SignatureRejected(
                _missing_reason(legacy, accept_legacy_rsa=self._accept_legacy_rsa)
            )
        self._verify_ed25519(body, current)

    def _verify_ed25519(self, body: bytes, value: str) -> None:
        signature = _decode(GHL_SIGNATURE_HEADER, value)
        if len(signature) != _ED25519_SIGNATURE_BYTES:
            raise SignatureRejected(
                f"{GHL_SIGNATURE_HEADER}: signature is not "
                f"{_ED25519_SIGNATURE_BYTES} bytes"
            )
        for key in self._ed25519_keys:
            try:
                key.verify(signature, body)
            except InvalidSignature:
                continue
            return
        raise SignatureRejected(f"{GHL_SIGNATURE_HEADER}: signature does not match")

    def _verify_rsa(self, body: bytes, value: str) -> None:
        signature = _decode(LEGACY_SIGNATURE_HEADER, value)
        for key in self._rsa_keys:
            try:
                key.verify(signature, body, padding.PKCS1v15(), hashes.SHA256())
            except InvalidSignature:
                continue
            return
        raise SignatureRejected(f"{LEGACY_SIGNATURE_HEADER}: signature does not match")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """The one value of header `name`, matched case-insensitively.

    Plain dicts are case-sensitive and multidicts may hold a header twice;
    two different values for one signature header are refused outright.
    """
    wanted = name.lower()
    values = {value.strip() for key, value in headers.items() if key.lower() == wanted}
    if len(values) > 1:
        raise SignatureRejected(f"{name} given more than once")
    return values.pop() if values else None


def _is_unsigned(value: str | None) -> bool:
    return value is None or value in {"", _UNSIGNED}


def _missing_reason(legacy: str | None, *, accept_legacy_rsa: bool) -> str:
    if legacy is not None and not accept_legacy_rsa:
        return (
            f"missing {GHL_SIGNATURE_HEADER} "
            f"(legacy {LEGACY_SIGNATURE_HEADER} is not accepted)"
        )
    if accept_legacy_rsa:
        return f"missing {GHL_SIGNATURE_HEADER} and {LEGACY_SIGNATURE_HEADER}"
    return f"missing {GHL_SIGNATURE_HEADER}"


def _decode(name: str, value: str) -> bytes:
    """The signature bytes of a header value; unsigned markers are refused."""
    if value == "":
        raise SignatureRejected(f"{name}: empty signature")
    if value == _UNSIGNED:
        raise SignatureRejected(f"{name}: unsigned (N/A)")
    try:
        # Strict: a stray character or broken padding is not quietly dropped.
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureRejected(f"{name}: signature is not base64") from None


# --- keys -------------------------------------------------------------------


def load_ed25519_public_key(pem: str) -> Ed25519PublicKey:
    """An Ed25519 public key from SPKI PEM; ValueError if it is anything else."""
    key = serialization.load_pem_public_key(pem.encode("ascii"))
    # ValueError, like a malformed PEM: both are bad configuration content.
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(  # noqa: TRY004
            f"not an Ed25519 public key: {type(key).__name__}"
        )
    return key


def load_rsa_public_key(pem: str) -> RSAPublicKey:
    """An RSA public key (2048 bits or more) from PEM; ValueError otherwise."""
    key = serialization.load_pem_public_key(pem.encode("ascii"))
    if not isinstance(key, RSAPublicKey):
        raise ValueError(  # noqa: TRY004
            f"not an RSA public key: {type(key).__name__}"
        )
    if key.key_size < _MIN_RSA_BITS:
        raise ValueError(f"RSA key of {key.key_size} bits is too small")
    return key


def spki_sha256(key: PublicKey) -> str:
    """Hex SHA-256 of the key's DER SubjectPublicKeyInfo (its fingerprint)."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def load_pinned_rsa_key(pem: str, expected_sha256: str) -> RSAPublicKey:
    """An RSA key from configuration, refused unless its fingerprint is pinned.

    Raises KeyFingerprintMismatch naming both fingerprints, so an operator
    who pasted a corrupted copy of HighLevel's key sees it at start-up.
    """
    key = load_rsa_public_key(pem)
    _check_pin(key, expected_sha256, "RSA")
    return key


def default_ghl_ed25519_key() -> Ed25519PublicKey:
    """HighLevel's published Ed25519 key, checked against its fingerprint."""
    key = load_ed25519_public_key(GHL_ED25519_PUBLIC_KEY_PEM)
    _check_pin(key, GHL_ED25519_SHA256, "Ed25519")
    return key


def _check_pin(key: PublicKey, expected_sha256: str, kind: str) -> None:
    expected = expected_sha256.strip().lower().replace(":", "")
    actual = spki_sha256(key)
    if actual != expected:
        raise KeyFingerprintMismatch(
            f"{kind} public key fingerprint is {actual}, expected {expected}: "
            "check the configured PEM against HighLevel's published key"
        )


_PEM_END = "-----END PUBLIC KEY-----"


def split_pems(text: str) -> list[str]:
    """The PEM blocks in `text` (several keys may be configured at once)."""
    return [part + _PEM_END for part in text.split(_PEM_END) if part.strip()]
