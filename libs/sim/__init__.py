"""The simulation engine: trading sessions, day statistics, calibration and the agent-based market."""
