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
# GDB remote protocol packets (payloads; %x: an address the maker picks),
# the commands gdb sends a stub and the odd ones around them.
GDB_PACKETS = (b"?", b"g", b"G" + b"00" * 8, b"G" + b"11" * 1000, b"p10", b"p0", b"p99", b"pffffffff",
               b"P0=0011223344556677", b"P10=%x", b"P11=00000000", b"P18=0000000000000000",
               b"m%x,8", b"m%x,1000", b"m%x,ffffffffffffffff", b"m%x,0", b"m,", b"m%x",
               b"M%x,4:90909090", b"M%x,2:9090ff", b"X%x,4:\x90\x90}\x03\xcc", b"X%x,0:",
               b"X%x,1000:" + b"\xcc" * 64, b"X%x,1000:" + b"\xcc" * 0x1000,
               b"M%x,10:" + b"cc" * 16, b"M%x,1000:" + b"cc" * 0x1000, b"Z0,%x,1", b"z0,%x,1", b"Z1,%x,1", b"Z2,%x,8",
               b"Z3,%x,1000", b"Z4,%x,1001", b"z2,%x,8", b"Z5,%x,1", b"Z0,%x,1;X1,cc",
               b"c", b"c%x", b"s", b"s%x", b"C05", b"S0b;%x", b"Cfff", b"vCont?", b"vCont;c",
               b"vCont;s:1", b"vCont;c:-1", b"vCont;s:1;c", b"vCont;x", b"vCont;c:99",
               b"Hg0", b"Hc-1", b"Hg2", b"Hx1", b"T1", b"T0", b"T5", b"qfThreadInfo",
               b"qsThreadInfo", b"qThreadExtraInfo,1", b"qThreadExtraInfo,ff", b"qC",
               b"qAttached", b"qSymbol::", b"qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=i386",
               b"qSupported", b"QStartNoAckMode", b"qXfer:features:read:target.xml:0,ffb",
               b"qXfer:features:read:target.xml:fff0,ffff", b"qXfer:features:read:x.xml:0,1",
               b"qXfer:features:read:target.xml:,", b"vMustReplyEmpty", b"qOffsets", b"D", b"k",
               b"", b"\x00", b"\xff" * 10, b"}", b"*", b"#", b"$")
GDB_NOISE = (b"+", b"-", b"\x03", b"$", b"#", b"}", b"*", b"#00", b"$#00", b"\r\n", b"+$?#3f",
             b"$" + b"A" * 0x8100 + b"#00")
