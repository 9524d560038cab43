"""Settings from the environment: defaults, parsing, and clear errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs.config import ConfigError, load


def test_defaults_are_the_embedded_mode() -> None:
    s = load({})
    assert s.nats_url is None and s.clickhouse_url is None
    assert s.home == Path(".markettwin")


def test_values_are_parsed() -> None:
    s = load(
        {
            "NATS_URL": "nats://n:4222",
            "MT_SYNTH_RATE": "5.5",
            "MT_RECORDER_BATCH": "10",
            "MT_LOG_FORMAT": "json",
        }
    )
    assert (s.nats_url, s.synth_rate, s.recorder_batch, s.log_format) == ("nats://n:4222", 5.5, 10, "json")


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("MT_SYNTH_RATE", "fast", "MT_SYNTH_RATE='fast' is not a valid float"),
        ("MT_RECORDER_BATCH", "1.5", "MT_RECORDER_BATCH='1.5' is not a valid int"),
        ("MT_PAPER_STARTING_USD", "-1", "MT_PAPER_STARTING_USD='-1' must not be negative"),
        ("MT_LOG_FORMAT", "xml", "MT_LOG_FORMAT='xml' must be one of"),
        ("MT_SYNTH_RATE", "0", "MT_SYNTH_RATE='0' must be greater than 0"),
        ("MT_RECORDER_BATCH", "0", "MT_RECORDER_BATCH='0' must be greater than 0"),
        ("MT_PAPER_MIN_EDGE_CENTS", "nan", "MT_PAPER_MIN_EDGE_CENTS='nan' must be a finite number"),
    ],
)
def test_bad_values_name_the_variable(var: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load({var: value})
