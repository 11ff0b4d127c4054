"""HighLevel adapters: the HTTP client (GhlApi, GhlOAuth) and the verifier."""

from castghl_adapters.ghl.client import (
    GhlCredentials,
    GhlEndpoints,
    GhlHttpClient,
    GhlRoute,
)
from castghl_adapters.ghl.signatures import (
    GHL_ED25519_PUBLIC_KEY_PEM,
    GHL_ED25519_SHA256,
    GHL_RSA_SHA256,
    GhlSignatureVerifier,
    KeyFingerprintMismatch,
    default_ghl_ed25519_key,
    load_ed25519_public_key,
    load_pinned_rsa_key,
    load_rsa_public_key,
    spki_sha256,
)

__all__ = [
    "GHL_ED25519_PUBLIC_KEY_PEM",
    "GHL_ED25519_SHA256",
    "GHL_RSA_SHA256",
    "GhlCredentials",
    "GhlEndpoints",
    "GhlHttpClient",
    "GhlRoute",
    "GhlSignatureVerifier",
    "KeyFingerprintMismatch",
    "default_ghl_ed25519_key",
    "load_ed25519_public_key",
    "load_pinned_rsa_key",
    "load_rsa_public_key",
    "spki_sha256",
]
