"""A domain's states (Xen's domain_pause/shutdown/destroy vocabulary), in a
module of their own so that hypercall handlers can name them without
importing the domain, which imports the handler table."""
RUNNING, PAUSED, SHUTDOWN, DEAD = "running", "paused", "shutdown", "dead"
