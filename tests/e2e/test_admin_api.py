"""The admin API: bearer-protected, validating, never showing a key."""

from __future__ import annotations

import pytest

from harness import ADMIN_TOKEN, API_KEY, LOCATION


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-token", f"Basic {ADMIN_TOKEN}", "Bearer", ADMIN_TOKEN],
)
async def test_admin_calls_without_the_right_bearer_token_get_401(service, header):
    """Missing, wrong or mis-schemed credentials are refused."""
    headers = {"Authorization": header} if header else {}
    status, body = await service.request("GET", "/api/admin/locations", headers=headers)
    assert status == 401
    assert body["error"] == "unauthorized"


async def test_the_cast_key_is_only_ever_shown_masked(service):
    """GET and PUT answers show the key's prefix and last four characters."""
    status, body = await service.admin("GET", f"/locations/{LOCATION}")
    assert status == 200
    assert body["cast_api_key"] == f"cast_test_…{API_KEY[-4:]}"
    assert body["sender_id"] == "CASTGHL"
    assert body["installation"]["state"] == "active"
    assert body["ready_to_send"] is True


async def test_listing_shows_every_known_location(service):
    """Locations with settings, keys or installations are listed with health."""
    await service.admin("PUT", "/locations/OtherLoc", json={"sender_id": "OTHER"})
    status, body = await service.admin("GET", "/locations")
    assert status == 200
    by_id = {item["location_id"]: item for item in body["locations"]}
    assert set(by_id) == {LOCATION, "OtherLoc"}
    assert by_id["OtherLoc"]["ready_to_send"] is False
    assert by_id["OtherLoc"]["cast_api_key"] is None


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"sender_id": ""}, 422, "invalid_setting"),
        ({"sender_id": "x" * 21}, 422, "invalid_setting"),
        ({"sender_id": "bad/id"}, 422, "invalid_setting"),
        ({"cast_api_key": "not-a-key"}, 422, "invalid_setting"),
        ({"cast_api_key": 42}, 400, "invalid_payload"),
        ({"colour": "blue"}, 400, "invalid_payload"),
        ({}, 400, "invalid_payload"),
    ],
)
async def test_bad_settings_are_refused_and_change_nothing(
    service, body, status, error
):
    """Each malformed change gets a specific error; stored values stay."""
    answer_status, answer = await service.admin(
        "PUT", f"/locations/{LOCATION}", json=body
    )
    assert (answer_status, answer["error"]) == (status, error)
    _, current = await service.admin("GET", f"/locations/{LOCATION}")
    assert current["sender_id"] == "CASTGHL"
    assert current["cast_api_key"].endswith(API_KEY[-4:])


async def test_a_malformed_key_is_not_echoed_in_the_error(service, secrets_seen):
    """Even a wrong key is a secret: the error describes it without it."""
    wrong = "cast_" + "!" * 30
    secrets_seen.append(wrong)
    status, _ = await service.admin(
        "PUT", f"/locations/{LOCATION}", json={"cast_api_key": wrong}
    )
    assert status == 422


async def test_a_malformed_location_id_is_refused(service):
    """Location ids are letters, digits, '_' and '-'."""
    status, body = await service.admin("GET", "/locations/bad%20id")
    assert (status, body["error"]) == (400, "invalid_payload")


async def test_deleting_a_location_forgets_its_settings_and_key(service):
    """After DELETE the location has no key or sender ID; its install remains."""
    status, _ = await service.admin("DELETE", f"/locations/{LOCATION}")
    assert status == 200
    _, body = await service.admin("GET", f"/locations/{LOCATION}")
    assert body["cast_api_key"] is None
    assert body["sender_id"] is None
    assert body["installation"]["state"] == "active"


async def test_health_checks_answer(service):
    """Liveness is 200; readiness is 200 with the store and dispatcher up."""
    assert (await service.request("GET", "/healthz"))[0] == 200
    status, body = await service.request("GET", "/readyz")
    assert status == 200
    assert body["checks"] == {
        "store": "ok",
        "dispatcher": "ok",
        "token_refresher": "ok",
    }
    assert body["needs_reauth"] == 0
    assert body["unfinished_jobs"] == 0


async def test_deleting_an_unknown_location_is_a_404(service):
    """Nothing to delete is said plainly, not answered `deleted: true`."""
    status, body = await service.admin("DELETE", "/locations/NeverSeen")
    assert (status, body["error"]) == (404, "unknown_location")


async def test_a_deeply_nested_admin_body_is_a_400(service):
    """Hostile JSON is a client error, never a 500."""
    status, body = await service.admin(
        "PUT", f"/locations/{LOCATION}", data=b"[" * 5000 + b"]" * 5000
    )
    assert (status, body["error"]) == (400, "invalid_payload")


async def test_a_key_sealed_with_another_encryption_key_shows_as_unreadable(
    make_service, base_env
):
    """After the encryption key changes, the admin API still answers."""
    import base64  # noqa: PLC0415
    import os  # noqa: PLC0415

    first = await make_service()
    await first.admin("PUT", "/locations/Sealed", json={"cast_api_key": API_KEY})
    await first.stop()
    other_key = base64.b64encode(os.urandom(32)).decode()
    second = await make_service(CASTGHL_ENCRYPTION_KEY=other_key)
    status, body = await second.admin("GET", "/locations")
    assert status == 200
    [sealed] = [item for item in body["locations"] if item["location_id"] == "Sealed"]
    assert sealed["cast_api_key"].startswith("unreadable")
