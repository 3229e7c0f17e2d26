"""The interface on record: every Xen hypercall, and every sub-operation of
the ones pyxenon implements, with what pyxenon does with it.

    python -m pyxenon.toolstack.interface [--write] [--root DIR]

prints the table as Markdown; ``--write`` regenerates docs/INTERFACE.md.
The table is generated, not written: supported means a handler is in
``pyxenon.hypercalls.TABLE`` (for a hypercall) or in its family's ``OPS``
(for a sub-operation).  What cannot be read from the code without calling
it -- which handlers only refuse, and why a hypercall is left out -- is kept
in the small tables below, and tests/test_interface_table.py checks them
against the code.
"""
import argparse
import collections
import importlib
import inspect
import sys
from pathlib import Path
from typing import NamedTuple, Optional

from pyxenon.public import xen

SUPPORTED, REFUSED_STATUS, LEFT_OUT = "supported", "refused", "left out"
DOC = Path("docs") / "INTERFACE.md"
README = Path("README.md")
BEGIN, END = "<!-- interface:begin -->", "<!-- interface:end -->"
EXIT_OK, EXIT_USAGE = 0, 2

# Hypercall -> (module in pyxenon.public, prefix of its sub-operation
# constants, prefixes of other constants that share that prefix).  A
# family's OPS keys are numbers; these name them.
SUBOP_NAMING = {
    "console_io": ("xen", "CONSOLEIO_", ()),
    "xen_version": ("version", "XENVER_", ()),
    "sched_op": ("sched", "SCHEDOP_", ()),
    "event_channel_op": ("event_channel", "EVTCHNOP_", ()),
    "mmuext_op": ("xen", "MMUEXT_", ()),
    "memory_op": ("memory", "XENMEM_", ("XENMEM_resource_",)),
    "grant_table_op": ("grant_table", "GNTTABOP_", ()),
    "vcpu_op": ("vcpu", "VCPUOP_", ()),
    "callback_op": ("callback", "CALLBACKOP_", ()),
    "physdev_op": ("physdev", "PHYSDEVOP_", ("PHYSDEVOP_DBGP_",)),
    "hvm_op": ("hvm", "HVMOP_", ("HVMOP_ALTP2M_",)),
}

# Sub-operations whose handler only refuses: (hypercall, constant) ->
# (error, reason, handler's name).  The handler's name is kept so that a
# handler replaced by a real one is noticed (the test fails) rather than
# still listed as refusing.  A handler can instead say so itself, with a
# docstring whose first line is "Refused: EPERM reason words"; a supported
# one can give a note for the table with "Note: words".
REFUSED = {
    ("xen_version", "XENVER_commandline"): ("EPERM", "privileged only", "ver_privileged"),
    ("xen_version", "XENVER_build_id"): ("EPERM", "privileged only", "ver_privileged"),
    ("sched_op", "SCHEDOP_remote_shutdown"): ("EPERM", "privileged only", "sched_remote_shutdown"),
    ("sched_op", "SCHEDOP_pin_override"): ("EPERM", "hardware domain only", "sched_pin_override"),
}

# Why each hypercall without a handler is left out (-ENOSYS).  "as Xen":
# Xen 4.17 answers -ENOSYS too; "not as Xen": what Xen does instead.
# Hypercalls that have a handler need no line here.
LEFT_OUT_REASONS = {
    "xsm_op": "as Xen without FLASK (xsm/dummy.h's xsm_do_xsm_op)",
    "xenoprof_op": "not as Xen, whose default build has CONFIG_XENOPROF and answers a domU: "
                   "XENOPROF_init with the host's PMU model, get_buffer by sharing sample pages "
                   "(do_xenoprof_op); not yet",
    "tmem_op": "as Xen: removed (no entry in hypercall-defs.c)",
    "argo_op": "as Xen without CONFIG_ARGO (its default)",
    "arch_2": "as Xen: no entry on x86",
    "arch_3": "as Xen: no entry on x86",
    "arch_4": "as Xen: no entry on x86",
    "arch_5": "as Xen: no entry on x86",
    "arch_6": "as Xen: no entry on x86",
    "arch_7": "as Xen: no entry on x86",
}

# Why a sub-operation of an implemented hypercall is left out (-ENOSYS).
SUBOP_LEFT_OUT_REASONS = {
    ("physdev_op", "PHYSDEVOP_free_irq_vector"): "as Xen: do_physdev_op has no such case",
    ("memory_op", "XENMEM_paging_op"): "as Xen without CONFIG_MEM_PAGING (its default)",
    ("memory_op", "XENMEM_sharing_op"): "as Xen without CONFIG_MEM_SHARING (its default)",
    ("grant_table_op", "GNTTABOP_dump_table"): "as Xen: do_grant_table_op has no such case",
    ("hvm_op", "HVMOP_set_mem_access"): "as Xen: do_hvm_op has no such case (XENMEM_access_op's now)",
    ("hvm_op", "HVMOP_get_mem_access"): "as Xen: do_hvm_op has no such case (XENMEM_access_op's now)",
    ("memory_op", "XENMEM_decrease_reservation"):
        "not as Xen, which frees the frames (guest_remove_page) and returns the extents done: "
        "a domain's memory is a fixed partition here",
    ("memory_op", "XENMEM_exchange"):
        "not as Xen, which swaps the frames for new ones (memory_exchange): "
        "frames never change owner here",
    ("memory_op", "XENMEM_add_to_physmap_batch"):
        "not yet: Xen runs each entry as add_to_physmap (xenmem_add_to_physmap_batch), "
        "errors in errs[]",
}
NO_REASON = "not yet"

# Limits on a supported hypercall worth stating beside it.
SUPPORTED_NOTES = {
    "mmu_update": "own domain only",
    "mmuext_op": "own domain only",
    "update_va_mapping_otherdomain": "own domain only",
}


class Entry(NamedTuple):
    hypercall: str
    nr: int
    op: str             # sub-operation constant; "" for the hypercall itself
    op_nr: Optional[int]
    status: str
    error: str          # "EPERM", "ENOSYS", or "" when supported
    reason: str
    handler: str        # module.qualname of the handler; "" when none


# ---------------------------------------------------------------------------
# Reading the code
# ---------------------------------------------------------------------------

def subop_names(hypercall):
    """{number: constant name} of a hypercall's sub-operations, from
    pyxenon.public; the first name defined wins where two share a number."""
    if hypercall not in SUBOP_NAMING:
        return {}
    module, prefix, others = SUBOP_NAMING[hypercall]
    public = importlib.import_module(f"pyxenon.public.{module}")
    names = {}
    for name, value in vars(public).items():
        if name.startswith(prefix) and not name.startswith(others) \
                and type(value) is int and value not in names:
            names[value] = name
    return names


def ops_owner(family):
    """Which of the family's hypercalls its OPS belong to: the only one, or
    the only one with named sub-operations (mmu.py's OPS are mmuext_op's)."""
    hypercalls = [xen.HYPERCALL_NAMES.get(nr, f"hypercall_{nr}") for nr in family.HYPERCALLS]
    named = [h for h in hypercalls if h in SUBOP_NAMING]
    if len(hypercalls) == 1:
        return hypercalls[0]
    if len(named) == 1:
        return named[0]
    raise ValueError(f"{family.__name__}: cannot tell which of {', '.join(hypercalls)} "
                     "its OPS belong to; add one to SUBOP_NAMING in interface.py")


def family_ops():
    """{hypercall name: OPS dict} for every family that has sub-operations."""
    # imported here, not at the top: the handlers load the C core, which the
    # CLI need not pay for unless this command runs
    from pyxenon import hypercalls

    return {ops_owner(f): f.OPS for f in hypercalls.FAMILIES if getattr(f, "OPS", None)}


def handler_name(handler):
    module = getattr(handler, "__module__", "") or ""
    name = getattr(handler, "__qualname__", type(handler).__name__)
    return f"{module.rpartition('.')[2]}.{name}" if module else name


def refusal(hypercall, op, handler):
    """(error, reason) when the handler only refuses, else None."""
    doc = (inspect.getdoc(handler) or "").splitlines()
    if doc and doc[0].startswith("Refused:"):
        error, _, reason = doc[0][len("Refused:"):].strip().partition(" ")
        return error.strip("-,"), reason.strip(" .,") or "refused"
    known = REFUSED.get((hypercall, op))
    if known and known[2] == getattr(handler, "__name__", None):
        return known[0], known[1]
    return None


def note(handler):
    """What a supported handler says of its answer, with a docstring whose
    first line is "Note: words" (e.g. an answer fixed by the design)."""
    doc = (inspect.getdoc(handler) or "").splitlines()
    return doc[0][len("Note:"):].strip(" .") if doc and doc[0].startswith("Note:") else ""


# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------

def hypercall_entry(nr, name, handler, ops):
    if handler is None:
        return Entry(name, nr, "", None, LEFT_OUT, "ENOSYS",
                     LEFT_OUT_REASONS.get(name, NO_REASON), "")
    refused = refusal(name, "", handler)
    if refused:
        return Entry(name, nr, "", None, REFUSED_STATUS, *refused, handler_name(handler))
    notes = [SUPPORTED_NOTES.get(name, ""), "sub-operations below" if ops else ""]
    note = "; ".join(n for n in notes if n)
    return Entry(name, nr, "", None, SUPPORTED, "", note, handler_name(handler))


def subop_entries(name, nr, ops):
    """One entry per named sub-operation and per handler, by number."""
    names = subop_names(name)
    entries = []
    for op_nr in sorted(set(names) | set(ops)):
        op = names.get(op_nr, f"{name} op {op_nr}")
        handler = ops.get(op_nr)
        if handler is None:
            entries.append(Entry(name, nr, op, op_nr, LEFT_OUT, "ENOSYS",
                                 SUBOP_LEFT_OUT_REASONS.get((name, op), NO_REASON), ""))
            continue
        refused = refusal(name, op, handler)
        status, error, reason = (REFUSED_STATUS, *refused) if refused else (SUPPORTED, "", note(handler))
        entries.append(Entry(name, nr, op, op_nr, status, error, reason, handler_name(handler)))
    return entries


def entries():
    """Every hypercall (Xen's names, and any number that has a handler),
    then every sub-operation of the implemented ones."""
    from pyxenon import hypercalls

    table = {nr: h for nr, h in enumerate(hypercalls.TABLE) if h is not None}
    ops = family_ops()
    rows, subs = [], []
    for nr in sorted(set(xen.HYPERCALL_NAMES) | set(table)):
        name = xen.HYPERCALL_NAMES.get(nr, f"hypercall_{nr}")
        family = ops.get(name) if nr in table else None
        rows.append(hypercall_entry(nr, name, table.get(nr), family))
        if family:
            subs.extend(subop_entries(name, nr, family))
    return rows + subs


def totals(all_entries):
    calls = collections.Counter(e.status for e in all_entries if not e.op)
    subs = collections.Counter(e.status for e in all_entries if e.op)
    return (f"pyxenon supports {calls[SUPPORTED]} of Xen's {len(xen.HYPERCALL_NAMES)} hypercalls "
            f"({subs[SUPPORTED]} sub-operations). It refuses {calls[REFUSED_STATUS]} hypercalls "
            f"and {subs[REFUSED_STATUS]} sub-operations, as Xen refuses them to a domU; "
            f"{calls[LEFT_OUT]} hypercalls and {subs[LEFT_OUT]} sub-operations are left out (-ENOSYS).")


def cell(text, code=False):
    if not text:
        return ""
    return f"`{text}`" if code else text


def error_cell(e):
    return f"-{e.error}" if e.error else ""


def render(all_entries):
    """The whole document as Markdown."""
    lines = [
        "# The interface on record",
        "",
        "Generated by `python -m pyxenon.toolstack.interface --write` from the hypercall",
        "table (`pyxenon.hypercalls`) and Xen's public numbers (`pyxenon.public`); do not",
        "edit by hand. `tests/test_interface_table.py` fails when this file and the code",
        "disagree. *refused*: the handler only returns the error (after the checks Xen makes",
        "first, named in the note); *left out*: no handler, the guest gets -ENOSYS.",
        "",
        totals(all_entries),
        "",
        "## Hypercalls",
        "",
        "| nr | hypercall | status | error | note | handler |",
        "| ---: | --- | --- | --- | --- | --- |",
    ]
    for e in all_entries:
        if not e.op:
            lines.append(f"| {e.nr} | {e.hypercall} | {e.status} | {error_cell(e)} "
                         f"| {e.reason} | {cell(e.handler, code=True)} |")
    lines += subop_sections(all_entries)
    return "\n".join(lines) + "\n"


def subop_sections(all_entries):
    lines = []
    current = None
    for e in (e for e in all_entries if e.op):
        if e.hypercall != current:
            current = e.hypercall
            lines += ["", f"## {e.hypercall} ({e.nr}): sub-operations", "",
                      "| nr | sub-operation | status | error | note | handler |",
                      "| ---: | --- | --- | --- | --- | --- |"]
        lines.append(f"| {e.op_nr} | {e.op} | {e.status} | {error_cell(e)} "
                     f"| {e.reason} | {cell(e.handler, code=True)} |")
    return lines


def readme_block(all_entries):
    """The README's part: the totals and one row per Xen hypercall."""
    lines = [BEGIN, "", totals(all_entries), "",
             "| nr | hypercall | status | note |", "| ---: | --- | --- | --- |"]
    for e in all_entries:
        if not e.op:
            note = "; ".join(x for x in (error_cell(e), e.reason) if x)
            lines.append(f"| {e.nr} | {e.hypercall} | {e.status} | {note} |")
    return "\n".join(lines + ["", END])


def with_readme_block(text, block):
    """README text with the block between the markers replaced (or None)."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        return None
    return text[:start] + block + text[end + len(END):]


def write_docs(root, all_entries):
    (root / DOC).parent.mkdir(parents=True, exist_ok=True)
    (root / DOC).write_text(render(all_entries))
    readme = root / README
    if readme.exists():
        updated = with_readme_block(readme.read_text(), readme_block(all_entries))
        if updated is not None:
            readme.write_text(updated)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def default_root():
    # pyxenon/toolstack/interface.py -> the checkout holding docs/
    return Path(__file__).resolve().parents[2]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="pyxenon interface",
                                description="The hypercall interface on record, as Markdown.")
    p.add_argument("--write", action="store_true", help=f"regenerate ROOT/{DOC.as_posix()}")
    p.add_argument("--root", type=Path, default=None,
                   help="checkout whose docs/ to write; default: this checkout")
    args = p.parse_args(argv)
    text = render(entries())
    if not args.write:
        sys.stdout.write(text)
        return EXIT_OK
    root = args.root or default_root()
    path = root / DOC
    try:
        write_docs(root, entries())
    except OSError as e:
        print(f"pyxenon interface: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {path}: {totals(entries())}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
