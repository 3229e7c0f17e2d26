"""Hypercall statistics, the trace buffer and file, folded stacks, and
`run --stats` / `--trace-file` (the observability issue)."""
import json

import pytest

from pyxenon._core import ffi
from pyxenon.toolstack.xenperf import RECORD_FIELDS, TraceBuffer, snapshot
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
        calls = snapshot(dom.perfc)["calls"]
    row = calls["xen_version"]
    assert row["calls"] == 1000
    assert (row["c"], row["python"]) == ((1000, 0) if fast_paths else (0, 1000))
    assert row["ns"] > 0
    assert calls["sched_op"] == {**calls["sched_op"], "calls": 1, "python": 1}   # the shutdown


def test_perfc_off_counts_nothing(guests):
    with Host(memory_mib=256, perfc=False) as host:
        dom = nullcall(host, guests, 100)
        host.run(timeout=30)
        assert snapshot(dom.perfc)["hypercalls"] == 0
        assert dom.shutdown_reason == "poweroff"


def test_faults_bounced_by_vector(boot, guests):
    dom = boot(str(guests / "traps.cfg"))
    assert dom.shutdown_reason == "poweroff"
    assert dict(dom.perfc.bounced) == {14: 1, 0: 1, 13: 1, 3: 1, 6: 1}
    assert snapshot(dom.perfc)["faults_bounced"] == 5


def test_trace_buffer_records_every_trap_in_order(guests):
    with Host(memory_mib=256) as host:
        dom = nullcall(host, guests, 500)
        buf = TraceBuffer(host.machine)
        host.run(timeout=30)
        records = buf.drain()
        buf.close()
    assert buf.lost == 0 and len(records) == 501
    fields = [dict(zip(RECORD_FIELDS, r)) for r in records]
    assert [r["nr"] for r in fields] == [XEN_VERSION] * 500 + [SCHED_OP]
    assert all(r["domid"] == dom.domid and not r["python"] for r in fields[:500])  # in C
    assert fields[-1]["python"] and fields[-1]["a1"] == 2          # SCHEDOP_shutdown
    times = [buf.system_ns(r["tsc"]) for r in fields]
    assert times == sorted(times) and 0 < times[0] < times[-1]


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


def test_one_trace_buffer_at_a_time(host):
    first = TraceBuffer(host.machine, records=16)
    with pytest.raises(ValueError, match="has a trace buffer already"):
        TraceBuffer(host.machine, records=16)
    first.close()
    TraceBuffer(host.machine, records=16).close()


def test_the_first_fast_call_is_timed(guests):
    with Host(memory_mib=256) as host:
        dom = nullcall(host, guests, 1)
        host.run(timeout=30)
        row = snapshot(dom.perfc)["calls"]["xen_version"]
    assert (row["calls"], row["c"]) == (1, 1) and row["c_ns"] > 0


def test_host_made_hypercalls_are_traced_too(host, hypercall, guests):
    dom = host.create(str(guests / "hello.cfg"))
    buf = TraceBuffer(host.machine)
    assert hypercall(dom, XEN_VERSION, 0, 0) == 4 << 16 | 17
    (record,) = buf.drain()
    record = dict(zip(RECORD_FIELDS, record))
    assert (record["nr"], record["rc"]) == (XEN_VERSION, 4 << 16 | 17)
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
    assert len(records) == snapshot(dom.perfc)["hypercalls"]
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


class FakeTerminal:
    def __init__(self, tty=True):
        self.text, self.tty = "", tty

    def isatty(self):
        return self.tty

    def write(self, text):
        self.text += text

    def flush(self):
        pass


def test_progress_line_on_a_terminal_only(guests):
    from pyxenon.toolstack.observe import CLEAR_LINE, Progress, make_progress

    assert make_progress(None, FakeTerminal(tty=False)) is None
    now = [0.0]
    with Host(memory_mib=256) as host:
        dom = nullcall(host, guests, 1000)
        host.run(timeout=30)
        host.machine.domains[dom.domid] = dom          # as if it still ran
        term = FakeTerminal()
        progress = Progress(host.machine, term, clock=lambda: now[0])
        progress.tick()
        now[0] = 1.5
        progress.tick()
        assert term.text == ""                          # a short run shows nothing
        now[0] = 4.0
        progress.tick()
        assert term.text == CLEAR_LINE + "pyxenon:     4.0 s  nullcall 250 hypercalls/s"
        progress.clear()
        assert term.text.endswith(CLEAR_LINE) and not progress.shown
        del host.machine.domains[dom.domid]


def test_run_on_a_terminal_clears_its_progress_line(guests, monkeypatch, capsys):
    import sys
    from pyxenon.toolstack import observe

    term = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", term)
    monkeypatch.setattr(observe, "PROGRESS_AFTER", 0.0)
    monkeypatch.setattr(observe, "PROGRESS_EVERY", 0.0)
    assert cli.main(["run", str(guests / "nullcall.cfg")]) == 0
    assert "pyxenon: " in term.text and " s  nullcall " in term.text
    assert term.text.endswith(observe.CLEAR_LINE)      # the last line is gone at the end
