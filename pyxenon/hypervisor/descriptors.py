"""Segment descriptors a guest may install (GDT pages, update_descriptor).

pyxenon's rule, stricter than Xen's fix-ups, as the separation design asks:
a not-present descriptor is harmless; a code or data segment must have
DPL 3 (a ring-0 segment is refused, not silently raised); a type-0 system
descriptor is the harmless upper half of a 16-byte one; every other system
descriptor (call, interrupt and trap gates, TSS, LDT) is refused.
"""
import struct

PRESENT = 1 << 47
SEGMENT_S = 1 << 44          # code or data (not a system descriptor)
DPL_SHIFT = 45
TYPE_MASK = 0xF << 40


def descriptor_ok(desc):
    if not desc & PRESENT:
        return True
    if desc & SEGMENT_S:
        return (desc >> DPL_SHIFT) & 3 == 3
    return desc & TYPE_MASK == 0


def page_ok(page):
    """Every descriptor of a 4 KiB GDT/LDT page is acceptable."""
    return all(descriptor_ok(d) for d in struct.unpack("<512Q", bytes(page)))
