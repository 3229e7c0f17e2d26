"""The XenStore half of a split device, as Linux's xenbus drives a backend.

The toolstack writes both directories (libxl__device_generic_add):

    /local/domain/0/backend/KIND/DOMID/DEVID/   owned by dom0, readable by the guest
    /local/domain/DOMID/device/KIND/DEVID/      owned by the guest, readable by dom0

each with a ``state`` node (io/xenbus.h's XenbusState) and the other's path.
The backend advertises its features and goes to InitWait (the driver's
probe); the frontend writes its ring-ref, event-channel and features and goes
to Initialised; the backend connects the ring and goes to Connected.  Closing
and Closed tear down, and a frontend back at Initialising after Closed
reconnects (frontend_changed in Linux's xen-blkback/xenbus.c).  A state or
key the frontend writes is untrusted text: a bad one is the frontend's
error, reported as xenbus_dev_fatal does (an ``error`` node under dom0's
error/ tree, and the backend to Closing), never the host's.
"""
from pyxenon.hypervisor.errors import HypercallError
from pyxenon.public import xenbus as xb

from .xenstore_tree import XenStoreError

MAX_NUMBER = 1 << 32


class DeviceError(Exception):
    """A frontend's bad XenStore setup: (errno name, message) for the error node."""

    def __init__(self, err, message):
        super().__init__(f"{err} {message}")
        self.err, self.message = err, message


class XenbusBackend:
    """One device's backend end.  Subclasses say ``kind`` and implement
    backend_nodes() and frontend_nodes() (what the toolstack writes),
    features() (the nodes written at probe), connect() (read the frontend's
    keys and map its ring: raise DeviceError for a bad setup), connected()
    (the nodes written on connecting) and disconnect()."""

    kind = "vbd"

    def __init__(self, xenstore, domain, devid):
        self.xs = xenstore
        self.domain = domain
        self.devid = devid
        self.be = f"/local/domain/0/backend/{self.kind}/{domain.domid}/{devid}"
        self.fe = f"/local/domain/{domain.domid}/device/{self.kind}/{devid}"
        self.state = xb.XenbusStateInitialising
        self.watch = None
        self.errors = []            # what xenbus_dev_fatal reported, for the host's tests

    # -- life cycle --------------------------------------------------------------

    def _write_nodes(self, backend_nodes, frontend_nodes):
        domid = self.domain.domid
        for path, nodes, perms in ((self.be, backend_nodes, [(0, "n"), (domid, "r")]),
                                   (self.fe, frontend_nodes, [(domid, "n"), (0, "r")])):
            for key, value in nodes.items():
                self.xs.write(f"{path}/{key}", str(value))
            self.xs.set_perms(path, perms)
            for key in nodes:
                self.xs.set_perms(f"{path}/{key}", perms)

    def start(self):
        """The toolstack's nodes, then the driver's probe: features, InitWait,
        and a watch on the frontend's state."""
        self._write_nodes(self.backend_nodes(), self.frontend_nodes())
        for key, value in self.features().items():
            self.xs.write(f"{self.be}/{key}", str(value))
        self.switch_state(xb.XenbusStateInitWait)
        self.watch = self.xs.watch(f"{self.fe}/state", self._frontend_changed)

    def remove(self):
        """The toolstack takes the device away (the domain is going)."""
        if self.watch is not None:
            self.xs.unwatch(self.watch)
            self.watch = None
        self.disconnect()
        for path in (self.be, self.fe):
            try:
                self.xs.rm(path)
            except XenStoreError:
                pass

    def switch_state(self, state):
        self.state = state
        self.xs.write(f"{self.be}/state", str(state))

    # -- what the frontend says ---------------------------------------------------------

    def read_frontend(self, key, default=None):
        try:
            return self.xs.read(f"{self.fe}/{key}").decode("ascii", "replace")
        except XenStoreError:
            return default

    def frontend_number(self, key, default=None, limit=MAX_NUMBER):
        """An unsigned number the frontend wrote (xenbus_scanf "%u"), or
        DeviceError naming the key when it is missing or not a number."""
        text = self.read_frontend(key)
        if text is None and default is not None:
            return default
        if text is None or not text.strip().isdigit() or int(text) >= limit:
            raise DeviceError("EINVAL", f"reading {self.fe}/{key}")
        return int(text)

    def _frontend_changed(self, _path):
        state = self.read_frontend("state")
        if state is None:
            return                  # the watch fires at once, and on removal
        try:
            self.frontend_changed(int(state))
        except ValueError:
            self.fatal("EINVAL", f"saw state {state[:20]!r} at frontend")

    def frontend_changed(self, state):
        """Linux's xen-blkback frontend_changed, state by state."""
        if state == xb.XenbusStateInitialising and self.state == xb.XenbusStateClosed:
            self.switch_state(xb.XenbusStateInitWait)        # prepare for reconnect
        elif state in (xb.XenbusStateInitialised, xb.XenbusStateConnected):
            self._connect()
        elif state == xb.XenbusStateClosing:
            self.switch_state(xb.XenbusStateClosing)
        elif state == xb.XenbusStateClosed:
            self.disconnect()
            self.switch_state(xb.XenbusStateClosed)
        elif state not in (xb.XenbusStateInitialising, xb.XenbusStateInitWait,
                           xb.XenbusStateUnknown):
            self.fatal("EINVAL", f"saw state {state} at frontend")

    def _connect(self):
        if self.state == xb.XenbusStateConnected:
            return
        self.disconnect()           # idempotent: a frontend may connect twice
        try:
            self.connect()
        except DeviceError as err:
            self.disconnect()
            self.fatal(err.err, err.message)
            return
        for key, value in self.connected().items():
            self.xs.write(f"{self.be}/{key}", str(value))
        self.switch_state(xb.XenbusStateConnected)

    def bind_port(self, port, notify):
        """Bind the frontend's event-channel (the port it offered dom0)."""
        try:
            self.port = self.domain.events.bind_backend(port, notify)
        except HypercallError:
            raise DeviceError("EINVAL", f"binding event-channel {port}") from None

    def close_port(self):
        """Close the channel, unless the guest closed or rebound it already."""
        if self.port is None:
            return
        try:
            if self.domain.events.lookup(self.port).notify == self.kick:
                self.domain.events.close(self.port)
        except HypercallError:
            pass
        self.port = None

    def kick(self):
        """The frontend notified."""

    def fatal(self, err, message):
        """xenbus_dev_fatal: the error node, then Closing."""
        self.errors.append(f"{err} {message}")
        self.xs.write(f"/local/domain/0/error{self.be}/error", f"{err} {message}")
        self.switch_state(xb.XenbusStateClosing)

    # -- for subclasses -----------------------------------------------------------------

    def features(self):
        return {}

    def connect(self):
        raise NotImplementedError

    def connected(self):
        return {}

    def disconnect(self):
        pass
