"""Parser inputs made from a coverage-guided engine's bytes: each maker
reads a provider (atheris.FuzzedDataProvider's interface) and returns the
JSON-able dict its feeder (feeders.py) takes, so an engine finding is
saved and replayed like a random one.

The kernel input's first byte picks a wrapping: the bytes as they are (so
the engine mutates compressed streams and bzImage headers directly), or
the bytes compressed with one of the codecs Xen's loader knows, alone or
in a bzImage, so the engine's mutations of a plain ELF also reach the ELF
loader through every decompressor.
"""
import bz2
import gzip
import lzma
import struct

try:
    from compression import zstd
except ImportError:          # before Python 3.14
    from backports import zstd
import lz4.block


def lz4_legacy(data):
    """Linux's `lz4 -l`: the legacy magic, then blocks, each after its size."""
    block = lz4.block.compress(data, store_size=False)
    return struct.pack("<II", 0x184C2102, len(block)) + block


COMPRESS = (gzip.compress, bz2.compress, lzma.compress,
            lambda data: lzma.compress(data, format=lzma.FORMAT_ALONE), zstd.compress, lz4_legacy)


def bzimage(payload, setup_sects=3, lead=0x300):
    """A bzImage (boot protocol 2.15) holding payload after lead bytes."""
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1F1] = setup_sects
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, 0x020F)
    struct.pack_into("<II", setup, 0x248, lead, len(payload))
    return bytes(setup) + b"\x90" * lead + payload


def kernel_input(provider):
    how = provider.ConsumeIntInRange(0, 2 * len(COMPRESS))
    data = provider.ConsumeBytes(provider.remaining_bytes())
    if how:
        codec = COMPRESS[(how - 1) % len(COMPRESS)]
        data = codec(data) + struct.pack("<I", len(data))
        if how > len(COMPRESS):
            data = bzimage(data)
    return {"data": data.hex()}


def text_input(provider):
    via = "file" if provider.ConsumeBool() else "text"
    return via, provider.ConsumeBytes(provider.remaining_bytes())


def xlcfg_input(provider):
    overrides = [provider.ConsumeUnicodeNoSurrogates(provider.ConsumeIntInRange(0, 24))
                 for _ in range(provider.ConsumeIntInRange(0, 2))]
    via, data = text_input(provider)
    return {"data": data.hex(), "overrides": overrides, "via": via}


def policy_input(provider):
    via, data = text_input(provider)
    return {"data": data.hex(), "via": via}


def protocol_input(provider):
    line = provider.ConsumeBytes(min(provider.remaining_bytes(), 64 * 1024 - 1))
    return {"line": line.replace(b"\n", b" ").hex()}


POKES = ("req_prod", "rsp_cons", "req_cons", "rsp_prod", "connection", "error")


def xenstore_input(provider):
    """Rounds of ring bytes, each maybe with a scribbled index, then host calls."""
    rounds = []
    for _ in range(provider.ConsumeIntInRange(1, 5)):
        data = provider.ConsumeBytes(provider.ConsumeIntInRange(0, 1024))
        poke = None
        if provider.ConsumeIntInRange(0, 15) == 0:
            poke = [provider.PickValueInList(list(POKES)), provider.ConsumeUInt(4)]
        rounds.append({"data": data.hex(), "poke": poke, "consume": provider.ConsumeIntInRange(0, 2)})
    return {"rounds": rounds, "host": []}


def socket_input(provider):
    chunks = []
    while provider.remaining_bytes() and len(chunks) < 16:
        size = provider.ConsumeIntInRange(0, 8192)
        chunks.append([provider.ConsumeBytes(size).hex(), provider.ConsumeBool()])
    return {"chunks": chunks}


def gdb_input(provider):
    """The client's stream (the bytes from the front), cut at up to 15
    places the integers at the end name, each cut with the scheduler
    rounds the guest runs after it."""
    from .gdb import MAX_ROUNDS

    cuts = [(provider.ConsumeIntInRange(0, 0xFFFF), provider.ConsumeIntInRange(0, MAX_ROUNDS))
            for _ in range(provider.ConsumeIntInRange(0, 15))]
    stream = provider.ConsumeBytes(provider.remaining_bytes())
    chunks, start = [], 0
    for at, rounds in sorted((min(at, len(stream)), rounds) for at, rounds in cuts):
        chunks.append([stream[start:at].hex(), rounds])
        start = at
    return {"chunks": chunks + [[stream[start:].hex(), MAX_ROUNDS]]}


INPUTS = {"elf": kernel_input, "xlcfg": xlcfg_input, "policy": policy_input,
          "protocol": protocol_input, "xenstore": xenstore_input, "xenstored-socket": socket_input,
          "gdb": gdb_input}


def seed_inputs(name, guests, examples):
    """Good inputs to start a parser's empty corpus from, laid out as the
    makers read them (atheris reads integers from the end, bytes from the
    front): a built kernel as it is, the guests' cfgs, the policies, a
    request line."""
    import json

    from .tokens import JSON_SEEDS

    if name == "elf":
        return [p.read_bytes() + b"\0" for p in sorted(guests.glob("*/*.elf"))[:3]]
    if name == "xlcfg":
        return [b"\0" + p.read_bytes() + b"\0" for p in sorted(guests.glob("*.cfg"))[:6]]
    if name == "policy":
        return [b"\0" + p.read_bytes() for p in sorted(examples.glob("**/*.toml"))[:6]]
    if name == "protocol":
        return [json.dumps(seed).encode() for seed in JSON_SEEDS]
    if name == "gdb":
        return gdb_seeds(guests)
    return []


def gdb_seeds(guests):
    """gdb's own opening, then reads, writes, breakpoints and runs at the
    kernel's addresses (one chunk: the last byte, read first, says no cuts)."""
    from pyxenon.toolstack.gdbpacket import frame

    from .gdb import addresses
    from .tokens import GDB_PACKETS

    start = [b"qSupported:swbreak+;hwbreak+", b"QStartNoAckMode", b"?", b"qfThreadInfo", b"g"]
    out = []
    for addr in addresses(guests)[:4]:
        packets = start + [p.replace(b"%x", b"%x" % addr) for p in GDB_PACKETS if b"%x" in p]
        out.append(b"+" + b"".join(frame(p) for p in packets) + b"\0")
    return out
