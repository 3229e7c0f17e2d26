"""The hypervisor core: everything a guest can reach.

Small and simple on purpose (the paper's measure of a separation VMM):
the machine and its frame table, domains and vcpus, the trap path's Python
half, event channels and guest-memory access.  The hypercall handlers live
beside it in ``pyxenon.hypercalls``.  Nothing here parses a user's files;
that is the toolstack's job (``pyxenon.toolstack``).
"""
