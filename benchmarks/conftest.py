"""Benchmarks: every figure beside a baseline measured in the same run.

Results are gathered in RESULTS (case -> seconds per operation); at the end
of the session the table of figures and ratios is printed and saved as
benchmarks/results.json.  Timings are never asserted.
"""
import json
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = {}
SIZES = {}          # case -> bytes
RATIOS = [
    # (case, baseline, what the ratio means)
    ("null_hypercall_python", "unicorn_python_hook_syscall",
     "pyxenon null hypercall / Unicorn Python hook reading its arguments"),
    ("null_hypercall_python", "unicorn_python_hook_result_only",
     "pyxenon null hypercall / Unicorn Python hook writing only rax"),
    ("null_hypercall_c", "native_getppid_syscall",
     "pyxenon null hypercall in C / native getppid"),
    ("null_hypercall_c", "unicorn_c_hook_page_call",
     "pyxenon null hypercall in C / bare Unicorn C hook called the same way"),
    ("unicorn_c_hook_syscall", "native_getppid_syscall",
     "bare Unicorn C-hook syscall / native getppid"),
    ("unicorn_c_hook_xen_page_call", "unicorn_c_hook_page_call",
     "Xen's hypercall stub / pyxenon's, under bare Unicorn"),
    ("null_hypercall_python", "qiling_syscall",
     "pyxenon null hypercall through Python / a Qiling system call"),
    ("spin_iteration_raw_unicorn", "spin_iteration_pyxenon",
     "guest code speed under pyxenon's paging, as a fraction of raw Unicorn"),
    ("tlb_miss", "null_hypercall_python", "one TLB miss / one null hypercall"),
    ("memwalk_sequential_pyxenon", "memwalk_sequential_native",
     "8 MiB read-modify-write, word by word: pyxenon / the same code natively"),
    ("memwalk_page_strided_pyxenon", "memwalk_page_strided_native",
     "8 MiB read-modify-write, a new page each access: pyxenon / natively"),
    ("evtchn_round_trip", "domain_switch_yield",
     "one ping-pong round trip / one domain switch"),
    ("evtchn_round_trip_98_idle_domains", "evtchn_round_trip_2_domains",
     "one ping-pong round trip beside 98 idle domains / alone"),
    ("evtchn_round_trip_98_idle_domains_cpu", "evtchn_round_trip_2_domains_cpu",
     "the same, by the engine thread's CPU time"),
    ("evtchn_round_trip_100_domains", "evtchn_round_trip_2_domains",
     "one round trip of 50 pairs at once / of one pair"),
    ("evtchn_round_trip_100_domains_cpu", "evtchn_round_trip_2_domains_cpu",
     "the same, by the engine thread's CPU time"),
    ("ipi_round_trip", "evtchn_round_trip_same_run",
     "an IPI round trip between two vcpus of one domain / an event-channel round trip "
     "between two domains"),
    ("linux_boot_4_vcpus", "linux_boot_1_vcpu",
     "Debian Linux boot to poweroff with 4 vcpus / with 1 (one engine runs every vcpu)"),
    ("grant_copy_4k", "host_copy_4k", "GNTTABOP_copy of 4 KiB / a host copy of 4 KiB"),
    ("domain_create", "null_hypercall_python", "creating a domain / null hypercall"),
    ("hello_boot_to_poweroff", "null_hypercall_python", "hello boot to poweroff / null hypercall"),
    ("mmu_update_batch_32", "null_hypercall_c", "a 32-entry mmu_update batch / null hypercall in C"),
    ("null_hypercall_c_perfc_on", "null_hypercall_c_perfc_off_paired",
     "null hypercall in C with hypercall statistics / without, median of pairs (target <= 1.05)"),
    ("null_hypercall_c_perfc_on_best", "null_hypercall_c_perfc_off_paired",
     "the same, best against best"),
    ("null_hypercall_c_trace_record", "null_hypercall_c_perfc_off",
     "null hypercall in C with statistics and a trace record (C's part) / without either"),
    ("null_hypercall_c_traced", "null_hypercall_c_perfc_off",
     "null hypercall in C with statistics and the trace buffer / without either"),
    ("null_hypercall_c_trace_file", "null_hypercall_c_perfc_off",
     "null hypercall in C under run --trace-file (JSON lines written) / without"),
    ("linux_boot_to_init_pyxenon", "linux_boot_to_init_qemu",
     "Debian Linux from the command to /init's first line: pyxenon run / QEMU TCG"),
    ("linux_boot_to_poweroff_pyxenon", "linux_boot_to_poweroff_qemu",
     "Debian Linux from the command to its poweroff: pyxenon run / QEMU TCG"),
    ("linux_boot_cpu_pyxenon", "linux_boot_cpu_qemu",
     "Debian Linux boot to poweroff, CPU time of the program: pyxenon run / QEMU TCG"),
    ("linux_disk_write_per_mib", "host_disk_write_per_mib",
     "Linux dd write through xen-blkfront / the host's dd on the same image, time per MiB"),
    ("linux_disk_read_per_mib", "host_disk_read_per_mib",
     "Linux dd read through xen-blkfront / the host's dd on the same image, time per MiB"),
    ("linux_net_http_per_mib", "host_loopback_http_per_mib",
     "wget from httpd between two Linux guests on a bridge / over the host's loopback, "
     "time per MiB"),
    ("linux_net_ping_rtt", "host_loopback_ping_rtt",
     "ping round trip between two Linux guests / ping over the host's loopback"),
]


@pytest.fixture(scope="session")
def guests():
    subprocess.run(["make", "-s", "-C", str(ROOT / "guests")], check=True)
    return ROOT / "guests"


@pytest.fixture
def best(benchmark):
    """best(fn, *args, rounds=2): run fn under pytest-benchmark and return
    the smallest value fn itself returned -- the time it measured around the
    work, not pytest-benchmark's time of the whole call (host set-up
    included).  With --benchmark-disable fn runs once."""
    def run(fn, *args, rounds=2):
        values = []
        benchmark.pedantic(lambda: values.append(fn(*args)), rounds=rounds, iterations=1)
        return min(values)
    return run


@pytest.fixture(scope="session")
def results():
    return RESULTS


@pytest.fixture(scope="session")
def sizes():
    return SIZES


def pytest_terminal_summary(terminalreporter):
    if not RESULTS and not SIZES:
        return
    tr = terminalreporter
    tr.section("pyxenon figures (per operation, this run)")
    for case, seconds in sorted(RESULTS.items()):
        tr.write_line(f"  {case:40s} {seconds * 1e9:12.1f} ns")
    for case, size in sorted(SIZES.items()):
        tr.write_line(f"  {case:40s} {size / 2 ** 20:12.3f} MiB")
    ratios = [{"case": case, "baseline": base, "meaning": meaning,
               "ratio": RESULTS[case] / RESULTS[base]}
              for case, base, meaning in RATIOS if case in RESULTS and base in RESULTS]
    for r in ratios:
        tr.write_line(f"  ratio {r['meaning']}: {r['ratio']:.3f}")
    out = ROOT / "benchmarks" / "results.json"
    out.write_text(json.dumps({"per_op_seconds": RESULTS, "bytes": SIZES, "ratios": ratios},
                              indent=2) + "\n")
