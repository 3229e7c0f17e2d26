"""pyxenon: a separation virtual machine monitor after the Xenon design.

Unmodified Xen PV x86_64 guest kernels run in Unicorn; a small C core takes
the trap path and the page-table walk; Python hypercall handlers implement
the hypervisor interface.  ``pyxenon.hypervisor`` and ``pyxenon.hypercalls``
are the core a guest can reach; ``pyxenon.toolstack`` is the host side.
"""
__version__ = "0.1.0"


def __getattr__(name):
    # Host pulls in the engine; load it only when asked for.
    if name == "Host":
        from pyxenon.toolstack.host import Host

        return Host
    raise AttributeError(name)


__all__ = ["Host", "__version__"]
