"""Reading the bearer token of a request or a WebSocket (header, or `token` query parameter on a WebSocket)."""

from __future__ import annotations

import pytest
from starlette.requests import HTTPConnection

from services.report.auth import bearer
from services.report.routes_bars import ApiError


def _conn(kind: str, headers: dict[str, str] | None = None, query: str = "") -> HTTPConnection:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return HTTPConnection({"type": kind, "headers": raw, "query_string": query.encode(), "path": "/x"})


def test_header_wins_everywhere() -> None:
    assert bearer(_conn("http", {"Authorization": "Bearer abc.def.ghi"}), "token") == "abc.def.ghi"
    assert bearer(_conn("http", {"Authorization": "bearer  abc "}), "token") == "abc"
    assert bearer(_conn("websocket", {"Authorization": "Bearer h"}, "token=q"), "token") == "h"


def test_websocket_may_use_the_query_parameter_but_http_may_not() -> None:
    assert bearer(_conn("websocket", query="token=abc.def"), "token") == "abc.def"
    with pytest.raises(ApiError) as err:
        bearer(_conn("http", query="token=abc.def"), "token")
    assert err.value.status == 401 and err.value.detail.startswith("missing Authorization header")
    with pytest.raises(ApiError) as err:
        bearer(_conn("websocket"), "token")
    assert "`token` query parameter" in err.value.detail


@pytest.mark.parametrize("value", ["Basic abc", "Bearer", "Bearer   ", "Token abc"])
def test_malformed_headers(value: str) -> None:
    with pytest.raises(ApiError) as err:
        bearer(_conn("http", {"Authorization": value}), "token")
    assert err.value.status == 401
    assert err.value.detail == "malformed Authorization header: expected `Bearer <token>`"
