"""The SecretStore contract: one Cast API key per location."""

from __future__ import annotations

API_KEY = "cast_live_0123456789abcdefABCDEF"


async def test_get_of_a_location_without_a_key_is_none(secrets):
    """No key is found for a location never given one."""
    assert await secrets.get("loc-1") is None


async def test_a_key_put_is_read_back(secrets):
    """The key put for a location is the key got for it."""
    await secrets.put("loc-1", API_KEY)

    assert await secrets.get("loc-1") == API_KEY


async def test_put_replaces_the_key(secrets):
    """A second put for a location replaces its key."""
    await secrets.put("loc-1", API_KEY)

    await secrets.put("loc-1", "cast_test_replacement_key_42")

    assert await secrets.get("loc-1") == "cast_test_replacement_key_42"


async def test_keys_belong_to_their_location(secrets):
    """Each location reads its own key."""
    await secrets.put("loc-1", "cast_key_for_location_one")
    await secrets.put("loc-2", "cast_key_for_location_two")

    assert await secrets.get("loc-1") == "cast_key_for_location_one"
    assert await secrets.get("loc-2") == "cast_key_for_location_two"


async def test_any_text_survives_put_and_get(secrets):
    """A key with non-ASCII characters and punctuation reads back intact."""
    odd = "cast_ñ🙏 \"quoted\" 'x' \\ back\nline"

    await secrets.put("loc-1", odd)

    assert await secrets.get("loc-1") == odd


async def test_delete_removes_the_key(secrets):
    """After delete the location has no key."""
    await secrets.put("loc-1", API_KEY)

    await secrets.delete("loc-1")

    assert await secrets.get("loc-1") is None


async def test_delete_of_a_location_without_a_key_is_harmless(secrets):
    """Deleting a key that does not exist raises nothing."""
    await secrets.delete("loc-1")

    assert await secrets.get("loc-1") is None


async def test_list_names_gives_the_locations_with_a_key_sorted(secrets):
    """list_names is the sorted location ids that have a key."""
    for location_id in ["loc-c", "loc-a", "loc-b"]:
        await secrets.put(location_id, API_KEY)
    await secrets.delete("loc-b")

    assert list(await secrets.list_names()) == ["loc-a", "loc-c"]


async def test_list_names_of_an_empty_store_is_empty(secrets):
    """No keys, no names."""
    assert list(await secrets.list_names()) == []


async def test_a_key_put_by_one_handle_is_read_by_another(backend):
    """A key set through one service process is read by another."""
    first, second = await backend.connect(), await backend.connect()

    await first.secrets.put("loc-1", API_KEY)

    assert await second.secrets.get("loc-1") == API_KEY
