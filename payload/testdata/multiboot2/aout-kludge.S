/*
 * A minimal multiboot2 kernel written from the Multiboot2 specification 1.6 (section
 * 3.1, "OS image format"), not from parkboot's structures: the header with an
 * information request, the address tag (the "a.out kludge": loaded as flat bytes, no
 * ELF), the entry address tag, the module alignment tag and the end tag, then 32-bit
 * code that halts. make-aout-kludge assembles it into aout-kludge.bin.
 */
    .set MULTIBOOT2_MAGIC, 0xe85250d6
    .set ARCHITECTURE_I386, 0
    .set TAG_END, 0
    .set TAG_INFORMATION_REQUEST, 1
    .set TAG_ADDRESS, 2
    .set TAG_ENTRY_ADDRESS, 3
    .set TAG_MODULE_ALIGN, 6
    .set INFO_MEMORY_MAP, 6
    .set INFO_ACPI_OLD_RSDP, 14
    /* Where the image asks to be loaded; the header is its first byte. */
    .set LOAD_ADDRESS, 0x200000
    /* Zeroed memory after the image (the address tag's bss_end_addr). */
    .set BSS_SIZE, 0x1000

    .text
    .code32
header:
    .long MULTIBOOT2_MAGIC
    .long ARCHITECTURE_I386
    .long header_end - header
    .long 0x100000000 - (MULTIBOOT2_MAGIC + ARCHITECTURE_I386 + (header_end - header))

    .balign 8, 0
information_request:
    .short TAG_INFORMATION_REQUEST, 0
    .long information_request_end - information_request
    .long INFO_MEMORY_MAP
    .long INFO_ACPI_OLD_RSDP
information_request_end:

    .balign 8, 0
    .short TAG_ADDRESS, 0
    .long 24
    .long LOAD_ADDRESS + (header - header)          /* header_addr */
    .long LOAD_ADDRESS                              /* load_addr */
    .long LOAD_ADDRESS + (image_end - header)       /* load_end_addr */
    .long LOAD_ADDRESS + (image_end - header) + BSS_SIZE  /* bss_end_addr */

    .balign 8, 0
    .short TAG_ENTRY_ADDRESS, 0
    .long 12
    .long LOAD_ADDRESS + (start - header)

    .balign 8, 0
    .short TAG_MODULE_ALIGN, 0
    .long 8

    .balign 8, 0
    .short TAG_END, 0
    .long 8
header_end:

start:
    cli
halt:
    hlt
    jmp halt
image_end:
