"""Find the ELF inside a kernel file: plain, compressed, or in a bzImage.

``unpack_kernel(path, blob, max_bytes)`` takes a kernel file's bytes and
returns an :class:`Unpacked` whose ``elf`` is the ELF image the ELF loader
(``elfimage.py``) checks and lays out.  A problem is raised as a one-line
:class:`pyxenon.errors.UserInputError` naming the file.

What is accepted, after libxenguest (``xg_dom_bzimageloader.c``,
``xg_dom_core.c``):

* An ELF file ("\\x7fELF") is used as it is.
* A bzImage is recognised by "HdrS" at offset 0x202 of the x86 boot
  protocol's setup header.  Protocol 2.08 and later put the offset
  (from the end of the real-mode setup code, ``(setup_sects + 1) * 512``
  bytes, setup_sects being the byte at 0x1f1) and the length of the
  compressed kernel in ``payload_offset`` (0x248) and ``payload_length``
  (0x24c); the payload holds a compressed ELF vmlinux.
* A compressed file (a gzip'd vmlinux, say) holds an ELF the same way.

The compression is told by its first bytes, in libxenguest's order: gzip
(1f 8b), bzip2 ("BZh"), xz (fd "7zXZ" 00), zstd (28 b5 2f fd), lzma
(5d 00), LZO ("\\x89LZO": recognised, not supported) and lz4 in the
legacy frame format Linux uses (02 21 4c 18, then blocks each preceded
by its 32-bit little-endian size).  Bytes after the end of the compressed
stream are ignored: Linux appends the decompressed size to its payloads.

Decompression is bounded: output is produced a piece at a time and
refused as soon as it grows past the cap (the domain's memory, and never
more than ``MAX_DECOMPRESSED``), so a small file that expands without end
cannot grow the host.  Input goes to a decoder 64 KiB at a time, so
"corrupt at compressed byte N" names the start of the piece it failed in.
A ramdisk is not handled here: Linux decompresses
its own.
"""

import bz2
import lzma
import struct
import zlib
from dataclasses import dataclass
from typing import Optional

import lz4.block

try:  # the standard library's from Python 3.14
    from compression import zstd
except ImportError:
    from backports import zstd

from pyxenon.errors import UserInputError

MIB = 1 << 20
MAX_DECOMPRESSED = 512 * MIB
ELF_MAGIC = b"\x7fELF"

IN_PIECE = 64 * 1024  # compressed bytes given to a decoder at a time
OUT_PIECE = 1 * MIB  # most bytes a decoder returns at a time

# The x86 boot protocol's setup header (Linux Documentation/arch/x86/boot.rst).
SETUP_SECTS = 0x1F1
HEADER_MAGIC_AT = 0x202
HEADER_MAGIC = b"HdrS"
VERSION_AT = 0x206
PAYLOAD_AT = 0x248  # payload_offset, then payload_length: two u32
SETUP_HEADER_END = 0x250
PAYLOAD_VERSION = 0x0208  # the first protocol version with payload fields
SECTOR = 512

LZ4_LEGACY_MAGIC = 0x184C2102
LZ4_LEGACY_BLOCK = 8 * MIB  # the most a block of Linux's lz4 -l holds


@dataclass(frozen=True)
class Unpacked:
    """A kernel file's ELF image and how it was found.

    ``container`` is "ELF", "bzImage" or "compressed"; ``compression`` is
    the codec's name ("gzip", "xz", ...) or None for a plain ELF."""

    elf: bytes
    container: str
    compression: Optional[str] = None


class _BadKernel(Exception):
    """Internal: a problem with the file; the caller adds the path."""


def unpack_kernel(path, blob, max_bytes=None):
    """The ELF image in the kernel file ``path`` whose bytes are ``blob``.

    ``max_bytes`` (the domain's memory) caps the decompressed size, as does
    ``MAX_DECOMPRESSED``."""
    cap = MAX_DECOMPRESSED if max_bytes is None else min(max_bytes,
                                                         MAX_DECOMPRESSED)
    try:
        return _unpack(blob, cap)
    except _BadKernel as err:
        raise UserInputError(path, str(err)) from None


def _unpack(blob, cap):
    if not blob or blob[:4] == ELF_MAGIC:
        return Unpacked(blob, "ELF")  # the ELF loader checks it
    if is_bzimage(blob):
        payload = bzimage_payload(blob)
        codec = _codec_for(payload)
        if codec is None:
            raise _BadKernel("bzImage payload: unknown compression "
                             f"(first bytes {payload[:4].hex(' ')})")
        elf = _decompress(codec, payload, f"{codec.name} payload", cap)
        return Unpacked(_expect_elf(elf, f"bzImage {codec.name} payload"),
                        "bzImage", codec.name)
    codec = _codec_for(blob)
    if codec is None:
        raise _BadKernel("not an ELF or bzImage (nor a compressed ELF)")
    elf = _decompress(codec, blob, f"{codec.name} data", cap)
    return Unpacked(_expect_elf(elf, f"{codec.name}-compressed file"),
                    "compressed", codec.name)


def _expect_elf(data, what):
    if data[:4] != ELF_MAGIC:
        raise _BadKernel(f"{what} does not hold an ELF file")
    return data


# ------------------------------------------------------------- bzImage ----

def is_bzimage(blob):
    """True if blob has the boot protocol's "HdrS" magic at 0x202."""
    return blob[HEADER_MAGIC_AT:HEADER_MAGIC_AT + 4] == HEADER_MAGIC


def bzimage_payload(blob):
    """The compressed kernel a bzImage's setup header points at."""
    if len(blob) < SETUP_HEADER_END:
        raise _BadKernel(f"bzImage header truncated: the file has "
                         f"{len(blob):#x} bytes, the setup header ends at "
                         f"{SETUP_HEADER_END:#x}")
    version, = struct.unpack_from("<H", blob, VERSION_AT)
    if version < PAYLOAD_VERSION:
        raise _BadKernel(f"bzImage boot protocol {version >> 8}."
                         f"{version & 0xFF:02d} is too old: 2.08 or later "
                         "gives the payload's place")
    offset, length = struct.unpack_from("<II", blob, PAYLOAD_AT)
    start = (blob[SETUP_SECTS] + 1) * SECTOR + offset
    if start >= len(blob):
        raise _BadKernel(f"bzImage payload offset {start:#x} is beyond the "
                         f"end of the file ({len(blob):#x} bytes)")
    if start + length > len(blob):
        raise _BadKernel(f"bzImage payload truncated: {length:#x} bytes at "
                         f"{start:#x}, the file ends at {len(blob):#x}")
    return blob[start:start + length]


# -------------------------------------------------------------- codecs ----

@dataclass(frozen=True)
class _Codec:
    name: str
    magic: bytes
    pieces: object  # pieces(data, what): yields decompressed pieces


def _decompress(codec, data, what, cap):
    """All of codec's output for data, or _BadKernel once past cap."""
    out = bytearray()
    for piece in codec.pieces(data, what):
        out += piece
        if len(out) > cap:
            raise _BadKernel(f"decompressed kernel exceeds {cap // MIB} MiB")
    return bytes(out)


def _codec_for(data):
    return next((c for c in CODECS if data.startswith(c.magic)), None)


class _Gunzip:
    """zlib's gzip decoder behind the interface of lzma's and bz2's."""

    def __init__(self):
        self._zlib = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        self._tail = b""

    @property
    def eof(self):
        return self._zlib.eof

    @property
    def needs_input(self):
        return not self._tail

    def decompress(self, data, max_length):
        out = self._zlib.decompress(self._tail + data, max_length)
        self._tail = self._zlib.unconsumed_tail
        return out


_DECODE_ERRORS = (lzma.LZMAError, zlib.error, zstd.ZstdError, OSError,
                  EOFError, ValueError)


def _stream_pieces(decoder, data, what):
    """Feed data to a decoder with lzma's interface (decompress(data,
    max_length), eof, needs_input), a piece at a time each way."""
    pos = 0
    while not decoder.eof:
        given = b""
        if decoder.needs_input and pos < len(data):
            given = data[pos:pos + IN_PIECE]
        try:
            out = decoder.decompress(given, max_length=OUT_PIECE)
        except _DECODE_ERRORS as err:
            raise _BadKernel(f"{what} corrupt at compressed byte {pos:#x} "
                             f"(of {len(data):#x}): {err}") from None
        if not out and not given:
            raise _BadKernel(f"{what} truncated: the compressed stream ends "
                             f"early ({len(data):#x} bytes)")
        pos += len(given)
        yield out


def _gzip_pieces(data, what):
    return _stream_pieces(_Gunzip(), data, what)


def _bzip2_pieces(data, what):
    return _stream_pieces(bz2.BZ2Decompressor(), data, what)


def _xz_pieces(data, what):
    decoder = lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=256 * MIB)
    return _stream_pieces(decoder, data, what)


def _lzma_pieces(data, what):
    decoder = lzma.LZMADecompressor(lzma.FORMAT_ALONE, memlimit=256 * MIB)
    return _stream_pieces(decoder, data, what)


def _zstd_pieces(data, what):
    return _stream_pieces(zstd.ZstdDecompressor(), data, what)


def _lzo_pieces(data, what):
    raise _BadKernel(f"{what}: LZO compression is not supported")


def _lz4_pieces(data, what):
    """Linux's lz4 legacy frames: the magic, then blocks, each after its
    size (the magic again may start a new frame)."""
    pos = 4
    while pos + 4 <= len(data):
        size, = struct.unpack_from("<I", data, pos)
        pos += 4
        if size == LZ4_LEGACY_MAGIC:
            continue
        if pos == len(data):
            return  # the decompressed size Linux appends
        if pos + size > len(data):
            raise _BadKernel(f"{what} truncated: a {size:#x}-byte block at "
                             f"{pos:#x} runs past the end ({len(data):#x})")
        yield _lz4_block(data[pos:pos + size], pos, what)
        pos += size


def _lz4_block(block, pos, what):
    try:
        return lz4.block.decompress(block, uncompressed_size=LZ4_LEGACY_BLOCK)
    except lz4.block.LZ4BlockError as err:
        raise _BadKernel(f"{what} corrupt at compressed byte {pos:#x}: "
                         f"{err}") from None


CODECS = (
    _Codec("gzip", b"\x1f\x8b", _gzip_pieces),
    _Codec("bzip2", b"BZh", _bzip2_pieces),
    _Codec("xz", b"\xfd7zXZ\x00", _xz_pieces),
    _Codec("zstd", b"\x28\xb5\x2f\xfd", _zstd_pieces),
    _Codec("lzma", b"\x5d\x00", _lzma_pieces),
    _Codec("lzo", b"\x89LZO", _lzo_pieces),
    _Codec("lz4", struct.pack("<I", LZ4_LEGACY_MAGIC), _lz4_pieces),
)
