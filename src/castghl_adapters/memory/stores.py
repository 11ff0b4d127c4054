"""Every store port in process memory; safe for many tasks on one event loop.

The methods never await between reading and writing, so each is atomic on
one event loop, which is what the contract suites check.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import attrs

from castghl_core.installations import Installation, InstallationState
from castghl_core.jobs import JobState, OutboundJob
from castghl_core.locations import LocationSettings


class MemoryOutbox:
    """Outbound jobs in a dict keyed by message_id."""

    def __init__(self) -> None:
        self._jobs: dict[str, OutboundJob] = {}

    async def claim(self, job: OutboundJob) -> bool:
        """Insert `job` unless its message_id exists."""
        if job.message_id in self._jobs:
            return False
        self._jobs[job.message_id] = job
        return True

    async def get(self, message_id: str) -> OutboundJob | None:
        """The job for `message_id`, if any."""
        return self._jobs.get(message_id)

    async def lease_due(
        self, owner: str, now: datetime, lease_for: timedelta, limit: int
    ) -> list[OutboundJob]:
        """Lease the earliest-due unleased unfinished jobs."""
        due = sorted(
            (
                job
                for job in self._jobs.values()
                if not job.state.is_final
                and job.due_at <= now
                and (job.lease_expires_at is None or job.lease_expires_at <= now)
            ),
            key=lambda job: job.due_at,
        )[:limit]
        leased = [
            attrs.evolve(job, lease_owner=owner, lease_expires_at=now + lease_for)
            for job in due
        ]
        for job in leased:
            self._jobs[job.message_id] = job
        return leased

    async def update(self, job: OutboundJob, *, owner: str) -> bool:
        """Write `job` if `owner` still holds its lease."""
        current = self._jobs.get(job.message_id)
        if current is None or current.lease_owner != owner:
            return False
        self._jobs[job.message_id] = job
        return True

    async def count_by_state(self) -> Mapping[JobState, int]:
        """How many jobs are in each state."""
        return Counter(job.state for job in self._jobs.values())

    async def count_unfinished(self) -> int:
        """How many jobs are not yet reported or dead."""
        return sum(not job.state.is_final for job in self._jobs.values())


class MemoryLeases:
    """Named leases in a dict."""

    def __init__(self) -> None:
        self._leases: dict[str, tuple[str, datetime]] = {}

    async def acquire(
        self, name: str, owner: str, now: datetime, ttl: timedelta
    ) -> bool:
        """Take or renew `name` unless another owner holds it unexpired."""
        holder = self._leases.get(name)
        if holder is not None and holder[0] != owner and holder[1] > now:
            return False
        self._leases[name] = (owner, now + ttl)
        return True

    async def release(self, name: str, owner: str) -> None:
        """Give `name` up if `owner` holds it."""
        holder = self._leases.get(name)
        if holder is not None and holder[0] == owner:
            del self._leases[name]


class MemoryInstallationStore:
    """Installations in a dict keyed by owner id."""

    def __init__(self) -> None:
        self._installations: dict[str, Installation] = {}

    async def get(self, owner_id: str) -> Installation | None:
        """The installation of a location or company, if any."""
        return self._installations.get(owner_id)

    async def put(self, installation: Installation) -> None:
        """Create or replace an installation."""
        self._installations[installation.owner_id] = installation

    async def replace_if_refresh_token(
        self, installation: Installation, expected_refresh_token: str | None
    ) -> bool:
        """Compare-and-set on the stored refresh token; never over an uninstall."""
        current = self._installations.get(installation.owner_id)
        if current is None or current.refresh_token != expected_refresh_token:
            return False
        if current.state is InstallationState.UNINSTALLED:
            return False
        self._installations[installation.owner_id] = installation
        return True

    async def list(self) -> Sequence[Installation]:
        """Every installation, in owner_id order."""
        return [self._installations[key] for key in sorted(self._installations)]

    async def delete(self, owner_id: str) -> None:
        """Forget an installation."""
        self._installations.pop(owner_id, None)


class MemoryLocationSettingsStore:
    """Location settings in a dict keyed by location id."""

    def __init__(self) -> None:
        self._settings: dict[str, LocationSettings] = {}

    async def get(self, location_id: str) -> LocationSettings | None:
        """The settings of a location, if any."""
        return self._settings.get(location_id)

    async def put(self, settings: LocationSettings) -> None:
        """Create or replace a location's settings."""
        self._settings[settings.location_id] = settings

    async def list(self) -> Sequence[LocationSettings]:
        """Every location's settings, in location_id order."""
        return [self._settings[key] for key in sorted(self._settings)]

    async def delete(self, location_id: str) -> None:
        """Forget a location's settings."""
        self._settings.pop(location_id, None)


class MemorySecretStore:
    """Cast API keys in a dict (not encrypted: nothing reaches a disk)."""

    def __init__(self) -> None:
        self._keys: dict[str, str] = {}

    async def get(self, location_id: str) -> str | None:
        """The location's Cast API key, if one is set."""
        return self._keys.get(location_id)

    async def put(self, location_id: str, api_key: str) -> None:
        """Set or replace the location's Cast API key."""
        self._keys[location_id] = api_key

    async def delete(self, location_id: str) -> None:
        """Remove the location's key."""
        self._keys.pop(location_id, None)

    async def list_names(self) -> Sequence[str]:
        """The location ids that have a key, sorted."""
        return sorted(self._keys)
