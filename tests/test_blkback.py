"""The block backend (pyxenon.backends.blkback) with the blkfront toy
frontend: the XenStore handshake, I/O through grants, the checks Linux's
blkback makes on every request, the policy's block path and xl's sharing
rule."""
import os

import pytest

from pyxenon.errors import UserInputError
from pyxenon.public import xenbus as xb
from pyxenon.toolstack.host import Host
from pyxenon.toolstack.policy import MemoryAudit, parse_policy

POLICY = """\
version = 1
[labels]
client = "a disk's user"
reader = "may only read"
[storage]
scratch = "a scratch disk"
[[allow]]
from = "client"
to = "scratch"
paths = ["block"]
access = "readwrite"
[[allow]]
from = "reader"
to = "scratch"
paths = ["block"]
"""
SECTORS = 128


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(os.urandom(SECTORS * 512))
    return path


def host(audit=None):
    return Host(memory_mib=128, policy=parse_policy(POLICY, "p.toml"), audit=audit)


def run(h, guests, image, extra="", disk_extra="", label="client", access="rw", **kw):
    spec = f"format=raw, vdev=xvda, access={access}, seclabel=scratch{disk_extra}, target={image}"
    dom = h.create(kernel=str(guests / "blkfront" / "blkfront.elf"), name=kw.pop("name", "bf"),
                   cmdline=extra, seclabel=label, memory=16,
                   disks=(parse_disk(spec),), **kw)
    return dom


def parse_disk(spec):
    from pyxenon.toolstack.xldevices import parse_disk as parse
    return parse(spec, "/")


def console(dom):
    return dom.dmesg_text + dom.console_text


def expected_pattern(seed=1):
    first = bytes((seed + i * 7) & 0xFF for i in range(4096))
    second = bytes((seed + i * 13 + 1) & 0xFF for i in range(4096))
    return first + second


def test_frontend_writes_flushes_and_reads_back(guests, image):
    audit = MemoryAudit()
    with host(audit) as h:
        dom = run(h, guests, image, "mode=check seed=5")
        backend = h.devices.find(dom, 51712)
        assert h.xenstore.read("/local/domain/0/backend/vbd/1/51712/state") == b"2"
        h.run(timeout=60)
        out = console(dom)
    assert "blkfront: connected to /local/domain/0/backend/vbd/1/51712: 128 sectors" in out
    assert "FAIL" not in out and "blkfront: done, 0 failures" in out
    for what in ("write 16 sectors", "flush", "data read back", "indirect data",
                 "discarded sectors read zero"):
        assert f"blkfront: PASS {what}" in out
    assert image.read_bytes()[:8192] == expected_pattern(5)      # on disk after the flush
    assert backend.stats["flush"] >= 1 and backend.stats["error"] == 0
    attach = [r for r in audit if r["operation"] == "block:attach"]
    assert [(r["subject"]["label"], r["object"]["label"], r["access"], r["decision"])
            for r in attach] == [("client", "scratch", "rw", "allow")]


def test_backend_state_follows_the_frontend(guests, image):
    """Initialising, InitWait (probe), Connected after the frontend's
    Initialised; the nodes go with the domain."""
    seen = []
    with host() as h:
        dom = run(h, guests, image, "mode=check", paused=True)
        path = "/local/domain/0/backend/vbd/1/51712/state"

        def note(_path):
            try:
                seen.append(int(h.xenstore.read(path)))
            except Exception:
                seen.append(None)
        h.xenstore.watch(path, note)
        fe = "/local/domain/1/device/vbd/51712"
        assert h.xenstore.read(fe + "/backend") == b"/local/domain/0/backend/vbd/1/51712"
        assert h.xenstore.get_perms(fe)[:2] == [(1, "n"), (0, "r")]
        assert h.xenstore.read(path[:-6] + "/feature-max-indirect-segments") == b"256"
        dom.unpause()
        h.run(timeout=60)
        gone = h.xenstore.ls("/local/domain/0/backend/vbd/1")
    assert "blkfront: done, 0 failures" in console(dom)
    assert seen[0] == xb.XenbusStateInitWait and xb.XenbusStateConnected in seen
    assert gone == []


def test_hostile_frontend_gets_errors_and_the_host_survives(guests, image):
    before = image.read_bytes()
    with host() as h:
        dom = run(h, guests, image, "mode=attack")
        backend = h.devices.find(dom, 51712)
        h.run(timeout=120)
        out = console(dom)
        errors = backend.errors
        after_attacks = image.read_bytes()
        # the host goes on: another guest still gets its disk served
        again = run(h, guests, image, "mode=check seed=9", name="after")
        h.run(timeout=60)
    assert "ACCEPTED" not in out, out
    for what in ("write to its backend's sectors", "write to its backend's mode",
                 "12 segments", "4000 indirect segments", "last_sect past the page",
                 "sectors past the end", "sector wrapping 2^64", "grant ref never granted",
                 "grant ref granted to another domain", "read into a read-only grant",
                 "grant ref out of the table", "indirect flush"):
        assert f"blkfront: refused {what} (status -1)" in out
    assert "blkfront: refused unknown operation (status -2)" in out
    assert "blkfront: PASS read after attacks" in out
    assert "blkfront: refused ring index (no answer)" in out
    assert any("bogus ring requests" in e for e in errors)
    assert after_attacks == before              # no refused write reached the disk
    assert "blkfront: done, 0 failures" in console(again)


def test_read_only_disk_refuses_writes(guests, image):
    before = image.read_bytes()
    with host() as h:
        dom = run(h, guests, image, "mode=attack readonly=1", access="r", label="reader")
        h.run(timeout=60)
        out = console(dom)
        nodes = h.xenstore
    assert "blkfront: refused write to a read-only disk (status -1)" in out
    assert "blkfront: refused flush of a read-only disk (status -1)" in out
    assert "blkfront: PASS read of a read-only disk" in out
    assert "info 4" in out                       # VDISK_READONLY
    assert image.read_bytes() == before
    del nodes


def test_policy_decides_the_attach(guests, image):
    with host() as h:
        with pytest.raises(UserInputError, match="refused by the policy"):
            run(h, guests, image, label="reader")            # reader may not write
        with pytest.raises(UserInputError, match="refused by the policy"):
            run(h, guests, image, label=None)
    with Host(memory_mib=64) as h:                           # no policy: every path refused
        with pytest.raises(UserInputError, match="refused by the policy"):
            run(h, guests, image)


def test_one_writer_unless_shared(guests, image):
    with host() as h:
        run(h, guests, image, name="a")
        with pytest.raises(UserInputError, match="already open in domain 1"):
            run(h, guests, image, name="b")
        with pytest.raises(UserInputError, match="open writable in another domain"):
            run(h, guests, image, name="c", access="r", label="reader")
        assert len(h.machine.domains) == 1
    with host() as h:
        run(h, guests, image, name="a", access="w!")
        run(h, guests, image, name="b", access="w!")
        assert len(h.machine.domains) == 2


def test_images_pyxenon_cannot_serve(guests, tmp_path):
    qcow = tmp_path / "q.img"
    qcow.write_bytes(b"QFI\xfb" + bytes(4092))
    with host() as h:
        with pytest.raises(UserInputError, match="a qcow image"):
            run(h, guests, qcow)
        with pytest.raises(UserInputError, match="cannot open the disk image"):
            run(h, guests, tmp_path / "missing.img")
        with pytest.raises(UserInputError, match="Is a directory"):
            run(h, guests, tmp_path)
        os.mkfifo(tmp_path / "fifo")
        with pytest.raises(UserInputError, match="regular file or a block device"):
            run(h, guests, tmp_path / "fifo")
        assert not h.machine.domains
