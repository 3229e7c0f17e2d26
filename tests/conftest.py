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


@pytest.fixture
def xl(tmp_path, guests):
    """pyxenon's xl commands in a runtime folder of the test's own; the
    daemon they start on demand is stopped afterwards."""
    from test_toolstack_daemon import TIMEOUT, XL, make_script

    tool = XL(tmp_path / "run", make_script(tmp_path / "bin"))
    yield tool
    subprocess.run([tool.program, "daemon", "stop"], env=tool.env, capture_output=True,
                   timeout=TIMEOUT)
