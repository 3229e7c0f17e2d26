"""Shared set-up for pyxenon's own tests: the bundled guests, built once."""
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
GUESTS = ROOT / "guests"


@pytest.fixture(scope="session")
def guests():
    """The guests/ folder with every guest built (make -C guests)."""
    subprocess.run(["make", "-s", "-C", str(GUESTS)], check=True)
    return GUESTS
