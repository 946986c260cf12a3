#!/bin/busybox sh
# STAND-IN for the Talos imager, used only by the tests (the real imager image cannot be pulled
# on the test machines). It honours the imager's contract as xtask uses it:
#   - arguments `--tar-to-stdout -`, the profile (YAML) on stdin;
#   - stdout: a gzip tar whose root holds the output named as the real imager names it
#     (installer-<arch>.tar as a docker-archive whose config says <arch>/linux, kernel-<arch>,
#     initramfs-metal-<arch>.xz, <platform>-<arch>.raw.xz, metal-<arch>.iso);
#   - a bad profile: a message on stderr and a non-zero exit.
# When /fail exists in the image it writes part of an output and then fails, like an imager that
# dies half way. When /assets/kernel and /assets/initramfs exist (a real arm64 kernel and a
# Talos-like initramfs the test built), they are returned as the kernel and initramfs outputs,
# so that the smoke boot has something real to boot.
/bin/busybox mkdir -p /usr/local/bin
/bin/busybox --install -s /usr/local/bin
export PATH=/usr/local/bin:/bin
set -e

if [ "$1" != "--tar-to-stdout" ] || [ "$2" != "-" ] || [ $# -ne 2 ]; then
    echo "stand-in imager: usage: imager --tar-to-stdout - (got: $*)" >&2
    exit 2
fi
profile=$(cat)
top() { echo "$profile" | sed -n "s/^$1: *//p" | head -n 1; }
arch=$(top arch)
platform=$(top platform)
kind=$(echo "$profile" | sed -n 's/^  kind: *//p' | head -n 1)
echo "stand-in imager: kind=$kind arch=$arch platform=$platform" >&2

case "$arch" in
    amd64|arm64) ;;
    *) echo "error: profile: unsupported arch \"$arch\"" >&2; exit 1 ;;
esac
[ -n "$platform" ] || { echo "error: profile: platform is required" >&2; exit 1; }
echo "$profile" | grep -q '^    path: /usr/install/'"$arch"'/vmlinuz$' || { echo "error: profile: input.kernel.path must be /usr/install/$arch/vmlinuz" >&2; exit 1; }

out=/out
mkdir -p $out /work
sum=$(echo "$profile" | sha256sum | cut -d' ' -f1)

if [ -e /fail ]; then
    echo "partial" > $out/kernel-$arch
    echo "error: stand-in imager told to fail (it has /fail)" >&2
    exit 1
fi

case "$kind" in
    installer)
        mkdir -p /work/layer/usr/install/$arch
        echo "$profile" > /work/layer/usr/install/$arch/profile.yaml
        # stand-in boot assets where the real imager puts sd-boot and the UKI
        echo "stand-in sd-boot $arch" > /work/layer/usr/install/$arch/systemd-boot.efi
        echo "stand-in UKI $arch $sum" > /work/layer/usr/install/$arch/vmlinuz.efi
        tar -cf /work/layer.tar -C /work/layer usr
        layer=$(sha256sum /work/layer.tar | cut -d' ' -f1)
        printf '{"architecture":"%s","os":"linux","config":{"Entrypoint":["/bin/installer"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$arch" "$layer" > /work/config.json
        config=$(sha256sum /work/config.json | cut -d' ' -f1)
        mkdir -p /work/archive
        mv /work/layer.tar /work/archive/$layer.tar
        mv /work/config.json /work/archive/$config.json
        printf '[{"Config":"%s.json","RepoTags":["ghcr.io/siderolabs/installer:stand-in"],"Layers":["%s.tar"]}]' "$config" "$layer" > /work/archive/manifest.json
        tar -cf $out/installer-$arch.tar -C /work/archive manifest.json $config.json $layer.tar
        ;;
    kernel)
        if [ -f /assets/kernel ]; then cp /assets/kernel $out/kernel-$arch
        else echo "stand-in kernel $arch $sum" > $out/kernel-$arch; fi
        ;;
    initramfs)
        if [ -f /assets/initramfs ]; then cp /assets/initramfs $out/initramfs-metal-$arch.xz
        else echo "stand-in initramfs $arch $sum" | gzip > $out/initramfs-metal-$arch.xz; fi
        ;;
    image)
        echo "$profile" | grep -q '^    diskSize: [1-9][0-9]*$' || { echo "error: profile: output.imageOptions.diskSize is required for kind image" >&2; exit 1; }
        echo "stand-in disk $platform $arch $sum" | gzip > $out/$platform-$arch.raw.xz
        ;;
    iso) echo "stand-in iso $arch $sum" > $out/metal-$arch.iso ;;
    *) echo "error: profile: unknown output kind \"$kind\"" >&2; exit 1 ;;
esac
tar -czf - -C $out .
