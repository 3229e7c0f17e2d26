"""xl's vcpu commands: vcpu-list, vcpu-set, vcpu-pin (answered by
toolstack/daemon_vcpus.py).  One engine thread runs every vcpu, so the
host has one cpu, 0: `CPU` is 0 for a vcpu that is up, and pinning only
records an affinity (daemon_vcpus.py says why)."""
from .protocol import request

EXIT_OK = 0


def cmd_vcpu_list(args):
    """xl's print_vcpuinfo: name, ids, cpu ('-' when down), state, seconds, affinity."""
    vcpus = request("vcpu_list", domain=args.domain)["vcpus"]
    print(f"{'Name':<32} {'ID':>5} {'VCPU':>5} {'CPU':>5} {'State':>5} {'Time(s)':>9} "
          "Affinity (Hard / Soft)")
    for v in vcpus:
        cpu = "0" if v.get("online", True) else "-"
        print(f"{v['name']:<32} {v['domid']:5d} {v['vcpu']:5d} {cpu:>5} {v['state']:>5} "
              f"{v['cpu_time']:9.1f}  {v.get('hard', 'all')} / {v.get('soft', 'all')}")
    return EXIT_OK


def cmd_vcpu_set(args):
    request("vcpu_set", domain=args.domain, count=args.count)
    return EXIT_OK


def cmd_vcpu_pin(args):
    request("vcpu_pin", domain=args.domain, vcpu=args.vcpu, hard=args.hard, soft=args.soft)
    return EXIT_OK


def add_vcpu_commands(sub, positive):
    p = sub.add_parser("vcpu-set", help="set how many vcpus a domain has online")
    p.add_argument("domain")
    p.add_argument("count", type=positive)
    p.set_defaults(func=cmd_vcpu_set)
    p = sub.add_parser("vcpu-pin", help="set a vcpu's affinity (one host cpu: recorded only)")
    p.add_argument("domain")
    p.add_argument("vcpu", help="a vcpu id, or all")
    p.add_argument("hard", help="cpus: all, or a list of cpus and ranges")
    p.add_argument("soft", nargs="?", default="all", help="cpus (default: all)")
    p.set_defaults(func=cmd_vcpu_pin)
