/*
 * intruder - try every inter-domain path the policy does not give it:
 * ping's offered event channel port and grant refs, ping's and pong's
 * XenStore nodes, ports and refs it does not own or that do not exist.
 *
 * It cannot read what ping publishes (that is the point), so it takes the
 * numbers ping uses from its command line, as if overheard: ping-domid=1
 * pong-domid=2 ping-port=3 ring-ref=8 bulletin-ref=9 (the values ping
 * prints; tests/test_demo.py checks they agree).  It waits delay-ms=50
 * first, so ping has offered them.
 *
 * One line per attempt: what, the result, and whether that is the refusal
 * Xen gives (Xen with an XSM/FLASK policy that, like this one, names no
 * path for intruder: such a check refuses with -EACCES, or
 * GNTST_permission_denied for grant maps and copies, which Xen checks
 * before it looks at the grant ref; operations on another domain's tables
 * are XSM_TARGET checks: -EPERM with Xen's default XSM, -EACCES with
 * FLASK, and either counts).  "refused" counts any failure;
 * "NOT REFUSED" is a hole.  The last lines: "intruder: N/M attempts
 * refused" and how many refusals were not Xen's.  Poweroff.
 */
#include "lib.h"
#include "mm.h"
#include "cmdline.h"
#include "evtchn.h"
#include "gnttab.h"
#include "xs.h"

#define XS_PRIVILEGED   (-1000)         /* an expect_xs() flag */

static unsigned int attempts, refused, not_xen;
static unsigned long me, ping, pong, ping_port, ring_ref, bulletin_ref;
static char path[128], buf[128];
static void *scratch;

/* ---- reporting ----------------------------------------------------------- */

static void report(const char *what, long rc, const char *got, long want,
                   const char *wanted)
{
    attempts++;
    if ( rc >= 0 )
    {
        printk("intruder: [%2u] %s: %ld %s: NOT REFUSED\n", attempts, what, rc, got);
        return;
    }
    refused++;
    if ( rc == want )
        printk("intruder: [%2u] %s: %ld %s: refused as Xen does\n",
               attempts, what, rc, got);
    else
    {
        not_xen++;
        printk("intruder: [%2u] %s: %ld %s: refused, but Xen gives %ld %s\n",
               attempts, what, rc, got, want, wanted);
    }
}

/* A hypercall that must fail with -err. */
static void expect(const char *what, long rc, int err)
{
    report(what, rc, xen_errname(rc), -err, xen_errname(-err));
}

/* A hypercall that must fail with -e1 (Xen's dummy XSM) or -e2 (FLASK). */
static void expect2(const char *what, long rc, int e1, int e2)
{
    static char both[32];

    snprintf(both, sizeof(both), "%s or %s", xen_errname(-e1), xen_errname(-e2));
    report(what, rc, xen_errname(rc), rc == -e2 ? -e2 : -e1, both);
}

/* A grant operation whose status must be st. */
static void expect_gnt(const char *what, long st, long want)
{
    report(what, st, gntst_name(st), want, gntst_name(want));
}

/* A XenStore request that must get XS_ERROR "EACCES". */
static void expect_xs(const char *what, long rc)
{
    report(what, rc, xen_errname(rc), -XEN_EACCES, "EACCES");
}

/* ---- XenStore ------------------------------------------------------------- */

static const char *at(unsigned long dom, const char *node)
{
    snprintf(path, sizeof(path), "/local/domain/%lu/%s", dom, node);
    return path;
}

static void xenstore_attempts(void)
{
    static char what[160];
    const char *everyone_rw[] = { "b0" };
    char intro[64];
    size_t n;

    snprintf(what, sizeof(what), "read ping's name (XenStore perms let anyone read it)");
    expect_xs(what, xs_read(at(ping, "name"), buf, sizeof(buf)));
    expect_xs("read ping's data/ring-ref", xs_read(at(ping, "data/ring-ref"), buf, sizeof(buf)));
    expect_xs("read ping's data/port", xs_read(at(ping, "data/port"), buf, sizeof(buf)));
    expect_xs("list ping's data/", xs_directory(at(ping, "data"), buf, sizeof(buf)));
    expect_xs("overwrite ping's data/ring-ref", xs_write(at(ping, "data/ring-ref"), "7"));
    expect_xs("overwrite ping's data/port", xs_write(at(ping, "data/port"), "1"));
    expect_xs("create a node under ping's data/", xs_write(at(ping, "data/evil"), "x"));
    expect_xs("overwrite ping's name", xs_write(at(ping, "name"), "intruder"));
    expect_xs("remove ping's data/", xs_rm(at(ping, "data")));
    expect_xs("give everyone rw on ping's data/ (XS_SET_PERMS)",
              xs_set_perms(at(ping, "data"), everyone_rw, 1));
    expect_xs("write pong's data/", xs_write(at(pong, "data/x"), "x"));
    expect_xs("write dom0's /tool", xs_write("/tool/intruder", "x"));
    n = snprintf(intro, sizeof(intro), "%lu", me) + 1;
    n += snprintf(intro + n, sizeof(intro) - n, "%lu", start_info->store_mfn) + 1;
    n += snprintf(intro + n, sizeof(intro) - n, "%u", start_info->store_evtchn) + 1;
    expect_xs("XS_INTRODUCE (dom0's)", xs_request(XS_INTRODUCE, intro, n, NULL, 0));
}

/* ---- event channels ------------------------------------------------------- */

static void evtchn_attempts(void)
{
    static char what[128];
    struct evtchn_alloc_unbound alloc = { .dom = 0, .remote_dom = 0 };
    struct evtchn_status status = { .port = 0 };
    struct evtchn_unmask unmask = { .port = 4096 };
    evtchn_port_t port;

    expect("offer a port to ping (EVTCHNOP_alloc_unbound)",
           evtchn_alloc_unbound(ping, &port), XEN_EACCES);
    expect("offer a port to pong (EVTCHNOP_alloc_unbound)",
           evtchn_alloc_unbound(pong, &port), XEN_EACCES);

    snprintf(what, sizeof(what), "bind ping's port %lu (offered to pong, not to it)",
             ping_port);
    expect(what, evtchn_bind_interdomain(ping, ping_port, &port), XEN_EINVAL);
    expect("bind ping's xenstore port", evtchn_bind_interdomain(
               ping, 1, &port), XEN_EINVAL);
    expect("bind pong's end of the ping-pong channel",
           evtchn_bind_interdomain(pong, ping_port, &port), XEN_EINVAL);
    expect("bind ping's port 4096 (out of range)",
           evtchn_bind_interdomain(ping, 4096, &port), XEN_EINVAL);
    expect("bind a port of a domain that does not exist (d999)",
           evtchn_bind_interdomain(999, 3, &port), XEN_ESRCH);

    snprintf(what, sizeof(what), "send on port %lu (ping's and pong's number, not its own)",
             ping_port);
    expect(what, evtchn_send(ping_port), XEN_EINVAL);
    expect("send on port 4095 (never allocated)", evtchn_send(4095), XEN_EINVAL);
    expect("send on port 4096 (out of range)", evtchn_send(4096), XEN_EINVAL);
    expect("send on port 0xffffffff (out of range)", evtchn_send(0xffffffffU), XEN_EINVAL);
    expect("close port 4096 (out of range)", evtchn_close(4096), XEN_EINVAL);
    expect("unmask port 4096 (out of range)",
           HYPERVISOR_event_channel_op(EVTCHNOP_unmask, &unmask), XEN_EINVAL);

    alloc.dom = ping;
    alloc.remote_dom = me;
    expect2("allocate a port in ping's table, offered to itself",
            HYPERVISOR_event_channel_op(EVTCHNOP_alloc_unbound, &alloc),
            XEN_EPERM, XEN_EACCES);
    status.dom = ping;
    status.port = ping_port;
    expect2("EVTCHNOP_status of ping's port",
            HYPERVISOR_event_channel_op(EVTCHNOP_status, &status),
            XEN_EPERM, XEN_EACCES);
}

/* ---- grants ------------------------------------------------------------------ */

static void grant_attempts(void)
{
    static char what[128];
    struct gnttab_setup_table setup = { .dom = 0, .nr_frames = 1 };
    struct gnttab_unmap_grant_ref unmap = { .handle = 0 };
    unsigned long frame, foreign = pfn_to_mfn(0) - 1;
    grant_handle_t h;
    struct gnttab_copy copy;
    long st;

    snprintf(what, sizeof(what), "map ping's ring ref %lu (granted to pong) writable",
             ring_ref);
    expect_gnt(what, gnttab_map(ping, ring_ref, scratch, 0, &h), GNTST_permission_denied);
    snprintf(what, sizeof(what), "map ping's ring ref %lu read-only", ring_ref);
    expect_gnt(what, gnttab_map(ping, ring_ref, scratch, 1, &h), GNTST_permission_denied);
    snprintf(what, sizeof(what), "map ping's bulletin ref %lu (pong's; revoked at the end)",
             bulletin_ref);
    expect_gnt(what, gnttab_map(ping, bulletin_ref, scratch, 1, &h),
               GNTST_permission_denied);
    expect_gnt("map ping's ref 0 (the toolstack's console entry)",
               gnttab_map(ping, 0, scratch, 1, &h), GNTST_permission_denied);
    expect_gnt("map ping's ref 0x7fffffff (out of range)",
               gnttab_map(ping, 0x7fffffff, scratch, 1, &h), GNTST_permission_denied);
    expect_gnt("map pong's ref 8", gnttab_map(pong, 8, scratch, 1, &h),
               GNTST_permission_denied);
    expect_gnt("map a grant of a domain that does not exist (d999)",
               gnttab_map(999, 8, scratch, 1, &h), GNTST_bad_domain);

    memset(&copy, 0, sizeof(copy));
    copy.source.u.ref = ring_ref;
    copy.source.domid = ping;
    copy.dest.u.gmfn = virt_to_mfn(scratch);
    copy.dest.domid = DOMID_SELF;
    copy.len = 64;
    copy.flags = GNTCOPY_source_gref;
    snprintf(what, sizeof(what), "grant-copy out of ping's ring ref %lu", ring_ref);
    expect_gnt(what, gnttab_copy_one(&copy), GNTST_permission_denied);

    memset(&copy, 0, sizeof(copy));
    copy.source.u.gmfn = virt_to_mfn(scratch);
    copy.source.domid = DOMID_SELF;
    copy.dest.u.ref = ring_ref;
    copy.dest.domid = ping;
    copy.len = 64;
    copy.flags = GNTCOPY_dest_gref;
    snprintf(what, sizeof(what), "grant-copy into ping's ring ref %lu", ring_ref);
    expect_gnt(what, gnttab_copy_one(&copy), GNTST_permission_denied);

    memset(&copy, 0, sizeof(copy));
    copy.source.u.gmfn = foreign;
    copy.source.domid = ping;
    copy.dest.u.gmfn = virt_to_mfn(scratch);
    copy.dest.domid = DOMID_SELF;
    copy.len = 64;
    expect_gnt("grant-copy a frame named by mfn in ping (no grant)",
               gnttab_copy_one(&copy), GNTST_permission_denied);

    setup.dom = ping;
    setup.frame_list = &frame;
    st = HYPERVISOR_grant_table_op(GNTTABOP_setup_table, &setup, 1);
    expect_gnt("GNTTABOP_setup_table of ping's table", st ? st : setup.status,
               GNTST_permission_denied);

    /* Forged: its own grant entry naming a frame it does not own. */
    st = gnttab_init();
    if ( st )
        printk("intruder: (its own grant table: %ld)\n", st);
    else
    {
        gnttab_grant(8, me, foreign, 0);
        snprintf(what, sizeof(what), "map a forged grant: its own ref 8 naming mfn 0x%lx "
                 "(not its own)", foreign);
        expect_gnt(what, gnttab_map(DOMID_SELF, 8, scratch, 0, &h), GNTST_bad_page);

        memset(&copy, 0, sizeof(copy));
        copy.source.u.ref = 8;
        copy.source.domid = DOMID_SELF;
        copy.dest.u.gmfn = virt_to_mfn(scratch);
        copy.dest.domid = DOMID_SELF;
        copy.len = 64;
        copy.flags = GNTCOPY_source_gref;
        expect_gnt("grant-copy out of the forged ref 8", gnttab_copy_one(&copy),
                   GNTST_bad_page);
        expect_gnt("map its own ref 0x7fffffff (out of range)",
                   gnttab_map(DOMID_SELF, 0x7fffffff, scratch, 0, &h), GNTST_bad_gntref);
        gnttab[8].flags = 0;
    }
    st = HYPERVISOR_grant_table_op(GNTTABOP_unmap_grant_ref, &unmap, 1);
    expect_gnt("unmap grant handle 0 (it holds no mapping)", st ? st : unmap.status,
               GNTST_bad_handle);
}

void guest_main(start_info_t *si)
{
    char value[32];
    long rc;

    ping = cmdline_num("ping-domid", 1);
    pong = cmdline_num("pong-domid", 2);
    ping_port = cmdline_num("ping-port", 3);
    ring_ref = cmdline_num("ring-ref", 8);
    bulletin_ref = cmdline_num("bulletin-ref", 9);

    if ( (rc = events_init()) || (rc = xs_init()) )
    {
        printk("intruder: setting up shared_info and XenStore: %ld %s\n", rc,
               xen_errname(rc));
        return;
    }
    if ( xs_read("domid", value, sizeof(value)) >= 0 )
        me = parse_num(value);
    scratch = padding_alloc();

    sleep_ns(MILLISECONDS(cmdline_num("delay-ms", 50)));
    printk("intruder: I am d%lu; going after ping (d%lu: port %lu, refs %lu and %lu) "
           "and pong (d%lu)\n", me, ping, ping_port, ring_ref, bulletin_ref, pong);

    xenstore_attempts();
    evtchn_attempts();
    grant_attempts();

    printk("intruder: %u/%u attempts refused\n", refused, attempts);
    printk("intruder: %u of the refusals differ from Xen's\n", not_xen);
}
