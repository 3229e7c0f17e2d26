"""The daemon's vcpu operations: `xl vcpu-list`, `vcpu-set` and
`vcpu-pin`.  A mixin of toolstack/daemon.py's Daemon, as daemon_consoles.
ConsoleOps is: it uses the daemon's guest(), op_list() and host.

One engine thread runs every vcpu (the host has one CPU, cpu 0): pinning
records a vcpu's hard and soft affinity and shows it, but cannot change
where it runs; a cpu list naming any other cpu is refused, as libxl
refuses a cpu the host does not have."""
from .daemon_requests import RequestError

HOST_CPUS = 1


def parse_cpus(text):
    """xl's cpu list for affinity: "all", or cpus and ranges (0, 0-0, ...);
    the set, or RequestError naming the cpu the host does not have."""
    if text == "all":
        return "all"
    cpus = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise RequestError(f"vcpu-pin: invalid cpu list {text[:40]!r}")
        first, last = int(low), int(high or low)
        if last >= HOST_CPUS or first > last:
            raise RequestError(f"vcpu-pin: cpu {last} is not a host cpu (the host has "
                               f"{HOST_CPUS}: cpu 0; one engine thread runs every vcpu)")
        cpus.update(range(first, last + 1))
    return ",".join(map(str, sorted(cpus)))


class VcpuOps:
    def op_vcpu_list(self, client, domain=None):
        rows = self.op_list(client, domain)["domains"]
        vcpus = [v for row in rows for v in row["vcpu_info"]]
        for v in vcpus:
            hard, soft = self.affinity.get((v["domid"], v["vcpu"]), ("all", "all"))
            v.update(hard=hard, soft=soft)
        return {"ok": True, "vcpus": vcpus}

    def op_vcpu_set(self, client, domain, count):
        """libxl_set_vcpuonline for a PV domain: cpu/N/availability, which the
        guest's own watch acts on (Linux's cpu_hotplug brings cpus up/down)."""
        target = self.guest(domain, "vcpu-set")
        most = len(target.vcpus)
        if not 1 <= count <= most:
            raise RequestError(f"vcpu-set: requested {count} VCPUs, however maxcpus is {most}!")
        for vcpu in target.vcpus:
            self.host.xenstore.write(f"/local/domain/{target.domid}/cpu/{vcpu.vcpu_id}/availability",
                                     "online" if vcpu.vcpu_id < count else "offline")
        self.busy = True
        return {"ok": True}

    def op_vcpu_pin(self, client, domain, vcpu, hard, soft="all"):
        """libxl_set_vcpuaffinity: "all" for every vcpu of the domain, or one."""
        target = self.guest(domain, "vcpu-pin")
        ids = range(len(target.vcpus)) if vcpu == "all" else None
        if ids is None:
            if not vcpu.isdigit() or int(vcpu) >= len(target.vcpus):
                raise RequestError(f"vcpu-pin: {target.name} has no vcpu {vcpu[:20]}")
            ids = [int(vcpu)]
        pinned = (parse_cpus(hard), "all" if soft in ("", "-") else parse_cpus(soft))
        for i in ids:
            self.affinity[(target.domid, i)] = pinned
        return {"ok": True}
