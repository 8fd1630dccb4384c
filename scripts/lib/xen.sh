# shellcheck shell=bash
# Sourced by scripts that boot Xen: fetches Debian's Xen 4.17 hypervisor package with
# `apt-get download` and unpacks it under target/xen/ (never installed; nothing on the
# machine changes). Quiet when it is there.
#
#   ensure_xen   sets PARKBOOT_XEN (target/xen/pkg/boot/xen-4.17-amd64.gz, a gzip
#                multiboot2 ELF)

# linux.sh gives linux_download (apt-get download into a directory) and deps.sh.
declare -F linux_download >/dev/null || source "$(dirname "${BASH_SOURCE[0]}")/linux.sh"

PARKBOOT_XEN_DIR="$PARKBOOT_ROOT/target/xen"
PARKBOOT_XEN_PACKAGE=xen-hypervisor-4.17-amd64

ensure_xen() {
    local dir="$PARKBOOT_XEN_DIR/pkg" deb
    PARKBOOT_XEN="$dir/boot/xen-4.17-amd64.gz"
    [ -f "$PARKBOOT_XEN" ] && return 0
    deb="$(linux_download "$PARKBOOT_XEN_PACKAGE" "$PARKBOOT_XEN_DIR/debs")" || return 1
    rm -rf "$dir"
    mkdir -p "$dir"
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dir" --wildcards './boot/*' ||
        { say "error: unpacking $deb failed"; return 1; }
    [ -f "$PARKBOOT_XEN" ] || { say "error: $deb has no boot/xen-4.17-amd64.gz"; return 1; }
}
