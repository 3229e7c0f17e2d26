"""Xen's ELF notes and the legacy __xen_guest section: what a PV kernel says
about itself, decoded as Xen's libelf does (xen/common/libelf/libelf-dominfo.c:
elf_xen_parse_note, elf_xen_parse_guest_info, elf_xen_parse_features).

Every input here comes from a user's kernel file: a bad one raises BadInput,
which elfimage.load_kernel turns into one line naming the file."""
import struct

ADDR_LIMIT = 1 << 64
MAX_NOTES = 65536  # libelf's ELF_MAX_TOTAL_NOTE_COUNT


class BadInput(Exception):
    """Internal: a problem found deep down; the caller adds the path."""


def file_range(blob, offset, size, what):
    if offset + size > len(blob):
        raise BadInput(f"{what} at file offset {offset:#x} (+{size:#x}) "
                       "runs past the end of the file")
    return offset, offset + size


# ------------------------------------------------------------- notes ----

def _note_str(desc):
    text = desc.split(b"\0", 1)[0]
    try:
        return text.decode("ascii")
    except UnicodeDecodeError:
        raise BadInput("is not ASCII text") from None


def _note_num(desc):
    if len(desc) not in (1, 2, 4, 8):
        raise BadInput(f"is a {len(desc)}-byte number "
                        "(numbers are 1, 2, 4 or 8 bytes)")
    return int.from_bytes(desc, "little")


def _note_bitmap(desc):
    if not desc or len(desc) % 4:
        raise BadInput(f"is {len(desc)} bytes, not 32-bit words")
    return int.from_bytes(desc, "little")


def _note_pairs(desc):
    if not desc or len(desc) % 16:
        raise BadInput(f"is {len(desc)} bytes, not 64-bit (mask, value) "
                        "pairs")
    words = struct.unpack(f"<{len(desc) // 8}Q", desc)
    return tuple(zip(words[0::2], words[1::2]))


def _note_raw(desc):
    return bytes(desc)


# type -> (name, decoder), from xen/include/public/elfnote.h, classified as
# libelf's note_desc[] table does.
NOTE_TYPES = {
    0: ("INFO", _note_raw),
    1: ("ENTRY", _note_num),
    2: ("HYPERCALL_PAGE", _note_num),
    3: ("VIRT_BASE", _note_num),
    4: ("PADDR_OFFSET", _note_num),
    5: ("XEN_VERSION", _note_str),
    6: ("GUEST_OS", _note_str),
    7: ("GUEST_VERSION", _note_str),
    8: ("LOADER", _note_str),
    9: ("PAE_MODE", _note_str),
    10: ("FEATURES", _note_str),
    11: ("BSD_SYMTAB", _note_str),
    12: ("HV_START_LOW", _note_num),
    13: ("L1_MFN_VALID", _note_pairs),
    14: ("SUSPEND_CANCEL", _note_num),
    15: ("INIT_P2M", _note_num),
    16: ("MOD_START_PFN", _note_num),
    17: ("SUPPORTED_FEATURES", _note_bitmap),
    18: ("PHYS32_ENTRY", _note_num),
}


def _align4(n):
    return (n + 3) & ~3


def _iter_notes(blob, start, end):
    """Yield (name, type, desc) for each note in blob[start:end].

    Note fields are 4-byte aligned, as libelf reads them.  Fewer than 12
    bytes left over at the end are taken as padding.
    """
    pos = start
    while pos + 12 <= end:
        namesz, descsz, ntype = struct.unpack_from("<III", blob, pos)
        name_at = pos + 12
        desc_at = name_at + _align4(namesz)
        if desc_at + descsz > end:
            raise BadInput(f"ELF note at file offset {pos:#x} runs past the "
                            "end of its segment or section")
        name = bytes(blob[name_at:name_at + namesz]).split(b"\0", 1)[0]
        yield name, ntype, blob[desc_at:desc_at + descsz]
        pos = desc_at + _align4(descsz)


def _decode_note(ntype, desc):
    name, decode = NOTE_TYPES.get(ntype, (f"UNKNOWN_{ntype:#x}", _note_raw))
    try:
        return name, decode(desc)
    except BadInput as err:
        raise BadInput(f"Xen ELF note {name} {err}") from None


def xen_notes_in(blob, regions):
    """Decode the Xen notes in the (offset, size, what) regions."""
    notes, count = {}, 0
    for offset, size, what in regions:
        start, end = file_range(blob, offset, size, what)
        for name, ntype, desc in _iter_notes(blob, start, end):
            count += 1
            if count > MAX_NOTES:
                raise BadInput("too many ELF notes")
            if name == b"Xen":
                key, value = _decode_note(ntype, desc)
                notes[key] = value
    return notes


# -------------------------------------------------------- __xen_guest ----

def c_integer(text):
    """Parse an unsigned integer as C's strtoull(text, NULL, 0) would,
    but without ignoring trailing junk: 0x hex, 0 octal, else decimal."""
    digits, base = text, 10
    if text[:2].lower() == "0x":
        digits, base = text[2:], 16
    elif text.startswith("0") and len(text) > 1:
        digits, base = text[1:], 8
    if not digits or not all(c in "0123456789abcdef"[:base] for c in
                             digits.lower()):
        raise ValueError(f"bad number {text!r}")
    return int(digits, base)


def _legacy_number(value):
    try:
        return c_integer(value) % ADDR_LIMIT
    except ValueError as err:
        raise BadInput(str(err)) from None


# __xen_guest key -> (note name, value converter); from libelf's
# elf_xen_parse_guest_info().  Other keys are kept as strings.
LEGACY_KEYS = {
    "LOADER": ("LOADER", str),
    "GUEST_OS": ("GUEST_OS", str),
    "GUEST_VER": ("GUEST_VERSION", str),
    "XEN_VER": ("XEN_VERSION", str),
    "PAE": ("PAE_MODE", str),
    "BSD_SYMTAB": ("BSD_SYMTAB", lambda value: "yes"),  # presence is enough
    "FEATURES": ("FEATURES", str),
    "VIRT_BASE": ("VIRT_BASE", _legacy_number),
    "VIRT_ENTRY": ("ENTRY", _legacy_number),
    "ELF_PADDR_OFFSET": ("PADDR_OFFSET", _legacy_number),
    "HYPERCALL_PAGE": ("HYPERCALL_PAGE", _legacy_number),
}


def parse_xen_guest(raw):
    """Parse "KEY=VALUE,KEY=VALUE,..." into note names and values."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise BadInput("__xen_guest section is not ASCII text") from None
    notes = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        name, convert = LEGACY_KEYS.get(key, (key, str))
        try:
            notes[name] = convert(value)
        except BadInput as err:
            raise BadInput(f"__xen_guest {key}: {err}") from None
    if "HYPERCALL_PAGE" in notes:  # a page number counted from VIRT_BASE
        page = notes["HYPERCALL_PAGE"]
        notes["HYPERCALL_PAGE"] = ((page << 12) + notes.get("VIRT_BASE", 0)) \
            % ADDR_LIMIT
    return notes


# ------------------------------------------------------------ features ----

# Names libelf's elf_xen_parse_features() knows in the FEATURES string.
LIBELF_FEATURES = {
    "writable_page_tables": 0,
    "writable_descriptor_tables": 1,
    "auto_translated_physmap": 2,
    "supervisor_mode_kernel": 3,
    "pae_pgdir_above_4gb": 4,
    "hvm_callback_vector": 8,
    "dom0": 11,
}

# Every XENFEAT_* bit of xen/include/public/features.h, for the
# SUPPORTED_FEATURES bitmap.
FEATURE_BITS = {
    0: "writable_page_tables", 1: "writable_descriptor_tables",
    2: "auto_translated_physmap", 3: "supervisor_mode_kernel",
    4: "pae_pgdir_above_4gb", 5: "mmu_pt_update_preserve_ad",
    6: "highmem_assist", 7: "gnttab_map_avail_bits",
    8: "hvm_callback_vector", 9: "hvm_safe_pvclock", 10: "hvm_pirqs",
    11: "dom0", 12: "grant_map_identity", 13: "memory_op_vnode_supported",
    14: "ARM_SMCCC_supported", 15: "linux_rsdp_unrestricted",
    16: "not_direct_mapped", 17: "direct_mapped",
}


def parse_features(text):
    """Parse a '|'-separated FEATURES string as libelf does.

    Returns (supported, required); a required feature is also supported.
    Unknown names are ignored, unless required ("!name"): that is an error.
    """
    supported, required = set(), set()
    for item in filter(None, text.split("|")):
        is_required = item.startswith("!")
        name = item[1:] if is_required else item
        if name in LIBELF_FEATURES:
            supported.add(name)
            if is_required:
                required.add(name)
        elif is_required:
            raise BadInput(f"kernel requires unknown Xen feature {name!r}")
    return supported, required


def bitmap_features(bitmap):
    """Names of the bits of the first 32-bit word (XENFEAT_NR_SUBMAPS 1)."""
    return {FEATURE_BITS.get(bit, f"bit{bit}") for bit in range(32)
            if bitmap >> bit & 1}
