"""io/xenbus.h: the states a split driver's two ends publish in XenStore
(each end's ``state`` node), by which they connect and disconnect."""

XenbusStateUnknown = 0
XenbusStateInitialising = 1
XenbusStateInitWait = 2        # early setup done, waiting for the peer (or hotplug)
XenbusStateInitialised = 3     # waiting for a connection from the peer
XenbusStateConnected = 4
XenbusStateClosing = 5         # the device is being torn down
XenbusStateClosed = 6
XenbusStateReconfiguring = 7
XenbusStateReconfigured = 8
