"""The XenStore service: the store and Xen's permission rules, watches,
transactions, the wire protocol, and the ring transport under hostile guests."""
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyxenon.public import io
from pyxenon.backends.xenstore import Limits, XenStore, XenStoreError
from pyxenon.backends.xenstore_ring import HEADER

IFACE = io.xenstore_domain_interface
SIZE = io.XENSTORE_RING_SIZE
REQ, RSP = IFACE.req.offset, IFACE.rsp.offset
U32 = struct.Struct("<I")
MASK32 = 0xFFFFFFFF


class Guest:
    """A domain's side of the ring: writes requests, reads replies and events."""

    def __init__(self, xs, domid, start=0, connect=True):
        self.xs, self.domid = xs, domid
        self.buf = bytearray(4096)
        self.page = memoryview(self.buf)
        for field in ("req_cons", "req_prod", "rsp_cons", "rsp_prod"):
            self.set(field, start)
        self.notified = 0
        self.next_req = 1
        self.inbox = bytearray()
        self.events = []      # (path, token) of WATCH_EVENTs received
        self.replies = {}     # req_id -> (type, payload)
        if connect:
            xs.connect(domid, self.page, self.notify)

    def notify(self):
        self.notified += 1

    def get(self, field):
        return U32.unpack_from(self.buf, getattr(IFACE, field).offset)[0]

    def set(self, field, value):
        U32.pack_into(self.buf, getattr(IFACE, field).offset, value & MASK32)

    # -- requests -------------------------------------------------------------

    def room(self):
        return SIZE - ((self.get("req_prod") - self.get("req_cons")) & MASK32)

    def put(self, data):
        """Write bytes into req[] (as much as fits); returns how many."""
        prod = self.get("req_prod")
        count = min(len(data), self.room())
        for i in range(count):
            self.buf[REQ + (prod + i) % SIZE] = data[i]
        self.set("req_prod", prod + count)
        return count

    def message(self, kind, payload, tx_id=0, req_id=None):
        if req_id is None:
            req_id, self.next_req = self.next_req, self.next_req + 1
        return req_id, HEADER.pack(kind, req_id, tx_id, len(payload)) + payload

    def send(self, data):
        """Feed data through the ring, signalling after every chunk."""
        while data:
            sent = self.put(data)
            data = data[sent:]
            self.xs.on_event(self.domid)
            self.receive()

    def request(self, kind, payload, tx_id=0):
        """Send one request; its reply as (type, payload)."""
        req_id, data = self.message(kind, payload, tx_id)
        self.send(data)
        for _ in range(100):
            if req_id in self.replies:
                return self.replies.pop(req_id)
            self.xs.on_event(self.domid)
            self.receive()
        raise AssertionError(f"no reply to request {req_id}")

    def ok(self, kind, *strings, tx_id=0):
        kind_back, body = self.request(kind, b"".join(s + b"\0" for s in strings), tx_id)
        assert kind_back == kind, body
        return body

    def error(self, kind, payload, tx_id=0):
        kind_back, body = self.request(kind, payload, tx_id)
        assert kind_back == io.XS_ERROR, body
        return body.rstrip(b"\0").decode()

    # -- replies --------------------------------------------------------------

    def take(self, limit=None):
        """Consume bytes from rsp[] (all, or up to limit)."""
        cons, prod = self.get("rsp_cons"), self.get("rsp_prod")
        count = min((prod - cons) & MASK32, SIZE if limit is None else limit)
        data = bytes(self.buf[RSP + (cons + i) % SIZE] for i in range(count))
        self.set("rsp_cons", cons + count)
        return data

    def receive(self):
        self.inbox += self.take()
        while len(self.inbox) >= HEADER.size:
            kind, req_id, _tx, length = HEADER.unpack_from(self.inbox)
            if len(self.inbox) < HEADER.size + length:
                break
            body = bytes(self.inbox[HEADER.size:HEADER.size + length])
            del self.inbox[:HEADER.size + length]
            if kind == io.XS_WATCH_EVENT:
                path, token, _ = body.split(b"\0")
                self.events.append((path.decode(), token.decode()))
            else:
                self.replies[req_id] = (kind, body)

    def drain_events(self):
        self.xs.on_event(self.domid)
        self.receive()
        events, self.events = self.events, []
        return events

    # -- short forms ----------------------------------------------------------

    def read(self, path, tx_id=0):
        return self.ok(io.XS_READ, path.encode(), tx_id=tx_id)

    def write(self, path, value, tx_id=0):
        assert self.request(io.XS_WRITE, path.encode() + b"\0" + value, tx_id) == \
            (io.XS_WRITE, b"OK\0")

    def watch(self, path, token):
        assert self.ok(io.XS_WATCH, path.encode(), token.encode()) == b"OK\0"

    def start(self):
        return int(self.ok(io.XS_TRANSACTION_START, b"").rstrip(b"\0"))

    def end(self, tx_id, commit=b"T"):
        kind, body = self.request(io.XS_TRANSACTION_END, commit + b"\0", tx_id)
        return body.rstrip(b"\0").decode()


@pytest.fixture
def xs():
    return XenStore()


@pytest.fixture
def g1(xs):
    return Guest(xs, 1)


@pytest.fixture
def g2(xs):
    return Guest(xs, 2)


def fails(name, call, *args):
    with pytest.raises(XenStoreError) as info:
        call(*args)
    assert info.value.name == name
    return info.value


# =============================================================================
# The store, through the host API (dom0)
# =============================================================================

def test_write_read_and_parents_created_empty(xs):
    xs.write("/a/b/c", b"value")
    assert xs.read("/a/b/c") == b"value"
    assert xs.read("/a/b") == b"" and xs.read("/a") == b""
    assert xs.ls("/a") == ["b"]
    xs.write("/a/b/c", "text")          # str values are encoded
    assert xs.read("/a/b/c") == b"text"
    with pytest.raises(TypeError):
        xs.write("/a/b/c", 5)


def test_children_keep_creation_order(xs):
    for name in ("zeta", "alpha", "mid"):
        xs.write(f"/d/{name}", b"")
    assert xs.ls("/d") == ["zeta", "alpha", "mid"]


def test_mkdir_keeps_an_existing_value(xs):
    xs.write("/m", b"keep")
    xs.mkdir("/m")
    xs.mkdir("/m/new/deep")
    assert xs.read("/m") == b"keep" and xs.ls("/m/new") == ["deep"]


def test_rm_is_recursive(xs):
    xs.write("/r/x/y", b"1")
    xs.write("/r/z", b"2")
    xs.rm("/r/x")
    assert xs.ls("/r") == ["z"]
    fails("ENOENT", xs.read, "/r/x/y")
    fails("ENOENT", xs.read, "/r/x")


def test_rm_of_a_missing_node_needs_its_parent(xs):
    xs.mkdir("/p")
    xs.rm("/p/absent")                  # fine: the parent exists
    fails("ENOENT", xs.rm, "/p/absent/deeper")
    fails("EINVAL", xs.rm, "/")


def test_read_missing_is_enoent_with_a_one_line_message(xs):
    error = fails("ENOENT", xs.read, "/nowhere")
    assert str(error) == "/nowhere: ENOENT" and "\n" not in str(error)
    assert error.errno == 2


def test_initial_tree(xs):
    assert xs.ls("/") == ["local"] and xs.ls("/local") == ["domain"]
    assert xs.get_perms("/local/domain") == [(0, "n")]


@pytest.mark.parametrize("bad", ["", "/a//b", "/a/", "/a b", "/a\0b", "/é", "a/../b!",
                                 "/" + "x" * io.XENSTORE_ABS_PATH_MAX, "@introduceDomain"])
def test_invalid_paths(xs, bad):
    fails("EINVAL", xs.write, bad, b"")


def test_valid_path_characters(xs):
    path = "/Az09-_@/x"
    xs.write(path, b"ok")
    assert xs.read(path) == b"ok"
    xs.write("/" + "x" * (io.XENSTORE_ABS_PATH_MAX - 1), b"")   # exactly the limit


def test_host_relative_paths_are_under_dom0s_home(xs):
    xs.write("name", b"Domain-0")
    assert xs.read("/local/domain/0/name") == b"Domain-0"


def test_value_size_limit(xs):
    xs.write("/big", b"x" * io.XENSTORE_PAYLOAD_MAX)
    fails("E2BIG", xs.write, "/big", b"x" * (io.XENSTORE_PAYLOAD_MAX + 1))


def test_set_and_get_perms(xs):
    xs.write("/n", b"")
    xs.set_perms("/n", [(1, "r"), (2, "b")])
    assert xs.get_perms("/n") == [(1, "r"), (2, "b")]
    fails("EINVAL", xs.set_perms, "/n", [(1, "x")])
    fails("EINVAL", xs.set_perms, "/n", [])
    fails("EINVAL", xs.set_perms, "/n", [(70000, "r")])


# =============================================================================
# Domains: introduce, release, connect
# =============================================================================

def test_introduce_creates_a_home_owned_by_the_domain(xs):
    seen = []
    xs.watch("@introduceDomain", seen.append)
    xs.introduce(5)
    assert xs.get_perms("/local/domain/5") == [(5, "n")]
    assert seen == ["@introduceDomain", "@introduceDomain"]    # at WATCH, then introduce
    xs.introduce(5)                                            # idempotent
    assert len(seen) == 2 and xs.is_introduced(5)


def test_release_removes_the_domains_nodes_and_fires(xs, g1):
    g1.write("data", b"x")
    xs.write("/shared/for1", b"")
    xs.set_perms("/shared/for1", [(1, "b")])        # owned by domain 1, outside its home
    xs.write("/shared/visible", b"")
    xs.set_perms("/shared/visible", [(0, "n"), (1, "r")])
    seen = []
    xs.watch("@releaseDomain", seen.append)
    xs.release(1)
    assert seen == ["@releaseDomain", "@releaseDomain"]
    fails("ENOENT", xs.read, "/local/domain/1")
    assert xs.ls("/shared") == ["visible"]
    assert xs.get_perms("/shared/visible") == [(0, "n")]     # stale entry dropped
    assert not xs.is_introduced(1) and 1 not in xs.connections
    assert xs.tree.owned == {}


def test_release_of_a_domain_owning_the_root(xs):
    xs.introduce(6)
    xs.set_perms("/", [(6, "r"), (6, "b")])
    xs.release(6)
    assert xs.get_perms("/") == [(0, "r")] and xs.ls("/") == ["local"]
    assert xs.tree.owned == {}


def test_release_of_an_unknown_domain_does_nothing(xs):
    seen = []
    xs.watch("@releaseDomain", seen.append)
    xs.release(9)
    assert seen == ["@releaseDomain"]


def test_connect_checks_its_arguments(xs):
    with pytest.raises(ValueError):
        xs.connect(0, memoryview(bytearray(4096)), lambda: None)     # dom0 is the host
    with pytest.raises(ValueError):
        xs.connect(1, memoryview(bytes(4096)), lambda: None)         # read-only page
    with pytest.raises(ValueError):
        xs.connect(1, memoryview(bytearray(100)), lambda: None)      # too small


def test_connect_advertises_features(g1):
    assert g1.get("server_features") == (io.XENSTORE_SERVER_FEATURE_RECONNECTION
                                         | io.XENSTORE_SERVER_FEATURE_ERROR)


def test_disconnect_drops_watches_and_transactions(xs, g1):
    g1.watch("/local/domain/1", "t")
    g1.start()
    conn = xs.connections[1]
    xs.disconnect(1)
    assert conn.watches == [] and conn.transactions == {}
    xs.write("/local/domain/1/x", b"")          # no ring to write to: nothing breaks
    xs.on_event(1)                              # unknown connection: ignored


def test_get_domain_path(g1):
    assert g1.ok(io.XS_GET_DOMAIN_PATH, b"7") == b"/local/domain/7\0"
    assert g1.ok(io.XS_GET_DOMAIN_PATH, b"007") == b"/local/domain/7\0"
    assert g1.error(io.XS_GET_DOMAIN_PATH, b"x\0") == "EINVAL"
    assert g1.error(io.XS_GET_DOMAIN_PATH, b"70000\0") == "EINVAL"


# =============================================================================
# Permissions (Xen's rules), seen by guests
# =============================================================================

def test_guest_owns_its_home_and_relative_paths_resolve_there(xs, g1):
    g1.write("device/vif", b"1")
    assert xs.read("/local/domain/1/device/vif") == b"1"
    assert g1.read("device/vif") == b"1"
    assert g1.read("/local/domain/1/device/vif") == b"1"
    assert xs.get_perms("/local/domain/1/device/vif") == [(1, "n")]


def test_default_permission_applies_to_unlisted_domains(xs, g1, g2):
    xs.write("/pub", b"hello")
    xs.set_perms("/pub", [(0, "r")])
    assert g1.read("/pub") == b"hello"
    assert g1.error(io.XS_WRITE, b"/pub\0x") == "EACCES"
    xs.set_perms("/pub", [(0, "n")])
    assert g2.error(io.XS_READ, b"/pub\0") == "EACCES"


def test_per_domain_entries_override_the_default(xs, g1, g2):
    xs.write("/sel", b"v")
    xs.set_perms("/sel", [(0, "n"), (2, "b"), (2, "n")])     # first match wins
    assert g1.error(io.XS_READ, b"/sel\0") == "EACCES"
    assert g2.read("/sel") == b"v"
    g2.write("/sel", b"w")
    assert xs.read("/sel") == b"w"


def test_write_only_permission(xs, g1):
    xs.write("/drop", b"")
    xs.set_perms("/drop", [(0, "n"), (1, "w")])
    g1.write("/drop", b"in")
    assert g1.error(io.XS_READ, b"/drop\0") == "EACCES"


def test_owner_is_always_allowed(xs, g1):
    xs.write("/own", b"v")
    xs.set_perms("/own", [(1, "n"), (1, "n")])
    assert g1.read("/own") == b"v"
    g1.write("/own", b"mine")
    assert g1.ok(io.XS_GET_PERMS, b"/own") == b"n1\0n1\0"


def test_dom0_is_always_allowed(xs, g1):
    g1.write("secret", b"s")
    g1.ok(io.XS_SET_PERMS, b"secret", b"n1")
    assert xs.read("/local/domain/1/secret") == b"s"
    xs.write("/local/domain/1/secret", b"t")
    xs.rm("/local/domain/1/secret")


def test_other_domains_cannot_see_a_home(g1, g2):
    assert g2.error(io.XS_READ, b"/local/domain/1\0") == "EACCES"
    assert g2.error(io.XS_DIRECTORY, b"/local/domain\0") == "EACCES"
    assert g2.error(io.XS_WRITE, b"/local/domain/1/x\0v") == "EACCES"


def test_absence_is_only_told_to_those_who_may_read_the_parent(xs, g1, g2):
    assert g1.error(io.XS_READ, b"missing\0") == "ENOENT"
    assert g2.error(io.XS_READ, b"/local/domain/1/missing\0") == "EACCES"
    assert g2.error(io.XS_READ, b"/local/domain/99/x\0") == "EACCES"


def test_inheritance_creator_becomes_owner(xs, g1, g2):
    xs.write("/area", b"")
    xs.set_perms("/area", [(0, "r"), (2, "b")])
    g2.write("/area/made/by2", b"")
    # Inherited from /area, but owned by the unprivileged creator.
    assert xs.get_perms("/area/made") == [(2, "r"), (2, "b")]
    assert xs.get_perms("/area/made/by2") == [(2, "r"), (2, "b")]
    xs.write("/area/by0", b"")
    assert xs.get_perms("/area/by0") == [(0, "r"), (2, "b")]   # dom0 keeps the parent's owner
    assert g1.error(io.XS_WRITE, b"/area/by1\0") == "EACCES"


def test_set_perms_needs_ownership(xs, g1, g2):
    g1.write("shared", b"")
    g1.ok(io.XS_SET_PERMS, b"shared", b"n1", b"b2")
    assert xs.get_perms("/local/domain/1/shared") == [(1, "n"), (2, "b")]
    # Domain 2 may write the node but not change its permissions.
    assert g2.error(io.XS_SET_PERMS, b"/local/domain/1/shared\0b2\0") == "EACCES"
    # The owner may not give it away; dom0 may.
    assert g1.error(io.XS_SET_PERMS, b"shared\0n2\0") == "EPERM"
    xs.set_perms("/local/domain/1/shared", [(2, "n")])
    assert g2.ok(io.XS_GET_PERMS, b"/local/domain/1/shared") == b"n2\0"


def test_set_perms_malformed(g1):
    g1.write("p", b"")
    assert g1.error(io.XS_SET_PERMS, b"p\0") == "EINVAL"
    assert g1.error(io.XS_SET_PERMS, b"p\0x1\0") == "EINVAL"
    assert g1.error(io.XS_SET_PERMS, b"p\0r\0") == "EINVAL"
    assert g1.error(io.XS_SET_PERMS, b"p\0r99999\0") == "EINVAL"
    too_many = b"p\0" + b"".join(b"r%d\0" % i for i in [1] * 6)
    assert g1.error(io.XS_SET_PERMS, too_many) == "ENOSPC"


def test_guest_cannot_remove_root_or_unwritable_nodes(xs, g1):
    assert g1.error(io.XS_RM, b"/\0") == "EACCES"
    xs.write("/ro", b"")
    xs.set_perms("/ro", [(0, "r")])
    assert g1.error(io.XS_RM, b"/ro\0") == "EACCES"
    assert g1.error(io.XS_MKDIR, b"/ro\0") == "EACCES"


# =============================================================================
# Quotas
# =============================================================================

def test_node_quota(xs):
    xs.limits = Limits(nodes=5)
    g = Guest(xs, 1)                         # its home is node 1
    g.write("a/b", b"")                      # 3
    g.write("c", b"")                        # 4
    assert g.error(io.XS_WRITE, b"d/e\0") == "EQUOTA"   # would make 6: nothing created
    assert g.error(io.XS_READ, b"d\0") == "ENOENT"
    g.write("d", b"")                        # 5
    assert g.error(io.XS_MKDIR, b"f\0") == "EQUOTA"
    g.ok(io.XS_RM, b"a")
    g.write("f", b"")
    xs.write("/local/domain/1/dom0-made", b"")          # dom0 is exempt, and owns it


def test_value_quota_on_the_wire(xs):
    xs.limits = Limits(value=10)
    g = Guest(xs, 1)
    g.write("v", b"x" * 10)
    assert g.error(io.XS_WRITE, b"v\0" + b"x" * 11) == "E2BIG"


def test_watch_and_transaction_quotas(xs):
    xs.limits = Limits(watches=2, transactions=1)
    g = Guest(xs, 1)
    g.watch("a", "1")
    g.watch("a", "2")
    assert g.error(io.XS_WATCH, b"a\0003\0") == "E2BIG"
    g.start()
    assert g.error(io.XS_TRANSACTION_START, b"\0") == "ENOSPC"


# =============================================================================
# Watches
# =============================================================================

def test_watch_fires_at_once_after_the_reply(xs, g1):
    req_id, data = g1.message(io.XS_WATCH, b"/local/domain/1/x\0tok\0")
    g1.send(data)
    assert g1.replies.pop(req_id) == (io.XS_WATCH, b"OK\0")
    assert g1.events == [("/local/domain/1/x", "tok")]


def test_watch_reply_comes_before_its_first_event(xs):
    g = Guest(xs, 1)
    _, data = g.message(io.XS_WATCH, b"here\0t\0")
    g.put(data)
    xs.on_event(1)
    raw = g.take()
    kind_one = HEADER.unpack_from(raw)[0]
    length_one = HEADER.unpack_from(raw)[3]
    kind_two = HEADER.unpack_from(raw, HEADER.size + length_one)[0]
    assert (kind_one, kind_two) == (io.XS_WATCH, io.XS_WATCH_EVENT)
    assert raw.endswith(b"here\0t\0")                   # relative, as given


def test_watch_fires_on_the_node_and_its_descendants(xs, g1):
    g1.watch("/local/domain/1/dev", "d")
    g1.events.clear()
    xs.write("/local/domain/1/dev", b"")
    xs.write("/local/domain/1/dev/vif/0", b"")
    xs.write("/local/domain/1/devices", b"")       # a sibling sharing a prefix: no
    xs.write("/local/domain/1", b"")               # an ancestor: no
    assert g1.drain_events() == [("/local/domain/1/dev", "d"),
                                 ("/local/domain/1/dev/vif/0", "d")]


def test_relative_watches_report_relative_paths(xs, g1):
    g1.watch("dev", "r")
    g1.events.clear()
    xs.write("/local/domain/1/dev/x", b"")
    assert g1.drain_events() == [("dev/x", "r")]


def test_host_writes_wake_the_guest(xs, g1):
    g1.watch("control", "c")
    g1.receive()
    g1.events.clear()
    before = g1.notified
    xs.write("/local/domain/1/control/shutdown", b"poweroff")
    assert g1.notified == before + 1               # pushed and signalled at once
    g1.receive()
    assert g1.events == [("control/shutdown", "c")]


def test_no_event_for_nodes_the_watcher_cannot_read(xs, g1, g2):
    xs.write("/w", b"")
    xs.set_perms("/w", [(0, "r")])
    g2.watch("/w", "t")
    g2.events.clear()
    xs.write("/w/hidden", b"")
    xs.set_perms("/w/hidden", [(0, "n")])          # fires: g2 could read it before
    xs.write("/w/hidden", b"again")                # unreadable now: no event
    xs.write("/w/open", b"")
    assert g2.drain_events() == [("/w/hidden", "t"), ("/w/hidden", "t"), ("/w/open", "t")]


def test_events_for_removed_nodes_use_their_old_permissions(xs, g1, g2):
    g1.write("fe", b"")
    g1.ok(io.XS_SET_PERMS, b"fe", b"n1", b"r2")
    g1.write("fe/state", b"1")
    g2.watch("/local/domain/1/fe/state", "s")
    g2.watch("/local/domain/1/fe/never", "n")    # beneath the removed node, never existed
    g2.events.clear()
    g1.ok(io.XS_RM, b"fe")
    assert sorted(g2.drain_events()) == [("/local/domain/1/fe/never", "n"),
                                         ("/local/domain/1/fe/state", "s")]


def test_rm_fires_once_for_ancestor_watches(xs):
    seen = []
    xs.write("/t/a/b/c", b"")
    xs.watch("/t", seen.append)
    seen.clear()
    xs.rm("/t/a")
    assert seen == ["/t/a"]


def test_unwatch(xs, g1):
    g1.watch("x", "t")
    assert g1.ok(io.XS_UNWATCH, b"x", b"t") == b"OK\0"
    assert g1.error(io.XS_UNWATCH, b"x\0t\0") == "ENOENT"
    g1.events.clear()
    xs.write("/local/domain/1/x", b"")
    assert g1.drain_events() == []


def test_duplicate_watch_and_malformed_watch(g1):
    g1.watch("x", "t")
    assert g1.error(io.XS_WATCH, b"x\0t\0") == "EEXIST"
    assert g1.error(io.XS_WATCH, b"/local/domain/1/x\0t\0") == "EEXIST"
    assert g1.error(io.XS_WATCH, b"x\0") == "EINVAL"
    assert g1.error(io.XS_WATCH, b"bad path\0t\0") == "EINVAL"
    g1.watch("x", "other")                          # another token is another watch


def test_reset_watches(xs, g1):
    g1.watch("x", "t")
    tx = g1.start()
    assert g1.ok(io.XS_RESET_WATCHES, b"") == b"OK\0"
    assert g1.error(io.XS_READ, b"x\0", tx_id=tx) == "ENOENT"      # the tx is gone
    g1.events.clear()
    xs.write("/local/domain/1/x", b"")
    assert g1.drain_events() == []


def test_special_watches_need_permission(xs, g1):
    g1.watch("@releaseDomain", "rel")
    assert g1.events == [("@releaseDomain", "rel")]     # the first event is unconditional
    g1.events.clear()
    Guest(xs, 3)
    xs.release(3)
    assert g1.drain_events() == []
    xs.set_perms("@releaseDomain", [(0, "n"), (1, "r")])
    assert xs.get_perms("@releaseDomain") == [(0, "n"), (1, "r")]
    assert g1.ok(io.XS_GET_PERMS, b"@releaseDomain") == b"n0\0r1\0"
    assert g1.error(io.XS_SET_PERMS, b"@releaseDomain\0b1\0") == "EACCES"
    assert g1.error(io.XS_GET_PERMS, b"@other\0") == "EINVAL"
    Guest(xs, 4)
    xs.release(4)
    assert g1.drain_events() == [("@releaseDomain", "rel")]


def test_a_watch_on_root_sees_every_node_but_no_special_event(xs):
    seen = []
    xs.watch("/", seen.append)
    xs.write("/x/y", b"")
    xs.introduce(3)
    assert seen == ["/", "/x/y", "/local/domain/3", "/local/domain/3"]


def test_host_watch_handles(xs):
    seen = []
    handle = xs.watch("/h", seen.append)
    xs.write("/h/x", b"")
    xs.unwatch(handle)
    xs.write("/h/y", b"")
    assert seen == ["/h", "/h/x"]
    fails("ENOENT", xs.unwatch, handle)
    fails("EINVAL", xs.watch, "/bad path", seen.append)


def test_host_callbacks_may_change_the_store(xs):
    seen = []

    def echo(path):
        seen.append(path)
        if path == "/ping":
            xs.write("/pong", b"")

    xs.watch("/ping", echo)
    xs.watch("/pong", seen.append)
    xs.write("/ping", b"")
    assert seen == ["/ping", "/pong", "/ping", "/pong"]


# =============================================================================
# Transactions
# =============================================================================

def test_transaction_commit(xs, g1):
    tx = g1.start()
    g1.write("a", b"1", tx_id=tx)
    assert g1.read("a", tx_id=tx) == b"1"
    assert g1.error(io.XS_READ, b"a\0") == "ENOENT"          # not visible outside yet
    assert g1.end(tx) == "OK"
    assert xs.read("/local/domain/1/a") == b"1"
    assert g1.error(io.XS_READ, b"a\0", tx_id=tx) == "ENOENT"  # the id is gone


def test_transaction_conflict_applies_nothing(xs, g1):
    g1.write("a", b"0")
    tx = g1.start()
    assert g1.read("a", tx_id=tx) == b"0"
    g1.write("b", b"tx", tx_id=tx)
    xs.write("/local/domain/1/a", b"changed")
    assert g1.end(tx) == "EAGAIN"
    assert g1.error(io.XS_READ, b"b\0") == "ENOENT"


def test_transaction_unrelated_changes_do_not_conflict(xs, g1):
    g1.write("a", b"0")
    g1.write("elsewhere", b"0")
    tx = g1.start()
    g1.read("a", tx_id=tx)
    g1.write("a", b"1", tx_id=tx)
    xs.write("/local/domain/1/elsewhere", b"changed")
    assert g1.end(tx) == "OK"
    assert xs.read("/local/domain/1/a") == b"1"


def test_read_only_transaction(xs, g1):
    g1.write("a", b"0")
    tx = g1.start()
    assert g1.read("a", tx_id=tx) == b"0"
    assert g1.end(tx) == "OK"
    tx = g1.start()
    assert g1.read("a", tx_id=tx) == b"0"
    xs.rm("/local/domain/1/a")
    assert g1.end(tx) == "EAGAIN"                 # what it read changed


def test_transaction_abort(xs, g1):
    tx = g1.start()
    g1.write("a", b"1", tx_id=tx)
    assert g1.end(tx, b"F") == "OK"
    assert g1.error(io.XS_READ, b"a\0") == "ENOENT"


def test_transaction_events_fire_at_commit(xs, g1):
    seen = []
    xs.watch("/local/domain/1", seen.append)
    tx = g1.start()
    g1.write("a", b"1", tx_id=tx)
    g1.ok(io.XS_RM, b"a", tx_id=tx)
    g1.write("b", b"2", tx_id=tx)
    assert seen == ["/local/domain/1"]
    g1.end(tx)
    assert seen == ["/local/domain/1", "/local/domain/1/a", "/local/domain/1/a",
                    "/local/domain/1/b"]


def test_transaction_errors(g1):
    assert g1.error(io.XS_READ, b"a\0", tx_id=42) == "ENOENT"
    assert g1.error(io.XS_TRANSACTION_END, b"T\0") == "ENOENT"
    tx = g1.start()
    assert g1.error(io.XS_TRANSACTION_START, b"\0", tx_id=tx) == "EBUSY"
    assert g1.error(io.XS_TRANSACTION_END, b"X\0", tx_id=tx) == "EINVAL"
    assert g1.end(tx) == "OK"                      # still open after the bad END
    # WATCH ignores tx_id.
    assert g1.ok(io.XS_WATCH, b"w", b"t", tx_id=999) == b"OK\0"


def test_transaction_ids_are_distinct(xs, g1):
    ids = {g1.start() for _ in range(5)}
    assert len(ids) == 5 and 0 not in ids
    xs.connections[1].next_txid = MASK32         # wraps past 0 and past ids in use
    assert g1.start() == MASK32
    assert g1.start() == 6


# =============================================================================
# The wire protocol
# =============================================================================

def test_reply_formats(xs, g1):
    g1.write("d/x", b"1")
    g1.write("d/y", b"")
    assert g1.ok(io.XS_DIRECTORY, b"d") == b"x\0y\0"
    assert g1.ok(io.XS_DIRECTORY, b"d/x") == b""
    assert g1.ok(io.XS_READ, b"d/x") == b"1"
    assert g1.ok(io.XS_MKDIR, b"d/z") == b"OK\0"
    assert g1.ok(io.XS_GET_PERMS, b"d") == b"n1\0"
    assert g1.ok(io.XS_RM, b"d/z") == b"OK\0"
    assert g1.ok(io.XS_RM, b"d/z") == b"OK\0"


def test_reply_echoes_req_id_and_tx_id(g1):
    tx = g1.start()
    _, data = g1.message(io.XS_READ, b"nope\0", tx_id=tx, req_id=0xDEADBEEF)
    g1.put(data)
    g1.xs.on_event(1)
    raw = g1.take()
    assert HEADER.unpack_from(raw) == (io.XS_ERROR, 0xDEADBEEF, tx, 7)
    assert raw[HEADER.size:] == b"ENOENT\0"


def test_binary_values(g1):
    value = bytes(range(256))
    g1.write("bin", value)
    assert g1.read("bin") == value


def test_directory_part(xs, g1):
    names = [f"child{i:04d}" for i in range(500)]     # 5000 bytes of names
    for name in names:
        xs.write(f"/local/domain/1/big/{name}", b"")
    assert g1.error(io.XS_DIRECTORY, b"big\0") == "E2BIG"
    listing, offset = [], 0
    while True:
        body = g1.ok(io.XS_DIRECTORY_PART, b"big", b"%d" % offset)
        gen, _, rest = body.partition(b"\0")
        assert gen.isdigit() and len(body) <= io.XENSTORE_PAYLOAD_MAX
        if rest.endswith(b"\0\0") or rest == b"\0":
            listing += rest[:-1].split(b"\0")[:-1]
            break
        listing += rest.split(b"\0")[:-1]
        offset += len(rest)
    assert [n.decode() for n in listing] == names
    assert g1.error(io.XS_DIRECTORY_PART, b"big\0") == "EINVAL"
    assert g1.error(io.XS_DIRECTORY_PART, b"big\0-1\0") == "EINVAL"


@pytest.mark.parametrize("kind, payload", [
    (io.XS_READ, b"no-nul"),
    (io.XS_READ, b"two\0nuls\0"),
    (io.XS_READ, b""),
    (io.XS_WRITE, b"no-nul-at-all"),
    (io.XS_MKDIR, b"a\0b"),
    (io.XS_TRANSACTION_END, b"T"),
])
def test_missing_nuls_are_einval(g1, kind, payload):
    assert g1.error(kind, payload) == "EINVAL"


@pytest.mark.parametrize("kind", [io.XS_WATCH_EVENT, io.XS_ERROR, 20, io.XS_TYPE_COUNT,
                                  io.XS_INVALID, 0xFFFFFFFF])
def test_unknown_types_are_enosys(g1, kind):
    # xenstored_core.c process_message: "Client unknown operation" -> ENOSYS
    assert g1.error(kind, b"x\0") == "ENOSYS"


@pytest.mark.parametrize("kind", [io.XS_CONTROL, io.XS_INTRODUCE, io.XS_RELEASE,
                                  io.XS_IS_DOMAIN_INTRODUCED, io.XS_RESUME, io.XS_SET_TARGET])
def test_dom0_only_types_are_eacces(g1, kind):
    assert g1.error(kind, b"1\0") == "EACCES"


def test_guest_paths_are_validated(g1):
    assert g1.error(io.XS_READ, b"/a//b\0") == "EINVAL"
    assert g1.error(io.XS_READ, b"a/\0") == "EINVAL"
    assert g1.error(io.XS_READ, b"\xff\0") == "EINVAL"
    assert g1.error(io.XS_READ, b"@releaseDomain\0") == "EINVAL"
    long_rel = b"x" * (io.XENSTORE_REL_PATH_MAX + 1)
    assert g1.error(io.XS_READ, long_rel + b"\0") == "EINVAL"
    assert g1.error(io.XS_WRITE, b"\0value") == "EINVAL"


# =============================================================================
# The ring transport
# =============================================================================

def test_messages_split_across_events(xs, g1):
    req_id, data = g1.message(io.XS_WRITE, b"split\0value")
    for cut, end in ((0, 5), (5, 16), (16, 20), (20, None)):
        g1.put(data[cut:end])
        xs.on_event(1)
        g1.receive()
        assert (req_id in g1.replies) == (end is None)
    assert g1.replies[req_id] == (io.XS_WRITE, b"OK\0")


def test_several_messages_in_one_event(xs, g1):
    ids = []
    data = b""
    for i in range(5):
        req_id, message = g1.message(io.XS_WRITE, b"m%d\0v" % i)
        ids.append(req_id)
        data += message
    g1.put(data)
    xs.on_event(1)
    g1.receive()
    assert all(g1.replies[i] == (io.XS_WRITE, b"OK\0") for i in ids)


def test_a_message_larger_than_the_ring(xs, g1):
    value = bytes(i % 251 for i in range(4000))
    g1.write("large", value)                  # sent in ring-sized chunks
    assert xs.read("/local/domain/1/large") == value
    assert g1.read("large") == value          # reply larger than rsp[] too


@pytest.mark.parametrize("start", [0xFFFFFFF0, 0xFFFFFC00 + 3, MASK32])
def test_indices_wrap_at_32_bits(xs, start):
    g = Guest(xs, 1, start=start)
    for i in range(20):
        value = b"v" * (100 + i * 37)
        g.write(f"k{i}", value)
        assert g.read(f"k{i}") == value
    assert g.get("req_cons") == g.get("req_prod") and g.get("req_prod") < start


def test_full_rsp_ring_is_never_overwritten(xs, g1):
    xs.write("/local/domain/1/v", b"A" * 3000)
    req_id, data = g1.message(io.XS_READ, b"v\0")
    g1.put(data)
    xs.on_event(1)
    assert (g1.get("rsp_prod") - g1.get("rsp_cons")) & MASK32 == SIZE
    snapshot = bytes(g1.buf[RSP:RSP + SIZE])
    # More requests while the ring is full: not read, nothing overwritten.
    _, more = g1.message(io.XS_READ, b"v\0")
    g1.put(more)
    notified = g1.notified
    xs.on_event(1)
    assert bytes(g1.buf[RSP:RSP + SIZE]) == snapshot
    assert g1.notified == notified                  # nothing moved, no signal
    assert g1.get("req_cons") != g1.get("req_prod")
    # The guest consumes a little at a time: the rest follows, in order.
    got = b""
    while len(got) < 2 * (HEADER.size + 3000):
        got += g1.take(limit=700)
        xs.on_event(1)
    assert HEADER.unpack_from(got)[:2] == (io.XS_READ, req_id)
    assert got[HEADER.size:HEADER.size + 3000] == b"A" * 3000
    assert got.endswith(b"A" * 3000)


def test_no_notify_when_nothing_happens(xs, g1):
    before = g1.notified
    xs.on_event(1)
    assert g1.notified == before


def test_notify_after_consuming_requests(xs, g1):
    before = g1.notified
    g1.put(HEADER.pack(io.XS_READ, 1, 0, 10)[:8])      # half a header: no reply yet
    xs.on_event(1)
    assert g1.notified == before + 1 and g1.get("req_cons") == g1.get("req_prod")


@pytest.mark.parametrize("field, base, offset", [
    ("req_prod", "req_cons", SIZE + 1),      # more than a ring of requests
    ("req_prod", "req_cons", -1),            # producer behind the consumer
    ("rsp_cons", "rsp_prod", 1),             # consumed replies never written
    ("rsp_cons", "rsp_prod", -SIZE - 1),     # more than a ring of replies outstanding
])
def test_nonsense_indices_fail_the_connection(xs, g1, field, base, offset):
    g1.watch("w", "t")
    g1.set(field, g1.get(base) + offset)
    before = g1.notified
    xs.on_event(1)
    assert g1.get("error") == io.XENSTORE_ERROR_RINGIDX
    assert g1.notified == before + 1
    assert xs.connections[1].watches == []
    # Ignored from now on, whatever the guest does.
    prod = g1.get("rsp_prod")
    g1.set("req_prod", g1.get("req_cons") + 16)
    xs.on_event(1)
    xs.write("/local/domain/1/w", b"")
    assert g1.get("rsp_prod") == prod


def test_oversized_header_gets_e2big_then_fails(xs, g1):
    g1.put(HEADER.pack(io.XS_WRITE, 77, 0, io.XENSTORE_PAYLOAD_MAX + 1))
    xs.on_event(1)
    raw = g1.take()
    assert HEADER.unpack_from(raw)[:2] == (io.XS_ERROR, 77) and raw.endswith(b"E2BIG\0")
    assert g1.get("error") == io.XENSTORE_ERROR_PROTO


def test_payload_max_itself_is_fine(g1):
    path = b"p\0"
    g1.write("p", b"y" * (io.XENSTORE_PAYLOAD_MAX - len(path)))
    assert g1.get("error") == 0


def test_server_indices_scribbled_by_the_guest_are_ignored(xs, g1):
    g1.write("a", b"1")
    # req_cons and rsp_prod are ours: a guest rewinding them must not make us
    # re-read old requests or write replies somewhere else.
    g1.set("req_cons", g1.get("req_prod") - 10)
    g1.set("rsp_prod", g1.get("rsp_cons") + 5)
    assert g1.read("a") == b"1"
    assert g1.get("req_cons") == g1.get("req_prod")
    assert g1.error(io.XS_READ, b"nothing\0") == "ENOENT"


def test_reconnect_resets_the_ring(xs, g1):
    g1.watch("w", "t")
    g1.set("req_prod", 5000)
    xs.on_event(1)
    assert g1.get("error") == io.XENSTORE_ERROR_RINGIDX
    g1.set("connection", io.XENSTORE_RECONNECT)
    before = g1.notified
    xs.on_event(1)
    assert g1.notified == before + 1
    assert [g1.get(f) for f in ("req_cons", "req_prod", "rsp_cons", "rsp_prod",
                                "connection", "error")] == [0, 0, 0, 0, 0, 0]
    g1.inbox.clear()
    g1.events.clear()
    g1.write("after", b"ok")
    assert g1.read("after") == b"ok"
    assert xs.connections[1].watches == []


def test_stalled_guest_loses_events_not_memory(xs):
    xs.limits = Limits(output=4096)
    g = Guest(xs, 1)
    g.watch("w", "t")
    for i in range(500):
        xs.write(f"/local/domain/1/w/n{i}", b"")
    conn = xs.connections[1]
    assert conn.ring.queued <= 4096 + 100 and conn.dropped_events > 0


def test_a_guest_that_breaks_its_ring_between_events_fails_on_delivery(xs, g1):
    g1.watch("w", "t")
    g1.set("rsp_cons", g1.get("rsp_prod") + 1)
    xs.write("/local/domain/1/w", b"")          # the event cannot be pushed
    assert g1.get("error") == io.XENSTORE_ERROR_RINGIDX


def test_one_failed_guest_does_not_disturb_another(xs, g1, g2):
    g1.set("rsp_cons", 999)
    xs.on_event(1)
    g2.write("fine", b"yes")
    assert g2.read("fine") == b"yes"


# =============================================================================
# Hostile input, at random
# =============================================================================

def _checks_hold(xs, guest):
    """Nothing escaped, and the ring indices we own stay sane."""
    conn = xs.connections[guest.domid]
    if not conn.ring.failed:
        assert (guest.get("rsp_prod") - guest.get("rsp_cons")) & MASK32 <= SIZE


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example])
@given(page=st.binary(min_size=4096, max_size=4096), events=st.integers(1, 4))
def test_random_pages_never_raise(page, events):
    xs = XenStore()
    guest = Guest(xs, 1, connect=False)
    guest.buf[:] = page
    xs.connect(1, guest.page, guest.notify)
    for _ in range(events):
        xs.on_event(1)
        _checks_hold(xs, guest)
        guest.take()


_INDEX = st.one_of(st.integers(0, 2 * SIZE), st.integers(MASK32 - 2 * SIZE, MASK32),
                   st.integers(0, MASK32))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(req=st.binary(max_size=SIZE), indices=st.lists(_INDEX, min_size=4, max_size=4),
       connection=st.sampled_from([0, 1, 2, MASK32]), events=st.integers(1, 4))
def test_random_rings_never_raise(req, indices, connection, events):
    xs = XenStore()
    guest = Guest(xs, 1, connect=False)
    guest.buf[REQ:REQ + len(req)] = req
    for field, value in zip(("req_cons", "req_prod", "rsp_cons", "rsp_prod"), indices):
        guest.set(field, value)
    guest.set("connection", connection)
    xs.connect(1, guest.page, guest.notify)
    for _ in range(events):
        xs.on_event(1)
        _checks_hold(xs, guest)
        guest.take(limit=300)


@st.composite
def _messages(draw):
    kind = draw(st.sampled_from(list(range(24)) + [0xFFFF, 0xFFFFFFFF]))
    words = st.sampled_from([b"", b"a", b"/a/b", b"a/b", b"/", b"@releaseDomain",
                             b"T", b"F", b"b1", b"n0", b"r2", b"0", b"1", b"\xff", b"a//b"])
    strings = draw(st.lists(words, max_size=4))
    payload = b"\0".join(strings) + draw(st.sampled_from([b"", b"\0", b"\0junk"]))
    tx_id = draw(st.sampled_from([0, 1, 2, 0xFFFFFFFF]))
    length = draw(st.sampled_from([len(payload)] * 6 + [0, len(payload) + 3,
                                                        io.XENSTORE_PAYLOAD_MAX + 1]))
    return HEADER.pack(kind, draw(st.integers(0, MASK32)), tx_id, length) + payload


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=st.lists(_messages(), max_size=12),
       chunks=st.lists(st.integers(1, 300), min_size=1, max_size=8),
       start=st.sampled_from([0, 0xFFFFFF00, MASK32]))
def test_random_messages_never_raise(messages, chunks, start):
    xs = XenStore()
    xs.write("/a/b", b"v")
    guest = Guest(xs, 1, start=start)
    Guest(xs, 2)
    data = b"".join(messages)
    i = 0
    while data:
        sent = guest.put(data[:chunks[i % len(chunks)]])
        data = data[sent:]
        i += 1
        xs.on_event(1)
        _checks_hold(xs, guest)
        guest.take()
        if xs.connections[1].ring.failed or not sent:
            break
    xs.release(1)
    xs.release(2)
    assert xs.tree.owned == {}
