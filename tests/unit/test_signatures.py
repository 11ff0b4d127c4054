"""Webhook signatures: only bodies signed by a trusted GHL key get through."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from hypothesis import given
from hypothesis import strategies as st

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
from castghl_core.errors import SignatureRejected

BODY = b'{"messageId":"GKJxs4P5L8dWc5CFUITM","type":"SMS","message":"Hi"}'

KEY = ed25519.Ed25519PrivateKey.generate()
OTHER_KEY = ed25519.Ed25519PrivateKey.generate()
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ed25519_signature(body: bytes, key=KEY) -> str:
    return base64.b64encode(key.sign(body)).decode()


def rsa_signature(body: bytes, key=RSA_KEY) -> str:
    signature = key.sign(body, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode()


def pem(public_key) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


VERIFIER = GhlSignatureVerifier([KEY.public_key()])
LEGACY_VERIFIER = GhlSignatureVerifier(
    [KEY.public_key()], [RSA_KEY.public_key()], accept_legacy_rsa=True
)


def rejection(verifier, body, headers) -> str:
    with pytest.raises(SignatureRejected) as caught:
        verifier.verify(body, headers)
    return str(caught.value)


# --- Ed25519 ----------------------------------------------------------------


def test_valid_signature_is_accepted():
    """A body signed by the trusted key passes."""
    VERIFIER.verify(BODY, {"X-GHL-Signature": ed25519_signature(BODY)})


@pytest.mark.parametrize("name", ["x-ghl-signature", "X-GHL-SIGNATURE"])
def test_header_name_is_case_insensitive(name):
    """The header is found whatever its case, even in a plain dict."""
    VERIFIER.verify(BODY, {name: ed25519_signature(BODY)})


def test_forged_signature_is_rejected():
    """A well-formed signature by an untrusted key does not match."""
    headers = {"X-GHL-Signature": ed25519_signature(BODY, OTHER_KEY)}

    assert "signature does not match" in rejection(VERIFIER, BODY, headers)


def test_truncated_signature_is_rejected():
    """A signature cut short is refused for its length."""
    short = base64.b64encode(KEY.sign(BODY)[:48]).decode()

    reason = rejection(VERIFIER, BODY, {"X-GHL-Signature": short})

    assert "not 64 bytes" in reason


def test_truncated_base64_is_rejected():
    """Base64 text cut mid-way (broken padding) is not base64."""
    cut = ed25519_signature(BODY)[:-3]

    reason = rejection(VERIFIER, BODY, {"X-GHL-Signature": cut})

    assert "signature is not base64" in reason


def test_non_base64_signature_is_rejected():
    """Characters outside base64 are refused, not skipped."""
    reason = rejection(VERIFIER, BODY, {"X-GHL-Signature": "not*base64!"})

    assert "signature is not base64" in reason


def test_empty_signature_is_rejected():
    """An empty header means unsigned."""
    assert "empty signature" in rejection(VERIFIER, BODY, {"X-GHL-Signature": ""})


def test_missing_signature_is_rejected():
    """No signature header at all is refused by name."""
    assert rejection(VERIFIER, BODY, {}) == "missing X-GHL-Signature"


def test_na_signature_is_rejected():
    """The literal N/A means unsigned."""
    reason = rejection(VERIFIER, BODY, {"X-GHL-Signature": "N/A"})

    assert "unsigned (N/A)" in reason


def test_body_changed_by_one_byte_is_rejected():
    """A signature covers the exact bytes: one changed byte breaks it."""
    headers = {"X-GHL-Signature": ed25519_signature(BODY)}
    changed = BODY.replace(b"Hi", b"Ho")

    assert "signature does not match" in rejection(VERIFIER, changed, headers)


def test_reserialised_body_is_rejected():
    """Equal JSON with other spacing is another body: verify the raw bytes."""
    headers = {"X-GHL-Signature": ed25519_signature(BODY)}
    spaced = BODY.replace(b",", b", ")

    assert "signature does not match" in rejection(VERIFIER, spaced, headers)


def test_second_key_is_accepted_during_rotation():
    """With two keys configured, a body signed by either passes."""
    verifier = GhlSignatureVerifier([OTHER_KEY.public_key(), KEY.public_key()])

    verifier.verify(BODY, {"X-GHL-Signature": ed25519_signature(BODY)})
    verifier.verify(BODY, {"X-GHL-Signature": ed25519_signature(BODY, OTHER_KEY)})


def test_conflicting_duplicate_headers_are_rejected():
    """Two different values for the signature header are refused."""
    headers = MultiHeaders(
        [
            ("X-GHL-Signature", ed25519_signature(BODY)),
            ("x-ghl-signature", ed25519_signature(BODY, OTHER_KEY)),
        ]
    )

    assert "more than once" in rejection(VERIFIER, BODY, headers)


class MultiHeaders(dict):
    """A mapping whose items() repeats names, like a multidict."""

    def __init__(self, pairs):
        super().__init__(pairs)
        self._pairs = pairs

    def items(self):
        return list(self._pairs)


# --- legacy RSA -------------------------------------------------------------


def test_legacy_rsa_is_accepted_when_enabled():
    """With legacy on and no Ed25519 header, a valid X-WH-Signature passes."""
    LEGACY_VERIFIER.verify(BODY, {"X-WH-Signature": rsa_signature(BODY)})


def test_legacy_rsa_is_rejected_when_disabled():
    """With legacy off, an RSA signature alone is refused, saying why."""
    verifier = GhlSignatureVerifier([KEY.public_key()], [RSA_KEY.public_key()])

    reason = rejection(verifier, BODY, {"X-WH-Signature": rsa_signature(BODY)})

    assert "legacy X-WH-Signature is not accepted" in reason


def test_legacy_rsa_is_ignored_when_ed25519_is_present():
    """A present Ed25519 signature decides, even if a valid RSA one comes too."""
    headers = {
        "X-GHL-Signature": ed25519_signature(BODY, OTHER_KEY),
        "X-WH-Signature": rsa_signature(BODY),
    }

    assert "X-GHL-Signature" in rejection(LEGACY_VERIFIER, BODY, headers)


def test_legacy_rsa_is_used_when_ed25519_is_na():
    """An N/A Ed25519 header carries no signature, so the RSA one is checked."""
    headers = {"X-GHL-Signature": "N/A", "X-WH-Signature": rsa_signature(BODY)}

    LEGACY_VERIFIER.verify(BODY, headers)


def test_forged_legacy_rsa_is_rejected():
    """An RSA signature over other bytes does not match."""
    headers = {"X-WH-Signature": rsa_signature(b"another body")}

    reason = rejection(LEGACY_VERIFIER, BODY, headers)

    assert reason == "X-WH-Signature: signature does not match"


def test_legacy_na_is_rejected():
    """N/A in the legacy header is unsigned too."""
    reason = rejection(LEGACY_VERIFIER, BODY, {"X-WH-Signature": "N/A"})

    assert reason == "X-WH-Signature: unsigned (N/A)"


def test_no_header_with_legacy_enabled_names_both():
    """With legacy on and nothing signed, the reason names both headers."""
    reason = rejection(LEGACY_VERIFIER, BODY, {})

    assert reason == "missing X-GHL-Signature and X-WH-Signature"


# --- configuration ----------------------------------------------------------


def test_verifier_needs_an_ed25519_key():
    """A verifier that could accept nothing is a configuration error."""
    with pytest.raises(ValueError, match="Ed25519"):
        GhlSignatureVerifier([])


def test_legacy_needs_an_rsa_key():
    """Switching legacy on without an RSA key is a configuration error."""
    with pytest.raises(ValueError, match="RSA"):
        GhlSignatureVerifier([KEY.public_key()], accept_legacy_rsa=True)


def test_published_key_matches_its_fingerprint():
    """The published Ed25519 PEM hashes to the published fingerprint."""
    key = load_ed25519_public_key(GHL_ED25519_PUBLIC_KEY_PEM)

    assert spki_sha256(key) == GHL_ED25519_SHA256
    assert spki_sha256(default_ghl_ed25519_key()) == GHL_ED25519_SHA256


def test_pinned_rsa_key_loads_when_fingerprint_matches():
    """An RSA PEM is accepted when it hashes to the expected fingerprint."""
    public = RSA_KEY.public_key()

    key = load_pinned_rsa_key(pem(public), spki_sha256(public).upper())

    assert spki_sha256(key) == spki_sha256(public)


def test_pinned_rsa_key_is_refused_when_fingerprint_differs():
    """An RSA PEM other than GHL's (e.g. a corrupted copy) is refused."""
    with pytest.raises(KeyFingerprintMismatch, match=GHL_RSA_SHA256):
        load_pinned_rsa_key(pem(RSA_KEY.public_key()), GHL_RSA_SHA256)


def test_loaders_refuse_the_wrong_kind_of_key():
    """An RSA PEM is not an Ed25519 key, and the reverse."""
    with pytest.raises(ValueError, match="not an Ed25519"):
        load_ed25519_public_key(pem(RSA_KEY.public_key()))
    with pytest.raises(ValueError, match="not an RSA"):
        load_rsa_public_key(GHL_ED25519_PUBLIC_KEY_PEM)


# --- properties -------------------------------------------------------------


def flip(data: bytes, bit: int) -> bytes:
    flipped = bytearray(data)
    flipped[bit // 8] ^= 1 << (bit % 8)
    return bytes(flipped)


@given(body=st.binary(max_size=512), data=st.data())
def test_any_body_verifies_and_any_bit_flip_is_rejected(body, data):
    """Our key's signature verifies any body; one flipped bit in either fails."""
    signature = KEY.sign(body)
    VERIFIER.verify(body, {"X-GHL-Signature": base64.b64encode(signature).decode()})

    if body:
        bit = data.draw(st.integers(0, len(body) * 8 - 1), label="body bit")
        with pytest.raises(SignatureRejected):
            VERIFIER.verify(
                flip(body, bit),
                {"X-GHL-Signature": base64.b64encode(signature).decode()},
            )

    bit = data.draw(st.integers(0, len(signature) * 8 - 1), label="signature bit")
    forged = base64.b64encode(flip(signature, bit)).decode()
    with pytest.raises(SignatureRejected):
        VERIFIER.verify(body, {"X-GHL-Signature": forged})
