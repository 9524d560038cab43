"""Request bodies for every route that takes one: read with a size cap, decoded as JSON.

- `read_body(request)` reads `request.stream()` keeping a running byte count and stops with a
  413 as soon as the count passes MAX_BODY_BYTES (64 KiB), whatever the request declared: a
  `Content-Length` over the cap is refused before reading anything, and a chunked body (no
  length) is never held in memory beyond the cap. `request.body()` would read it all first.
- `decode_json(raw, decoder)` turns the bytes into a value: a body that is not JSON — malformed,
  or not UTF-8 text (msgspec raises UnicodeDecodeError for that, not DecodeError) — is a 400
  `the request body is not valid JSON`; with a typed decoder, a value of the wrong shape is a
  422 naming the field (msgspec's message: field path and expected type, never the value).
  `quote_errors=False` (the secrets routes) leaves even the parser's byte position out.

No error built here quotes the body: a secrets body's bytes must never reach a client or a log.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request

from services.report.routes_bars import ApiError

MAX_BODY_BYTES = 65_536
"""The largest request body accepted (64 KiB): every body of this API is a small JSON object."""
NOT_JSON = "the request body is not valid JSON"


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"the request body is larger than {limit} bytes; at most {limit} are accepted")


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body's bytes, at most `limit` of them; ApiError(413) as soon as there are more."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _failing_key(raw: bytes) -> str | None:
    """The top-level key whose value an untyped decode refused (`1e999`: Number out of range), if one did.

    msgspec's own message says only `$[...]` for an untyped object; decoding each value alone finds it.
    """
    try:
        values = msgspec.json.decode(raw, type=dict[str, msgspec.Raw])
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    for key, value in values.items():
        try:
            msgspec.json.decode(value)
        except msgspec.ValidationError:
            return key[:80]
    return None


def decode_json(raw: bytes, decoder: msgspec.json.Decoder[Any] | None = None, *, quote_errors: bool = True) -> Any:
    """`raw` decoded (by `decoder`, or to plain JSON values); ApiError 400 (not JSON) or 422 (wrong shape)."""
    try:
        return msgspec.json.decode(raw) if decoder is None else decoder.decode(raw)
    except msgspec.ValidationError as e:  # a subclass of DecodeError: first
        where = _failing_key(raw) if decoder is None and quote_errors else None
        message = str(e).split(" - at `")[0]
        raise ApiError(
            422, f"invalid request body: {message} - at `$.{where}`" if where else f"invalid request body: {e}"
        ) from None
    except msgspec.DecodeError as e:
        raise ApiError(400, f"{NOT_JSON}: {e}" if quote_errors else NOT_JSON) from None
    except UnicodeDecodeError:  # its message and args hold the offending bytes: never shown
        raise ApiError(400, f"{NOT_JSON}: it is not UTF-8 text" if quote_errors else NOT_JSON) from None
