"""The random parser campaign: N malformed inputs spread over the
host-side parsers, mutated from good seeds or random."""
import pathlib
import random
import struct
import tempfile
import time

from ..common import GUESTS, ROOT, Finding, Stats
from ..records import known_signatures, save_finding
from ..world import POLICY
from . import gdb
from .feeders import check_input
from .mutate import json_seed, mutate, mutate_elf
from .tokens import (CFG_TOKENS, GDB_NOISE, GDB_PACKETS, JSON_TOKENS, POLICY_TOKENS, XS_PATHS,
                     XS_VALUES)
from .xenstore import HOST_CALLS


class ParserCampaign:
    """N malformed inputs spread over the host-side parsers."""

    def __init__(self, seed, guests=GUESTS, stats=None, save=None, known=None):
        self.rng = random.Random(f"parsers:{seed}")
        self.seed = seed
        self.stats = stats or Stats()
        self.save = pathlib.Path(save) if save else None
        self.findings = []
        self.seen = known_signatures(known or self.save)
        guests = pathlib.Path(guests)
        self.elf_seeds = [p.read_bytes() for p in sorted(guests.glob("*/*.elf"))]
        self.cfg_seeds = [p.read_bytes() for p in sorted(guests.glob("*.cfg"))]
        self.policy_seeds = [POLICY.encode()] + [p.read_bytes() for p in
                                                 sorted((ROOT / "examples").glob("**/*.toml"))]
        self.makers = {"elf": self.elf_input, "xlcfg": self.xlcfg_input,
                       "policy": self.policy_input, "protocol": self.protocol_input,
                       "xenstore": self.xenstore_input, "xenstored-socket": self.socket_input,
                       "gdb": self.gdb_input}
        if not self.elf_seeds:
            del self.makers["elf"], self.makers["gdb"]
        else:
            gdb.set_guests(guests)
            self.gdb_addresses = gdb.addresses(guests)

    def run(self, count):
        start = time.monotonic()
        names = sorted(self.makers)
        with tempfile.TemporaryDirectory(prefix="pyxenon-fuzz-") as folder:
            for i in range(count):
                name = names[i % len(names)]
                self.one(name, i, self.makers[name](), folder)
        self.stats.parser_elapsed += time.monotonic() - start
        return self.findings

    def one(self, name, index, given, folder):
        self.stats.parser_inputs[name] += 1
        outcome, problem = check_input(name, given, folder)
        self.stats.parser_outcomes[f"{name} {outcome}"] += 1
        if problem is None:
            return
        signature = f"parser:{name}:{problem[0]}"
        if signature in self.seen:
            self.stats.duplicates[signature] += 1
            return
        self.seen.add(signature)
        finding = Finding("parser", signature, problem[1], self.seed, index=index,
                          op={"parser": name, "input": given})
        if self.save:
            finding.saved = str(save_finding(self.save, finding))
        self.findings.append(finding)

    # -- inputs --

    def elf_input(self):
        rng = self.rng
        blob = rng.choice(self.elf_seeds)
        roll = rng.random()
        if roll < 0.8:
            data = mutate_elf(rng, blob, self.elf_seeds)
        elif roll < 0.95:
            data = mutate(rng, blob[:rng.choice((64, 128, 512, 4096))], (), self.elf_seeds)
        else:
            data = rng.getrandbits(8 * 256).to_bytes(256, "little")
        return {"data": data.hex()}

    def text(self, seeds, tokens):
        if self.rng.random() < 0.05:
            return b"".join(self.rng.choice(tokens) for _ in range(self.rng.randrange(1, 40)))
        return mutate(self.rng, self.rng.choice(seeds), tokens, seeds)

    def via(self):
        return self.rng.choice(("file", "text"))

    def xlcfg_input(self):
        overrides = [mutate(self.rng, b"memory=8", CFG_TOKENS).decode("utf-8", "replace")
                     for _ in range(self.rng.choice((0, 0, 1, 2)))]
        return {"data": self.text(self.cfg_seeds, CFG_TOKENS).hex(), "overrides": overrides,
                "via": self.via()}

    def policy_input(self):
        return {"data": self.text(self.policy_seeds, POLICY_TOKENS).hex(), "via": self.via()}

    def protocol_input(self):
        rng = self.rng
        roll = rng.random()
        if roll < 0.75:
            line = mutate(rng, json_seed(rng), JSON_TOKENS)
        elif roll < 0.9:
            line = json_seed(rng)
        else:
            line = rng.getrandbits(8 * 64).to_bytes(64, "little")
        return {"line": line.replace(b"\n", b" ")[:64 * 1024 - 1].hex()}

    def xenstore_input(self):
        rng = self.rng
        rounds = [{"data": b"".join(self.xs_message() for _ in range(rng.randrange(1, 4))).hex(),
                   "poke": self.xs_poke(), "consume": rng.randrange(3)}
                  for _ in range(rng.randrange(1, 6))]
        host = [self.xs_host_call() for _ in range(rng.choice((0, 0, 1, 3)))]
        return {"rounds": rounds, "host": host}

    def socket_input(self):
        """The client's bytes (xsd_sockmsg requests) cut into chunks anywhere."""
        rng = self.rng
        data = b"".join(self.xs_message() for _ in range(rng.randrange(1, 6)))
        cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randrange(3)))
        pieces = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
        return {"chunks": [[piece.hex(), rng.random() < 0.7] for piece in pieces]}

    def xs_message(self):
        """One xsd_sockmsg: a good type and payload mostly, then perhaps mutated."""
        rng = self.rng
        kind = rng.randrange(24) if rng.random() < 0.9 else rng.choice((0xFFFF, 1000, 0xFFFFFFFF))
        parts = [rng.choice(XS_PATHS + XS_VALUES) for _ in range(rng.randrange(0, 4))]
        body = b"\0".join(parts) + (b"\0" if rng.random() < 0.8 else b"")
        tx_id = rng.choice((0, 0, 1, 2, rng.getrandbits(32)))
        length = len(body) if rng.random() < 0.9 else rng.choice((0, 4095, 4096, 4097, 0xFFFFFFFF))
        raw = struct.pack("<IIII", kind, rng.getrandbits(32), tx_id, length) + body
        return mutate(rng, raw, XS_PATHS) if rng.random() < 0.3 else raw

    def xs_poke(self):
        rng = self.rng
        roll = rng.random()
        if roll < 0.04:
            return [rng.choice(("req_prod", "rsp_cons", "req_cons", "rsp_prod")), rng.getrandbits(32)]
        if roll < 0.06:
            return ["connection", rng.choice((1, 1, 2, rng.getrandbits(32)))]
        return ["error", rng.getrandbits(32)] if roll < 0.07 else None

    def xs_host_call(self):
        rng = self.rng
        path = rng.choice(XS_PATHS)
        if rng.random() < 0.3:
            path = mutate(rng, path, XS_PATHS)
        name = rng.choice(sorted(HOST_CALLS))
        arg = {"write": rng.choice(XS_VALUES).hex(),
               "set_perms": [rng.choice((0, 1, 2, 65535, 65536, -1)), rng.choice("nrwbx")],
               "introduce": rng.choice((1, 2, 3, 0, 0x7FF0, -1)),
               "release": rng.choice((2, 3, 0, 0x7FF0))}.get(name)
        return [name, path.decode("latin-1"), arg]

    def gdb_input(self):
        """A client's bytes: packets from gdb's vocabulary, framed well or
        badly, with acks, Ctrl-C and noise, cut into chunks anywhere; the
        guest runs a few rounds after some chunks."""
        rng = self.rng
        data = b"".join(self.gdb_item() for _ in range(rng.randrange(1, 12)))
        cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randrange(4)))
        pieces = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
        return {"chunks": [[piece.hex(), rng.choice((0, 0, 1, 2, gdb.MAX_ROUNDS))]
                           for piece in pieces]}

    def gdb_item(self):
        from pyxenon.toolstack.gdbpacket import checksum

        rng = self.rng
        if rng.random() < 0.1:
            return rng.choice(GDB_NOISE)
        payload = rng.choice(GDB_PACKETS).replace(b"%x", b"%x" % rng.choice(self.gdb_addresses))
        roll = rng.random()
        if roll < 0.1:
            payload = mutate(rng, payload, GDB_PACKETS)
        elif roll < 0.15:     # a run-length mark, which only replies may use
            at = rng.randrange(len(payload) + 1)
            payload = payload[:at] + b"*" + bytes([rng.randrange(29, 127)]) + payload[at:]
        digits = b"%02x" % checksum(payload)
        roll = rng.random()
        if roll < 0.1:
            digits = rng.choice((b"00", b"zz", b"0", b"", b"FF", b"%02X" % checksum(payload)))
        return b"$" + payload + b"#" + digits
