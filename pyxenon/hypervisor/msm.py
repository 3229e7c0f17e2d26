"""The separation policy module: Xenon's MSM, in place of Xen's XSM/FLASK.

pyxenon's one reference monitor.  A hypercall handler that lets one domain
reach another -- bind or send over an interdomain event channel, map or copy
a granted frame, touch another domain's XenStore nodes, attach a disk -- calls
``Msm.check`` first and goes on only if it returns.  Default deny.

The policy comes compiled by the toolstack (``pyxenon.toolstack.policy``);
nothing here reads a file.  The monitor looks at one field of it,
``policy.rule_of``: {(subject_label, object_label, path, access): rule id},
where access is "r" (data flows object -> subject) or "w" (subject ->
object).  The access a caller asks for:

    event_channel  "w"   a signal from subject to object (bind, send)
    grant_map      "r"   a GNTMAP_readonly mapping of the object's frame;
                   "rw"  a writable one
    grant_copy     "r"   copy out of the object's frame; "w" copy into it
    xenstore       "r"   read the object's nodes; "w" write them
    block          "r"   attach a read-only disk (the object: its storage
                   "rw"  label); a writable one (toolstack/devices.py)
    network        "w"   frames from subject to object

Every access asked for must be granted ("rw" needs both), as FLASK's
avc_has_perm needs every requested permission bit.  A domain reaches its own
resources without a rule, and that is not audited (the log is about paths
between domains).  Every other decision goes to ``audit(record)`` before the
operation proceeds; if auditing fails, the exception propagates and the
operation does not happen.
"""
import datetime

from pyxenon.public import errno

from .errors import HypercallError

_NEEDS = {"r": ("r",), "w": ("w",), "rw": ("r", "w")}


class Msm:
    """Decides inter-domain operations by ``policy`` (None: refuse them all)."""

    def __init__(self, policy, audit):
        self.policy = policy
        self.audit = audit

    def check(self, subject, obj, path, access="rw", op=""):
        """Return None if ``subject`` may use ``path`` toward ``obj``.

        ``subject`` and ``obj`` are domains (``.name``, ``.domid``,
        ``.label``); ``op`` names the operation for the audit record, e.g.
        "bind_interdomain".  Refusal raises HypercallError(EACCES).
        """
        if subject.domid == obj.domid:
            return None
        decision, rule = self._decide(subject.label, obj.label, path, access)
        self.audit({
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "subject": _who(subject),
            "object": _who(obj),
            "operation": f"{path}:{op}" if op else path,
            "access": access,
            "decision": decision,
            "rule": rule,
        })
        if decision != "allow":
            # Xen's FLASK refuses a check with -EACCES (avc_has_perm); so does the MSM.
            raise HypercallError(errno.EACCES)
        return None

    def _decide(self, subject_label, object_label, path, access):
        """("allow", the granting rule ids) or ("deny", why)."""
        if self.policy is None:
            return "deny", "no policy"
        rules = [self.policy.rule_of.get((subject_label, object_label, path, one))
                 for one in _NEEDS.get(access, ())]
        if not rules or None in rules:
            return "deny", "default deny"
        return "allow", " ".join(sorted(set(rules)))


def _who(domain):
    return {"name": domain.name, "domid": domain.domid, "label": domain.label}
