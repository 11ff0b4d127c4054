"""Install settings and the signed, expiring OAuth state."""

from __future__ import annotations

from datetime import timedelta

import attrs
import pytest

from castghl_app.oauth_setup import InvalidState, StateSigner, make_oauth_setup
from castghl_app.settings import DEFAULT_SCOPES, Settings, SettingsError

from fakes import FakeClock

VALID = {"CASTGHL_ADMIN_TOKEN": "a" * 32}
OAUTH = {
    **VALID,
    "CASTGHL_GHL_CLIENT_ID": "6578278e879ad2646715ba9c-lq4b8x1z",
    "CASTGHL_GHL_CLIENT_SECRET": "client-secret-value",
}


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def signer(clock):
    return StateSigner(b"k" * 32, timedelta(minutes=15), clock)


# --- settings ------------------------------------------------------------------


def test_installs_are_off_by_default():
    """Without client credentials the service still starts; installs are off."""
    settings = Settings.from_env(VALID)

    assert settings.oauth_enabled is False
    assert settings.ghl_consent_url == "https://marketplace.gohighlevel.com"
    assert settings.ghl_scopes == DEFAULT_SCOPES
    assert settings.token_refresh_lead_seconds == 3600
    assert settings.app_webhook_window_seconds == 300


def test_client_id_and_secret_go_together():
    """Setting only one of them is a start-up error naming both."""
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**VALID, "CASTGHL_GHL_CLIENT_ID": "app-x"})

    assert "CASTGHL_GHL_CLIENT_SECRET" in str(caught.value)


def test_the_client_secret_and_state_key_are_never_shown():
    """Both are secrets: masked in repr, not echoed in errors."""
    settings = Settings.from_env({**OAUTH, "CASTGHL_OAUTH_STATE_SECRET": "s" * 30})
    assert "client-secret-value" not in repr(settings)
    assert "s" * 30 not in repr(settings)

    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**OAUTH, "CASTGHL_OAUTH_STATE_SECRET": "short-key"})
    assert "short-key" not in str(caught.value)


def test_scopes_are_space_separated():
    """Any whitespace separates scopes; none at all is an error."""
    settings = Settings.from_env({**VALID, "CASTGHL_GHL_SCOPES": " a.b  c/d.e "})
    assert settings.ghl_scopes == ("a.b", "c/d.e")
    with pytest.raises(SettingsError):
        Settings.from_env({**VALID, "CASTGHL_GHL_SCOPES": "  "})


def test_no_setup_and_a_warning_without_credentials(clock, caplog):
    """The install routes get no setup; start-up says why."""
    assert make_oauth_setup(Settings.from_env(VALID), clock) is None
    assert [r.msg for r in caplog.records] == ["oauth.not_configured"]


def test_the_redirect_uri_prefers_the_public_url(clock):
    """CASTGHL_PUBLIC_URL wins over the request's origin."""
    with_url = Settings.from_env(
        {**OAUTH, "CASTGHL_PUBLIC_URL": "https://castghl.example/"}
    )
    without = Settings.from_env(OAUTH)

    assert (
        make_oauth_setup(with_url, clock).redirect_uri("http://10.0.0.5:8080")
        == "https://castghl.example/oauth/callback"
    )
    assert (
        make_oauth_setup(without, clock).redirect_uri("http://127.0.0.1:8080")
        == "http://127.0.0.1:8080/oauth/callback"
    )


def test_replicas_derive_the_same_state_key(clock):
    """Without an explicit key, one client secret gives one state key."""
    first = make_oauth_setup(Settings.from_env(OAUTH), clock)
    second = make_oauth_setup(Settings.from_env(OAUTH), clock)

    second.signer.check(first.signer.issue())


# --- the state -------------------------------------------------------------------


def test_a_fresh_state_checks(signer):
    """What castghl issued, castghl accepts."""
    signer.check(signer.issue())


def test_every_state_is_different(signer):
    """A nonce makes each install link unique."""
    assert len({signer.issue() for _ in range(50)}) == 50


@pytest.mark.parametrize("state", [None, "", "abc", "v1.1.2.3", "x" * 600])
def test_missing_or_malformed_states_are_refused(signer, state):
    """Nothing that castghl did not sign passes."""
    with pytest.raises(InvalidState):
        signer.check(state)


def test_a_tampered_expiry_is_refused(signer):
    """Extending the expiry breaks the MAC."""
    version, expires, nonce, mac = signer.issue().split(".")
    forged = f"{version}.{int(expires) + 3600}.{nonce}.{mac}"

    with pytest.raises(InvalidState, match="not one castghl issued"):
        signer.check(forged)


def test_a_state_signed_with_another_key_is_refused(signer):
    """Another deployment's state does not pass here."""
    other = attrs.evolve(signer, key=b"o" * 32)

    with pytest.raises(InvalidState):
        signer.check(other.issue())


def test_an_expired_state_is_refused(signer, clock):
    """After its lifetime the link is dead, and the page says so."""
    state = signer.issue()
    clock.advance(15 * 60 + 1)

    with pytest.raises(InvalidState, match="expired"):
        signer.check(state)


def test_the_signer_never_shows_its_key(signer):
    """Printing the signer shows the lifetime only."""
    assert "kkkk" not in repr(signer)
