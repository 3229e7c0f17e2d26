"""XenStore's database: a tree of nodes, Xen's permission rules, path syntax.

Every node has a value (bytes), an ordered tuple of children names and a
permission list ((domid, letter), ...).  The first entry names the owner and
gives the letter for every domain not listed after it; letters are n (none),
r (read), w (write), b (both).  Dom0 is privileged and the owner is always
allowed (Xen's perm_for_conn()).  A new node copies its parent's permissions;
when an unprivileged domain creates it, that domain becomes the owner.

Nodes are immutable: a change puts a new Node in the tree's dict.  That makes
a transaction's snapshot a plain dict copy and its conflict check an identity
test (did the node at this path get replaced since the snapshot?).

The operations below (read, write, mkdir, rm, directory, directory_part,
get_perms, set_perms) work on an Access: one caller's view of one tree (the
live tree, or a transaction's copy).  They fail by raising XenStoreError
with the errno name Xen sends, and never change the tree before they know
they will succeed.
"""
import re
from dataclasses import dataclass, replace

from pyxenon.public import io

DOM0 = 0                                 # the host: privileged, always allowed
READ, WRITE, OWNER = 1, 2, 4             # permission bits
PERM_BITS = {"n": 0, "r": READ, "w": WRITE, "b": READ | WRITE}
DOMID_LIMIT = 0xFFFF                     # domids in permission strings fit 16 bits
QUOTA_ERROR = "EQUOTA"                   # node quota exceeded (oxenstored's name;
                                         # C xenstored says ENOSPC)
INTRODUCE_DOMAIN, RELEASE_DOMAIN = "@introduceDomain", "@releaseDomain"
SPECIAL_PATHS = (INTRODUCE_DOMAIN, RELEASE_DOMAIN)

_PATH_CHARS = re.compile(rb"[A-Za-z0-9/_@-]+")
_PERM = re.compile(rb"([nrwb])([0-9]{1,5})")


class XenStoreError(Exception):
    """A XenStore request failed.  ``name`` is the errno name of the XS_ERROR
    reply ("ENOENT", "EACCES", ...); ``str()`` is one line."""

    def __init__(self, name, path=None):
        self.name = name
        self.errno = io.XSD_ERRNO.get(name)   # None for EQUOTA (not in xsd_errors)
        self.path = path
        super().__init__(name if path is None else f"{path}: {name}")


@dataclass(frozen=True)
class Limits:
    """Per-domain quotas (dom0 is exempt from nodes, watches, transactions, perms)."""
    nodes: int = 1000                    # nodes a domain may own -> EQUOTA
    value: int = io.XENSTORE_PAYLOAD_MAX  # bytes in one value (everyone) -> E2BIG
    watches: int = 128                   # watches per connection -> E2BIG
    transactions: int = 10               # open transactions per connection -> ENOSPC
    perms: int = 5                       # entries in one permission list -> ENOSPC
    output: int = 64 * 1024              # bytes queued for a ring before events are dropped


@dataclass(frozen=True)
class Node:
    value: bytes
    perms: tuple
    children: tuple = ()
    gen: int = 0                         # when it last changed (DIRECTORY_PART's gencnt)

    @property
    def owner(self):
        return self.perms[0][0]


def permission(domid, perms):
    """READ|WRITE|OWNER bits domid has on a node with these perms."""
    if domid == DOM0 or perms[0][0] == domid:
        return READ | WRITE | OWNER
    for who, letter in perms[1:]:
        if who == domid:
            return PERM_BITS[letter]
    return PERM_BITS[perms[0][1]]


def can_read(domid, perms):
    return bool(permission(domid, perms) & READ)


# -- paths --------------------------------------------------------------------

def home_path(domid):
    return f"/local/domain/{domid}"


def parent_of(path):
    return path.rsplit("/", 1)[0] or "/"


def basename(path):
    return path.rsplit("/", 1)[1]


def child_path(path, name):
    return f"/{name}" if path == "/" else f"{path}/{name}"


def is_under(path, top):
    """Whether path is top or lies beneath it (xenstored's is_child)."""
    if top == "/":
        return path.startswith("/")
    return path == top or path.startswith(top + "/")


def _text(raw):
    """A path's characters, checked: str or bytes in, str out."""
    if isinstance(raw, str):
        raw = raw.encode("ascii", "backslashreplace")
    if not _PATH_CHARS.fullmatch(raw):
        raise XenStoreError("EINVAL", raw.decode("ascii", "backslashreplace"))
    return raw.decode("ascii")


def _check_absolute(path):
    bad_shape = path != "/" and (path.endswith("/") or "//" in path)
    if bad_shape or len(path) > io.XENSTORE_ABS_PATH_MAX:
        raise XenStoreError("EINVAL", path[:80])
    return path


def _absolute(text, home):
    if text.startswith("/"):
        return _check_absolute(text), False
    if text.startswith("@") or len(text) > io.XENSTORE_REL_PATH_MAX:
        raise XenStoreError("EINVAL", text[:80])
    return _check_absolute(f"{home}/{text}"), True


def resolve(raw, home):
    """The absolute node path named by raw, which is absolute or relative to home."""
    return _absolute(_text(raw), home)[0]


def watch_path(raw, home):
    """(path, relative) of a watch: a node path, or a special @path."""
    text = _text(raw)
    if text.startswith("@"):
        if len(text) > io.XENSTORE_REL_PATH_MAX:
            raise XenStoreError("EINVAL", text[:80])
        return text, False
    return _absolute(text, home)


# -- permission strings -------------------------------------------------------

def parse_perms(items):
    """Permissions from strings such as b"b1", b"r0"."""
    perms = []
    for item in items:
        match = _PERM.fullmatch(item)
        if match is None or int(match[2]) > DOMID_LIMIT:
            raise XenStoreError("EINVAL")
        perms.append((int(match[2]), match[1].decode()))
    if not perms:
        raise XenStoreError("EINVAL")
    return tuple(perms)


def check_perms(pairs):
    """Permissions from (domid, letter) pairs, checked."""
    perms = tuple((domid, letter) for domid, letter in pairs)
    for domid, letter in perms:
        if letter not in PERM_BITS or not isinstance(domid, int) or not 0 <= domid <= DOMID_LIMIT:
            raise XenStoreError("EINVAL")
    if not perms:
        raise XenStoreError("EINVAL")
    return perms


def format_perms(perms):
    return b"".join(f"{letter}{domid}".encode() + b"\0" for domid, letter in perms)


# -- the tree -----------------------------------------------------------------

class Tree:
    """Nodes by absolute path, and how many nodes each unprivileged domain owns."""

    def __init__(self):
        hidden = ((DOM0, "n"),)
        self.nodes = {
            "/": Node(b"", hidden, ("local",)),
            "/local": Node(b"", hidden, ("domain",)),
            "/local/domain": Node(b"", hidden),
        }
        self.owned = {}

    def copy(self):
        other = Tree.__new__(Tree)
        other.nodes = dict(self.nodes)
        other.owned = dict(self.owned)
        return other

    def put(self, path, node):
        """Store node at path (None removes it), keeping the ownership counts."""
        self._count(self.nodes.get(path), -1)
        self._count(node, +1)
        if node is None:
            self.nodes.pop(path, None)
        else:
            self.nodes[path] = node

    def _count(self, node, delta):
        if node is None or node.owner == DOM0:
            return
        total = self.owned.get(node.owner, 0) + delta
        if total:
            self.owned[node.owner] = total
        else:
            self.owned.pop(node.owner, None)


@dataclass(frozen=True)
class Event:
    """A change at path, for the watches.  perms: the permission lists under
    which a watcher may see it (it needs read under any one: a node's old and
    new perms for SET_PERMS).  removed: for RM, every removed path's perms, so
    watches on paths beneath the removed node fire too (reporting their own
    path, as docs/misc/xenstore.txt says)."""
    path: str
    perms: tuple
    removed: dict = None

    def match(self, watched):
        """(path to report, perms that govern it) for a watch on watched, or None."""
        if is_under(self.path, watched):
            return self.path, self.perms
        if self.removed is not None and is_under(watched, self.path):
            return watched, (self._perms_above(watched),)
        return None

    def _perms_above(self, path):
        while path not in self.removed:
            path = parent_of(path)
        return self.removed[path]


class Transaction:
    """A private copy of the tree; seen maps every path the transaction looked
    at or changed to the node it found there first (None: absent)."""

    def __init__(self, txid, tree):
        self.id = txid
        self.tree = tree.copy()
        self.seen = {}
        self.events = []

    def touch(self, path):
        if path not in self.seen:
            self.seen[path] = self.tree.nodes.get(path)

    def conflicts(self, live):
        return any(live.nodes.get(path) is not node for path, node in self.seen.items())

    def apply(self, live):
        for path, before in self.seen.items():
            after = self.tree.nodes.get(path)
            if after is not before:
                live.put(path, after)


class Access:
    """One caller (domid) working on one tree, inside a transaction or not.
    Collects the events its changes cause."""

    def __init__(self, tree, domid, limits, clock, tx=None, gate=None):
        self.tree = tree
        self.gate = gate        # gate(caller, owner, need): the separation policy's say
        self.domid = domid
        self.home = home_path(domid)
        self.limits = limits
        self.clock = clock
        self.tx = tx
        self.events = []

    @property
    def privileged(self):
        return self.domid == DOM0

    def get(self, path):
        if self.tx is not None:
            self.tx.touch(path)
        return self.tree.nodes.get(path)

    def put(self, path, node):
        if self.tx is not None:
            self.tx.touch(path)
        self.tree.put(path, node)

    def tick(self):
        return next(self.clock)

    def has(self, node, need):
        """Xen's permissions allow it, and, when the node is another guest's,
        so does the separation policy (dom0's own nodes need no rule)."""
        if permission(self.domid, node.perms) & need != need:
            return False
        owner = node.owner
        if self.gate is None or owner in (self.domid, DOM0) or self.domid == DOM0:
            return True
        return self.gate(self.domid, owner, need)


# -- operations ---------------------------------------------------------------

def lookup(acc, path, need):
    """The node at path if the caller has the need bits on it.  Otherwise Xen's
    get_node() answer: ENOENT or EACCES, but EACCES whenever the nearest
    existing ancestor denies need, so absence leaks only to those allowed."""
    node = acc.get(path)
    if node is not None and acc.has(node, need):
        return node
    error = "ENOENT" if node is None else "EACCES"
    if not permission(acc.domid, _nearest_ancestor(acc, path).perms) & need:
        error = "EACCES"
    raise XenStoreError(error, path)


def _nearest_ancestor(acc, path):
    while True:
        path = parent_of(path)
        node = acc.get(path)
        if node is not None:
            return node


def _lookup_or_none(acc, path, need):
    """Like lookup, but None (rather than ENOENT) for a node the caller may create."""
    try:
        return lookup(acc, path, need)
    except XenStoreError as err:
        if err.name != "ENOENT":
            raise
        return None


def read(acc, path):
    return lookup(acc, path, READ).value


def directory(acc, path):
    return lookup(acc, path, READ).children


def get_perms(acc, path):
    return lookup(acc, path, READ).perms


def write(acc, path, value):
    if len(value) > acc.limits.value:
        raise XenStoreError("E2BIG", path)
    node = _lookup_or_none(acc, path, WRITE)
    if node is None:
        perms = _create(acc, path, value)
    else:
        acc.put(path, replace(node, value=value, gen=acc.tick()))
        perms = node.perms
    acc.events.append(Event(path, (perms,)))


def mkdir(acc, path):
    if _lookup_or_none(acc, path, WRITE) is None:
        perms = _create(acc, path, b"")
        acc.events.append(Event(path, (perms,)))


def _create(acc, path, value):
    """Create path and its missing ancestors; returns their permissions."""
    missing = _missing(acc, path)
    above = parent_of(missing[0])
    parent = acc.get(above)
    if not acc.privileged and acc.tree.owned.get(acc.domid, 0) + len(missing) > acc.limits.nodes:
        raise XenStoreError(QUOTA_ERROR, path)
    perms = _inherit(acc, parent.perms)
    acc.put(above, replace(parent, children=parent.children + (basename(missing[0]),),
                           gen=acc.tick()))
    for here, below in zip(missing, missing[1:] + [None]):
        children = () if below is None else (basename(below),)
        acc.put(here, Node(value if here == path else b"", perms, children, acc.tick()))
    return perms


def _inherit(acc, perms):
    """A new node's permissions: its parent's, owned by an unprivileged creator."""
    if acc.privileged:
        return perms
    return ((acc.domid, perms[0][1]),) + perms[1:]


def _missing(acc, path):
    """path and its ancestors that do not exist, topmost first."""
    missing = []
    while acc.get(path) is None:
        missing.append(path)
        path = parent_of(path)
    missing.reverse()
    return missing


def rm(acc, path):
    """Remove path and everything beneath it.  Removing a node that does not
    exist is fine if its parent exists (ENOENT otherwise)."""
    try:
        node = lookup(acc, path, WRITE)
    except XenStoreError as err:
        if err.name == "ENOENT" and acc.get(parent_of(path)) is not None:
            return
        raise
    if path == "/":
        raise XenStoreError("EINVAL", path)
    removed = _remove_subtree(acc, path)
    above = parent_of(path)
    parent = acc.get(above)
    name = basename(path)
    acc.put(above, replace(parent, children=tuple(c for c in parent.children if c != name),
                           gen=acc.tick()))
    acc.events.append(Event(path, (node.perms,), removed))


def _remove_subtree(acc, path):
    removed = {}
    stack = [path]
    while stack:
        here = stack.pop()
        node = acc.get(here)
        removed[here] = node.perms
        stack.extend(child_path(here, child) for child in node.children)
        acc.put(here, None)
    return removed


def set_perms(acc, path, perms):
    """Only the owner (or dom0) may; only dom0 may give the node away."""
    if not acc.privileged and len(perms) > acc.limits.perms:
        raise XenStoreError("ENOSPC", path)
    node = lookup(acc, path, WRITE | OWNER)
    if not acc.privileged and perms[0][0] != node.owner:
        raise XenStoreError("EPERM", path)
    acc.put(path, replace(node, perms=perms, gen=acc.tick()))
    acc.events.append(Event(path, (node.perms, perms)))


def directory_part(acc, path, offset):
    """DIRECTORY_PART: the node's generation, then as many whole child names
    from byte offset of the child list as fit; an extra NUL ends the list."""
    node = lookup(acc, path, READ)
    gen = b"%d\0" % node.gen
    rest = b"".join(name.encode() + b"\0" for name in node.children)[offset:]
    room = io.XENSTORE_PAYLOAD_MAX - len(gen) - 1
    end = 0
    while end < len(rest):
        after = rest.index(b"\0", end) + 1
        if after > room:
            break
        end = after
    return gen + rest[:end] + (b"\0" if end == len(rest) else b"")
