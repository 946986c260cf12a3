#!/bin/busybox sh
# STAND-IN for a misbehaving Talos imager, used only by the fault tests (tests/faults.rs). It
# wraps the stand-in imager (/imager, tests/standin/imager.sh) and misbehaves for one output
# kind, chosen by a marker file baked into the image:
#   /slow-<kind>      announces itself on stderr, then sleeps (the test interrupts it);
#   /truncate-<kind>  exits 0 after writing only the first 64 bytes of its gzip tar;
#   /big-<kind>       returns a 24 MiB incompressible output (fills a small filesystem).
# Every other kind is built by /imager as usual.
/bin/busybox mkdir -p /usr/local/bin
/bin/busybox --install -s /usr/local/bin
export PATH=/usr/local/bin:/bin

profile=$(cat)
kind=$(echo "$profile" | sed -n 's/^  kind: *//p' | head -n 1)
arch=$(echo "$profile" | sed -n 's/^arch: *//p' | head -n 1)

if [ -e "/slow-$kind" ]; then
    echo "fault stand-in: slow $kind" >&2
    sleep 120
fi
if [ -e "/truncate-$kind" ]; then
    echo "$profile" | /imager "$@" | head -c 64
    exit 0
fi
if [ -e "/big-$kind" ]; then
    mkdir -p /out
    head -c 25165824 /dev/urandom > "/out/$kind-$arch"
    tar -czf - -C /out .
    exit 0
fi
echo "$profile" | exec /imager "$@"
