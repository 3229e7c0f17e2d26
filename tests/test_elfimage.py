"""Tests for pyxenon.toolstack.elfimage: test kernels are assembled here."""

import shutil
import struct
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyxenon.errors import UserInputError
from pyxenon.toolstack.elfimage import PF_R, PF_W, PF_X, KernelImage, Segment, load_kernel
from pyxenon.toolstack.xennotes import c_integer, parse_features

pytestmark = pytest.mark.skipif(
    not (shutil.which("gcc") and shutil.which("ld")),
    reason="needs gcc and ld to build test kernels")

LINUX_BASE = 0xFFFFFFFF80000000
LINUX_TEXT = 0xFFFFFFFF81000000
PT_LOAD, PT_NOTE = 1, 4
ET_DYN = 3

# Linux-like notes: (type, kind, value); kind picks the assembler directive.
LINUX_NOTES = [
    (6, "str", "linux"),
    (7, "str", "2.6"),
    (5, "str", "xen-3.0"),
    (3, "quad", LINUX_BASE),
    (4, "quad", 0),
    (1, "quad", "startup"),
    (2, "quad", "hypercall_page"),
    (10, "str", "!writable_page_tables|pae_pgdir_above_4gb"),
    (17, "long", (1 << 0) | (1 << 11) | (1 << 15)),
    (9, "str", "yes"),
    (8, "str", "generic"),
    (13, "quad2", "1, 1"),
    (14, "long", 1),
    (16, "long", 1),
    (15, "quad", 0x8000000000),
    (12, "quad", 0xFFFF800000000000),
    (0x99, "long", 7),
]

NOTE_DIRECTIVES = {
    "str": '.asciz "{}"',
    "quad": ".quad {}",
    "quad2": ".quad {}",
    "long": ".long {}",
    "short": ".short {}",
    "byte": ".byte {}",
    "bytes3": ".byte 1, 2, 3",
}

BODY = """
    .text
    .globl startup
startup:
    hlt
    jmp startup
    .balign 4096
hypercall_page:
    .skip 4096
    .data
data_word:
    .quad 1
    .bss
    .skip 8192
"""

LDS = """
OUTPUT_FORMAT("elf64-x86-64")
ENTRY(startup)
PHDRS {{ text PT_LOAD FLAGS(5); data PT_LOAD FLAGS(6); note PT_NOTE FLAGS(4); }}
SECTIONS {{
  . = {vma:#x};
  .text : AT(ADDR(.text) - {shift:#x}) {{ *(.text) }} :text
  .notes : AT(ADDR(.notes) - {shift:#x}) {{ *(.note.Xen) }} :text :note
  . = ALIGN(0x1000);
  .data : AT(ADDR(.data) - {shift:#x}) {{ *(.data) }} :data
  .bss : AT(ADDR(.bss) - {shift:#x}) {{ *(.bss) }} :data
  /DISCARD/ : {{ *(.note.gnu.property) *(.comment) *(.note.GNU-stack) }}
}}
"""


def note_asm(index, ntype, kind, value):
    desc = NOTE_DIRECTIVES[kind].format(value)
    return f"""
    .pushsection .note.Xen, "a", @note
    .balign 4
    .long 4
    .long .Ldesc_end{index} - .Ldesc{index}
    .long {ntype}
    .asciz "Xen"
    .balign 4
.Ldesc{index}:
    {desc}
.Ldesc_end{index}:
    .balign 4
    .popsection
"""


def build(tmp_path, name, notes=LINUX_NOTES, vma=LINUX_TEXT, shift=LINUX_BASE,
          extra="", m32=False):
    """Assemble and link a small kernel; return its path."""
    src = tmp_path / f"{name}.S"
    obj = tmp_path / f"{name}.o"
    out = tmp_path / name
    notes_src = "".join(note_asm(i, *n) for i, n in enumerate(notes))
    src.write_text(BODY + notes_src + extra)
    lds = tmp_path / f"{name}.lds"
    lds.write_text(LDS.format(vma=vma, shift=shift))
    cc = ["gcc", "-c", str(src), "-o", str(obj)]
    ld = ["ld", "-T", str(lds), "-z", "max-page-size=0x1000",
          "--build-id=none", "-o", str(out), str(obj)]
    if m32:
        cc.insert(1, "-m32")
        ld[1:1] = ["-m", "elf_i386"]
        lds.write_text(lds.read_text().replace("elf64-x86-64", "elf32-i386"))
    subprocess.run(cc, check=True, capture_output=True)
    subprocess.run(ld, check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def kdir(tmp_path_factory):
    return tmp_path_factory.mktemp("kernels")


@pytest.fixture(scope="module")
def good(kdir):
    return build(kdir, "good")


@pytest.fixture(scope="module")
def good_bytes(good):
    return good.read_bytes()


def assert_user_error(path, match=None, **kwargs):
    with pytest.raises(UserInputError) as info:
        load_kernel(path, **kwargs)
    text = str(info.value)
    assert text.startswith(str(path) + ":"), text
    assert "\n" not in text
    if match:
        assert match in text, text
    return info.value


# ------------------------------------------------------ ELF patching ----

def phdrs(blob):
    """[(offset_of_phdr, [fields])] for each program header."""
    phoff, = struct.unpack_from("<Q", blob, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", blob, 0x36)
    return [(phoff + i * phentsize,
             list(struct.unpack_from("<IIQQQQQQ", blob, phoff + i * phentsize)))
            for i in range(phnum)]


def patched_phdr(blob, want_type, nth, **changes):
    """Copy of blob with fields of the nth program header of a type set."""
    names = ["type", "flags", "offset", "vaddr", "paddr", "filesz", "memsz",
             "align"]
    out = bytearray(blob)
    at, fields = [p for p in phdrs(blob) if p[1][0] == want_type][nth]
    for key, value in changes.items():
        fields[names.index(key)] = value
    struct.pack_into("<IIQQQQQQ", out, at, *fields)
    return bytes(out)


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


# ---------------------------------------------------------- good files ----

def test_linux_like_kernel(good):
    k = load_kernel(good)
    assert isinstance(k, KernelImage)
    assert k.path == str(good)
    assert k.virt_base == LINUX_BASE
    assert k.paddr_offset == 0
    assert k.virt_kstart == LINUX_TEXT
    assert k.virt_kend % 0x1000 == 0
    assert k.entry == LINUX_TEXT
    assert k.hypercall_page == LINUX_TEXT + 0x1000
    assert (k.guest_os, k.guest_version, k.xen_version, k.loader) == (
        "linux", "2.6", "xen-3.0", "generic")
    assert k.pae_mode == "yes"
    assert k.features_required == {"writable_page_tables"}
    assert k.features_supported == {"writable_page_tables",
                                    "pae_pgdir_above_4gb", "dom0",
                                    "linux_rsdp_unrestricted"}
    assert k.suspend_cancel is True
    assert k.mod_start_pfn is True
    assert k.init_p2m == 0x8000000000
    assert k.legacy is False
    assert k.notes["L1_MFN_VALID"] == ((1, 1),)
    assert k.notes["HV_START_LOW"] == 0xFFFF800000000000
    assert k.notes["UNKNOWN_0x99"] == struct.pack("<I", 7)


def test_segments_of_good_kernel(good):
    k = load_kernel(good)
    text, data = k.segments
    assert isinstance(text, Segment)
    assert text.vaddr == LINUX_TEXT
    assert text.flags == PF_R | PF_X
    assert text.data[:1] == b"\xf4"  # hlt
    assert data.vaddr % 0x1000 == 0 and data.vaddr >= text.end
    assert data.flags == PF_R | PF_W
    assert data.filesz == 8 and data.memsz == 8 + 8192
    assert data.data == struct.pack("<Q", 1)
    assert k.virt_kend == data.vaddr + 0x3000
    assert k.size == k.virt_kend - k.virt_kstart


def test_paddr_equal_to_vaddr_with_paddr_offset(tmp_path):
    # Old style: p_paddr holds the virtual address, PADDR_OFFSET = VIRT_BASE.
    notes = [n for n in LINUX_NOTES if n[0] != 4] + [(4, "quad", LINUX_BASE)]
    path = build(tmp_path, "oldstyle", notes=notes, shift=0)
    k = load_kernel(path)
    assert k.paddr_offset == LINUX_BASE
    assert k.virt_kstart == LINUX_TEXT


def test_notes_from_sections_when_no_pt_note(good_bytes, tmp_path):
    blob = patched_phdr(good_bytes, PT_NOTE, 0, type=0)
    k = load_kernel(write(tmp_path, "secnotes", blob))
    assert k.guest_os == "linux"


def test_small_numeric_note_sizes(tmp_path):
    notes = LINUX_NOTES + [(14, "byte", 1), (16, "short", 0)]
    k = load_kernel(build(tmp_path, "small", notes=notes))
    assert k.suspend_cancel is True
    assert k.mod_start_pfn is False


def test_defaults_without_optional_notes(tmp_path):
    notes = [(6, "str", "linux"), (5, "str", "xen-3.0")]
    k = load_kernel(build(tmp_path, "minimal", notes=notes, vma=0x400000,
                          shift=0))
    assert (k.virt_base, k.paddr_offset) == (0, 0)
    assert k.entry == 0x400000  # e_entry
    assert k.hypercall_page is None and k.init_p2m is None
    assert k.loader == "" and k.pae_mode == ""
    assert k.features_supported == frozenset()
    assert k.suspend_cancel is False and k.mod_start_pfn is False


LEGACY = ('\n    .section __xen_guest, ""\n    .asciz "{}"\n')


def test_legacy_xen_guest(tmp_path):
    guest = ("GUEST_OS=linux,GUEST_VER=2.6,XEN_VER=xen-3.0,"
             f"VIRT_BASE={LINUX_BASE:#x},HYPERCALL_PAGE=0x1001,"
             "LOADER=generic,FEATURES=writable_page_tables|!dom0,"
             "PAE=yes[extended-cr3],BSD_SYMTAB,OTHER=x")
    # p_paddr holds the virtual address: the legacy PADDR_OFFSET default
    # (= VIRT_BASE) maps it back to itself.
    path = build(tmp_path, "legacy", notes=[], shift=0,
                 extra=LEGACY.format(guest))
    k = load_kernel(path)
    assert k.legacy is True
    assert k.virt_base == LINUX_BASE
    assert k.paddr_offset == LINUX_BASE
    assert k.virt_kstart == LINUX_TEXT
    assert k.hypercall_page == LINUX_BASE + 0x1001 * 0x1000
    assert k.hypercall_page == LINUX_TEXT + 0x1000
    assert k.guest_version == "2.6"
    assert k.features_required == {"dom0"}
    assert k.features_supported == {"dom0", "writable_page_tables"}
    assert k.pae_mode == "yes[extended-cr3]"
    assert k.bsd_symtab is True
    assert k.notes["OTHER"] == "x"


def test_legacy_entry_and_octal(tmp_path):
    guest = ("GUEST_OS=linux,XEN_VER=xen-3.0,VIRT_BASE=0,"
             "VIRT_ENTRY=020000000")  # octal, as strtoull(..., 0)
    path = build(tmp_path, "legacy2", notes=[], vma=0x400000, shift=0,
                 extra=LEGACY.format(guest))
    assert load_kernel(path).entry == 0x400000


def test_legacy_bad_number(tmp_path):
    guest = "GUEST_OS=linux,XEN_VER=xen-3.0,VIRT_BASE=0xZZ"
    path = build(tmp_path, "legacy3", notes=[], vma=0x400000, shift=0,
                 extra=LEGACY.format(guest))
    assert_user_error(path, "VIRT_BASE")


def test_max_bytes(good):
    k = load_kernel(good, max_bytes=1 << 20)
    assert k.size <= 1 << 20
    file_size = good.stat().st_size
    assert file_size < k.size          # the image's bss is not in the file
    assert_user_error(good, "kernel image needs 1 MiB, the domain has 0 MiB",
                      max_bytes=file_size)
    # a file larger than the domain is not even read whole
    assert_user_error(good, "kernel too large: over 4096 bytes (the domain's memory)",
                      max_bytes=4096)


# ------------------------------------------------------- bad files ----

def test_missing_file(tmp_path):
    assert_user_error(tmp_path / "nope", "No such file")


def test_directory(tmp_path):
    assert_user_error(tmp_path, "directory")


def test_empty_file(tmp_path):
    assert_user_error(write(tmp_path, "empty", b""), "empty file")


def test_garbage(tmp_path):
    assert_user_error(write(tmp_path, "junk", b"hello world\n" * 20),
                      "not an ELF or bzImage")


def test_32_bit(tmp_path):
    try:
        path = build(tmp_path, "k32", notes=[], vma=0xC0100000,
                     shift=0xC0000000, m32=True)
    except subprocess.CalledProcessError:
        good = build(tmp_path, "k64")
        blob = bytearray(good.read_bytes())
        blob[4] = 1
        path = write(tmp_path, "k32", bytes(blob))
    assert_user_error(path, "32-bit ELF: only x86_64 PV kernels are supported")


@pytest.mark.parametrize("offset, value, match", [
    (4, 7, "bad ELF class"),
    (5, 2, "big-endian"),
    (5, 9, "data-encoding"),
    (0x12, 3, "ELF machine EM_386"),   # e_machine
    (0x10, ET_DYN, "ELF type ET_DYN"),  # e_type
    (0x36, 40, "program header entries are 40 bytes"),
    (0x3A, 10, "section header entries are 10 bytes"),
])
def test_bad_header_fields(good_bytes, tmp_path, offset, value, match):
    blob = bytearray(good_bytes)
    blob[offset] = value
    assert_user_error(write(tmp_path, "hdr", bytes(blob)), match)


def test_truncated(good_bytes, tmp_path):
    for size in (3, 40, 100, len(good_bytes) // 2, len(good_bytes) - 1):
        assert_user_error(write(tmp_path, f"trunc{size}", good_bytes[:size]))


def test_segment_data_past_end_of_file(good_bytes, tmp_path):
    blob = patched_phdr(good_bytes, PT_LOAD, 0, offset=len(good_bytes))
    assert_user_error(write(tmp_path, "past", blob), "past the end of the file")


def test_filesz_larger_than_memsz(good_bytes, tmp_path):
    _, fields = [p for p in phdrs(good_bytes) if p[1][0] == PT_LOAD][0]
    blob = patched_phdr(good_bytes, PT_LOAD, 0, memsz=fields[5] - 1)
    assert_user_error(write(tmp_path, "fsz", blob), "larger than memory size")


def test_overlapping_segments(good_bytes, tmp_path):
    _, text = [p for p in phdrs(good_bytes) if p[1][0] == PT_LOAD][0]
    blob = patched_phdr(good_bytes, PT_LOAD, 1, paddr=text[4] + 0x10)
    assert_user_error(write(tmp_path, "overlap", blob), "overlap")


def test_no_load_segments(good_bytes, tmp_path):
    blob = patched_phdr(good_bytes, PT_LOAD, 0, type=0)
    blob = patched_phdr(blob, PT_LOAD, 0, type=0)
    assert_user_error(write(tmp_path, "noload", blob), "no loadable")


def test_segment_below_virt_base(good_bytes, tmp_path):
    # p_paddr - 0 + VIRT_BASE wraps past 2**64 to below VIRT_BASE.
    blob = patched_phdr(good_bytes, PT_LOAD, 1, paddr=0x80000000)
    assert_user_error(write(tmp_path, "below", blob), "below VIRT_BASE")


def test_unaligned_image_start(good_bytes, tmp_path):
    _, text = [p for p in phdrs(good_bytes) if p[1][0] == PT_LOAD][0]
    blob = patched_phdr(good_bytes, PT_LOAD, 0, paddr=text[4] + 8)
    assert_user_error(write(tmp_path, "unaligned", blob), "not page aligned")


def test_no_notes(tmp_path):
    path = build(tmp_path, "nonotes", notes=[])
    assert_user_error(path, "no Xen ELF notes: not a Xen PV kernel")


def replace_note(ntype, *new):
    return [n for n in LINUX_NOTES if n[0] != ntype] + list(new)


@pytest.mark.parametrize("name, notes, match", [
    ("xenver", replace_note(5, (5, "str", "xen-4.0")),
     "XEN_VERSION is 'xen-4.0'"),
    ("noxenver", replace_note(5), "XEN_VERSION is ''"),
    ("loader", [n for n in replace_note(8, (8, "str", "bsd")) if n[0] != 6],
     "LOADER is 'bsd' and GUEST_OS is ''"),
    ("feature", replace_note(10, (10, "str", "!flying_pigs")),
     "unknown Xen feature 'flying_pigs'"),
    ("hcall", replace_note(2, (2, "quad", 0xFFFFFFFF90000000)),
     "HYPERCALL_PAGE 0xffffffff90000000 is outside the kernel image"),
    ("hcallalign", replace_note(2, (2, "quad", "hypercall_page + 8")),
     "HYPERCALL_PAGE 0xffffffff81001008 is not page aligned"),
    ("entry", replace_note(1, (1, "quad", "data_word")),
     "is not inside an executable segment"),
    ("p2m", replace_note(15, (15, "quad", "startup")),
     "INIT_P2M 0xffffffff81000000 is inside the kernel image"),
    ("numsize", replace_note(1, (1, "bytes3", None)),
     "Xen ELF note ENTRY is a 3-byte number"),
    ("l1mfn", replace_note(13, (13, "quad", 1)),
     "Xen ELF note L1_MFN_VALID is 8 bytes"),
    ("featbits", replace_note(17, (17, "bytes3", None)),
     "Xen ELF note SUPPORTED_FEATURES is 3 bytes"),
    ("ascii", replace_note(6, (6, "str", "lin\\377ux")),
     "Xen ELF note GUEST_OS is not ASCII text"),
    ("offsetonly", replace_note(3),
     "ELF_PADDR_OFFSET is set but VIRT_BASE is not"),
    ("canonical", replace_note(3, (3, "quad", 0x0000800000000000)),
     "not in canonical x86_64 address space"),
    ("xenrange", replace_note(3, (3, "quad", 0xFFFF800000000000 - 0x1000000)),
     "Xen reserves"),
])
def test_bad_notes(tmp_path, name, notes, match):
    assert_user_error(build(tmp_path, name, notes=notes), match)


def test_loader_other_but_linux_is_accepted(tmp_path):
    # libelf accepts any LOADER when GUEST_OS is "linux...".
    k = load_kernel(build(tmp_path, "l2", notes=replace_note(
        8, (8, "str", "bsd"))))
    assert k.loader == "bsd"


def test_truncated_note(good_bytes, tmp_path):
    at, note = [p for p in phdrs(good_bytes) if p[1][0] == PT_NOTE][0]
    blob = bytearray(good_bytes)
    struct.pack_into("<I", blob, note[2] + 4, 0x10000)  # first note descsz
    assert_user_error(write(tmp_path, "badnote", bytes(blob)),
                      "runs past the end of its segment")


def test_note_segment_past_end(good_bytes, tmp_path):
    blob = patched_phdr(good_bytes, PT_NOTE, 0, filesz=len(good_bytes))
    assert_user_error(write(tmp_path, "notepast", blob),
                      "past the end of the file")


# ----------------------------------------------------------- helpers ----

def test_c_integer():
    assert c_integer("0x1F") == 31
    assert c_integer("017") == 15
    assert c_integer("0") == 0
    assert c_integer("42") == 42
    for bad in ("", "0x", "09", "1a", "-1", " 1"):
        with pytest.raises(ValueError):
            c_integer(bad)


def test_parse_features():
    sup, req = parse_features("writable_page_tables|!dom0|made_up||")
    assert sup == {"writable_page_tables", "dom0"}
    assert req == {"dom0"}


# ------------------------------------------------------------- fuzzing ----

@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutations_only_raise_user_errors(good_bytes, tmp_path, data):
    blob = bytearray(good_bytes)
    header_or_anywhere = st.one_of(st.integers(0, 0x1FF),
                                   st.integers(0, len(blob) - 1))
    edits = data.draw(st.lists(st.tuples(header_or_anywhere,
                                         st.integers(0, 255)),
                               min_size=1, max_size=12))
    for offset, value in edits:
        blob[offset] = value
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(blob))))
    path = write(tmp_path, "fuzz", bytes(blob[:cut]))
    try:
        load_kernel(path)
    except UserInputError as err:
        assert str(err).startswith(str(path) + ":")
        assert "\n" not in str(err)
