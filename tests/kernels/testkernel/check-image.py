#!/usr/bin/env python3
"""Host-side check of the built test kernel image: an ELF64 whose PT_LOAD segments sit at
16 MiB or above, with a valid multiboot2 header (magic, architecture 0, checksum, an
information request for mmap, ACPI new RSDP and command line, an end tag) in its first
32 KiB.

    tests/kernels/testkernel/check-image.py target/x86_64-unknown-none/release/testkernel
"""
import struct
import sys

HEADER_MAGIC = 0xE85250D6
ARCH_I386 = 0
SEARCH_BYTES = 32768
HEADER_ALIGN = 8
TAG_END = 0
TAG_INFO_REQUEST = 1
WANTED_INFO = {6, 15, 1}  # mmap, ACPI new RSDP, command line
KERNEL_BASE = 16 << 20
PT_LOAD = 1
ELFCLASS64 = 2
EM_X86_64 = 62


def fail(what):
    sys.exit(f"check-image: FAIL: {what}")


def main(path):
    data = open(path, "rb").read()
    if data[:4] != b"\x7fELF" or data[4] != ELFCLASS64:
        fail("not an ELF64 file")
    (machine,) = struct.unpack_from("<H", data, 18)
    entry, phoff = struct.unpack_from("<QQ", data, 24)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    if machine != EM_X86_64:
        fail(f"machine {machine}, not x86_64")

    loads = []
    for i in range(phnum):
        p_type, _flags, offset, _vaddr, paddr, filesz, memsz, _align = struct.unpack_from(
            "<IIQQQQQQ", data, phoff + i * phentsize
        )
        if p_type == PT_LOAD:
            loads.append((paddr, offset, filesz, memsz))
            print(f"PT_LOAD paddr {paddr:#x} offset {offset:#x} filesz {filesz:#x} memsz {memsz:#x}")
    if not loads:
        fail("no PT_LOAD segment")
    if any(paddr < KERNEL_BASE for paddr, *_ in loads):
        fail("a PT_LOAD segment is below 16 MiB")
    if not any(paddr <= entry < paddr + memsz for paddr, _, _, memsz in loads):
        fail(f"entry {entry:#x} is in no PT_LOAD segment")
    print(f"entry {entry:#x}")

    for at in range(0, min(len(data), SEARCH_BYTES) - 16, HEADER_ALIGN):
        magic, arch, length, checksum = struct.unpack_from("<IIII", data, at)
        if magic == HEADER_MAGIC and (magic + arch + length + checksum) & 0xFFFFFFFF == 0:
            break
    else:
        fail("no multiboot2 header with a valid checksum in the first 32 KiB")
    if arch != ARCH_I386:
        fail(f"architecture {arch}, not 0 (i386)")
    print(f"multiboot2 header at file offset {at:#x}, {length} bytes, checksum ok")

    tag_at, requested, ended = at + 16, set(), False
    while tag_at < at + length:
        tag_type, flags, size = struct.unpack_from("<HHI", data, tag_at)
        if size < 8:
            fail(f"header tag {tag_type} has size {size}")
        if tag_type == TAG_INFO_REQUEST:
            count = (size - 8) // 4
            requested |= set(struct.unpack_from(f"<{count}I", data, tag_at + 8))
            print(f"information request (flags {flags}): {sorted(requested)}")
        if tag_type == TAG_END:
            ended = size == 8 and tag_at + size == at + length
            break
        tag_at += (size + 7) & ~7
    if not ended:
        fail("no end tag closing the header")
    if requested != WANTED_INFO:
        fail(f"requests {sorted(requested)}, want {sorted(WANTED_INFO)}")
    print("check-image: ok")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/x86_64-unknown-none/release/testkernel")
