"""Hypercall traces as JSON lines, and folded stacks from them.

    pyxenon run --trace-file F CFG       write the trace while the domains run
    pyxenon trace fold F [-o OUT] [--by calls|ns]
                                          F as folded stacks: flamegraph.pl OUT > out.svg,
                                          or open OUT in speedscope (https://speedscope.app)

The trace is xentrace's idea with the fast paths kept on: the C trap path
writes one record per hypercall into the machine's trace buffer
(toolstack/xenperf.py); after each slice the records are drained and written
here, one JSON object a line:

    {"t_ns": 12345678, "domid": 1, "domain": "hello", "vcpu": 0, "hypercall":
     "sched_op", "nr": 29, "op": "SCHEDOP_yield", "args": [0, 0, 0], "rc": 0,
     "ns": 412, "path": "c"}

t_ns is system time (ns since the machine booted), ns the time the trap
took (C, or C and the Python handler: "path"), args the first three
arguments.  A full buffer loses records (the guest never waits for the
file); the last line is {"end": true, "records": N, "lost": M}, lost also
counting what the file limit (TRACE_FILE_LIMIT bytes) refused.
"""
import argparse
import collections
import json
import sys

from pyxenon.errors import UserInputError
from pyxenon.public import (callback, event_channel, grant_table, memory, physdev, sched, vcpu,
                            version, xen)

from .xenperf import TraceBuffer, hypercall_name

PATHS = ('"c"', '"python"')
TRACE_FILE_LIMIT = 1 << 30     # bytes: a guest that never stops calling cannot fill the disk

# hypercall -> (module, prefix) naming its first argument's sub-operations
SUBOPS = {"sched_op": (sched, "SCHEDOP_"), "event_channel_op": (event_channel, "EVTCHNOP_"),
          "xen_version": (version, "XENVER_"), "memory_op": (memory, "XENMEM_"),
          "grant_table_op": (grant_table, "GNTTABOP_"), "vcpu_op": (vcpu, "VCPUOP_"),
          "physdev_op": (physdev, "PHYSDEVOP_"), "callback_op": (callback, "CALLBACKOP_"),
          "console_io": (xen, "CONSOLEIO_"), "vm_assist": (xen, "VMASST_CMD_")}


def subop_names():
    """{hypercall name: {value: sub-operation name}}, from the public headers."""
    names = {}
    for call, (module, prefix) in SUBOPS.items():
        table = names.setdefault(call, {})
        for key, value in vars(module).items():
            if key.startswith(prefix) and isinstance(value, int) and not key.isupper():
                table.setdefault(value, key)
    return names


SUBOP_NAMES = subop_names()


def subop(call, a1):
    return SUBOP_NAMES.get(call, {}).get(a1)


class TraceFile:
    """Drains the machine's trace buffer into a JSON-lines file (each slice)."""

    def __init__(self, machine, path, limit=TRACE_FILE_LIMIT):
        try:
            self.file = open(path, "w", encoding="utf-8")
        except OSError as e:
            raise UserInputError(path, f"cannot write the trace: {e.strerror}") from None
        self.machine = machine
        self.buffer = TraceBuffer(machine)
        self.names = {}            # domid -> its name as JSON, kept once a domain has gone
        self.labels = {}           # (nr, a1) -> the hypercall's fields, as JSON
        machine.destroy_listeners.append(self.remember)
        self.records = self.refused = self.written = 0
        self.limit = limit

    def remember(self, domain):
        self.names[domain.domid] = json.dumps(domain.name)

    def drain(self):
        records = self.buffer.drain()
        if not records:
            return
        for domain in self.machine.domains.values():
            self.remember(domain)
        lines = self.format(records)
        if self.written + len(lines) > self.limit:
            self.refused += len(records)
            return
        self.file.write(lines)
        self.written += len(lines)
        self.records += len(records)

    def format(self, records):
        """The records' JSON lines, written by hand: json.dumps per record
        would cost the run several times what C spent recording."""
        scale, tsc0, ns0 = 1e9 / self.buffer.hz, self.buffer.tsc0, self.buffer.ns0
        names, label = self.names, self.label
        return "".join([
            f'{{"t_ns": {ns0 + int((tsc - tsc0) * scale)}, "domid": {domid}, '
            f'"domain": {names.get(domid, "null")}, "vcpu": {vcpu}, {label(nr, a1)}, '
            f'"args": [{a1}, {a2}, {a3}], "rc": {rc}, "ns": {int(cycles * scale)}, '
            f'"path": {PATHS[python]}}}\n'
            for tsc, nr, a1, a2, a3, rc, cycles, domid, vcpu, python, _ in records])

    def label(self, nr, a1):
        """'"hypercall": ..., "nr": ..., "op": ...' for a call, cached by
        (nr, a1) where a1 names a sub-operation (a bounded set)."""
        key = (nr, a1 if a1 < 64 else -1)
        text = self.labels.get(key)
        if text is None:
            call = hypercall_name(nr)
            op = subop(call, a1)
            text = (f'"hypercall": "{call}", "nr": {nr}, '
                    f'"op": {json.dumps(op)}')
            if key[1] >= 0 or op is None:
                self.labels[key] = text
        return text

    def close(self):
        self.drain()
        self.buffer.close()
        lost = self.buffer.lost + self.refused
        self.file.write(json.dumps({"end": True, "records": self.records, "lost": lost}) + "\n")
        self.file.close()
        return lost


# -- folded stacks -----------------------------------------------------------------

def fold(lines, weight="ns"):
    """{"domain;hypercall;op;path": total weight} from trace lines."""
    stacks = collections.Counter()
    for number, text in enumerate(lines, 1):
        record = parse_line(text, number)
        if record is None:
            continue
        frames = [f"d{record.get('domid')} {record.get('domain') or ''}".strip(),
                  str(record.get("hypercall"))]
        if record.get("op"):
            frames.append(str(record["op"]))
        frames.append(str(record.get("path")))
        stacks[";".join(f.replace(";", ",").replace(" ", "_") for f in frames)] += \
            1 if weight == "calls" else int(record.get("ns") or 0)
    return stacks


def parse_line(text, number):
    """One trace record, None for the end line; ValueError names a bad line."""
    try:
        record = json.loads(text)
    except ValueError:
        raise ValueError(f"line {number}: not a JSON object") from None
    if not isinstance(record, dict):
        raise ValueError(f"line {number}: not a JSON object")
    return None if record.get("end") else record


def main(argv):
    p = argparse.ArgumentParser(prog="pyxenon trace",
                                description="turn a --trace-file into folded stacks")
    sub = p.add_subparsers(dest="action", required=True)
    f = sub.add_parser("fold", help="folded stacks (flamegraph.pl, speedscope)")
    f.add_argument("file", help="a trace written by `pyxenon run --trace-file`")
    f.add_argument("-o", dest="out", help="write here (default: stdout)")
    f.add_argument("--by", choices=["ns", "calls"], default="ns",
                   help="weigh each stack by time (default) or by calls")
    args = p.parse_args(argv)
    try:
        with open(args.file, encoding="utf-8", errors="replace") as trace:
            stacks = fold(trace, args.by)
    except OSError as e:
        raise UserInputError(args.file, f"cannot read: {e.strerror}") from None
    except ValueError as e:
        raise UserInputError(args.file, str(e)) from None
    write_stacks(stacks, args.out)
    return 0


def write_stacks(stacks, out):
    text = "".join(f"{stack} {n}\n" for stack, n in sorted(stacks.items()))
    if out is None:
        sys.stdout.write(text)
        return
    try:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise UserInputError(out, f"cannot write: {e.strerror}") from None
