"""Token grants and installations: what they make, show and store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from castghl_adapters.storage_codec import storage_converter
from castghl_core.installations import Installation, InstallationState, UserType
from castghl_core.oauth import TokenGrant, app_id_of

NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def grant(**changes) -> TokenGrant:
    fields = {
        "access_token": "secret-access",
        "refresh_token": "secret-refresh",
        "expires_in": 86399,
        "user_type": UserType.LOCATION,
        "location_id": "LOC1",
        "company_id": "CO1",
        "scopes": ("contacts.readonly",),
    }
    fields.update(changes)
    return TokenGrant(**fields)


def test_the_app_id_is_the_client_id_before_its_first_dash():
    """`<appId>-<suffix>`: app webhooks carry the appId part."""
    assert app_id_of("6578278e879ad2646715ba9c-lq4b8x1z") == "6578278e879ad2646715ba9c"
    assert app_id_of("nodash") == "nodash"


def test_a_location_grant_makes_an_active_location_installation():
    """Owner, tokens, expiry from expires_in, company and scopes carried over."""
    installation = grant().installation(NOW)

    assert installation.owner_id == "LOC1"
    assert installation.user_type is UserType.LOCATION
    assert installation.state is InstallationState.ACTIVE
    assert installation.expires_at == NOW + timedelta(seconds=86399)
    assert installation.company_id == "CO1"
    assert installation.scopes == ("contacts.readonly",)
    assert installation.updated_at == NOW


def test_a_company_grant_is_owned_by_its_company():
    """A Company token's owner is the company id."""
    company = grant(user_type=UserType.COMPANY, location_id=None)

    assert company.owner_id == "CO1"
    assert company.installation(NOW).is_company


def test_a_grant_naming_no_owner_is_refused():
    """A Location token without a location id cannot be stored."""
    with pytest.raises(ValueError, match="no owner"):
        _ = grant(location_id=None).owner_id


def test_repr_never_shows_a_token():
    """A grant or installation printed by accident leaks nothing."""
    shown = repr(grant()) + repr(grant().installation(NOW))

    assert "secret-" not in shown
    assert "LOC1" in shown


def test_an_installation_stored_before_the_new_fields_reads_with_defaults():
    """Documents written before backoff and uninstall fields existed still load."""
    old_document = {
        "owner_id": "LOC1",
        "user_type": "Location",
        "access_token": "a",
        "refresh_token": "r",
        "expires_at": "2026-12-05T09:00:00.000000+00:00",
        "state": "active",
    }

    installation = storage_converter.structure(old_document, Installation)

    assert (installation.refresh_failures, installation.retry_refresh_at) == (0, None)
    assert installation.uninstalled_at is None
