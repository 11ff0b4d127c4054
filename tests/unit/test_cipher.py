"""The secret ciphers: AES-GCM bound to an owner id, and the plaintext fallback."""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from castghl_adapters.crypto import (
    AesGcmCipher,
    InvalidEncryptionKey,
    PlaintextCipher,
    SecretDecryptionError,
    generate_key,
    load_key,
)

KEY = bytes(range(32))
SECRET = "cast_live_0123456789abcdef"


@pytest.fixture
def cipher():
    return AesGcmCipher(KEY)


def tamper(stored: str, index: int) -> str:
    """The stored value with one bit of its decoded payload flipped."""
    raw = bytearray(base64.b64decode(stored.removeprefix("v1:")))
    raw[index] ^= 0x01
    return "v1:" + base64.b64encode(bytes(raw)).decode()


# --- AES-GCM ----------------------------------------------------------------------


def test_a_secret_round_trips(cipher):
    """What is encrypted for an owner decrypts for that owner."""
    stored = cipher.encrypt(SECRET, associated_data="loc-1")

    assert cipher.decrypt(stored, associated_data="loc-1") == SECRET


def test_the_stored_form_is_versioned_and_hides_the_secret(cipher):
    """Stored values start with 'v1:' and do not contain the secret."""
    stored = cipher.encrypt(SECRET, associated_data="loc-1")

    assert stored.startswith("v1:")
    assert SECRET not in stored


def test_each_encryption_uses_a_fresh_nonce(cipher):
    """Encrypting one secret twice gives two different stored values."""
    first = cipher.encrypt(SECRET, associated_data="loc-1")
    second = cipher.encrypt(SECRET, associated_data="loc-1")

    assert first != second
    assert base64.b64decode(first[3:])[:12] != base64.b64decode(second[3:])[:12]


def test_a_ciphertext_is_bound_to_its_owner(cipher):
    """A value sealed for one location does not decrypt for another."""
    stored = cipher.encrypt(SECRET, associated_data="loc-1")

    with pytest.raises(SecretDecryptionError, match="loc-2"):
        cipher.decrypt(stored, associated_data="loc-2")


@pytest.mark.parametrize("index", [0, 11, 12, -1])
def test_tampering_anywhere_is_detected(cipher, index):
    """A flipped bit in the nonce, ciphertext or tag makes decryption fail."""
    stored = cipher.encrypt(SECRET, associated_data="loc-1")

    with pytest.raises(SecretDecryptionError, match="altered"):
        cipher.decrypt(tamper(stored, index), associated_data="loc-1")


def test_a_truncated_value_is_detected(cipher):
    """A stored value cut short fails cleanly."""
    stored = cipher.encrypt(SECRET, associated_data="loc-1")

    with pytest.raises(SecretDecryptionError):
        cipher.decrypt(stored[:10], associated_data="loc-1")


def test_a_wrong_key_says_the_key_does_not_match(cipher):
    """Another key fails with a message naming the key, never the secret."""
    stored = cipher.encrypt(SECRET, associated_data="loc-1")

    with pytest.raises(SecretDecryptionError) as caught:
        AesGcmCipher(os.urandom(32)).decrypt(stored, associated_data="loc-1")

    message = str(caught.value)
    assert "configured encryption key does not match" in message
    assert SECRET not in message


def test_a_plaintext_value_is_refused_by_default(cipher):
    """An encrypting cipher does not accept a value stored unencrypted."""
    with pytest.raises(SecretDecryptionError, match="without encryption"):
        cipher.decrypt("plain:" + SECRET, associated_data="loc-1")


def test_a_plaintext_value_is_read_when_allowed():
    """With accept_plaintext, values stored before a key was set are readable."""
    cipher = AesGcmCipher(KEY, accept_plaintext=True)

    assert cipher.decrypt("plain:" + SECRET, associated_data="loc-1") == SECRET


def test_an_unknown_format_is_refused_without_echoing_it(cipher):
    """A value in no known format is refused and not repeated in the error."""
    with pytest.raises(SecretDecryptionError, match="unknown format") as caught:
        cipher.decrypt(SECRET, associated_data="loc-1")

    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("length", [0, 16, 31, 33])
def test_a_key_of_the_wrong_length_is_refused(length):
    """Only 32-byte keys make an AES-256 cipher."""
    with pytest.raises(InvalidEncryptionKey, match="32 bytes"):
        AesGcmCipher(b"k" * length)


def test_the_repr_hides_the_key(cipher):
    """Printing the cipher shows no key material."""
    assert KEY.hex() not in repr(cipher)
    assert "hidden" in repr(cipher)


@given(secret=st.text(), owner=st.text())
def test_any_text_round_trips(secret, owner):
    """Every string, for every owner id, decrypts to itself."""
    cipher = AesGcmCipher(KEY)

    stored = cipher.encrypt(secret, associated_data=owner)

    assert cipher.decrypt(stored, associated_data=owner) == secret


# --- plaintext --------------------------------------------------------------------


def test_the_plaintext_cipher_stores_the_value_marked_plain():
    """Without a key, the stored form is 'plain:' and the secret."""
    assert (
        PlaintextCipher().encrypt(SECRET, associated_data="loc-1") == "plain:" + SECRET
    )


@given(secret=st.text())
def test_the_plaintext_cipher_round_trips(secret):
    """The plaintext cipher reads back whatever it stored."""
    cipher = PlaintextCipher()

    stored = cipher.encrypt(secret, associated_data="loc-1")

    assert cipher.decrypt(stored, associated_data="loc-1") == secret


def test_the_plaintext_cipher_cannot_read_encrypted_values(cipher):
    """Encrypted values need the key: the error says none is configured."""
    stored = cipher.encrypt(SECRET, associated_data="loc-1")

    with pytest.raises(SecretDecryptionError, match="no encryption key is configured"):
        PlaintextCipher().decrypt(stored, associated_data="loc-1")


# --- keys from configuration --------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        base64.urlsafe_b64encode(KEY).decode(),
        base64.b64encode(KEY).decode(),
        base64.urlsafe_b64encode(KEY).decode().rstrip("="),
        "  " + base64.b64encode(KEY).decode() + "\n",
    ],
    ids=["urlsafe", "standard", "unpadded", "surrounded-by-whitespace"],
)
def test_load_key_reads_base64_in_either_alphabet(text):
    """URL-safe or standard base64, padded or not, gives the 32 key bytes."""
    assert load_key(text) == KEY


def test_load_key_reads_a_key_with_urlsafe_characters():
    """A key whose encoding has '-' and '_' loads to the right bytes."""
    key = b"\xfb\xff" * 16
    text = base64.urlsafe_b64encode(key).decode()
    assert "-" in text or "_" in text

    assert load_key(text) == key


def test_load_key_refuses_the_wrong_length_without_echoing_it():
    """A 16-byte key is refused with its length, not its text."""
    text = base64.b64encode(b"s" * 16).decode()

    with pytest.raises(InvalidEncryptionKey, match="got 16") as caught:
        load_key(text)

    assert text not in str(caught.value)


@pytest.mark.parametrize("text", ["not base64 at all!", "abc$def", "A"])
def test_load_key_refuses_text_that_is_not_base64(text):
    """Text outside the base64 alphabets is refused with how to make a key."""
    with pytest.raises(InvalidEncryptionKey, match="generate one") as caught:
        load_key(text)

    assert text not in str(caught.value)


def test_load_key_refuses_an_empty_key():
    """An empty setting is refused as empty."""
    with pytest.raises(InvalidEncryptionKey, match="empty"):
        load_key("   ")


def test_a_generated_key_loads():
    """generate_key gives text that load_key turns into a usable key."""
    assert len(load_key(generate_key())) == 32
    assert generate_key() != generate_key()
