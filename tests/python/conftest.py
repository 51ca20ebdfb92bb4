"""Shared fixtures: the driftwatch binary and a scratch directory."""
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _binary() -> pathlib.Path:
    explicit = os.environ.get("DRIFTWATCH_BIN")
    if explicit:
        return pathlib.Path(explicit)
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "release" / "driftwatch"


@pytest.fixture(scope="session")
def driftwatch():
    """Runs the driftwatch binary; fails (never skips) when it has not been built."""
    binary = _binary()
    if not binary.exists():
        pytest.fail(f"driftwatch binary not found at {binary}; run `cargo build --release` or set DRIFTWATCH_BIN")

    def run(*args, stdin=None):
        proc = subprocess.run([str(binary), *map(str, args)], input=stdin, capture_output=True, check=False)
        if proc.returncode != 0:
            raise AssertionError(f"driftwatch {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr.decode()}")
        return proc

    return run
