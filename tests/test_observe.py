"""Hypercall statistics, the trace buffer and file, folded stacks, and
`run --stats` / `--trace-file` (the observability issue)."""
import json

import pytest

from pyxenon._core import ffi
from pyxenon.hypervisor.perfc import TraceBuffer
from pyxenon.toolstack import cli
from pyxenon.toolstack.host import Host
from pyxenon.toolstack.xentrace import TraceFile, fold

XEN_VERSION, SCHED_OP = 17, 29


def nullcall(host, guests, loops):
    return host.create(str(guests / "nullcall.cfg"), overrides=[f'cmdline="loops={loops}"'])


@pytest.mark.parametrize("fast_paths", [True, False])
def test_calls_counted_by_path(guests, fast_paths):
    with Host(memory_mib=256, fast_paths=fast_paths) as host:
        dom = nullcall(host, guests, 1000)
        host.run(timeout=30)
        calls = dom.perfc.snapshot()["calls"]
    row = calls["xen_version"]
    assert row["calls"] == 1000
    assert (row["c"], row["python"]) == ((1000, 0) if fast_paths else (0, 1000))
    assert row["ns"] > 0
    assert calls["sched_op"] == {**calls["sched_op"], "calls": 1, "python": 1}   # the shutdown


def test_perfc_off_counts_nothing(guests):
    with Host(memory_mib=256, perfc=False) as host:
        dom = nullcall(host, guests, 100)
        host.run(timeout=30)
        assert dom.perfc.snapshot()["hypercalls"] == 0
        assert dom.shutdown_reason == "poweroff"


def test_faults_bounced_by_vector(boot, guests):
    dom = boot(str(guests / "traps.cfg"))
    assert dom.shutdown_reason == "poweroff"
    assert dict(dom.perfc.bounced) == {14: 1, 0: 1, 13: 1, 3: 1, 6: 1}
    assert dom.perfc.snapshot()["faults_bounced"] == 5


def test_trace_buffer_records_every_trap_in_order(guests):
    with Host(memory_mib=256) as host:
        dom = nullcall(host, guests, 500)
        buf = TraceBuffer(host.machine)
        host.run(timeout=30)
        records = buf.drain()
        buf.close()
    assert buf.lost == 0 and len(records) == 501
    assert [r[3] for r in records] == [XEN_VERSION] * 500 + [SCHED_OP]
    assert all(r[1] == dom.domid and not r[7] for r in records[:500])   # answered in C
    assert records[-1][7]                                               # shutdown: Python
    times = [r[0] for r in records]
    assert times == sorted(times)


def test_full_trace_buffer_loses_and_counts_never_grows(guests):
    with Host(memory_mib=256) as host:
        dom = nullcall(host, guests, 5000)
        buf = TraceBuffer(host.machine, records=256)
        host.run(timeout=30)
        kept = buf.drain()
        assert dom.shutdown_reason == "poweroff"      # the guest never waited
    assert len(kept) == 256 and buf.lost == 5001 - 256
    with pytest.raises(ValueError):
        TraceBuffer(host, records=100)


def test_host_made_hypercalls_are_traced_too(host, hypercall, guests):
    dom = host.create(str(guests / "hello.cfg"))
    buf = TraceBuffer(host.machine)
    assert hypercall(dom, XEN_VERSION, 0, 0) == 4 << 16 | 17
    (record,) = buf.drain()
    assert record[3] == XEN_VERSION and record[5] == 4 << 16 | 17
    buf.close()
    assert host.machine.core.tbuf == ffi.NULL          # closed: the trap writes no more
    hypercall(dom, XEN_VERSION, 0, 0)
    assert buf.drain() == []


def test_trace_file_lines_and_end(tmp_path, guests):
    path = tmp_path / "t.jsonl"
    with Host(memory_mib=256) as host:
        trace = TraceFile(host.machine, str(path))
        dom = host.create(str(guests / "hello.cfg"))
        host.run(timeout=30)
        assert trace.close() == 0
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    *records, end = lines
    assert end == {"end": True, "records": len(records), "lost": 0}
    assert len(records) == dom.perfc.snapshot()["hypercalls"]
    shutdown = records[-1]
    assert shutdown["domain"] == "hello" and shutdown["op"] == "SCHEDOP_shutdown"
    assert shutdown["path"] == "python"


def test_trace_file_limit_refuses_and_counts(tmp_path, guests):
    path = tmp_path / "t.jsonl"
    with Host(memory_mib=256) as host:
        trace = TraceFile(host.machine, str(path), limit=1000)
        nullcall(host, guests, 300)
        host.run(timeout=30)
        lost = trace.close()
    assert lost == 301 and path.stat().st_size < 1200


def test_fold_sums_time_per_stack():
    lines = [json.dumps({"domid": 1, "domain": "a b", "hypercall": "sched_op",
                         "op": "SCHEDOP_yield", "path": "c", "ns": n}) for n in (5, 7)]
    lines.append(json.dumps({"domid": 1, "domain": "a b", "hypercall": "console_io",
                             "op": None, "path": "python", "ns": 11}))
    lines.append(json.dumps({"end": True, "records": 3, "lost": 0}))
    assert fold(lines) == {"d1_a_b;sched_op;SCHEDOP_yield;c": 12,
                           "d1_a_b;console_io;python": 11}
    assert fold(lines, "calls")["d1_a_b;sched_op;SCHEDOP_yield;c"] == 2


def run_cli(capsys, *argv):
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_run_stats_and_trace_file_then_fold(tmp_path, guests, capsys):
    trace = tmp_path / "t.jsonl"
    status, out, err = run_cli(capsys, "run", "--stats", "--trace-file", str(trace),
                               str(guests / "traps.cfg"))
    assert status == 0, err
    assert "traps: all 5 handled" in out
    head = next(line for line in err.splitlines() if line.startswith("domain traps (d1):"))
    assert "5 faults bounced" in head
    assert any(line.split()[:1] == ["set_trap_table"] for line in err.splitlines())
    folded = tmp_path / "t.folded"
    assert run_cli(capsys, "trace", "fold", str(trace), "-o", str(folded))[0] == 0
    stacks = dict(line.rsplit(" ", 1) for line in folded.read_text().splitlines())
    assert "d1_traps;set_trap_table;python" in stacks


def test_bad_inputs_one_line(tmp_path, guests, capsys):
    status, _, err = run_cli(capsys, "run", "--trace-file", str(tmp_path / "no" / "t"),
                             str(guests / "hello.cfg"))
    assert status == cli.EXIT_USAGE and err.count("\n") == 1 and "cannot write the trace" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"domid": 1}\nnot json\n')
    status, _, err = run_cli(capsys, "trace", "fold", str(bad))
    assert status == cli.EXIT_USAGE and err == f"pyxenon: {bad}: line 2: not a JSON object\n"
