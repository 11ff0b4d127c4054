"""MongoDB adapters: the store for several replicas sharing one deployment.

Every store uses one MongoDatabase (one AsyncMongoClient per process); the
collections and document shapes are described in
`castghl_adapters.mongo.database` and ADR 0010. Secrets and tokens pass
through a SecretCipher before they are written.
"""

from castghl_adapters.mongo.database import (
    COLLECTIONS,
    SCHEMA_VERSION,
    MongoAuthFailed,
    MongoConfigurationError,
    MongoDatabase,
    MongoSchemaError,
    MongoStoreError,
    MongoUnavailable,
)
from castghl_adapters.mongo.installations import MongoInstallationStore
from castghl_adapters.mongo.leases import MongoLeases
from castghl_adapters.mongo.outbox import MongoOutbox
from castghl_adapters.mongo.secret_store import MongoSecretStore
from castghl_adapters.mongo.settings import MongoLocationSettingsStore
from castghl_adapters.mongo.uri import redact_uri

__all__ = [
    "COLLECTIONS",
    "SCHEMA_VERSION",
    "MongoAuthFailed",
    "MongoConfigurationError",
    "MongoDatabase",
    "MongoInstallationStore",
    "MongoLeases",
    "MongoLocationSettingsStore",
    "MongoOutbox",
    "MongoSchemaError",
    "MongoSecretStore",
    "MongoStoreError",
    "MongoUnavailable",
    "redact_uri",
]
