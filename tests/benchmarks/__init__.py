"""Benchmarks run by `make bench` (`python -m tests.benchmarks`)."""


def line(name: str, value: float, unit: str) -> None:
    """Print one figure as `name: value unit` (what `make bench` prints, one per line)."""
    print(f"{name}: {value:.6g} {unit}".rstrip(), flush=True)
