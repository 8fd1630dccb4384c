# shellcheck shell=bash
# Sourced by scripts/rom, scripts/run and scripts/test: builds the base coreboot ROM for
# QEMU q35 from Debian's coreboot source package and puts parkboot into ROMs.
#
#   ensure_coreboot_rom   sets PARKBOOT_BASE_ROM (target/coreboot/q35-<version>-<hash>.rom):
#                         a 16 MiB q35 ROM without a payload (CONFIG_PAYLOAD_NONE), so it
#                         does not depend on parkboot; parkboot is added with cbfstool.
#                         Rebuilt only when the defconfig text or the source version
#                         changes; quiet when cached.
#   ensure_cbfstool       sets PARKBOOT_CBFSTOOL (Debian's coreboot-utils cbfstool)
#
# The source is fetched with `apt-get source --download-only` from a deb-src entry for
# bookworm (/etc/apt/sources.list.d/parkboot-sources.sources, made from the machine's
# own Debian entry like the backports entry in deps.sh), unpacked under
# target/coreboot/ and never installed or committed.

declare -F ensure_packages >/dev/null || source "$(dirname "${BASH_SOURCE[0]}")/deps.sh"

PARKBOOT_COREBOOT_DIR="$PARKBOOT_ROOT/target/coreboot"
# The Debian source package (coreboot-utils is built from it).
PARKBOOT_COREBOOT_SOURCE_PACKAGE=coreboot

# The base ROM's configuration: QEMU q35, the host's gcc (no crossgcc download),
# 16 MiB (the most QEMU maps for -bios), no payload, no vboot, no blobs.
# Anything changed here gives a new ROM file name (its hash is part of the name).
coreboot_defconfig() {
    cat <<'CONFIG'
CONFIG_VENDOR_EMULATION=y
CONFIG_BOARD_EMULATION_QEMU_X86_Q35=y
CONFIG_ANY_TOOLCHAIN=y
CONFIG_COREBOOT_ROMSIZE_KB_16384=y
CONFIG_PAYLOAD_NONE=y
# CONFIG_VBOOT is not set
# CONFIG_USE_BLOBS is not set
# CONFIG_USE_AMD_BLOBS is not set
CONFIG
}

# make's extra arguments (part of the cache key, like the defconfig).
# CONFIG_WARNINGS_ARE_ERRORS=: gcc 12 trips -Werror=array-compare in 4.15's
# src/lib/cbfs.c.
COREBOOT_MAKE_FLAGS="CONFIG_WARNINGS_ARE_ERRORS="

# The host packages the coreboot build needs, as COMMAND-or-FILE:PACKAGE for
# ensure_packages. Found by building on a bookworm machine without them: gcc and make;
# iasl for the board's DSDT; and the 32-bit libgcc.a (__udivdi3 for the 32-bit
# bootblock and romstage), which lib32gcc-N-dev carries (gcc-multilib would also pull
# in 32-bit and x32 C libraries that coreboot does not use). Kconfig's parser ships
# pre-generated (no flex or bison); python3, xxd, zlib and openssl are not used by
# this board's build.
coreboot_build_packages() {
    local gcc_major
    gcc_major="$(gcc -dumpversion 2>/dev/null | cut -d. -f1)"
    printf '%s\n' gcc:gcc make:make iasl:acpica-tools
    [ -n "$gcc_major" ] &&
        printf '%s\n' "/usr/lib/gcc/x86_64-linux-gnu/$gcc_major/32/libgcc.a:lib32gcc-$gcc_major-dev"
}

# Debian's source packages (coreboot's) need a deb-src entry for bookworm.
ensure_deb_src() {
    add_debian_sources parkboot-sources.sources deb-src bookworm
}

# coreboot_source_version: the version of the coreboot source package apt offers.
coreboot_source_version() {
    { apt-cache showsrc "$PARKBOOT_COREBOOT_SOURCE_PACKAGE" 2>/dev/null || true; } |
        awk '/^Version:/ {print $2}' | sort -V | tail -n1
}

# ensure_coreboot_source: sets COREBOOT_SOURCE_VERSION and COREBOOT_SOURCE_TREE (the
# unpacked upstream tarball). Fetches only when the version is not unpacked yet.
ensure_coreboot_source() {
    local version dir
    # A version once fetched stays the one used (no apt call at all when cached),
    # unless PARKBOOT_COREBOOT_VERSION asks for another.
    version="${PARKBOOT_COREBOOT_VERSION:-}"
    if [ -z "$version" ] && [ -f "$PARKBOOT_COREBOOT_DIR/source.version" ]; then
        version="$(cat "$PARKBOOT_COREBOOT_DIR/source.version")"
    fi
    if [ -z "$version" ]; then
        ensure_deb_src
        version="$(coreboot_source_version)"
        if [ -z "$version" ]; then
            apt_update_once
            version="$(coreboot_source_version)"
        fi
        [ -n "$version" ] || {
            say "error: no apt source offers the source package $PARKBOOT_COREBOOT_SOURCE_PACKAGE (deb-src for bookworm)"
            return 1
        }
    fi
    dir="$PARKBOOT_COREBOOT_DIR/src-$version"
    COREBOOT_SOURCE_VERSION="$version"
    COREBOOT_SOURCE_TREE="$dir/tree"
    [ -f "$dir/.unpacked" ] && return 0

    ensure_deb_src
    local out orig
    mkdir -p "$dir"
    if ! ls "$dir"/*.orig.tar.* >/dev/null 2>&1; then
        say "downloading the $PARKBOOT_COREBOOT_SOURCE_PACKAGE $version source package (apt-get source) into ${dir#"$PARKBOOT_ROOT"/}"
        if ! out="$(cd "$dir" && apt-get source -q --download-only "$PARKBOOT_COREBOOT_SOURCE_PACKAGE=$version" 2>&1)"; then
            # A fresh deb-src entry needs the lists first.
            apt_update_once
            if ! out="$(cd "$dir" && apt-get source -q --download-only "$PARKBOOT_COREBOOT_SOURCE_PACKAGE=$version" 2>&1)"; then
                say "error: apt-get source $PARKBOOT_COREBOOT_SOURCE_PACKAGE=$version failed:"
                echo "$out" >&2
                return 1
            fi
        fi
    fi
    orig="$(ls "$dir"/*.orig.tar.* 2>/dev/null | head -n1)" || true
    [ -n "$orig" ] || { say "error: apt-get source left no .orig.tar.* in $dir"; return 1; }
    say "unpacking $(basename "$orig")"
    rm -rf "$dir/tree" "$dir/unpack"
    mkdir -p "$dir/unpack"
    tar -xf "$orig" -C "$dir/unpack" || { say "error: unpacking $orig failed"; return 1; }
    # The tarball holds one top directory (coreboot-4.15~dfsg or similar).
    local top
    top="$(find "$dir/unpack" -mindepth 1 -maxdepth 1 -type d | head -n1)"
    [ -n "$top" ] && [ -d "$top/src/mainboard/emulation/qemu-q35" ] ||
        { say "error: $orig has no src/mainboard/emulation/qemu-q35"; return 1; }
    mv "$top" "$dir/tree"
    rmdir "$dir/unpack"
    echo "$version" >"$PARKBOOT_COREBOOT_DIR/source.version"
    touch "$dir/.unpacked"
}

ensure_cbfstool() {
    ensure_packages cbfstool:coreboot-utils
    PARKBOOT_CBFSTOOL="$(command -v cbfstool)"
}

# ensure_coreboot_rom: builds the base ROM unless the cached one matches the defconfig
# text and the source version. Sets PARKBOOT_BASE_ROM.
ensure_coreboot_rom() {
    ensure_coreboot_source || return 1
    local hash rom build log start
    hash="$( { coreboot_defconfig; echo "$COREBOOT_MAKE_FLAGS"; echo "$COREBOOT_SOURCE_VERSION"; } | sha256sum | cut -c1-12)"
    rom="$PARKBOOT_COREBOOT_DIR/q35-${COREBOOT_SOURCE_VERSION//[^A-Za-z0-9.+-]/_}-$hash.rom"
    PARKBOOT_BASE_ROM="$rom"
    [ -f "$rom" ] && return 0

    ensure_packages gcc:gcc
    local packages
    mapfile -t packages < <(coreboot_build_packages)
    ensure_packages "${packages[@]}"
    build="$PARKBOOT_COREBOOT_DIR/build-$hash"
    log="$build.log"
    say "building the coreboot $COREBOOT_SOURCE_VERSION ROM for QEMU q35 (log: ${log#"$PARKBOOT_ROOT"/})"
    start=$SECONDS
    rm -rf "$build"
    mkdir -p "$build"
    coreboot_defconfig >"$build/defconfig"
    # obj= keeps the tree clean: every object, the .config and the ROM go to $build.
    # GIT_CEILING_DIRECTORIES: the tree has no .git of its own; without a ceiling
    # coreboot's version script would take parkboot's repository for coreboot's.
    if ! (cd "$COREBOOT_SOURCE_TREE" &&
        export GIT_CEILING_DIRECTORIES="$PARKBOOT_COREBOOT_DIR" &&
        make obj="$build/obj" DOTCONFIG="$build/.config" defconfig KBUILD_DEFCONFIG="$build/defconfig" &&
        make -j"$(nproc)" obj="$build/obj" DOTCONFIG="$build/.config" $COREBOOT_MAKE_FLAGS) >"$log" 2>&1; then
        say "error: the coreboot build failed; last lines of $log:"
        tail -n 30 "$log" >&2
        return 1
    fi
    [ -f "$build/obj/coreboot.rom" ] || { say "error: the coreboot build made no coreboot.rom (see $log)"; return 1; }
    cp "$build/obj/coreboot.rom" "$rom.tmp"
    mv "$rom.tmp" "$rom"
    say "built ${rom#"$PARKBOOT_ROOT"/} in $((SECONDS - start)) s"
}

# ---- putting parkboot, its configuration and files into a ROM ----------------------

# The CBFS names parkboot reads (payload/src/config.rs, README "Using parkboot with
# coreboot").
PARKBOOT_CBFS_PAYLOAD=fallback/payload
PARKBOOT_CBFS_CONFIG=parkboot/config
# Longest CBFS name a configuration can refer to (config.rs MAX_SOURCE_NAME).
PARKBOOT_CBFS_MAX_NAME=64
PARKBOOT_CONFIG_TOOL="$PARKBOOT_ROOT/target/release/parkboot-config"

# Builds parkboot (bare metal) and the host configuration checker.
build_rom_tools() {
    (cd "$PARKBOOT_ROOT" &&
        cargo build -q --release --target x86_64-unknown-none -p parkboot &&
        cargo build -q --release -p parkboot-tests --bin parkboot-config)
}

# rom_free_bytes ROM: the bytes of ROM's CBFS in (empty) entries, their headers
# included (a file may take an empty entry whole): an empty entry reaches up to the
# next entry's offset in `cbfstool print`; the last one counts its data size only.
rom_free_bytes() {
    "$PARKBOOT_CBFSTOOL" "$1" print 2>/dev/null | awk '
        function hex(text,    value, i) {
            value = 0
            for (i = 3; i <= length(text); i++)
                value = value * 16 + index("0123456789abcdef", tolower(substr(text, i, 1))) - 1
            return value
        }
        $2 ~ /^0x[0-9a-fA-F]+$/ {
            offset = hex($2)
            if (empty_size != "") { free += offset - empty_offset; empty_size = "" }
            if ($1 == "(empty)" && $3 == "null") { empty_offset = offset; empty_size = $4 }
        }
        END { if (empty_size != "") free += empty_size; print free + 0 }'
}

# rom_file_size ROM NAME: the stored size of NAME in ROM (empty when absent).
rom_file_size() {
    # The size is the first number after the type, which may be two words
    # ("simple elf", "cbfs header").
    "$PARKBOOT_CBFSTOOL" "$1" print 2>/dev/null |
        awk -v name="$2" '$1 == name {for (i = 4; i <= NF; i++) if ($i ~ /^[0-9]+$/) {print $i; exit}}'
}

# rom_add ROM KIND NAME FILE COMPRESSION: adds one file (KIND payload or raw).
rom_add() {
    local rom="$1" kind="$2" name="$3" file="$4" compression="$5"
    if [ "$kind" = payload ]; then
        "$PARKBOOT_CBFSTOOL" "$rom" add-payload -f "$file" -n "$name" -c "$compression"
    else
        "$PARKBOOT_CBFSTOOL" "$rom" add -t raw -f "$file" -n "$name" -c "$compression"
    fi
}

# rom_assemble BASE OUT CONFIG [NAME=FILE[:lzma|lz4|none] ...]
# Writes OUT: a copy of BASE with parkboot as fallback/payload (LZMA), CONFIG (may be
# empty: none) as parkboot/config and the files, each replacing a file of the same name.
# Checks CONFIG with parkboot's own parser first and refuses, with the number of bytes
# missing, when the files do not fit. Quiet unless something is wrong.
rom_assemble() {
    local base="$1" out="$2" config="$3"
    shift 3
    local names=() files=() compressions=() kinds=()
    names+=("$PARKBOOT_CBFS_PAYLOAD"); files+=("$PARKBOOT_IMAGE"); compressions+=(lzma); kinds+=(payload)
    if [ -n "$config" ]; then
        [ -f "$config" ] || { say "error: configuration $config not found"; return 1; }
        names+=("$PARKBOOT_CBFS_CONFIG"); files+=("$config"); compressions+=(none); kinds+=(raw)
    fi
    local spec name file compression i
    for spec in "$@"; do
        case "$spec" in
            *=*) ;;
            *) say "error: --add $spec: expected NAME=FILE[:lzma|lz4|none]"; return 1 ;;
        esac
        name="${spec%%=*}"
        file="${spec#*=}"
        compression=none
        case "$file" in
            *:lzma | *:lz4 | *:none) compression="${file##*:}"; file="${file%:*}" ;;
        esac
        [ -n "$name" ] && [ "${#name}" -le "$PARKBOOT_CBFS_MAX_NAME" ] ||
            { say "error: --add $spec: a CBFS name is 1 to $PARKBOOT_CBFS_MAX_NAME bytes, found ${#name}"; return 1; }
        [ -f "$file" ] || { say "error: --add $spec: $file not found"; return 1; }
        for i in "${!names[@]}"; do
            [ "${names[$i]}" != "$name" ] ||
                { say "error: --add $spec: CBFS file $name is already given"; return 1; }
        done
        names+=("$name"); files+=("$file"); compressions+=("$compression"); kinds+=(raw)
    done

    [ -f "$base" ] || { say "error: coreboot image $base not found"; return 1; }
    "$PARKBOOT_CBFSTOOL" "$base" print >/dev/null 2>&1 ||
        { say "error: $base is not a coreboot image: cbfstool cannot read its CBFS"; return 1; }

    # The configuration, checked with the parser parkboot uses; every cbfs: file it
    # reads must be added now or be in the image already.
    if [ -n "$config" ]; then
        "$PARKBOOT_CONFIG_TOOL" check "$config" >/dev/null || return 1
        local wanted found
        while IFS= read -r wanted; do
            found=
            for i in "${!names[@]}"; do [ "${names[$i]}" = "$wanted" ] && found=1; done
            [ -n "$found" ] || [ -n "$(rom_file_size "$base" "$wanted")" ] || {
                say "error: $config reads cbfs:$wanted, but neither --add nor $base provides it"
                return 1
            }
        done < <("$PARKBOOT_CONFIG_TOOL" cbfs-files "$config")
    fi

    local work
    work="$(mktemp -d "${TMPDIR:-/tmp}/parkboot-rom.XXXXXX")" || return 1
    # What the files take in CBFS (compressed, with their headers): add them to an
    # empty CBFS of ample size and see how much free space they use up.
    local total=0 size scratch="$work/scratch.rom"
    for file in "${files[@]}"; do
        total=$((total + $(stat -c %s "$file")))
    done
    "$PARKBOOT_CBFSTOOL" "$scratch" create -m x86 -s $(((total / 1048576 + 2) * 1048576)) >/dev/null 2>&1
    local scratch_free
    scratch_free="$(rom_free_bytes "$scratch")"
    for i in "${!names[@]}"; do
        rom_add "$scratch" "${kinds[$i]}" "${names[$i]}" "${files[$i]}" "${compressions[$i]}" >"$work/log" 2>&1 || {
            say "error: cbfstool cannot add ${files[$i]} as ${names[$i]}:"
            cat "$work/log" >&2
            rm -rf "$work"
            return 1
        }
    done
    local needed=$((scratch_free - $(rom_free_bytes "$scratch")))

    local image="$work/image.rom" replaced=()
    cp "$base" "$image"
    for name in "${names[@]}"; do
        if [ -n "$(rom_file_size "$image" "$name")" ]; then
            "$PARKBOOT_CBFSTOOL" "$image" remove -n "$name" >/dev/null 2>&1 || {
                say "error: cbfstool cannot remove $name from the copy of $base"
                rm -rf "$work"
                return 1
            }
            replaced+=("$name")
        fi
    done
    local free
    free="$(rom_free_bytes "$image")"
    if [ "$needed" -gt "$free" ]; then
        say "error: does not fit: the files need $needed bytes of CBFS, $(basename "$base") has $free bytes free${replaced[*]:+ without the files this replaces (${replaced[*]})}: $((needed - free)) bytes missing"
        for i in "${!names[@]}"; do
            size="$(rom_file_size "$scratch" "${names[$i]}")"
            say "  ${names[$i]}: ${files[$i]}, $(stat -c %s "${files[$i]}") bytes, stored as $size bytes (${compressions[$i]})"
        done
        rm -rf "$work"
        return 1
    fi
    for i in "${!names[@]}"; do
        rom_add "$image" "${kinds[$i]}" "${names[$i]}" "${files[$i]}" "${compressions[$i]}" >"$work/log" 2>&1 || {
            # Enough bytes in all, but not in one piece (free space split by fixed files).
            say "error: does not fit: cbfstool cannot add ${files[$i]} as ${names[$i]} ($needed bytes needed in all, $free free, but not in one piece):"
            cat "$work/log" >&2
            rm -rf "$work"
            return 1
        }
    done
    mv "$image" "$out"
    rm -rf "$work"
}
