"""The LocationSettingsStore contract: per-location settings by location id."""

from __future__ import annotations

from datetime import UTC, datetime

from castghl_core.locations import LocationSettings

T0 = datetime(2026, 3, 1, 8, 30, 0, 250000, tzinfo=UTC)


async def test_get_of_an_unknown_location_is_none(location_settings):
    """No settings are found for a location never configured."""
    assert await location_settings.get("loc-unknown") is None


async def test_every_field_survives_put_and_get(location_settings):
    """Settings with every field set read back equal."""
    settings = LocationSettings(
        location_id="loc-1",
        sender_id="Cast & Co.",
        inbound_dids=("+639171112222", "+639173334444"),
        updated_at=T0,
    )

    await location_settings.put(settings)

    assert await location_settings.get("loc-1") == settings


async def test_default_fields_survive_put_and_get(location_settings):
    """Settings with only a location id read back with their defaults."""
    settings = LocationSettings(location_id="loc-1")

    await location_settings.put(settings)

    stored = await location_settings.get("loc-1")
    assert stored == settings
    assert stored.inbound_dids == ()


async def test_put_replaces_the_settings(location_settings):
    """A second put for a location replaces the first entirely."""
    await location_settings.put(
        LocationSettings("loc-1", sender_id="OLD", inbound_dids=("+639170000001",))
    )
    newer = LocationSettings("loc-1", sender_id="NEW")

    await location_settings.put(newer)

    assert await location_settings.get("loc-1") == newer


async def test_list_returns_every_location_in_id_order(location_settings):
    """list gives every location's settings sorted by location id."""
    for location_id in ["loc-c", "loc-a", "loc-b"]:
        await location_settings.put(LocationSettings(location_id, sender_id="S"))

    listed = await location_settings.list()

    assert [settings.location_id for settings in listed] == ["loc-a", "loc-b", "loc-c"]


async def test_list_of_an_empty_store_is_empty(location_settings):
    """No settings, an empty list."""
    assert list(await location_settings.list()) == []


async def test_delete_forgets_a_location(location_settings):
    """After delete the location has no settings and is not listed."""
    await location_settings.put(LocationSettings("loc-1", sender_id="S"))
    await location_settings.put(LocationSettings("loc-2", sender_id="S"))

    await location_settings.delete("loc-1")

    assert await location_settings.get("loc-1") is None
    assert [s.location_id for s in await location_settings.list()] == ["loc-2"]


async def test_delete_of_an_unknown_location_is_harmless(location_settings):
    """Deleting settings that do not exist raises nothing."""
    await location_settings.delete("loc-unknown")

    assert await location_settings.get("loc-unknown") is None
