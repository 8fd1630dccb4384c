# shellcheck shell=bash
# Sourced by scripts that boot Linux: fetches an unmodified Debian 6.12 kernel and
# builds the initramfs that runs the kexec loop (tests/linux/init). Nothing is
# installed for the kernel, busybox or the kexec helper: packages are downloaded with
# `apt-get download` and unpacked under target/linux/. Quiet when everything is
# there; says what it downloads or builds.
#
#   ensure_linux_kernel   sets PARKBOOT_LINUX_KERNEL (the vmlinuz) and
#                         PARKBOOT_LINUX_PACKAGE (the package it came from)
#   ensure_initramfs      sets PARKBOOT_LINUX_INITRD (target/linux/initramfs.cpio.gz)
#
# PARKBOOT_LINUX_PACKAGE=NAME[=VERSION] picks a kernel package instead of the newest
# linux-image-6.12.*-amd64 (it must be 6.11 or newer to hand CPUs back on kexec).

# deps.sh gives say, as_root, ensure_packages, ensure_backports and apt_update_once;
# scripts that sourced it already keep their state (APT_UPDATED).
declare -F ensure_packages >/dev/null || source "$(dirname "${BASH_SOURCE[0]}")/deps.sh"

PARKBOOT_LINUX_DIR="$PARKBOOT_ROOT/target/linux"

# linux_newest_version PACKAGE: the highest version of PACKAGE any apt source offers
# (apt's candidate would prefer bookworm over bookworm-backports, which has priority
# 100, so ask for the version explicitly).
linux_newest_version() {
    { apt-cache madison "$1" 2>/dev/null || true; } |
        awk -F'|' '{gsub(/ /,"",$2); print $2}' | sort -V | tail -n1
}

# linux_newest_kernel_package: the newest signed linux-image-6.12.<x>+<suffix>-amd64
# in the apt lists. bookworm-security carries the 6.12 kernels as +deb12,
# bookworm-backports as +deb12 or +bpo; the -unsigned, -dbg, cloud and rt flavours
# do not match. Prints nothing when there is none (no failure, so that callers
# under `set -e -o pipefail` get to say so).
linux_newest_kernel_package() {
    { apt-cache pkgnames linux-image-6.12. 2>/dev/null || true; } |
        { grep -E '^linux-image-6\.12\.[0-9]+\+[a-z0-9.]+-amd64$' || true; } | sort -V | tail -n1
}

# linux_download PACKAGE[=VERSION] DIR: apt-get download into DIR; prints the .deb.
linux_download() {
    local spec="$1" dir="$2" pkg="${1%%=*}" ver out deb
    if [ "$spec" = "$pkg" ]; then
        ver="$(linux_newest_version "$pkg")"
        if [ -z "$ver" ]; then
            # A fresh machine may have no package lists yet.
            apt_update_once
            ver="$(linux_newest_version "$pkg")"
        fi
        [ -n "$ver" ] || { say "error: no apt source offers $pkg"; return 1; }
        spec="$pkg=$ver"
    fi
    say "downloading $spec (apt-get download) into ${dir#"$PARKBOOT_ROOT"/}"
    mkdir -p "$dir"
    # apt-get warns on stderr when root downloads without the _apt sandbox; only show
    # its output when the download fails.
    if ! out="$(cd "$dir" && apt-get download -q "$spec" 2>&1)"; then
        say "error: apt-get download $spec failed:"
        echo "$out" >&2
        return 1
    fi
    # apt-get names the file PACKAGE_VERSION_ARCH.deb with ':' escaped as %3a.
    deb="$(ls -t "$dir/${pkg}_"*.deb 2>/dev/null | head -n1)" || true
    [ -n "$deb" ] || { say "error: apt-get download $spec left no .deb in $dir"; return 1; }
    echo "$deb"
}

# linux_unpacked PACKAGE DIR [MEMBERS...]: downloads PACKAGE (newest version) unless
# DIR/.package names it already, and unpacks it into DIR (only MEMBERS, tar patterns
# like './boot/*', when given). Quiet when DIR is already unpacked.
linux_unpacked() {
    local pkg="$1" dir="$2" deb
    shift 2
    if [ -f "$dir/.package" ] && [ "$(cat "$dir/.package")" = "$pkg" ]; then
        return 0
    fi
    deb="$(linux_download "$pkg" "$PARKBOOT_LINUX_DIR/debs")" || return 1
    rm -rf "$dir"
    mkdir -p "$dir"
    if [ $# -gt 0 ]; then
        dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dir" --wildcards "$@" ||
            { say "error: unpacking $* from $deb failed"; return 1; }
    else
        dpkg-deb -x "$deb" "$dir" || { say "error: dpkg-deb -x $deb failed"; return 1; }
    fi
    echo "$pkg" >"$dir/.package"
}

ensure_linux_kernel() {
    local pkg="${PARKBOOT_LINUX_PACKAGE:-}" link="$PARKBOOT_LINUX_DIR/kernel.package"
    # Without an explicit choice, stay with the kernel already unpacked, so repeated
    # runs (and their timings) use the same kernel and need no apt at all.
    if [ -z "$pkg" ] && [ -f "$link" ]; then
        pkg="$(cat "$link")"
    fi
    if [ -z "$pkg" ]; then
        pkg="$(linux_newest_kernel_package)"
        if [ -z "$pkg" ]; then
            # The 6.12 kernels come from bookworm-security or bookworm-backports.
            ensure_backports
            apt_update_once
            pkg="$(linux_newest_kernel_package)"
        fi
        [ -n "$pkg" ] || {
            say "error: no linux-image-6.12.*-amd64 package in the apt sources (bookworm-security, bookworm-backports)"
            return 1
        }
    fi
    local name="${pkg%%=*}"
    local dir="$PARKBOOT_LINUX_DIR/kernel/$name"
    # The modules are not needed (the initramfs uses built-in drivers only): unpack
    # /boot alone, a few MB instead of hundreds.
    linux_unpacked "$pkg" "$dir" './boot/*' || return 1
    local vmlinuz
    vmlinuz="$(ls "$dir"/boot/vmlinuz-* 2>/dev/null | head -n1)" || true
    [ -n "$vmlinuz" ] || { say "error: $name has no /boot/vmlinuz-*"; return 1; }
    mkdir -p "$PARKBOOT_LINUX_DIR"
    [ -f "$link" ] && [ "$(cat "$link")" = "$pkg" ] || echo "$pkg" >"$link"
    PARKBOOT_LINUX_KERNEL="$vmlinuz"
    PARKBOOT_LINUX_PACKAGE="$pkg"
}

# busybox-static: one static binary gives the init its shell and tools (dmesg, awk,
# cpio, poweroff).
ensure_linux_busybox() {
    linux_unpacked busybox-static "$PARKBOOT_LINUX_DIR/busybox" './bin/busybox' || return 1
    PARKBOOT_LINUX_BUSYBOX="$PARKBOOT_LINUX_DIR/busybox/bin/busybox"
}

# The kexec helper (tests/linux/kexec-file.c), linked statically. Debian's kexec-tools
# binary is linked against libxenctrl, which would pull half a dozen Xen libraries
# into the initramfs; the loop only needs the two system calls `kexec -s -l` and
# `kexec -e` make (kexec_file_load and reboot(LINUX_REBOOT_CMD_KEXEC)).
ensure_linux_kexec() {
    local src="$PARKBOOT_ROOT/tests/linux/kexec-file.c" out="$PARKBOOT_LINUX_DIR/kexec-file"
    PARKBOOT_LINUX_KEXEC="$out"
    [ -x "$out" ] && [ "$out" -nt "$src" ] && return 0
    ensure_packages gcc:gcc /usr/lib/x86_64-linux-gnu/libc.a:libc6-dev
    say "building ${out#"$PARKBOOT_ROOT"/} (static)"
    mkdir -p "$PARKBOOT_LINUX_DIR"
    gcc -static -Os -Wall -Wextra -Werror -o "$out.tmp" "$src" ||
        { say "error: building $src failed"; return 1; }
    strip "$out.tmp"
    mv "$out.tmp" "$out"
}

# The initramfs inputs, in the order scripts/initramfs records them.
linux_initramfs_inputs() {
    printf '%s\n' \
        "$PARKBOOT_ROOT/tests/linux/init" \
        "$PARKBOOT_ROOT/scripts/initramfs" \
        "$PARKBOOT_LINUX_KERNEL" \
        "$PARKBOOT_LINUX_BUSYBOX" \
        "$PARKBOOT_LINUX_KEXEC"
}

# ensure_initramfs [FILE]: scripts/initramfs rebuilds FILE (default
# target/linux/initramfs.cpio.gz) only when it is missing or stale.
ensure_initramfs() {
    local out="${1:-$PARKBOOT_ROOT/target/linux/initramfs.cpio.gz}"
    "$PARKBOOT_ROOT/scripts/initramfs" --out "$out" || return 1
    ensure_linux_kernel || return 1
    PARKBOOT_LINUX_INITRD="$out"
}

# ensure_single_boot_initramfs: the initramfs without /kernel (single boots, small
# enough for a 16 MiB flash beside the kernel); sets PARKBOOT_LINUX_INITRD_SINGLE.
ensure_single_boot_initramfs() {
    local out="$PARKBOOT_ROOT/target/linux/initramfs-single.cpio.gz"
    "$PARKBOOT_ROOT/scripts/initramfs" --without-kernel --out "$out" || return 1
    PARKBOOT_LINUX_INITRD_SINGLE="$out"
}
