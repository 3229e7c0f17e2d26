/*
 * gnttab.h - grant tables v1: granting our frames (the table from
 * GNTTABOP_setup_table, mapped writable), ending grants by Xen's protocol,
 * mapping, unmapping and copying others' grants; the v2 layout and
 * operations for the guests that switch (guests/gntv2).  Linked into the guests
 * that name lib/gnttab.o (it needs lib/mm.o).
 *
 * ABI from Xen's public grant_table.h.
 */
#ifndef GUEST_GNTTAB_H
#define GUEST_GNTTAB_H

#include "lib.h"

typedef uint32_t grant_ref_t;
typedef uint32_t grant_handle_t;

#define GNTTABOP_map_grant_ref      0
#define GNTTABOP_unmap_grant_ref    1
#define GNTTABOP_setup_table        2
#define GNTTABOP_copy               5
#define GNTTABOP_set_version        8
#define GNTTABOP_get_status_frames  9
#define GNTTABOP_get_version        10

/* grant_entry_v1.flags */
#define GTF_invalid         0
#define GTF_permit_access   1
#define GTF_type_mask       3
#define GTF_readonly        (1 << 2)
#define GTF_reading         (1 << 3)    /* set by Xen while mapped/copied from */
#define GTF_writing         (1 << 4)    /* set by Xen while mapped writable */
#define GTF_transitive      3           /* v2: a grant passed on from another domain */
#define GTF_sub_page        (1 << 8)    /* v2: only page_off..page_off+length, copy only */

/* gnttab_map_grant_ref.flags */
#define GNTMAP_device_map   (1 << 0)
#define GNTMAP_host_map     (1 << 1)
#define GNTMAP_readonly     (1 << 2)

/* gnttab_copy.flags */
#define GNTCOPY_source_gref (1 << 0)
#define GNTCOPY_dest_gref   (1 << 1)

/* Status codes (int16_t) */
#define GNTST_okay              0
#define GNTST_general_error     (-1)
#define GNTST_bad_domain        (-2)
#define GNTST_bad_gntref        (-3)
#define GNTST_bad_handle        (-4)
#define GNTST_bad_virt_addr     (-5)
#define GNTST_bad_dev_addr      (-6)
#define GNTST_no_device_space   (-7)
#define GNTST_permission_denied (-8)
#define GNTST_bad_page          (-9)
#define GNTST_bad_copy_arg      (-10)

/* The first refs are the toolstack's (console, xenstore). */
#define GNTTAB_NR_RESERVED_ENTRIES  8

typedef struct grant_entry_v1 {
    uint16_t flags;
    domid_t domid;                      /* who may use the grant */
    uint32_t frame;                     /* the granted machine frame */
} grant_entry_v1_t;

/* v2 entries (16 bytes); their in-use bits live in the status frames. */
typedef struct grant_entry_header {
    uint16_t flags;
    domid_t domid;
} grant_entry_header_t;

typedef union grant_entry_v2 {
    grant_entry_header_t hdr;
    struct {
        grant_entry_header_t hdr;
        uint32_t pad0;
        uint64_t frame;
    } full_page;
    struct {
        grant_entry_header_t hdr;
        uint16_t page_off;
        uint16_t length;
        uint64_t frame;
    } sub_page;
    struct {
        grant_entry_header_t hdr;
        domid_t trans_domid;
        uint16_t pad0;
        grant_ref_t gref;
    } transitive;
    uint32_t __spacer[4];
} grant_entry_v2_t;

typedef uint16_t grant_status_t;

struct gnttab_set_version {
    uint32_t version;                   /* IN: 1 or 2; OUT: the version in use */
};

struct gnttab_get_status_frames {
    uint32_t nr_frames;                 /* IN */
    domid_t dom;                        /* IN */
    int16_t status;                     /* OUT */
    uint64_t *frame_list;               /* OUT: the status frames (MFNs) */
};

struct gnttab_get_version {
    domid_t dom;                        /* IN */
    uint16_t pad;
    uint32_t version;                   /* OUT */
};

struct gnttab_setup_table {
    domid_t dom;                        /* IN: DOMID_SELF */
    uint32_t nr_frames;                 /* IN */
    int16_t status;                     /* OUT */
    unsigned long *frame_list;          /* OUT: the table's frames (MFNs) */
};

struct gnttab_map_grant_ref {
    uint64_t host_addr;                 /* IN: where to map */
    uint32_t flags;                     /* IN: GNTMAP_* */
    grant_ref_t ref;                    /* IN */
    domid_t dom;                        /* IN: the granter */
    int16_t status;                     /* OUT */
    grant_handle_t handle;              /* OUT */
    uint64_t dev_bus_addr;              /* OUT */
};

struct gnttab_unmap_grant_ref {
    uint64_t host_addr;
    uint64_t dev_bus_addr;
    grant_handle_t handle;
    int16_t status;                     /* OUT */
};

struct gnttab_copy_ptr {
    union {
        grant_ref_t ref;
        unsigned long gmfn;
    } u;
    domid_t domid;
    uint16_t offset;
};

struct gnttab_copy {
    struct gnttab_copy_ptr source, dest;
    uint16_t len;
    uint16_t flags;                     /* GNTCOPY_* */
    int16_t status;                     /* OUT */
};

_Static_assert(sizeof(grant_entry_v1_t) == 8, "grant_entry_v1");
_Static_assert(sizeof(grant_entry_v2_t) == 16, "grant_entry_v2");
_Static_assert(sizeof(struct gnttab_get_status_frames) == 16, "gnttab_get_status_frames");
_Static_assert(sizeof(struct gnttab_setup_table) == 24, "gnttab_setup_table");
_Static_assert(sizeof(struct gnttab_map_grant_ref) == 32, "gnttab_map_grant_ref");
_Static_assert(__builtin_offsetof(struct gnttab_map_grant_ref, status) == 18,
               "gnttab_map_grant_ref");
_Static_assert(sizeof(struct gnttab_unmap_grant_ref) == 24,
               "gnttab_unmap_grant_ref");
_Static_assert(sizeof(struct gnttab_copy) == 40, "gnttab_copy");

static inline long HYPERVISOR_grant_table_op(unsigned int cmd, void *uop,
                                             unsigned int count)
{
    return _hypercall3(__HYPERVISOR_grant_table_op, cmd, uop, count);
}

/* Our own table (mapped by gnttab_init), NULL before. */
extern grant_entry_v1_t *gnttab;

/*
 * GNTTABOP_setup_table for one frame and map it writable at a padding
 * page.  Returns 0, a negative hypercall result, or a GNTST_* status.
 */
long gnttab_init(void);

/* Grant domid access to frame mfn (domid and frame first, then flags). */
void gnttab_grant(grant_ref_t ref, domid_t domid, unsigned long mfn, int readonly);

/*
 * End a grant as Xen's protocol says: only when neither GTF_reading nor
 * GTF_writing is set, by cmpxchg of the flags to 0.  Returns 0, or
 * -XEN_EBUSY while the grantee still has it mapped.
 */
long gnttab_end(grant_ref_t ref);

/* Map (dom, ref) at va: va's L1 entry is cleared first.  Returns GNTST_*. */
int gnttab_map(domid_t dom, grant_ref_t ref, void *va, int readonly,
               grant_handle_t *handle);

/* Unmap what gnttab_map put at va.  Returns GNTST_*. */
int gnttab_unmap(void *va, grant_handle_t handle);

/* One GNTTABOP_copy; returns its status (or the hypercall's error). */
int gnttab_copy_one(struct gnttab_copy *op);

/* "GNTST_general_error" for -1, ... */
const char *gntst_name(long status);

#endif /* GUEST_GNTTAB_H */
