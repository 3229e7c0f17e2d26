"""`pyxenon run --deterministic` boots Debian's cloud kernel to its busybox
/init and powers off, and does so repeatably: two boots make the same
hypercalls (number, arguments, result) in the same order -- the TSC is
emulated and system time virtual (_core/time.c).  Two boots in all."""
import pytest

from test_kernelimage import debian_vmlinuz  # noqa: F401  (the session fixture)
from linux_demo import boot_linux, linux_cfg

BOOT_TIMEOUT = 300       # wall clock; virtual time is what the guest sees


@pytest.fixture(scope="module")
def boots(debian_vmlinuz, tmp_path_factory):  # noqa: F811
    cfg = linux_cfg(debian_vmlinuz, tmp_path_factory.mktemp("linux-det"),
                    "dmesg | grep 'tsc: Detected'")
    return [boot_linux(cfg, timeout=BOOT_TIMEOUT, deterministic=True) for _ in range(2)]


def test_deterministic_boot_reaches_init_and_powers_off(boots):
    dom, outcome, _ = boots[0]
    text = dom.console_text
    assert "init: started" in text, (outcome, text[-3000:])
    # the emulated TSC's rate, as Linux reads it from vcpu_time_info's scale
    assert "tsc: Detected 1000.000 MHz processor" in text and "init: exit status 0" in text
    assert dom.shutdown_reason == "poweroff" and dom.crash_report is None, text[-3000:]


def test_two_deterministic_boots_make_the_same_hypercalls(boots):
    (first, _, calls), (second, _, again) = boots
    assert len(calls) == 1 and calls[0][0] > 100_000 and calls == again
    assert first.console_text == second.console_text
