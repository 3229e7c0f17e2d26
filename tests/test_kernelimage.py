"""Kernel files other than a plain ELF (pyxenon.toolstack.kernelimage):
bzImages and compressed ELFs, built here around the hello guest, and
Debian's real kernel when apt can fetch it."""
import bz2
import gzip
import io
import lzma
import os
import pathlib
import shutil
import struct
import subprocess
import sys
import tarfile
import tracemalloc
import zlib

import lz4.block
import pytest

from pyxenon import Host
from pyxenon.errors import UserInputError
from pyxenon.toolstack import cli, kernelimage
from pyxenon.toolstack.elfimage import load_kernel
from pyxenon.toolstack.kernelimage import unpack_kernel, zstd

MIB = 1 << 20
CODECS = ("gzip", "bzip2", "xz", "lzma", "lz4", "zstd")


# -- building kernel files ----------------------------------------------------

def lz4_legacy(data):
    """Linux's `lz4 -l`: the legacy magic, then 8 MiB blocks, each after its
    32-bit size."""
    out = bytearray(struct.pack("<I", 0x184C2102))
    for at in range(0, len(data), 8 * MIB):
        block = lz4.block.compress(data[at:at + 8 * MIB], store_size=False)
        out += struct.pack("<I", len(block)) + block
    return bytes(out)


COMPRESS = {
    "gzip": lambda data: gzip.compress(data, 9),
    "bzip2": bz2.compress,
    "xz": lambda data: lzma.compress(data, check=lzma.CHECK_CRC32),
    "lzma": lambda data: lzma.compress(data, format=lzma.FORMAT_ALONE),
    "lz4": lz4_legacy,
    "zstd": zstd.compress,
}


def payload_of(codec, data):
    """A payload as Linux builds it: all but gzip get the size appended."""
    packed = COMPRESS[codec](data)
    return packed if codec == "gzip" else packed + struct.pack("<I", len(data))


def bzimage(payload, setup_sects=3, version=0x020F, lead=0x300,
            offset=None, length=None, tail=b"\xcc" * 100):
    """A bzImage: real-mode setup ((setup_sects + 1) sectors, with the boot
    protocol header), then the protected-mode part: `lead` bytes of code,
    the payload, and a tail."""
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1F1] = setup_sects
    struct.pack_into("<H", setup, 0x1FE, 0xAA55)
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, version)
    struct.pack_into("<II", setup, 0x248, lead if offset is None else offset,
                     len(payload) if length is None else length)
    return bytes(setup) + b"\x90" * lead + payload + tail


@pytest.fixture(scope="module")
def hello(guests):
    return (guests / "hello" / "hello.elf").read_bytes()


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def boots(path):
    with Host() as host:
        dom = host.create(kernel=str(path), memory=16)
        host.run(timeout=30)
        return dom.shutdown_reason == "poweroff" and \
            "Hello from pyxenon hello guest" in dom.dmesg_text


# -- what loads ---------------------------------------------------------------

@pytest.mark.parametrize("codec", CODECS)
def test_bzimage_unpacks_to_the_elf_and_boots(tmp_path, hello, codec):
    path = write(tmp_path, f"bzImage.{codec}", bzimage(payload_of(codec, hello)))
    got = unpack_kernel(path, path.read_bytes())
    assert (got.elf, got.container, got.compression) == (hello, "bzImage", codec)
    assert load_kernel(path).segments == load_kernel(write(tmp_path, "plain", hello)).segments
    assert boots(path)


@pytest.mark.parametrize("codec", CODECS)
def test_compressed_elf_unpacks_to_the_elf(tmp_path, hello, codec):
    path = write(tmp_path, f"hello.elf.{codec}", COMPRESS[codec](hello))
    got = unpack_kernel(path, path.read_bytes())
    assert (got.elf, got.container, got.compression) == (hello, "compressed", codec)


def test_gzipped_elf_boots(tmp_path, hello):
    assert boots(write(tmp_path, "hello.elf.gz", gzip.compress(hello)))


def test_plain_elf_is_used_as_it_is(tmp_path, hello):
    got = unpack_kernel("hello.elf", hello)
    assert (got.elf, got.container, got.compression) == (hello, "ELF", None)


@pytest.mark.parametrize("setup_sects, offset", [(1, 0), (4, 0x20), (63, 0x1234)])
def test_payload_place_from_setup_sects_and_payload_offset(tmp_path, hello,
                                                            setup_sects, offset):
    blob = bzimage(payload_of("xz", hello), setup_sects=setup_sects, lead=offset)
    assert unpack_kernel("k", blob).elf == hello


def test_lz4_frames_may_restart(hello):
    """`lz4 -l` output concatenated: the magic again inside starts a new frame."""
    half = len(hello) // 2
    payload = lz4_legacy(hello[:half]) + lz4_legacy(hello[half:]) + struct.pack("<I", len(hello))
    assert unpack_kernel("k", bzimage(payload)).elf == hello


# -- what is refused, in one line ------------------------------------------------

def refused(tmp_path, data, max_bytes=None, name="kernel"):
    path = write(tmp_path, name, data)
    with pytest.raises(UserInputError) as info:
        load_kernel(path, max_bytes=max_bytes)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


def corrupt_xz(hello):
    payload = bytearray(payload_of("xz", hello))
    payload[len(payload) // 2] ^= 0xFF
    return bytes(payload)


BAD = {
    "garbage": (lambda h: b"#!/bin/sh\n" * 100, "not an ELF or bzImage"),
    "truncated header": (lambda h: bzimage(payload_of("gzip", h))[:0x220],
                         "bzImage header truncated: the file has 0x220 bytes"),
    "old protocol": (lambda h: bzimage(payload_of("gzip", h), version=0x0206),
                     "bzImage boot protocol 2.06 is too old"),
    "offset beyond file": (lambda h: bzimage(payload_of("gzip", h), offset=1 << 20),
                           "bzImage payload offset 0x100800 is beyond the end of the file"),
    "length beyond file": (lambda h: bzimage(payload_of("gzip", h), length=1 << 20),
                           "bzImage payload truncated: 0x100000 bytes at 0xb00"),
    "corrupt xz": (lambda h: bzimage(corrupt_xz(h)), "xz payload corrupt at compressed byte 0x"),
    "cut xz": (lambda h: bzimage(COMPRESS["xz"](h)[:-200]), "xz payload truncated"),
    "cut gzip": (lambda h: bzimage(COMPRESS["gzip"](h)[:-200]), "gzip payload truncated"),
    "cut lz4": (lambda h: bzimage(lz4_legacy(h)[:-200]), "lz4 payload truncated"),
    "lz4 block past the end": (lambda h: bzimage(lz4_legacy(h)[:8] + b"\xff" * 64),
                               "lz4 payload truncated: a 0x"),
    "corrupt lz4": (lambda h: bzimage(lz4_legacy(b"")+ struct.pack("<I", 64) + b"\xff" * 64),
                    "lz4 payload corrupt at compressed byte 0x8"),
    "corrupt zstd": (lambda h: bzimage(COMPRESS["zstd"](h)[:6] + b"\xff" * 200),
                     "zstd payload corrupt at compressed byte 0x0"),
    "corrupt bzip2": (lambda h: bzimage(b"BZh9" + b"\x00" * 200), "bzip2 payload corrupt"),
    "unknown compression": (lambda h: bzimage(b"\x12\x34\x56\x78" * 100),
                            "bzImage payload: unknown compression (first bytes 12 34 56 78)"),
    "lzo": (lambda h: bzimage(b"\x89LZO\x00\r\n\x1a\n" + b"\x00" * 100),
            "lzo payload: LZO compression is not supported"),
    "payload not an ELF": (lambda h: bzimage(payload_of("xz", b"MZ" + h)),
                           "bzImage xz payload does not hold an ELF file"),
    "gzip of not an ELF": (lambda h: gzip.compress(b"just text\n" * 50),
                           "gzip-compressed file does not hold an ELF file"),
    "corrupt gzip file": (lambda h: b"\x1f\x8b\x08\x00" + b"\xff" * 100,
                          "gzip data corrupt at compressed byte 0x0"),
}


@pytest.mark.parametrize("case", BAD)
def test_malformed_is_one_line(tmp_path, hello, case):
    make, needle = BAD[case]
    assert needle in refused(tmp_path, make(hello))


def bomb_payload(codec, size):
    """`size` zero bytes after an ELF magic, compressed."""
    return payload_of(codec, b"\x7fELF" + bytes(size - 4))


@pytest.mark.parametrize("codec", CODECS)
def test_zip_bomb_stops_at_the_domains_memory(tmp_path, codec):
    message = refused(tmp_path, bzimage(bomb_payload(codec, 40 * MIB)), max_bytes=16 * MIB)
    assert message.endswith("decompressed kernel exceeds 16 MiB")


def test_zip_bomb_stops_at_the_cap_without_growing(tmp_path, monkeypatch):
    """A 256 MiB bomb is stopped at the cap, never held whole."""
    monkeypatch.setattr(kernelimage, "MAX_DECOMPRESSED", 8 * MIB)
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(MIB)
    bomb = packer.compress(b"\x7fELF") + b"".join(packer.compress(zeros) for _ in range(256))
    bomb += packer.flush()
    assert len(bomb) < MIB
    tracemalloc.start()
    try:
        with pytest.raises(UserInputError, match="decompressed kernel exceeds 8 MiB"):
            unpack_kernel("bomb", bzimage(bomb))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * MIB, peak   # the cap, a piece, the copies of the input


def test_default_cap_is_512_mib():
    assert kernelimage.MAX_DECOMPRESSED == 512 * MIB


# -- through `pyxenon run` ---------------------------------------------------------

def bad_cfg(tmp_path, hello):
    write(tmp_path, "vmlinuz", bzimage(corrupt_xz(hello)))
    cfg = tmp_path / "bad.cfg"
    cfg.write_text('name = "bad"\nkernel = "vmlinuz"\nmemory = 16\n')
    return cfg


def test_run_with_a_bad_kernel_is_one_line(capsys, tmp_path, hello):
    status = cli.main(["run", str(bad_cfg(tmp_path, hello))])
    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    lines = [line for line in err.splitlines() if line != cli.NO_POLICY]
    assert len(lines) == 1 and "vmlinuz: xz payload corrupt at compressed byte" in lines[0]


def test_run_as_a_program_with_a_bad_kernel(tmp_path, hello):
    res = subprocess.run([sys.executable, "-m", "pyxenon", "run", "--policy",
                          str(pathlib.Path(__file__).parent.parent / "examples" / "policies"
                              / "ping-pong.toml"),
                          str(bad_cfg(tmp_path, hello))],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and "xz payload corrupt" in res.stderr


def test_run_boots_a_bzimage(capsys, tmp_path, hello):
    write(tmp_path, "vmlinuz", bzimage(payload_of("lz4", hello)))
    cfg = tmp_path / "hello.cfg"
    cfg.write_text('name = "hello"\nkernel = "vmlinuz"\nmemory = 16\n')
    assert cli.main(["run", str(cfg)]) == 0
    assert "Hello from pyxenon hello guest" in capsys.readouterr().out


# -- Debian's kernel ---------------------------------------------------------------

CLOUD, GENERIC = "cloud-amd64", "amd64"    # Debian's kernel flavours (linux-image-FLAVOUR)


def cache_dir():
    root = os.environ.get("PYXENON_CACHE") or pathlib.Path.home() / ".cache" / "pyxenon"
    return pathlib.Path(root) / "debian-kernel"


def _apt(argv, cwd=None):
    """Run an apt command; its stdout, or pytest.skip with its last line."""
    try:
        res = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as err:
        pytest.skip(f"Debian kernel test: {' '.join(argv)} failed: {err}")
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"Debian kernel test: {' '.join(argv)} failed: {last}")
    return res.stdout


def _versioned_package(meta):
    """linux-image-6.1.0-NN-FLAVOUR, from the metapackage's dependency."""
    for line in _apt(["apt-cache", "depends", meta]).splitlines():
        name = line.strip().removeprefix("Depends: ")
        if name.startswith("linux-image-") and name != line.strip():
            return name
    pytest.skip(f"Debian kernel test: apt-cache names no kernel for {meta} "
                "(run apt-get update)")


def _extract_vmlinuz(deb, folder):
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True,
                         check=True, timeout=300).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        for member in archive.getmembers():
            name = pathlib.PurePosixPath(member.name)
            if member.isfile() and name.parent.name == "boot" and \
                    name.name.startswith("vmlinuz-"):
                (folder / name.name).write_bytes(archive.extractfile(member).read())
                return folder / name.name
    pytest.skip(f"Debian kernel test: {deb.name} has no /boot/vmlinuz-*")


def fetch_debian_kernel(flavour):
    """Debian's /boot/vmlinuz-*-FLAVOUR, fetched with apt-get download into
    $PYXENON_CACHE (or ~/.cache/pyxenon) once; skipped when it cannot be had."""
    folder = cache_dir()
    cached = sorted(folder.glob(f"vmlinuz-*[0-9]-{flavour}"))
    if cached:
        return cached[-1]
    missing = [tool for tool in ("apt-cache", "apt-get", "dpkg-deb") if not shutil.which(tool)]
    if missing:
        pytest.skip(f"Debian kernel test needs Debian's {', '.join(missing)}")
    package = _versioned_package(f"linux-image-{flavour}")
    folder.mkdir(parents=True, exist_ok=True)
    _apt(["apt-get", "download", "-q", package], cwd=folder)
    deb = next(folder.glob(f"{package}_*.deb"), None)
    if deb is None:
        pytest.skip(f"Debian kernel test: apt-get download {package} gave no .deb")
    try:
        return _extract_vmlinuz(deb, folder)
    finally:
        deb.unlink()


@pytest.fixture(scope="session")
def debian_vmlinuz():
    """Debian's cloud kernel (linux-image-cloud-amd64)."""
    return fetch_debian_kernel(CLOUD)


@pytest.fixture(scope="session")
def debian_generic_vmlinuz():
    """Debian's generic kernel (linux-image-amd64)."""
    return fetch_debian_kernel(GENERIC)


def test_debian_kernel_loads_as_a_bzimage(debian_vmlinuz):
    blob = debian_vmlinuz.read_bytes()
    got = unpack_kernel(debian_vmlinuz, blob, 512 * MIB)
    assert got.container == "bzImage" and got.compression in CODECS
    image = load_kernel(debian_vmlinuz, max_bytes=512 * MIB)
    assert image.guest_os == "linux" and image.xen_version == "xen-3.0"
    assert image.notes["ENTRY"] == image.entry
    assert image.virt_kstart <= image.entry < image.virt_kend
    assert image.virt_base == 0xFFFFFFFF80000000
    # Linux no longer has a hypercall page (it makes its own hypercalls since
    # 6.1.98 and 6.10); where a kernel still names one, it is inside the image.
    page = image.notes.get("HYPERCALL_PAGE")
    assert page is None or image.virt_kstart <= page < image.virt_kend
    assert "writable_page_tables" in image.features_required
    assert {"writable_page_tables", "pae_pgdir_above_4gb"} <= image.features_supported
    assert image.pae_mode == "yes" and image.suspend_cancel and image.mod_start_pfn
