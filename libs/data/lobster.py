"""LOBSTER message and order-book files as numpy columns.

A LOBSTER day is `{SYMBOL}_{DATE}_{start}_{end}_message_{N}.csv` with its
`..._orderbook_{N}.csv`; row k of the book is the book after message k. Prices are
dollars x 10,000 (our `PRICE_SCALE`), times seconds after midnight New York time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ADD, CANCEL, DELETE, EXECUTE, EXECUTE_HIDDEN, HALT = 1, 2, 3, 4, 5, 7
EMPTY_ASK = 9_999_999_999
EMPTY_BID = -9_999_999_999
_NAME = re.compile(r"^(?P<symbol>[^_]+)_(?P<date>\d{4}-\d{2}-\d{2})_\d+_\d+_message_(?P<levels>\d+)\.csv$")


@dataclass(frozen=True)
class LobsterDay:
    """One LOBSTER file pair. `book` has shape (n, 4 * levels): per level
    ask price, ask size, bid price, bid size."""

    symbol: str
    date: str
    levels: int
    time: np.ndarray
    type: np.ndarray
    order_id: np.ndarray
    size: np.ndarray
    price: np.ndarray
    direction: np.ndarray
    book: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.time)

    def level(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Level k (1-based): ask price, ask size, bid price, bid size, one entry per row."""
        if not 1 <= k <= self.levels:
            raise ValueError(f"level {k} outside 1..{self.levels}")
        c = 4 * (k - 1)
        return self.book[:, c], self.book[:, c + 1], self.book[:, c + 2], self.book[:, c + 3]


def find_message_file(path: Path) -> Path:
    """The message file itself, or the single one inside a directory."""
    path = Path(path)
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if _NAME.match(p.name))
        if len(found) != 1:
            raise ValueError(f"{path}: expected one LOBSTER *_message_N.csv file, found {len(found)}")
        return found[0]
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such LOBSTER file or directory")
    if not _NAME.match(path.name):
        raise ValueError(f"{path.name}: not a LOBSTER message file name (SYMBOL_DATE_start_end_message_N.csv)")
    return path


def load_lobster(path: Path | str) -> LobsterDay:
    """Read a LOBSTER day; raises ValueError naming the file and row for malformed data."""
    message = find_message_file(Path(path))
    m = _NAME.match(message.name)
    assert m is not None
    levels = int(m["levels"])
    book_path = message.with_name(message.name.replace("_message_", "_orderbook_"))
    if not book_path.exists():
        raise FileNotFoundError(f"{book_path}: the order-book file for {message.name} is missing")
    msgs = _read(message, 6)
    book = _read(book_path, 4 * levels).astype(np.int64)
    if len(book) != len(msgs):
        raise ValueError(f"{message.name}: {len(msgs)} messages but {len(book)} order-book rows")
    types = msgs[:, 1].astype(np.int8)
    bad = ~np.isin(types, (ADD, CANCEL, DELETE, EXECUTE, EXECUTE_HIDDEN, HALT))
    if bad.any():
        row = int(np.argmax(bad)) + 1
        raise ValueError(f"{message.name} row {row}: unknown event type {int(msgs[row - 1, 1])}")
    time = msgs[:, 0]
    if np.any(np.diff(time) < 0):
        row = int(np.argmax(np.diff(time) < 0)) + 2
        raise ValueError(f"{message.name} row {row}: time goes backwards")
    return LobsterDay(
        symbol=m["symbol"],
        date=m["date"],
        levels=levels,
        time=time,
        type=types,
        order_id=msgs[:, 2].astype(np.int64),
        size=msgs[:, 3].astype(np.int64),
        price=msgs[:, 4].astype(np.int64),
        direction=msgs[:, 5].astype(np.int8),
        book=book,
        source=message.name,
    )


def _read(path: Path, columns: int) -> np.ndarray:
    try:
        data = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise ValueError(f"{path.name}: not numeric CSV ({exc})") from exc
    if data.size == 0:
        raise ValueError(f"{path.name}: empty file")
    if data.shape[1] != columns:
        raise ValueError(f"{path.name}: {data.shape[1]} columns, expected {columns}")
    return data
