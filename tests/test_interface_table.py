"""The interface on record (docs/INTERFACE.md) against the handlers in the code."""
import re

import pytest

from pyxenon import hypercalls
from pyxenon.public import errno, xen
from pyxenon.toolstack import interface

ENTRIES = interface.entries()
CALLS = {e.nr: e for e in ENTRIES if not e.op}
SUBOPS = {(e.hypercall, e.op_nr): e for e in ENTRIES if e.op}
REGENERATE = "run `python -m pyxenon.toolstack.interface --write`"


def families_with_ops():
    return [f for f in hypercalls.FAMILIES if getattr(f, "OPS", None)]


def test_every_handler_in_every_family_is_listed():
    for family in families_with_ops():
        owner = interface.ops_owner(family)
        for op_nr, handler in family.OPS.items():
            entry = SUBOPS.get((owner, op_nr))
            assert entry is not None, f"{owner} op {op_nr} missing from the table"
            assert entry.status in (interface.SUPPORTED, interface.REFUSED_STATUS), entry
            assert entry.handler == interface.handler_name(handler), entry


def test_no_handler_is_left_out_of_the_table():
    for nr, handler in enumerate(hypercalls.TABLE):
        if handler is not None:
            assert CALLS[nr].status != interface.LEFT_OUT, CALLS[nr]
            assert CALLS[nr].handler == interface.handler_name(handler)


def test_listed_sub_operations_are_the_handlers_or_left_out():
    ops = {interface.ops_owner(f): f.OPS for f in families_with_ops()}
    for (hypercall, op_nr), entry in SUBOPS.items():
        has_handler = op_nr in ops[hypercall]
        assert (entry.status != interface.LEFT_OUT) == has_handler, entry


def test_every_xen_hypercall_is_listed_once():
    assert set(xen.HYPERCALL_NAMES) <= set(CALLS)
    assert len([e for e in ENTRIES if not e.op]) == len(CALLS)
    for nr, entry in CALLS.items():
        supported = nr < len(hypercalls.TABLE) and hypercalls.TABLE[nr] is not None
        assert (entry.status != interface.LEFT_OUT) == supported, entry


def test_left_out_hypercalls_have_a_written_reason():
    unexplained = [e.hypercall for e in CALLS.values()
                   if e.status == interface.LEFT_OUT and e.hypercall not in interface.LEFT_OUT_REASONS]
    assert unexplained == [], "add them to LEFT_OUT_REASONS in pyxenon/toolstack/interface.py"


def test_refused_table_names_the_handlers_that_refuse():
    ops = {interface.ops_owner(f): f.OPS for f in families_with_ops()}
    for (hypercall, op), (error, reason, handler) in interface.REFUSED.items():
        names = {v: k for k, v in interface.subop_names(hypercall).items()}
        assert op in names, f"{op}: no such constant"
        actual = ops.get(hypercall, {}).get(names[op])
        assert actual is not None and actual.__name__ == handler, (
            f"REFUSED lists {hypercall} {op} as {handler}, but its handler is "
            f"{getattr(actual, '__name__', None)}: update REFUSED in interface.py")
        assert isinstance(getattr(errno, error, None), int), error
        assert SUBOPS[(hypercall, names[op])].status == interface.REFUSED_STATUS


def test_refusals_on_record():
    refused = {(e.hypercall, e.op): (e.error, e.reason) for e in SUBOPS.values()
               if e.status == interface.REFUSED_STATUS}
    assert refused[("xen_version", "XENVER_commandline")] == ("EPERM", "privileged only")
    assert refused[("xen_version", "XENVER_build_id")] == ("EPERM", "privileged only")
    assert refused[("sched_op", "SCHEDOP_remote_shutdown")] == ("EPERM", "privileged only")
    assert refused[("sched_op", "SCHEDOP_pin_override")] == ("EPERM", "hardware domain only")


def test_a_handler_can_say_it_refuses():
    def refuses(vcpu, arg):
        """Refused: EACCES device domains only.

        More words."""

    def works(vcpu, arg):
        """Does the thing."""

    assert interface.refusal("x_op", "X_a", refuses) == ("EACCES", "device domains only")
    assert interface.refusal("x_op", "X_a", works) is None


def test_sub_operation_names_skip_other_constants_with_the_prefix():
    names = interface.subop_names("memory_op")
    assert names[0] == "XENMEM_increase_reservation"
    assert not any(n.startswith("XENMEM_resource_") for n in names.values())


def test_totals_line():
    supported = sum(e.status == interface.SUPPORTED for e in CALLS.values())
    subs = sum(e.status == interface.SUPPORTED for e in SUBOPS.values())
    assert interface.totals(ENTRIES).startswith(
        f"pyxenon supports {supported} of Xen's {len(xen.HYPERCALL_NAMES)} hypercalls "
        f"({subs} sub-operations)")


def test_rendered_table_lists_every_entry():
    text = interface.render(ENTRIES)
    for e in ENTRIES:
        name = e.op or e.hypercall
        nr = e.op_nr if e.op else e.nr
        assert re.search(rf"^\| {nr} \| {re.escape(name)} \| {e.status} \|", text, re.M), e


def test_docs_interface_is_up_to_date():
    path = interface.default_root() / interface.DOC
    assert path.is_file(), f"{path} is missing: {REGENERATE}"
    assert path.read_text() == interface.render(ENTRIES), f"{path} is out of date: {REGENERATE}"


def test_write_regenerates_the_doc(tmp_path, capsys):
    assert interface.main(["--write", "--root", str(tmp_path)]) == 0
    assert (tmp_path / interface.DOC).read_text() == interface.render(ENTRIES)
    assert "pyxenon supports" in capsys.readouterr().out


def test_plain_run_prints_markdown(capsys):
    assert interface.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# The interface on record")


@pytest.mark.parametrize("family", hypercalls.FAMILIES, ids=lambda f: f.__name__)
def test_ops_owner_is_one_of_the_familys_hypercalls(family):
    if getattr(family, "OPS", None):
        owner = interface.ops_owner(family)
        assert owner in {xen.HYPERCALL_NAMES[nr] for nr in family.HYPERCALLS}


def test_readme_block_is_up_to_date():
    root = interface.default_root()
    text = (root / "README.md").read_text()
    block = interface.readme_block(interface.entries())
    assert interface.with_readme_block(text, block) == text, \
        "README's interface table is stale: run `python -m pyxenon.toolstack.interface --write`"


def test_every_supported_hypercall_has_a_test():
    """The issue's rule: each supported hypercall on record is exercised by
    some test (named through pyxenon.public's HYPERVISOR_<name>)."""
    tests = interface.default_root() / "tests"
    text = "".join(p.read_text() for p in tests.glob("test_*.py"))
    supported = [e.hypercall for e in interface.entries() if not e.op and e.status == "supported"]
    missing = [name for name in supported if f"HYPERVISOR_{name}," not in text
               and f"HYPERVISOR_{name})" not in text]
    assert not missing, f"supported hypercalls no test calls: {missing}"
