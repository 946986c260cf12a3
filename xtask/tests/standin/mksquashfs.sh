#!/usr/libexec/stand-in/busybox sh
# SHIM in the tests' imager image (tests only): the imager at Talos v1.13 passes options of
# squashfs-tools 4.6, Debian 12 ships 4.5.1. `-xattrs-exclude .*` (drop every xattr) is 4.5.1's
# `-no-xattrs`; a SELinux pseudo xattr (`-p "PATH x ..."`, 4.6 only) is refused with a message,
# so a test that needs one fails instead of building something else.
n=$#
i=0
while [ "$i" -lt "$n" ]; do
    a=$1; shift; i=$((i + 1))
    case "$a" in
        -xattrs-exclude)
            v=$1; shift; i=$((i + 1))
            if [ "$v" != ".*" ]; then
                echo "mksquashfs shim: cannot map -xattrs-exclude $v to squashfs-tools 4.5" >&2
                exit 2
            fi
            set -- "$@" -no-xattrs ;;
        -p)
            v=$1; shift; i=$((i + 1))
            case "$v" in
                *" x "*) echo "mksquashfs shim: pseudo xattr \"$v\" needs squashfs-tools 4.6" >&2; exit 2 ;;
            esac
            set -- "$@" -p "$v" ;;
        *) set -- "$@" "$a" ;;
    esac
done
exec /usr/libexec/stand-in/mksquashfs "$@"
