"""HYPERVISOR_hvm_op(op, arg) numbers: hvm/hvm_op.h and hvm/params.h.

A PV guest may call hvm_op (it is in the PV64 column of Xen 4.17's
hypercall-defs.c); pyxenon needs the numbers to answer it as Xen answers a
PV domain.
"""

HVMOP_set_param = 0                  # arg -> xen_hvm_param
HVMOP_get_param = 1                  # arg -> xen_hvm_param
HVMOP_flush_tlbs = 5                 # arg NULL
HVMOP_pagetable_dying = 9            # arg -> xen_hvm_pagetable_dying
HVMOP_get_time = 10                  # arg -> xen_hvm_get_time (OUT)
HVMOP_xentrace = 11                  # arg -> xen_hvm_xentrace
HVMOP_set_mem_access = 12            # deprecated by XENMEM_access_op
HVMOP_get_mem_access = 13            # deprecated by XENMEM_access_op
HVMOP_get_mem_type = 15              # arg -> xen_hvm_get_mem_type
HVMOP_set_evtchn_upcall_vector = 23  # arg -> xen_hvm_evtchn_upcall_vector
HVMOP_guest_request_vm_event = 24    # arg NULL
HVMOP_altp2m = 25                    # arg -> xen_hvm_altp2m_op

HVM_NR_PARAMS = 39                   # params.h: indexes are below it
TRACE_EXTRA_MAX = 7                  # trace.h: 32-bit words of a record's extra data
TRC_SUBCLS_SHIFT = 12                # trace.h: a guest's event number is below 1 << 12
