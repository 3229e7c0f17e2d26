"""Debian's generic kernel flavour (linux-image-amd64), as shipped, boots
under pyxenon to a busybox /init, runs a command and powers off -- one
boot; skipped, saying why, when the kernel or busybox cannot be fetched."""
from test_kernelimage import debian_generic_vmlinuz  # noqa: F401  (the session fixture)
from test_linux_boot import boot_linux, linux_cfg

# Linux's clocksource watchdog has run by then; a TSC that disagreed with
# vcpu_time_info would be marked unstable.
COMMAND = "dmesg | grep -q 'clocksource.*unstable' || echo the TSC is stable"


def test_generic_kernel_boots_to_init_and_powers_off(debian_generic_vmlinuz,  # noqa: F811
                                                      tmp_path):
    dom, outcome, _ = boot_linux(linux_cfg(debian_generic_vmlinuz, tmp_path, COMMAND))
    text = dom.console_text
    assert "init: started" in text, (outcome, text[-3000:])
    assert "\nthe TSC is stable" in text and "init: exit status 0" in text, text[-3000:]
    assert dom.shutdown_reason == "poweroff" and dom.crash_report is None, text[-3000:]
