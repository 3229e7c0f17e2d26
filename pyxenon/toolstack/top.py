"""`xl top` / `pyxenon top` (xentop) and `pyxenon stats DOMAIN`, against the daemon.

    top [-b] [-d DELAY] [-i N]    xentop's table, refreshed every DELAY seconds
                                  (default 3): on a terminal redrawn in place until
                                  q Enter or Ctrl-C; -b (batch) appends it to stdout
    stats DOMAIN                  the domain's hypercall statistics (toolstack/observe.py)

The columns are xentop's (tools/xentop/xentop.c) up to VCPUS, NETS and VBDS
(the cfg's vif and disk entries); xentop's traffic columns give way to
HCALLS/s and EVENTS/s, the domain's hypercall traps and EVTCHNOP_sends per
second since the previous refresh (0 on the first, as xentop's CPU(%)).
As xentop, batch mode prints no summary lines.
"""
import os
import select
import sys
import time

from .protocol import request
from .observe import stats_lines

HEADER = ("      NAME  STATE   CPU(sec) CPU(%)     MEM(k) MEM(%)  MAXMEM(k) MAXMEM(%) VCPUS "
          "NETS VBDS   HCALLS/s   EVENTS/s SSID")
CLEAR_SCREEN = "\x1b[H\x1b[2J"
XENTOP_STATES = ((5, "d"), (3, "s"), (1, "b"), (4, "c"), (2, "p"), (0, "r"))  # xl letter index


def cmd_stats(args):
    reply = request("stats", domain=args.domain)
    for line in stats_lines(reply["name"], reply["domid"], reply["stats"]):
        print(line)
    return 0


def xentop_state(letters):
    """xl's rbpscd letters as xentop's dsbcpr."""
    return "".join(ch if letters[i] not in "-" else "-" for i, ch in XENTOP_STATES)


class Sampler:
    """Rows and the per-second rates between two samples."""

    def __init__(self):
        self.last = {}        # domid -> (time, cpu_time, hypercalls, events_sent)
        self.info = dict(request("info")["info"])

    def lines(self):
        now = time.monotonic()
        rows = request("list")["domains"]
        total_kib = int(self.info["total_memory"]) * 1024
        out = [HEADER]
        for row in rows:
            out.append(self.line(row, now, total_kib))
        self.last = {r["domid"]: (now, r["cpu_time"], r["hypercalls"], r["events_sent"])
                     for r in rows}
        return out

    def rates(self, row, now):
        then = self.last.get(row["domid"])
        if then is None or now <= then[0]:
            return 0.0, 0.0, 0.0
        dt = now - then[0]
        return (100 * (row["cpu_time"] - then[1]) / dt, (row["hypercalls"] - then[2]) / dt,
                (row["events_sent"] - then[3]) / dt)

    def line(self, row, now, total_kib):
        cpu_pct, hcalls, events = self.rates(row, now)
        mem, maxmem = row["mem_mib"] * 1024, (row["maxmem_mib"] or row["mem_mib"]) * 1024
        config = row.get("config") or {}
        return (f"{row['name']:>10} {xentop_state(row['state']):>6} {int(row['cpu_time']):>10} "
                f"{cpu_pct:>6.1f} {mem:>10} {100 * mem / total_kib:>6.1f} {maxmem:>10} "
                f"{100 * maxmem / total_kib:>9.1f} {row['vcpus']:>5} "
                f"{len(config.get('nics', [])):>4} {len(config.get('disks', [])):>4} "
                f"{hcalls:>10.0f} {events:>10.0f} {0:>4}")


def summary(sampler, rows_text):
    info = sampler.info
    states = [line.split()[1] for line in rows_text[1:]]
    # xentop's do_summary: each domain counted once, the first of these it is
    firsts = [next((ch for ch in "rbpscd" if ch in state), None) for state in states]
    count = {ch: firsts.count(ch) for ch in "rbpscd"}
    used = int(info["total_memory"]) - int(info["free_memory"])
    return [f"xentop - {time.strftime('%H:%M:%S')}   Xen {info['xen_version']}",
            f"{len(states)} domains: {count['r']} running, {count['b']} blocked, "
            f"{count['p']} paused, {count['c']} crashed, {count['d']} dying, "
            f"{count['s']} shutdown ",
            f"Mem: {int(info['total_memory']) * 1024}k total, {used * 1024}k used, "
            f"{int(info['free_memory']) * 1024}k free    "
            f"CPUs: {info['nr_cpus']} @ {int(float(info['cpu_mhz']))}MHz"]


def cmd_top(args):
    sampler = Sampler()
    terminal = not args.batch and sys.stdout.isatty()
    keys = Keys(sys.stdin if terminal else None)
    shown = 0
    while args.iterations is None or shown < args.iterations:
        rows = sampler.lines()
        if terminal:
            sys.stdout.write(CLEAR_SCREEN + "\n".join(summary(sampler, rows) + rows) + "\n")
        else:
            sys.stdout.write("\n".join(rows) + "\n")
        sys.stdout.flush()
        shown += 1
        if (args.iterations is not None and shown >= args.iterations) or keys.wait(args.delay):
            break
    return 0


class Keys:
    """q (then Enter) on a terminal's stdin ends top; Ctrl-C too."""

    def __init__(self, stream):
        self.fd = stream.fileno() if stream is not None and stream.isatty() else None

    def wait(self, delay):
        """Sleep delay seconds; True if the user asked to quit meanwhile."""
        if self.fd is None:
            time.sleep(delay)
            return False
        ready, _, _ = select.select([self.fd], [], [], delay)
        return bool(ready) and os.read(self.fd, 64).strip().lower().startswith(b"q")


def non_negative(text):
    try:
        value = float(text)
    except ValueError:
        value = -1
    if value < 0:
        import argparse

        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds")
    return value


def add_top(sub, positive):
    p = sub.add_parser("top", help="the domains' use of the host, refreshed (xentop)")
    p.add_argument("-b", "--batch", action="store_true",
                   help="batch mode: print the table every DELAY seconds, no summary")
    p.add_argument("-d", "--delay", type=non_negative, default=3.0, metavar="DELAY",
                   help="seconds between updates (default 3)")
    p.add_argument("-i", "--iterations", type=positive, metavar="N",
                   help="stop after N updates")
    p.set_defaults(func=cmd_top)


def add_stats(sub):
    p = sub.add_parser("stats", help="a domain's hypercall statistics (calls, C or Python, time)")
    p.add_argument("domain", help="domain name or id")
    p.set_defaults(func=cmd_stats)
