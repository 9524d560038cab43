"""Errors of the venue connectors, each naming the venue and what failed."""

from __future__ import annotations


class VenueHTTPError(RuntimeError):
    """A venue call that got no usable answer: an HTTP error status, or no response at all (status 0).

    `retry_after_s` carries a 429's Retry-After so `libs.retry.with_retries` waits as told.
    """

    def __init__(self, venue: str, endpoint: str, status: int, reason: str, retry_after_s: float | None = None) -> None:
        shown = f"HTTP {status}" if status else "no response"
        super().__init__(f"{venue} {endpoint}: {shown}: {reason}")
        self.venue = venue
        self.endpoint = endpoint
        self.status = status
        self.reason = reason
        self.retry_after_s = retry_after_s
        self.responses: list = []
        """The venue responses (libs.venues.books.Response) behind the error, for a recording."""

    @property
    def retryable(self) -> bool:
        """Worth another try: no response, rate limited, or a server error."""
        return self.status == 0 or self.status == 429 or self.status >= 500


def is_retryable(exc: BaseException) -> bool:
    """`retry_on` for `with_retries`: venue HTTP errors that may pass, and transport failures."""
    if isinstance(exc, VenueHTTPError):
        return exc.retryable
    return isinstance(exc, (OSError, TimeoutError))


class PayloadError(ValueError):
    """A venue response that does not parse, naming the venue, market, field and value."""

    def __init__(self, venue: str, market: str, field: str, value: object, problem: str) -> None:
        shown = repr(value)
        if len(shown) > 120:
            shown = shown[:117] + "..."
        super().__init__(f"{venue} market {market!r}: field {field} = {shown}: {problem}")
        self.venue = venue
        self.market = market
        self.field = field
        self.value = value
        self.problem = problem
