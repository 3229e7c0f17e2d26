"""Time as a PV guest reads it: vcpu_time_info and the runstate.

The guest's rdtsc is the host's TSC (Unicorn passes it through), so Xen's
time protocol works as on hardware: system_time and tsc_timestamp are
sampled together, and tsc_to_system_mul/tsc_shift scale a TSC delta to
nanoseconds.  The TSC rate is measured once per process; _core/machine.c
writes vcpu_time_info at the start of every slice (xc_enter), its version
odd while the update is in progress.
"""
import time

from pyxenon._core import lib

CALIBRATION_NS = 2_000_000
_SCALE = None


def measure_tsc_hz():
    t0, c0 = time.perf_counter_ns(), lib.xc_host_tsc()
    while time.perf_counter_ns() - t0 < CALIBRATION_NS:
        pass
    t1, c1 = time.perf_counter_ns(), lib.xc_host_tsc()
    return (c1 - c0) * 1e9 / (t1 - t0)


def scale_for(hz):
    """(mul, shift) with ns = ((tsc << shift) * mul) >> 32 (shift may be < 0)."""
    ratio, shift = 1e9 / hz, 0
    while ratio >= 1.0:
        ratio, shift = ratio / 2, shift + 1
    while ratio < 0.5:
        ratio, shift = ratio * 2, shift - 1
    return int(ratio * (1 << 32)), shift


def tsc_scale():
    global _SCALE
    if _SCALE is None:
        _SCALE = scale_for(measure_tsc_hz())
    return _SCALE
