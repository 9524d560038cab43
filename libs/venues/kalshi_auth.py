"""Kalshi request signing: RSA-PSS over `timestamp_ms + METHOD + path`, as Kalshi's API docs specify.

SHA-256 digest, MGF1-SHA256, salt length = digest length (32 bytes); the path is the URL path from
the root (`/trade-api/v2/portfolio/balance`) without the query string. Three headers carry it:
KALSHI-ACCESS-KEY (the API key id), KALSHI-ACCESS-TIMESTAMP (ms) and KALSHI-ACCESS-SIGNATURE
(base64). `KalshiSigner` has the `create_auth_headers(method, url)` method kalshi_python_sync's
ApiClient calls before each request, so it is what the client signs with (the library's own
KalshiAuth takes only a PEM string although `set_kalshi_auth` names its argument a path).
`verify` is the server side, for tests and tools.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

KEY_HEADER = "KALSHI-ACCESS-KEY"
TIMESTAMP_HEADER = "KALSHI-ACCESS-TIMESTAMP"
SIGNATURE_HEADER = "KALSHI-ACCESS-SIGNATURE"

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


class KalshiKeyError(ValueError):
    """A private key that cannot be used, naming where it came from."""


def load_private_key(pem_or_path: str | bytes | Path) -> RSAPrivateKey:
    """An RSA private key from PEM text or bytes, or from the PEM file at a path."""
    if isinstance(pem_or_path, bytes):
        data, where = pem_or_path, "the PEM bytes given"
    elif isinstance(pem_or_path, str) and "-----BEGIN" in pem_or_path:
        data, where = pem_or_path.encode(), "the PEM text given"
    else:
        path = Path(pem_or_path)
        if not path.is_file():
            raise KalshiKeyError(f"Kalshi private key file {str(path)!r} does not exist")
        data, where = path.read_bytes(), f"file {str(path)!r}"
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise KalshiKeyError(f"Kalshi private key in {where} is not an unencrypted PEM private key: {e}") from None
    if not isinstance(key, RSAPrivateKey):
        raise KalshiKeyError(f"Kalshi private key in {where} is a {type(key).__name__}, not an RSA key")
    return key


def signing_path(url_or_path: str) -> str:
    """The path Kalshi signs: from the root, without query or fragment."""
    return urlsplit(url_or_path).path or "/"


def message(timestamp_ms: int | str, method: str, url_or_path: str) -> bytes:
    """The signed message: timestamp + METHOD + path."""
    return f"{timestamp_ms}{method.upper()}{signing_path(url_or_path)}".encode()


def sign(key: RSAPrivateKey, timestamp_ms: int | str, method: str, url_or_path: str) -> str:
    """Base64 RSA-PSS (SHA-256, MGF1-SHA256, salt = 32) signature of the message."""
    return base64.b64encode(key.sign(message(timestamp_ms, method, url_or_path), _PSS, hashes.SHA256())).decode()


def verify(public_key: RSAPublicKey, headers: Mapping[str, str], method: str, url_or_path: str) -> bool:
    """True when the request's three Kalshi headers carry a valid signature for it (server side)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    ts = lowered.get(TIMESTAMP_HEADER.lower())
    sig = lowered.get(SIGNATURE_HEADER.lower())
    if not ts or not sig or not lowered.get(KEY_HEADER.lower()):
        return False
    try:
        public_key.verify(base64.b64decode(sig, validate=True), message(ts, method, url_or_path), _PSS, hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


class KalshiSigner:
    """Signs requests for one API key; plugs into kalshi_python_sync's ApiClient as `kalshi_auth`."""

    def __init__(self, key_id: str, private_key: str | bytes | Path, clock_ms: Callable[[], int] | None = None) -> None:
        if not key_id:
            raise KalshiKeyError("Kalshi API key id is empty (MT_KALSHI_API_KEY_ID)")
        self.key_id = key_id
        self.private_key = load_private_key(private_key)
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)

    def headers(self, method: str, url_or_path: str) -> dict[str, str]:
        """The three KALSHI-ACCESS-* headers for one request."""
        ts = str(self._clock_ms())
        return {
            KEY_HEADER: self.key_id,
            TIMESTAMP_HEADER: ts,
            SIGNATURE_HEADER: sign(self.private_key, ts, method, url_or_path),
        }

    create_auth_headers = headers
    """The name kalshi_python_sync's ApiClient.call_api calls (it passes the full URL)."""
