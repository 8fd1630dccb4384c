# Sourced by scripts/run, scripts/test and scripts/bench: installs what parkboot's
# build and tests need on a fresh Debian bookworm machine, and says what it installs.
# Quiet when everything is already there.

PARKBOOT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PARKBOOT_CACHE="${PARKBOOT_CACHE:-$PARKBOOT_ROOT/target/deps}"

say() { echo "parkboot: $*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# add_debian_sources FILE TYPES SUITE: an apt sources entry (deb822) for SUITE with
# TYPES (deb or deb-src), copied from the machine's own bookworm entry (same mirror and
# key), else for deb.debian.org. Nothing to do when FILE exists.
add_debian_sources() {
    local list="/etc/apt/sources.list.d/$1" types="$2" suite="$3"
    [ -f "$list" ] && return 0
    local src
    src="$(grep -l '^Suites:.*bookworm' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v '/parkboot-' | head -n1)"
    if [ -n "$src" ]; then
        say "adding $suite ($types) from $src"
        awk -v types="$types" -v suite="$suite" 'BEGIN{RS="";ORS="\n\n"}
            /Suites:.*bookworm( |$)/ && !done {
                gsub(/Types:[^\n]*/, "Types: " types); gsub(/Suites:[^\n]*/, "Suites: " suite)
                print; done=1
            }' "$src" | as_root tee "$list" >/dev/null
    else
        say "adding $suite ($types, deb.debian.org)"
        printf 'Types: %s\nURIs: http://deb.debian.org/debian\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
            "$types" "$suite" | as_root tee "$list" >/dev/null
    fi
    APT_UPDATED=
}

# QEMU 10 comes from bookworm-backports: bookworm's own 7.2 lacks x2APIC under TCG
# and the apic_register_write trace event that the INIT IPI witness reads.
ensure_backports() {
    add_debian_sources parkboot-backports.sources deb bookworm-backports
}

apt_update_once() {
    if [ -z "${APT_UPDATED:-}" ]; then
        as_root apt-get update -qq >/dev/null
        APT_UPDATED=1
    fi
}

qemu_is_10() {
    command -v qemu-system-x86_64 >/dev/null &&
        qemu-system-x86_64 --version | head -n1 | grep -Eq 'version (1[0-9])\.'
}

ensure_qemu() {
    qemu_is_10 && return 0
    ensure_backports
    apt_update_once
    say "installing qemu-system-x86 from bookworm-backports"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        -t bookworm-backports qemu-system-x86 >/dev/null
    qemu_is_10 || { say "error: QEMU 10 is needed, found: $(qemu-system-x86_64 --version | head -n1)"; exit 1; }
}

# ensure_packages CMD:PACKAGE ...
ensure_packages() {
    local missing=() item cmd pkg
    for item in "$@"; do
        cmd="${item%%:*}"; pkg="${item#*:}"
        if ! command -v "$cmd" >/dev/null 2>&1 && ! [ -e "$cmd" ]; then missing+=("$pkg"); fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    apt_update_once
    say "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_rust_target() {
    if ! rustup target list --installed | grep -qx x86_64-unknown-none; then
        say "adding rust target x86_64-unknown-none"
        rustup target add x86_64-unknown-none >/dev/null 2>&1
    fi
    for comp in clippy rustfmt; do
        if ! rustup component list --installed | grep -q "^$comp"; then
            say "adding rust component $comp"
            rustup component add "$comp" >/dev/null 2>&1
        fi
    done
}

ensure_build_deps() {
    ensure_rust_target
    ensure_qemu
    ensure_packages cbfstool:coreboot-utils
}

# Builds parkboot, the test kernels and the host runner (release). Quiet unless
# something fails.
build_parkboot() {
    (cd "$PARKBOOT_ROOT" &&
        cargo build -q --release --target x86_64-unknown-none -p parkboot -p cbshim -p testkernel &&
        cargo build -q --release -p parkboot-tests --bin parkboot-run)
}

PARKBOOT_IMAGE="$PARKBOOT_ROOT/target/x86_64-unknown-none/release/parkboot"
PARKBOOT_CBSHIM="$PARKBOOT_ROOT/target/x86_64-unknown-none/release/cbshim"
PARKBOOT_TESTKERNEL="$PARKBOOT_ROOT/target/x86_64-unknown-none/release/testkernel"
PARKBOOT_RUNNER="$PARKBOOT_ROOT/target/release/parkboot-run"
