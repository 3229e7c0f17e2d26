#!/bin/bash
# create -p, attach the console in the background, unpause, and read the
# guest's whole output through to its shutdown; then the domain is gone.
# Then the same with the console attached after the domain has gone.
# Usage: test_xl_console.sh XL GUESTS_DIR   (XL: pyxenon, or a symlink named xl)
# The caller sets PYXENON_RUNTIME_DIR and stops the daemon afterwards.
set -eu
XL=$1
GUESTS=$2
OUT=$PYXENON_RUNTIME_DIR/console.out

"$XL" create -p "$GUESTS/hello.cfg"
"$XL" list hello | grep -q -- '--p---'
"$XL" console hello > "$OUT" &
CONSOLE=$!
# The console is attached once the daemon has it; the output cannot be missed
# anyway (the daemon sends the backlog on attach), so a short pause is enough.
sleep 0.3
"$XL" unpause hello
wait $CONSOLE   # the console client ends when the domain does
# As xl console on Xen: the console ring alone; console_io goes to dmesg.
[ "$(cat "$OUT")" = "Hello from the pyxenon hello guest's console ring" ]
"$XL" dmesg | grep -q "^(d[0-9]*) start_info magic: xen-3.0-x86_64, nr_pages: 4096$"
if "$XL" list | grep -q '^hello '; then
    echo "hello still listed after its shutdown" >&2
    exit 1
fi
# A console asked for only once the domain is gone still shows its output
# (the race of `console` right after `unpause`, at its worst).
"$XL" create -q -p "$GUESTS/hello.cfg"
"$XL" unpause hello
while "$XL" list | grep -q '^hello '; do sleep 0.05; done
"$XL" console hello > "$OUT"
[ "$(cat "$OUT")" = "Hello from the pyxenon hello guest's console ring" ]
"$XL" list | head -1 | grep -q "^Name  *ID   Mem VCPUs"
"$XL" list | grep -q "^Domain-0  *0 "
echo OK
