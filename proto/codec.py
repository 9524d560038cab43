"""Wire encoding: MessagePack via msgspec, one typed decoder per event type."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from proto.events import AnyEvent, Event

E = TypeVar("E", bound=Event)

_encoder = msgspec.msgpack.Encoder()
_decoders: dict[Any, msgspec.msgpack.Decoder[Any]] = {}


def encode(event: msgspec.Struct) -> bytes:
    """Encode any event (or Struct) to MessagePack bytes."""
    return _encoder.encode(event)


def decoder(kind: Any) -> msgspec.msgpack.Decoder[Any]:
    """The cached typed decoder for an event type or a union of them."""
    dec = _decoders.get(kind)
    if dec is None:
        dec = _decoders[kind] = msgspec.msgpack.Decoder(kind)
    return dec


def decode(data: bytes, kind: type[E]) -> E:
    """Decode bytes as `kind`; raises msgspec.ValidationError/DecodeError naming the bad field."""
    return decoder(kind).decode(data)


def decode_any(data: bytes) -> AnyEvent:
    """Decode bytes as whichever event its `type` tag names."""
    return decoder(AnyEvent).decode(data)
