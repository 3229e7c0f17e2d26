"""The Xen public ABI, as Python.

Every number and every structure layout a Xen PV x86_64 guest can see lives
in this package: hypercall numbers, sub-op numbers, flags, error codes and the
structs passed through guest memory.  The facts come from Xen's public headers
(``xen/include/public``, installed as ``/usr/include/xen`` by libxen-dev);
the code and the comments are written here.

Conventions (the same in every module):

* Each module mirrors one Xen header (``xen.py`` is ``xen.h``, ``sched.py`` is
  ``sched.h``, ``arch_x86.py`` is ``arch-x86/xen.h`` + ``xen-x86_64.h`` ...).
* Constants are plain module-level ints with Xen's names.  Xen's
  ``__HYPERVISOR_foo`` hypercall numbers are spelled ``HYPERVISOR_foo``;
  Xen's errno names drop their ``XEN_`` prefix; every other name is exactly
  Xen's.
* Structs are ``ctypes.LittleEndianStructure`` (and ``LittleEndianUnion``,
  see ``_compat.py``) subclasses named like the C struct tag, with
  ``_fields_`` in C order under C's field names.  An anonymous nested
  struct/union gets a class named ``<parent>_<member>``.
* Sizes are the x86_64 ones: ``unsigned long``, ``xen_ulong_t``,
  ``xen_pfn_t`` and pointers are 64-bit.  A guest handle
  (``XEN_GUEST_HANDLE(type)``) is a struct holding one pointer, 8 bytes; it
  is ``guest_handle`` here, a ``c_uint64`` holding the guest virtual address.

``tests/test_public_layout.py`` compiles a C probe against the real headers
and checks every size, field offset and constant in this package.
"""
