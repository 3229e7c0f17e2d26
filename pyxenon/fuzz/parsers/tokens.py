"""Tokens and seeds the parser mutators splice in: xl.cfg, policy, JSON
and XenStore vocabulary, and edge values."""
from ..common import MASK64


BYTE_EDGES = (0, 1, 0x7F, 0x80, 0xFE, 0xFF)
WORD_EDGES = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000,
              0xFFFFFFFF, 1 << 32, 1 << 63, MASK64, 0x1000, 0x38, 0x40)
CFG_TOKENS = (b"name", b"kernel", b"memory", b"maxmem", b"vcpus", b"on_crash", b"on_poweroff",
              b"on_reboot", b"on_watchdog", b"type", b"ramdisk", b"cmdline", b"extra", b"root",
              b"seclabel", b"builder", b" = ", b" += ", b"[", b"]", b",", b";", b"#", b'"', b"'",
              b"\\", b"\\x4", b"\\777", b"\\0", b"\n", b"\r", b"0x", b"0", b"-1", b"08",
              b"99999999999999999999999", b'"destroy"', b'"pv"', b'"hvm"', b'"x.elf"', b"\xc3\xa9",
              b"\xff", b"\x00", b"\t")
POLICY_TOKENS = (b"version", b"[labels]", b"[[allow]]", b"[allow]", b"from", b"to", b"paths",
                 b"access", b"bidirectional", b'"event_channel"', b'"grant_map"',
                 b'"grant_copy"', b'"xenstore"', b'"read"', b'"write"', b'"readwrite"', b"true",
                 b"false", b" = ", b"[", b"]", b"{", b"}", b'"""', b"'''", b"\n", b"#", b".",
                 b'"ping"', b'"pong"', b'"dom0"', b"1", b"2", b"inf", b"nan", b"1979-05-27",
                 b"\\u0000", b'"a.b"', b"\xff", b"\x00")
JSON_TOKENS = (b"{", b"}", b"[", b"]", b'"op"', b'"create"', b'"list"', b'"console"', b'"input"',
               b'"domain"', b'"cfg"', b'"overrides"', b'"data"', b'"paused"', b":", b",", b"null",
               b"true", b"false", b"1e999", b"-0", b'"\\ud800"', b"NaN", b"Infinity", b"\n",
               b'"\\u0000"', b"0", b"[[[[[[[[", b"\xff", b"\x00")
JSON_SEEDS = ({"op": "ping"}, {"op": "list"}, {"op": "list", "domain": "hello"},
              {"op": "create", "cfg": "/tmp/x.cfg", "overrides": ['memory=8'], "paused": True,
               "cwd": "/", "console": False},
              {"op": "pause", "domain": "1"}, {"op": "dmesg", "clear": True},
              {"op": "console", "domain": "d"}, {"op": "input", "data": "aGVsbG8="},
              {"op": "info"}, {"op": "stop"}, {"op": "vcpu_list"}, {"op": "shutdown", "domain": "x"})
XS_PATHS = (b"/", b"/local", b"/local/domain/1", b"/local/domain/1/data/x", b"data/x",
            b"@introduceDomain", b"@releaseDomain", b"@other", b"/local/domain/2/name",
            b"//", b"/a/", b"name", b"control/shutdown", b"a" * 2100, b"/" + b"b" * 3100, b"",
            b"/local/domain/0", b"\xff", b"a b", b"device/vif/0/state")
XS_VALUES = (b"", b"1", b"0", b"T", b"F", b"b1", b"r0", b"n1", b"w2", b"b65535", b"r99999",
             b"x" * 5000, b"\x00", b"4294967295", b"4294967296", b"-1", b"007")
