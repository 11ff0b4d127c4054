"""The admin API: an operator sets and reads each location's Cast settings.

Behind a bearer token compared in constant time. Cast API keys are
write-only: every answer shows them masked.
"""

from __future__ import annotations

import hmac
import re
from datetime import datetime
from typing import Any

import attrs
from aiohttp import web

from castghl_app.services import Services
from castghl_app.web.errors import Handler, json_error, read_capped
from castghl_app.web.keys import SERVICES
from castghl_core.errors import InvalidPayload, SecretUnreadable
from castghl_core.installations import InstallationState, UserType
from castghl_core.locations import (
    LocationSettings,
    check_cast_api_key,
    check_sender_id,
    mask_secret,
)
from castghl_core.outbound import parse_json

ADMIN_PREFIX = "/api/admin/"
_MAX_ADMIN_BODY = 16 * 1024
_LOCATION_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_EDITABLE = frozenset({"sender_id", "cast_api_key"})


@web.middleware
async def admin_auth_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Refuse admin calls without the configured bearer token."""
    if not request.path.startswith(ADMIN_PREFIX):
        return await handler(request)
    expected = request.app[SERVICES].settings.admin_token.encode()
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), expected
    ):
        response = json_error(
            401, "unauthorized", "a valid admin bearer token is required"
        )
        response.headers["WWW-Authenticate"] = 'Bearer realm="castghl-admin"'
        return response
    return await handler(request)


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _location_id(request: web.Request) -> str:
    location_id = request.match_info["location_id"]
    if not _LOCATION_ID.match(location_id):
        raise InvalidPayload("location_id must be 1 to 64 letters, digits, '_' or '-'")
    return location_id


async def _view(services: Services, location_id: str) -> dict[str, Any] | None:
    settings = await services.location_settings.get(location_id)
    try:
        api_key = await services.secrets.get(location_id)
        shown_key = mask_secret(api_key) if api_key else None
    except SecretUnreadable:
        # One location sealed with another encryption key must not hide
        # every other location from the operator.
        api_key, shown_key = None, "unreadable (sealed with another encryption key)"
    installation = await services.installations.get(location_id)
    if settings is None and shown_key is None and installation is None:
        return None
    return {
        "location_id": location_id,
        "sender_id": settings.sender_id if settings else None,
        "cast_api_key": shown_key,
        "installation": (
            {
                "state": installation.state.value,
                "reason": installation.state_reason,
                "company_id": installation.company_id,
                "token_expires_at": installation.expires_at.isoformat(),
                "uninstalled_at": _when(installation.uninstalled_at),
            }
            if installation
            else None
        ),
        "needs_reauth": bool(
            installation and installation.state is InstallationState.NEEDS_REAUTH
        ),
        "ready_to_send": bool(api_key and installation and installation.is_active),
    }


async def list_locations(request: web.Request) -> web.Response:
    """Every location castghl knows of, with its health."""
    services = request.app[SERVICES]
    ids = {s.location_id for s in await services.location_settings.list()}
    ids |= set(await services.secrets.list_names())
    ids |= {
        i.owner_id
        for i in await services.installations.list()
        if i.user_type is UserType.LOCATION
    }
    views = [await _view(services, location_id) for location_id in sorted(ids)]
    return web.json_response({"locations": [v for v in views if v is not None]})


async def get_location(request: web.Request) -> web.Response:
    """One location's settings and health."""
    location_id = _location_id(request)
    view = await _view(request.app[SERVICES], location_id)
    if view is None:
        return json_error(404, "unknown_location", f"no location {location_id}")
    return web.json_response(view)


def _parse_changes(body: bytes) -> dict[str, str]:
    changes = parse_json(body)
    if not isinstance(changes, dict) or not changes:
        raise InvalidPayload(
            "body must be a JSON object with sender_id and/or cast_api_key"
        )
    unknown = sorted(set(changes) - _EDITABLE)
    if unknown:
        raise InvalidPayload(f"unknown fields: {', '.join(unknown)}")
    for key, value in changes.items():
        if not isinstance(value, str) or not value.isprintable():
            raise InvalidPayload(f"field '{key}' must be a string of printable text")
    return changes


async def put_location(request: web.Request) -> web.Response:
    """Set a location's sender ID and/or Cast API key (validated first)."""
    services = request.app[SERVICES]
    location_id = _location_id(request)
    changes = _parse_changes(await read_capped(request, _MAX_ADMIN_BODY))
    sender_id = changes.get("sender_id")
    api_key = changes.get("cast_api_key")
    if sender_id is not None:
        check_sender_id(sender_id)
    if api_key is not None:
        check_cast_api_key(api_key)

    if sender_id is not None:
        current = await services.location_settings.get(location_id)
        current = current or LocationSettings(location_id=location_id)
        await services.location_settings.put(
            attrs.evolve(current, sender_id=sender_id, updated_at=services.clock.now())
        )
    if api_key is not None:
        await services.secrets.put(location_id, api_key)
    return web.json_response(await _view(services, location_id))


async def delete_location(request: web.Request) -> web.Response:
    """Forget a location's settings and Cast API key (its installation stays)."""
    services = request.app[SERVICES]
    location_id = _location_id(request)
    known = await services.location_settings.get(location_id) is not None or (
        location_id in await services.secrets.list_names()
    )
    if not known:
        return json_error(404, "unknown_location", f"no settings for {location_id}")
    await services.location_settings.delete(location_id)
    await services.secrets.delete(location_id)
    return web.json_response({"location_id": location_id, "deleted": True})


def setup_admin_routes(app: web.Application) -> None:
    """Mount the admin API under /api/admin/."""
    app.router.add_get(ADMIN_PREFIX + "locations", list_locations)
    app.router.add_get(ADMIN_PREFIX + "locations/{location_id}", get_location)
    app.router.add_put(ADMIN_PREFIX + "locations/{location_id}", put_location)
    app.router.add_delete(ADMIN_PREFIX + "locations/{location_id}", delete_location)
