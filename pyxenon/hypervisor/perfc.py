"""A domain's hypercall statistics, the hypervisor's half (_core/perfc.h).

The C counters the trap path keeps for a domain (Xen's perfc
``hypercalls`` array, split into the C fast path and the Python handlers)
are allocated here and shared by its vcpus; ``bounced`` counts what only
Python sees, the exceptions bounced to the guest, by vector.  Reading them,
and the machine's trace buffer, is the toolstack's (toolstack/xenperf.py):
nothing here is on a guest's path but the allocation.
"""
import collections

from pyxenon._core import ffi, lib


class Perfc:
    """One domain's counters; on (counted by C) unless made with on=False."""

    def __init__(self, on=True):
        self.core = ffi.new("struct xc_perfc *") if on else ffi.NULL
        if on:
            self.core.tick = lib.XC_SAMPLE     # the first fast-path call is timed, then 1 in 64
        self.bounced = collections.Counter()      # exception vector -> bounces to the guest

    def attach(self, vcpu_core):
        vcpu_core.perfc = self.core
