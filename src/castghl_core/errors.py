"""The domain's errors: what went wrong, in words an operator can act on."""

from __future__ import annotations


class CastGhlError(Exception):
    """Base of every error castghl raises on purpose."""


class InvalidPayload(CastGhlError):
    """A webhook body is not JSON of the expected shape."""


class SignatureRejected(CastGhlError):
    """A webhook is unsigned or its signature does not verify."""


class PhoneNumberRejected(CastGhlError):
    """A phone number is not one castghl can send to."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class InvalidSetting(CastGhlError):
    """A location setting or Cast API key given by an operator is malformed."""


class BacklogFull(CastGhlError):
    """Too many messages are waiting to be sent; GHL should retry later."""

    def __init__(self, waiting: int, limit: int) -> None:
        super().__init__(
            f"{waiting} messages are waiting to be sent (limit {limit}); retry later"
        )


class SecretUnreadable(CastGhlError):
    """A stored secret exists but cannot be read (wrong encryption key?)."""


class LocationNotInstalled(CastGhlError):
    """No active installation exists for a location."""

    def __init__(self, location_id: str, reason: str = "not installed") -> None:
        super().__init__(f"location {location_id} cannot use castghl: {reason}")
        self.location_id = location_id
        self.reason = reason


class TokenUnavailable(CastGhlError):
    """No working GHL token can be had for a location right now."""

    def __init__(self, location_id: str, reason: str, *, retryable: bool) -> None:
        super().__init__(f"no GHL token for location {location_id}: {reason}")
        self.location_id = location_id
        self.reason = reason
        self.retryable = retryable


# --- Cast (the SMS gateway) -------------------------------------------------


class CastError(CastGhlError):
    """Base of the errors an SmsGateway raises."""


class CastRejected(CastError):
    """Cast refused the request for good; retrying will not help."""

    def __init__(self, code: str, message: str, http_status: int) -> None:
        super().__init__(f"Cast rejected the request ({code}): {message}")
        self.code = code
        self.reason = message
        self.http_status = http_status


class CastUnavailable(CastError):
    """Cast could not be reached or asked us to wait; retry the same request."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(f"Cast unavailable: {reason}")
        self.reason = reason
        self.retry_after = retry_after


# --- GHL (HighLevel) --------------------------------------------------------


class GhlError(CastGhlError):
    """Base of the errors a GhlApi raises."""

    def __init__(self, message: str, trace_id: str | None = None) -> None:
        super().__init__(message)
        self.trace_id = trace_id


class GhlNotReady(GhlError):
    """GHL does not know the message yet (the race right after a delivery)."""


class GhlUnauthorized(GhlError):
    """GHL refused the access token; a refresh may help once."""


class GhlRateLimited(GhlError):
    """GHL answered 429; wait for the rate-limit window."""

    def __init__(
        self, message: str, retry_after: float | None, trace_id: str | None = None
    ) -> None:
        super().__init__(message, trace_id)
        self.retry_after = retry_after


class GhlUnavailable(GhlError):
    """GHL timed out or answered 5xx; retry later."""


class GhlRejected(GhlError):
    """GHL refused the request for good (a 4xx other than the above)."""

    def __init__(
        self, message: str, http_status: int, trace_id: str | None = None
    ) -> None:
        super().__init__(message, trace_id)
        self.http_status = http_status


class TokenRevoked(GhlError):
    """GHL says a grant is invalid ("Invalid grant").

    For a refresh token this means revoked, expired or already used; only
    after ruling out a concurrent refresh is the location to be reinstalled.
    """


class LocationInactive(GhlError):
    """GHL says the location is paused; its tokens work again later."""


class OAuthNotConfigured(GhlError):
    """castghl has no GHL client id and secret, so it cannot call GHL's OAuth."""


# --- app webhooks (INSTALL, UNINSTALL) ---------------------------------------


class StaleWebhook(InvalidPayload):
    """An app webhook's timestamp is missing or outside the accepted window."""


class ForeignApp(CastGhlError):
    """An app webhook names another marketplace app than castghl's."""
