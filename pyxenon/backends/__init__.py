"""dom0's services a guest talks to: the console backend (xenconsoled's
part) and the XenStore service (xenstored's), each reached only through
shared ring pages and event channels, and each treating every index and
message on its rings as hostile.

The layer sits between the hypervisor core, which it uses only through a
domain's memory and event-channel interface, and the toolstack, which
creates the backends and connects them to domains.  Nothing here imports
the toolstack."""
