"""Segment descriptors a guest may install (GDT pages, update_descriptor).

One rule, Xen's check_descriptor, kept in C (`_core/pagetype.c`
`xc_check_descriptor`) because descriptor pages are validated there; this
module is its Python face for update_descriptor and for tests.
"""
import struct

from pyxenon._core import ffi, lib


def check_descriptor(desc):
    """The descriptor as Xen would store it (DPL raised to 3), or None if
    Xen refuses it."""
    cell = ffi.new("uint64_t *", desc)
    return int(cell[0]) if lib.xc_check_descriptor(cell) else None


def page_ok(page):
    """Every descriptor of a 4 KiB GDT/LDT page is acceptable (the page
    itself is left as it is)."""
    return all(check_descriptor(d) is not None for d in struct.unpack("<512Q", bytes(page)))
