"""A run's outcome: the exit status of `pyxenon run` and `xl create -F`, and
a line on stderr for each domain that did not power off.

Its own module so that cli.py (which uses xl.py's commands) and xl.py
(whose `create -F` runs a domain in this process) both use it and neither
imports the other.
"""
import sys

from pyxenon.hypercalls import TABLE_SIZE

EXIT_OK, EXIT_GUEST, EXIT_USAGE = 0, 1, 2


def report(domains, outcome):
    """Exit status, with a line on stderr for each domain that did not power off."""
    status = EXIT_OK
    for dom in domains:
        if dom.crash_report:
            print(dom.crash_report, file=sys.stderr)
        if dom.shutdown_reason != "poweroff":
            why = dom.shutdown_reason or f"still running ({outcome})"
            print(f"pyxenon: domain {dom.name}: {why}", file=sys.stderr)
            status = EXIT_GUEST
    for dom in domains:
        for nr, count in sorted(dom.unsupported.items()):
            which = f"{nr}" if nr < TABLE_SIZE else f"{nr} or above"   # the counts' bound
            print(f"pyxenon: domain {dom.name}: unsupported hypercall {which} called {count}x",
                  file=sys.stderr)
    return status
