"""Time as a PV guest reads it: the TSC and vcpu_time_info.

The guest's rdtsc is the host's TSC (Unicorn passes it through), and
system time is that TSC scaled (_core/time.c, Xen's get_s_time and
set_time_scale), so vcpu_time_info's stamp and scale give a guest the
hypervisor's own clock from any TSC it reads.  Only the TSC's rate is
measured here, once per process, against the host's monotonic clock: its
error makes system time run that much fast or slow against the wall
clock, never disagree with the TSC.  Deterministic mode emulates a 1 GHz
TSC instead (time.c).
"""
import time

from pyxenon._core import lib

CALIBRATION_S = 0.005
_HZ = None


def clock_and_tsc():
    """(ns, tsc) read together: of a few tries, the one whose two TSC reads
    bracket the clock read most tightly (least disturbed by the host)."""
    best = None
    for _ in range(5):
        c0 = lib.xc_host_tsc()
        t = time.perf_counter_ns()
        c1 = lib.xc_host_tsc()
        if best is None or c1 - c0 < best[0]:
            best = (c1 - c0, t, (c0 + c1) // 2)
    return best[1], best[2]


def measure_tsc_hz():
    t0, c0 = clock_and_tsc()
    time.sleep(CALIBRATION_S)
    t1, c1 = clock_and_tsc()
    return max(1, (c1 - c0) * 10**9 // max(1, t1 - t0))


def tsc_hz():
    global _HZ
    if _HZ is None:
        _HZ = measure_tsc_hz()
    return _HZ
