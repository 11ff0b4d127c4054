"""Settings from environment variables."""

from __future__ import annotations

import base64
import math

import attrs
import pytest

from castghl_app.settings import (
    SETTINGS,
    SecretBackend,
    Settings,
    SettingsError,
    StateStore,
)

VALID = {"CASTGHL_ADMIN_TOKEN": "a" * 32}


def test_defaults_run_on_the_embedded_store():
    """With only the admin token set, castghl uses SQLite and the real APIs."""
    settings = Settings.from_env(VALID)
    assert settings.state_store is StateStore.SQLITE
    assert settings.secret_store is SecretBackend.STATE
    assert settings.cast_base_url == "https://api.cast.ph"
    assert settings.ghl_base_url == "https://services.leadconnectorhq.com"
    assert settings.host == "127.0.0.1"


def test_every_problem_is_reported_at_once():
    """One start-up error lists each missing or invalid setting by name."""
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(
            {
                "CASTGHL_PORT": "eighty",
                "CASTGHL_STATE_STORE": "postgres",
                "CASTGHL_CAST_BASE_URL": "api.cast.ph",
                "CASTGHL_MAX_SMS_PARTS": "0",
            }
        )
    problems = "\n".join(caught.value.problems)
    for name in (
        "CASTGHL_ADMIN_TOKEN",
        "CASTGHL_PORT",
        "CASTGHL_STATE_STORE",
        "CASTGHL_CAST_BASE_URL",
        "CASTGHL_MAX_SMS_PARTS",
    ):
        assert name in problems
    assert len(caught.value.problems) == 5


def test_a_bad_secret_is_named_but_never_echoed():
    """A too-short admin token is reported without its value."""
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"CASTGHL_ADMIN_TOKEN": "hunter2"})
    assert "CASTGHL_ADMIN_TOKEN" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_repr_hides_secrets():
    """Printing the settings shows *** for the admin token and encryption key."""
    key = base64.b64encode(b"k" * 32).decode()
    settings = Settings.from_env({**VALID, "CASTGHL_ENCRYPTION_KEY": key})
    assert "a" * 32 not in repr(settings)
    assert key not in repr(settings)


def test_every_setting_has_a_field_and_a_description():
    """The SETTINGS table and the Settings record describe the same fields."""
    fields = {s.field for s in SETTINGS}
    assert fields == {field.name for field in attrs.fields(Settings)}
    assert all(s.help for s in SETTINGS)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1", "soon"])
def test_timeouts_must_be_finite_positive_numbers(value):
    """NaN or infinity would silently remove a bound; both are refused."""
    with pytest.raises(SettingsError, match="CASTGHL_HTTP_TIMEOUT_SECONDS"):
        Settings.from_env({**VALID, "CASTGHL_HTTP_TIMEOUT_SECONDS": value})
    assert math.isfinite(Settings.from_env(VALID).http_timeout_seconds)


def test_a_malformed_encryption_key_is_refused_without_echoing_it():
    """A key that is not 32 base64 bytes stops start-up with a clear reason."""
    with pytest.raises(SettingsError, match="CASTGHL_ENCRYPTION_KEY") as caught:
        Settings.from_env({**VALID, "CASTGHL_ENCRYPTION_KEY": "tooshort-secret"})
    assert "tooshort-secret" not in str(caught.value)


def test_a_malformed_webhook_key_is_refused():
    """Configured signature keys must be Ed25519 public key PEMs."""
    with pytest.raises(SettingsError, match="CASTGHL_GHL_WEBHOOK_PUBLIC_KEYS"):
        Settings.from_env(
            {**VALID, "CASTGHL_GHL_WEBHOOK_PUBLIC_KEYS": "-----BEGIN PUBLIC KEY-----"}
        )


def test_a_lease_shorter_than_four_timeouts_is_refused():
    """A job's lease must outlast the calls one step may make."""
    with pytest.raises(SettingsError, match="CASTGHL_LEASE_SECONDS"):
        Settings.from_env(
            {
                **VALID,
                "CASTGHL_LEASE_SECONDS": "30",
                "CASTGHL_HTTP_TIMEOUT_SECONDS": "15",
            }
        )


def test_infisical_is_refused_until_it_is_available():
    """A backend this version cannot run is a start-up error, not a crash."""
    with pytest.raises(SettingsError, match="infisical"):
        Settings.from_env({**VALID, "CASTGHL_SECRET_STORE": "infisical"})
