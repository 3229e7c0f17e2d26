"""Hostile-input campaigns: random hypercalls, and malformed host inputs.

    python -m pyxenon.fuzz --hypercalls N --seed S [--parsers M] [--save DIR]

prints a short summary and exits 1 if anything was found (0 otherwise, 2 for
a bad command line).  Everything is deterministic from the seed.

The hypercall campaign (host-driven)
    A Host with three domains -- labels ping, pong and intruder under a small
    policy (ping and pong may use every path to each other, intruder is named
    by no rule) -- gets random hypercalls through the trap path's own entry,
    ``xc_hypercall`` (what the C syscall hook calls: the C fast paths, then
    ``Domain.dispatch(vcpu, nr, a1..a5)``).  Numbers come from Xen's table plus unknown ones, sub-ops
    lean toward the valid ones, arguments are edge values (0, 1, -1, 2**63,
    page boundaries, the start-of-day region, its page tables, Xen's range,
    non-canonical addresses, own, foreign, Xen's and free frames...), and
    argument structures are written into guest memory first (through the
    guest's page tables, as the guest would write them).  Short recipes
    (grant a frame and map it, join an event channel, make a new L1) reach
    states single random calls rarely do; every few hundred calls the guests
    run a few scheduler slices, so the engine path is exercised too.

    After every call: the result is an int64 that is a valid result or
    -errno (pyxenon.public.errno); no domain crashed with "hypervisor error"
    (dispatch's net for handler bugs); nothing raised in the C-to-Python
    callback; nothing took longer than CALL_LIMIT seconds of CPU time (or
    STALL_FACTOR times that of wall-clock time); and the
    invariants hold (oracle.py, over the C checker hypervisor/audit.py, and
    policy_oracle.py): page tables are never writable,
    every present entry of a validated table names a frame the domain owns
    (or, in an L1, a live grant mapping the policy allows), type and general
    reference counts equal the references, descriptor and base-pointer
    frames have their types, the frames Xen writes (shared_info, grant
    tables, vcpu_info) are plain pages and no hypercall outside the
    page-table paths changes a table; every grant mapping belongs to a live
    granter, is allowed by the policy, and Xen keeps its in-use bits in the
    granter's entry; interdomain event channels are symmetric and allowed by
    the policy in both directions.

    The campaign runs in epochs of EPOCH_CALLS calls, each on a fresh Host
    with its own Random(seed, epoch), so a finding replays from its epoch.
    The first finding of each kind is shrunk to a short op sequence and, with
    --save DIR, written as DIR/<signature>.json (seed, epoch, call index, the
    call, the ops).  A new invariant violation, a hang or a host exception
    ends the epoch; a known invariant violation destroys the domains it broke
    (their slots get new ones) and the epoch goes on.  docs/FUZZING.md says
    how to run a long campaign and read its result.

The parser campaign
    Malformed inputs for every host-side parser, mutated from good seeds or
    random: the ELF loader and its notes (load_kernel), xl.cfg (parse_cfg,
    load_cfg, overrides), the policy file (parse_policy, load_policy), the
    XenStore wire protocol (requests through a ring page and XenStore's
    on_event, and the host API), and the daemon's socket protocol
    (protocol.decode, daemon.check_request, Connection.pop), and the GDB
    stub (a client's bytes to gdbserver/gdbstub serving a held domain:
    replies well framed, buffers bounded, refused writes writing nothing,
    the hypervisor's state whole).  Each input must
    be accepted or refused with the module's error type (UserInputError with
    one line for files; XenStoreError, ValueError, RequestError,
    ToolstackError for the others; nothing at all out of XenStore.on_event)
    within PARSE_LIMIT seconds.

Modules: common (limits, findings), ops, world, structs and values (what
arguments are drawn from), families/ (one generator module per hypercall
family), recipes, generator, oracle and policy_oracle, session (apply,
check, replay, shrink), campaign, records (saved findings), parsers/ (the
parser targets and their campaign), cli; targets, engine, shard, scale and
report (coverage-guided campaigns).
"""
