"""The ops a campaign applies to a world: JSON-able dicts, so a finding
is saved and replayed as it was found."""
from .common import MASK64, hypercall_name


def call_op(slot, nr, args, writes=()):
    args = [a & MASK64 for a in (list(args) + [0] * 5)[:5]]
    return {"op": "call", "slot": slot, "nr": nr & MASK64, "args": args,
            "writes": [[va & MASK64, bytes(data).hex()] for va, data in writes]}


def touch_op(slot, va, write):
    """The guest accesses va: what the access leaves in the TLB (the model
    of guest code touching memory; the checker looks at the TLB)."""
    return {"op": "touch", "slot": slot, "va": va & MASK64, "write": bool(write)}


def store_op(slot, mfn, offset, data):
    """A plain store by the guest into a frame of its own (e.g. its grant table)."""
    return {"op": "store", "slot": slot, "mfn": mfn, "offset": offset, "data": bytes(data).hex()}


def run_op(rounds):
    return {"op": "run", "rounds": rounds}


def destroy_op(slot):
    return {"op": "destroy", "slot": slot}


def op_name(op):
    if op["op"] == "call":
        return hypercall_name(op["nr"])
    return op["op"]
