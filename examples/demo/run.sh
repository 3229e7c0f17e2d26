#!/bin/sh
# The separation demo: ping and pong connect through XenStore, an event
# channel and a granted page; intruder tries every other path.  Run from
# anywhere; builds the guests first.  Extra arguments go to `pyxenon run`
# (e.g. --trace, --deterministic).  Writes the MSM's decisions to
# audit.jsonl in the current folder (appending).
set -e
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
pyxenon=${PYXENON:-pyxenon}
make -s -C "$root/guests"
exec "$pyxenon" run --policy "$root/examples/policies/ping-pong.toml" \
    --audit audit.jsonl "$@" \
    "$root/guests/ping.cfg" "$root/guests/pong.cfg" "$root/guests/intruder.cfg"
