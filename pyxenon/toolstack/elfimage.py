"""Load an x86_64 Xen PV kernel (an ELF file), checking it as Xen does.

``load_kernel(path)`` returns a :class:`KernelImage`: the kernel's
segments placed in the guest's virtual address space, plus what the kernel
says about itself in its Xen ELF notes.  Any problem with the file is raised
as :class:`pyxenon.errors.UserInputError` and never as another exception.
A bzImage or a compressed ELF is first unpacked (``kernelimage.py``).

Rules taken from Xen's libelf (``libelf-dominfo.c``, ``libelf-loader.c``)
and libxenguest (``xc_dom_core.c``):

* Xen information comes from notes named "Xen" in PT_NOTE segments (a
  PT_NOTE with p_offset 0 is skipped, as Xen does).  Only if those hold no
  Xen note are SHT_NOTE sections read, and only if neither holds one is the
  legacy ``__xen_guest`` section read.  A later note of a type replaces an
  earlier one.
* Note types are decoded as libelf classifies them: XEN_VERSION, GUEST_OS,
  GUEST_VERSION, LOADER, PAE_MODE, FEATURES and BSD_SYMTAB are strings;
  ENTRY, HYPERCALL_PAGE, VIRT_BASE, PADDR_OFFSET, HV_START_LOW,
  SUSPEND_CANCEL, INIT_P2M, MOD_START_PFN and PHYS32_ENTRY are numbers of 1,
  2, 4 or 8 bytes; SUPPORTED_FEATURES is an array of 32-bit bitmap words;
  L1_MFN_VALID is a list of 64-bit (mask, value) pairs.  Other types are
  kept as raw bytes.  Where libelf silently reads a badly sized number as 0,
  this loader reports the note as malformed instead.
* VIRT_BASE defaults to 0.  PADDR_OFFSET defaults to 0 with ELF notes but to
  VIRT_BASE with ``__xen_guest`` (old kernels put ``__PAGE_OFFSET`` into
  p_paddr).  Setting PADDR_OFFSET without VIRT_BASE is an error.  ENTRY
  defaults to e_entry.  A legacy HYPERCALL_PAGE is a page number counted
  from VIRT_BASE; the note form is a virtual address.
* A loadable segment is a PT_LOAD with some of R/W/X set (as libelf); those
  with p_memsz 0 are dropped.  A segment lands at virtual address
  ``p_paddr - PADDR_OFFSET + VIRT_BASE`` (modulo 2**64).  The kernel image
  runs from the lowest such address (virt_kstart, which libxenguest needs
  page aligned) to the highest end, rounded up to a page (virt_kend).
* XEN_VERSION must start with "xen-3.0".  LOADER must start with "generic"
  unless GUEST_OS starts with "linux" (libelf accepts either).  A required
  ("!name") feature that libelf does not know is an error.  INIT_P2M must
  not fall inside the kernel image.

Checks added on top of Xen's (all of them reject images Xen would fail to
boot or load wrongly): only ET_EXEC; p_filesz <= p_memsz; segment data
inside the file; no overlapping segments; segments inside canonical x86_64
addresses and outside the range Xen reserves for itself; the entry point
inside an executable segment; HYPERCALL_PAGE a whole page inside the image;
and, if ``max_bytes`` is given, the image fitting in it.  BSD_SYMTAB is
recorded but no symbol table is loaded.
"""

import struct
from contextlib import contextmanager
from dataclasses import dataclass, field
from io import BytesIO
from typing import Optional

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from pyxenon.errors import UserInputError, read_user_file
from pyxenon.toolstack.kernelimage import unpack_kernel
from pyxenon.toolstack.xennotes import (ADDR_LIMIT, BadInput, bitmap_features, file_range,
                                        parse_features, parse_xen_guest, xen_notes_in)

PAGE_SIZE = 0x1000
MIB = 1 << 20

PF_X, PF_W, PF_R = 1, 2, 4
EHDR_SIZE = 64
PHDR_SIZE = 56
SHDR_SIZE = 64

# Guest virtual addresses an x86_64 PV kernel may occupy: the two canonical
# halves, minus the slots Xen keeps for itself (L4 slots 256-271).
CANONICAL_LOW_END = 0x0000_8000_0000_0000
CANONICAL_HIGH_START = 0xFFFF_8000_0000_0000
XEN_RESERVED = (0xFFFF_8000_0000_0000, 0xFFFF_8800_0000_0000)

# Exceptions pyelftools (and the struct module under it) raise on bad input.
_PARSE_ERRORS = (ELFError, struct.error, ValueError, IndexError, KeyError,
                 OverflowError, UnicodeDecodeError, EOFError)


@dataclass(frozen=True)
class Segment:
    """A loadable segment: ``data`` is copied to ``vaddr``, the rest of
    ``memsz`` is zero filled.  ``flags`` are the ELF PF_* bits."""

    vaddr: int
    memsz: int
    data: bytes
    flags: int

    @property
    def filesz(self):
        return len(self.data)

    @property
    def end(self):
        return self.vaddr + self.memsz

    @property
    def executable(self):
        return bool(self.flags & PF_X)


@dataclass
class KernelImage:
    """A checked Xen PV kernel, with addresses in guest virtual space."""

    path: str
    entry: int
    virt_base: int
    paddr_offset: int
    virt_kstart: int
    virt_kend: int
    hypercall_page: Optional[int]
    segments: list
    notes: dict
    guest_os: str = ""
    guest_version: str = ""
    xen_version: str = ""
    loader: str = ""
    features_required: frozenset = field(default_factory=frozenset)
    features_supported: frozenset = field(default_factory=frozenset)
    pae_mode: str = ""
    suspend_cancel: bool = False
    init_p2m: Optional[int] = None
    mod_start_pfn: bool = False
    bsd_symtab: bool = False
    legacy: bool = False  # True if read from __xen_guest, not ELF notes

    @property
    def size(self):
        return self.virt_kend - self.virt_kstart


def load_kernel(path, max_bytes=None):
    """Read, check and lay out the Xen PV kernel at ``path``.

    ``max_bytes`` is the guest's memory; an image larger than it is refused.
    """
    path = str(path)
    blob = unpack_kernel(path, _read_file(path, max_bytes), max_bytes).elf
    try:
        return _load(path, blob, max_bytes)
    except BadInput as err:
        raise UserInputError(path, str(err)) from None


def _load(path, blob, max_bytes):
    _check_ident(blob)
    elf, header = _open_elf(blob)
    _check_header(header, len(blob))
    phdrs = _program_headers(elf, header)
    notes, legacy = _find_xen_info(elf, blob, phdrs)
    parms = _resolve_parms(notes, legacy, header["e_entry"])
    segments = _place_segments(blob, phdrs, parms)
    image = _make_image(path, parms, segments, notes, legacy)
    _check_image(image, max_bytes)
    return image


# ---------------------------------------------------------------- file ----

KERNEL_LIMIT = 1 << 30     # with no domain to size it: more than any PV kernel


def _read_file(path, max_bytes):
    if max_bytes is None:
        return read_user_file(path, "kernel", KERNEL_LIMIT)
    return read_user_file(path, "kernel", max_bytes, "the domain's memory")


def _one_line(text, limit=160):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


@contextmanager
def _elf_errors(what):
    """Turn pyelftools' exceptions into a one-line BadInput."""
    try:
        yield
    except _PARSE_ERRORS as err:
        detail = _one_line(err) or type(err).__name__
        raise BadInput(f"malformed ELF file ({what}): {detail}") from None


# ------------------------------------------------------------- header ----

_IDENT_CHECKS = (
    (lambda b: len(b) == 0, "empty file: not a kernel image"),
    (lambda b: b[:4] != b"\x7fELF", "not an ELF file"),
    (lambda b: len(b) < EHDR_SIZE, "truncated ELF header"),
    (lambda b: b[4] == 1,
     "32-bit ELF: only x86_64 PV kernels are supported"),
    (lambda b: b[4] != 2, "bad ELF class byte: not a 64-bit ELF file"),
    (lambda b: b[5] == 2,
     "big-endian ELF: only little-endian x86_64 kernels are supported"),
    (lambda b: b[5] != 1, "bad ELF data-encoding byte"),
)


def _check_ident(blob):
    for failed, problem in _IDENT_CHECKS:
        if failed(blob):
            raise BadInput(problem)


def _open_elf(blob):
    with _elf_errors("ELF header"):
        elf = ELFFile(BytesIO(blob))
        return elf, elf.header


def _table_problem(kind, offset, entsize, count, want_size, file_size):
    if count and entsize != want_size:
        return f"{kind} entries are {entsize} bytes, expected {want_size}"
    if offset + entsize * count > file_size:
        return f"{kind} table runs past the end of the file"
    return None


def _check_header(header, file_size):
    machine, etype = header["e_machine"], header["e_type"]
    if machine != "EM_X86_64":
        raise BadInput(f"ELF machine {machine}: only x86_64 (EM_X86_64) "
                        "PV kernels are supported")
    if etype != "ET_EXEC":
        raise BadInput(f"ELF type {etype}: only executable (ET_EXEC) "
                        "kernels are supported, as by Xen")
    tables = (("program header", "e_phoff", "e_phentsize", "e_phnum",
               PHDR_SIZE),
              ("section header", "e_shoff", "e_shentsize", "e_shnum",
               SHDR_SIZE))
    for kind, off, ent, num, size in tables:
        problem = _table_problem(kind, header[off], header[ent], header[num],
                                 size, file_size)
        if problem:
            raise BadInput(problem)


# ---------------------------------------------------- headers as tuples ----

@dataclass(frozen=True)
class _Phdr:
    index: int
    type: object  # pyelftools gives 'PT_LOAD' etc., or an int if unknown
    flags: int
    offset: int
    paddr: int
    filesz: int
    memsz: int


@dataclass(frozen=True)
class _Shdr:
    name: str
    type: object
    offset: int
    size: int


def _program_headers(elf, header):
    # e_phnum is used as is, like Xen (no PN_XNUM extension).
    with _elf_errors("program headers"):
        return [_phdr(i, elf.get_segment(i).header)
                for i in range(header["e_phnum"])]


def _phdr(index, hdr):
    return _Phdr(index, hdr["p_type"], hdr["p_flags"], hdr["p_offset"],
                 hdr["p_paddr"], hdr["p_filesz"], hdr["p_memsz"])


def _section_headers(elf):
    with _elf_errors("section headers"):
        return [_Shdr(sec.name, sec["sh_type"], sec["sh_offset"],
                      sec["sh_size"])
                for sec in elf.iter_sections()]


def _note_segments(phdrs):
    return [(p.offset, p.filesz, f"PT_NOTE segment {p.index}")
            for p in phdrs if p.type == "PT_NOTE" and p.offset != 0]


def _note_sections(sections):
    return [(s.offset, s.size, f"note section {s.name!r}")
            for s in sections if s.type == "SHT_NOTE"]


def _find_xen_info(elf, blob, phdrs):
    """Return (notes, legacy) with Xen's fall-back order."""
    notes = xen_notes_in(blob, _note_segments(phdrs))
    if notes:
        return notes, False
    sections = _section_headers(elf)
    notes = xen_notes_in(blob, _note_sections(sections))
    if notes:
        return notes, False
    guest = next((s for s in sections if s.name == "__xen_guest"), None)
    if guest is None:
        raise BadInput("no Xen ELF notes: not a Xen PV kernel")
    return parse_xen_guest(_section_bytes(blob, guest)), True


def _section_bytes(blob, section):
    if section.type == "SHT_NOBITS":
        raise BadInput(f"section {section.name} has no data in the file")
    start, end = file_range(blob, section.offset, section.size,
                             f"section {section.name}")
    return bytes(blob[start:end]).split(b"\0", 1)[0]


# ---------------------------------------------------------- resolution ----

@dataclass
class _Parms:
    virt_base: int
    paddr_offset: int
    entry: int
    hypercall_page: Optional[int]
    init_p2m: Optional[int]


def _resolve_parms(notes, legacy, e_entry):
    if "PADDR_OFFSET" in notes and "VIRT_BASE" not in notes:
        raise BadInput("ELF_PADDR_OFFSET is set but VIRT_BASE is not")
    virt_base = notes.get("VIRT_BASE", 0)
    paddr_offset = notes.get("PADDR_OFFSET", virt_base if legacy else 0)
    _check_identity(notes)
    return _Parms(virt_base=virt_base, paddr_offset=paddr_offset,
                  entry=notes.get("ENTRY", e_entry),
                  hypercall_page=notes.get("HYPERCALL_PAGE"),
                  init_p2m=notes.get("INIT_P2M"))


def _check_identity(notes):
    """libelf's elf_xen_note_check(), for PV guests."""
    loader = notes.get("LOADER", "")
    guest_os = notes.get("GUEST_OS", "")
    if not (loader.startswith("generic") or guest_os.startswith("linux")):
        raise BadInput(f"LOADER is {loader!r} and GUEST_OS is {guest_os!r}: "
                        "Xen only loads kernels for the 'generic' loader or "
                        "Linux kernels")
    version = notes.get("XEN_VERSION", "")
    if not version.startswith("xen-3.0"):
        raise BadInput(f"XEN_VERSION is {version!r}: Xen only loads kernels "
                        "built for 'xen-3.0'")


# ------------------------------------------------------------ segments ----

def _is_loadable(phdr):
    return (phdr.type == "PT_LOAD" and phdr.flags & (PF_R | PF_W | PF_X)
            and phdr.memsz > 0)


def _place_segments(blob, phdrs, parms):
    loadable = [p for p in phdrs if _is_loadable(p)]
    if not loadable:
        raise BadInput("no loadable (PT_LOAD) segments")
    shift = parms.virt_base - parms.paddr_offset
    segments = [_place(blob, p, shift) for p in loadable]
    _check_overlaps(segments, loadable)
    return segments


def _place(blob, phdr, shift):
    what = f"segment {phdr.index}"
    if phdr.filesz > phdr.memsz:
        raise BadInput(f"{what}: file size {phdr.filesz:#x} is larger than "
                        f"memory size {phdr.memsz:#x}")
    start, end = file_range(blob, phdr.offset, phdr.filesz, what)
    vaddr = (phdr.paddr + shift) % ADDR_LIMIT
    return Segment(vaddr, phdr.memsz, bytes(blob[start:end]), phdr.flags)


def _check_overlaps(segments, phdrs):
    ordered = sorted(zip(segments, phdrs), key=lambda pair: pair[0].vaddr)
    for (low, low_ph), (high, high_ph) in zip(ordered, ordered[1:]):
        if low.end > high.vaddr:
            raise BadInput(f"segments {low_ph.index} and {high_ph.index} "
                            f"overlap at {high.vaddr:#x}")


def _page_up(addr):
    return (addr + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


def _make_image(path, parms, segments, notes, legacy):
    supported, required = parse_features(notes.get("FEATURES", ""))
    supported |= bitmap_features(notes.get("SUPPORTED_FEATURES", 0))
    return KernelImage(
        path=path, entry=parms.entry, virt_base=parms.virt_base,
        paddr_offset=parms.paddr_offset,
        virt_kstart=min(s.vaddr for s in segments),
        virt_kend=_page_up(max(s.end for s in segments)),
        hypercall_page=parms.hypercall_page,
        segments=sorted(segments, key=lambda s: s.vaddr), notes=notes,
        guest_os=notes.get("GUEST_OS", ""),
        guest_version=notes.get("GUEST_VERSION", ""),
        xen_version=notes.get("XEN_VERSION", ""),
        loader=notes.get("LOADER", ""),
        features_required=frozenset(required),
        features_supported=frozenset(supported),
        pae_mode=notes.get("PAE_MODE", ""),
        suspend_cancel=bool(notes.get("SUSPEND_CANCEL", 0)),
        init_p2m=parms.init_p2m,
        mod_start_pfn=bool(notes.get("MOD_START_PFN", 0)),
        bsd_symtab=notes.get("BSD_SYMTAB") == "yes",
        legacy=legacy)


# -------------------------------------------------------------- checks ----

def _segment_problem(seg, virt_base):
    if seg.end > ADDR_LIMIT or _page_up(seg.end) > ADDR_LIMIT:
        return "wraps around the top of the address space"
    if seg.vaddr < virt_base:
        return f"is below VIRT_BASE {virt_base:#x}"
    if seg.end > CANONICAL_LOW_END and seg.vaddr < CANONICAL_HIGH_START:
        return "is not in canonical x86_64 address space"
    if seg.vaddr < XEN_RESERVED[1] and seg.end > XEN_RESERVED[0]:
        return "overlaps the virtual addresses Xen reserves for itself"
    return None


def _check_segments(image):
    for seg in image.segments:
        problem = _segment_problem(seg, image.virt_base)
        if problem:
            raise BadInput(f"segment at {seg.vaddr:#x} (size {seg.memsz:#x}) "
                            f"{problem}")


def _check_start(image):
    if image.virt_kstart % PAGE_SIZE:
        raise BadInput(f"kernel image starts at {image.virt_kstart:#x}, "
                        "which is not page aligned")


def _check_entry(image):
    if not any(s.executable and s.vaddr <= image.entry < s.end
               for s in image.segments):
        raise BadInput(f"entry point {image.entry:#x} is not inside an "
                        "executable segment")


def _check_hypercall_page(image):
    page = image.hypercall_page
    if page is None:
        return
    if page % PAGE_SIZE:
        raise BadInput(f"HYPERCALL_PAGE {page:#x} is not page aligned")
    if not image.virt_kstart <= page <= image.virt_kend - PAGE_SIZE:
        raise BadInput(f"HYPERCALL_PAGE {page:#x} is outside the kernel "
                        f"image {image.virt_kstart:#x}-{image.virt_kend:#x}")


def _check_p2m(image):
    p2m = image.init_p2m
    if p2m is not None and image.virt_kstart <= p2m < image.virt_kend:
        raise BadInput(f"INIT_P2M {p2m:#x} is inside the kernel image "
                        f"{image.virt_kstart:#x}-{image.virt_kend:#x}")


def _check_size(image, max_bytes):
    if max_bytes is not None and image.size > max_bytes:
        need = -(-image.size // MIB)
        raise BadInput(f"kernel image needs {need} MiB, the domain has "
                        f"{max_bytes // MIB} MiB")


_IMAGE_CHECKS = (_check_segments, _check_start, _check_entry,
                 _check_hypercall_page, _check_p2m)


def _check_image(image, max_bytes):
    for check in _IMAGE_CHECKS:
        check(image)
    _check_size(image, max_bytes)
