"""In-memory adapters: for tests and for the library user who needs no storage."""

from castghl_adapters.memory.stores import (
    MemoryInstallationStore,
    MemoryLeases,
    MemoryLocationSettingsStore,
    MemoryOutbox,
    MemorySecretStore,
)

__all__ = [
    "MemoryInstallationStore",
    "MemoryLeases",
    "MemoryLocationSettingsStore",
    "MemoryOutbox",
    "MemorySecretStore",
]
