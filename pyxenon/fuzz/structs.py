"""Argument structures filled field by field from pyxenon.public's
ctypes layouts: a field's name picks its kind of value."""
import ctypes


def field_kind(name):
    """What a structure field holds, guessed from its name."""
    name = name.lower()
    for kind, words in FIELD_KINDS:
        if name in words:
            return kind
    return "int"


FIELD_KINDS = (
    ("domid", ("dom", "domid", "remote_dom", "domain_id", "domain")),
    ("va", ("ports", "frame_list", "buffer", "extent_start", "host_addr", "address", "addr",
            "v_start", "v_end", "rip", "rsp", "vcpu_info", "idxs", "gpfns", "errs", "handle_p")),
    ("port", ("port", "remote_port", "local_port")),
    ("vcpu", ("vcpu", "vcpu_id")),
    ("ref", ("ref",)),
    ("handle", ("handle",)),
    ("mfn", ("mfn", "gmfn", "gpfn", "frame", "max_mfn", "dev_bus_addr", "control_gfn",
             "array_gfn")),
    ("count", ("nr_frames", "nr_ports", "nr_entries", "max_extents", "nr_extents", "len",
               "count", "size", "nr_exchanged", "max_nr_frames", "extent_order")),
    ("offset", ("offset",)),
    ("time", ("timeout", "timeout_abs_ns", "period", "state_entry_time")),
    ("small", ("type", "virq", "version", "space", "id", "submap_idx", "reason", "cmd",
               "vector", "status", "nr_vcpus", "idx", "priority")),
)


def struct_fields(ctype):
    """(name, offset, ctype) of each field of a ctypes structure or union."""
    for entry in ctype._fields_:
        name, ftype = entry[0], entry[1]
        yield name, getattr(ctype, name).offset, ftype


def is_record(ftype):
    return isinstance(ftype, type) and issubclass(ftype, (ctypes.Structure, ctypes.Union))


def field_bytes(maker, dom, name, ftype, given):
    size = ctypes.sizeof(ftype)
    if given and name in given:
        value = given[name]
        if not isinstance(value, int):
            return bytes(value)[:size].ljust(size, b"\0")
    elif is_record(ftype):
        return fill_struct(maker, dom, ftype)
    elif issubclass(ftype, ctypes.Array):
        return maker.random_bytes(size)
    else:
        value = maker.of_kind(field_kind(name), dom)
    return (value & ((1 << 8 * size) - 1)).to_bytes(size, "little")


def fill_struct(maker, dom, ctype, given=None):
    """Bytes of ctype with every field an edge value of its kind (given:
    {field: value} overrides)."""
    raw = bytearray(ctypes.sizeof(ctype))
    fields = list(struct_fields(ctype))
    if issubclass(ctype, ctypes.Union):
        fields = [maker.rng.choice(fields)]
    for name, offset, ftype in fields:
        size = ctypes.sizeof(ftype)
        raw[offset:offset + size] = field_bytes(maker, dom, name, ftype, given)
    return bytes(raw)
