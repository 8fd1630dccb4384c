/*
 * parkboot's two entry points. Both arrive in 32-bit protected mode with paging off,
 * on a GDT and stack parkboot does not own, so the first job of each is to load
 * parkboot's own GDT and stack; then one common path enters long mode on a bootstrap
 * identity map of the first 4 GiB (enough to read the boot tables and reach the local
 * APIC) and calls the Rust entry. Rust later builds the full map of all RAM.
 *
 * Rust passes in, as const/sym operands:
 *   {rust_entry}            extern "C" fn(source: u32, boot_info: u32) -> !
 *   {BOOT_SOURCE_COREBOOT}  {BOOT_SOURCE_PVH}  (BootSource discriminants)
 *   {SEL_CODE32} {SEL_CODE64} {SEL_DATA}       (GDT selectors)
 *   {gdt_pointer}           parkboot::handoff::FLAT_GDT_POINTER
 */

/* The mode-switch macros and their constants (LOAD_FLAT_DATA_SEGMENTS,
 * BUILD_IDENTITY_MAP, ENTER_LONG_MODE, PAGE_SIZE, ...) come from
 * park/src/asm/long_mode.inc, assembled in front of this file. */
.set BOOT_MAP_GIB,      4               /* the bootstrap map covers 0-4 GiB */
.set BOOT_STACK_SIZE,   0x40000
.set XEN_ELFNOTE_PHYS32_ENTRY, 18

/* The PVH note: QEMU (and other VMMs) start parkboot at pvh_entry with ebx pointing at
 * struct hvm_start_info. */
.pushsection .note.Xen, "a", @note
    .balign 4
    .long 4                             /* namesz: "Xen\0" */
    .long 4                             /* descsz */
    .long XEN_ELFNOTE_PHYS32_ENTRY
    .asciz "Xen"
    .balign 4
    .long pvh_entry
.popsection

.pushsection .text.entry, "ax"
.code32

/* coreboot: [esp] = return address into coreboot, [esp+4] = coreboot table header. */
.global coreboot_entry
coreboot_entry:
    cli
    cld
    mov     4(%esp), %ebx
    mov     ${BOOT_SOURCE_COREBOOT}, %ebp
    jmp     common_entry32

/* PVH: ebx = struct hvm_start_info. */
.global pvh_entry
pvh_entry:
    cli
    cld
    mov     ${BOOT_SOURCE_PVH}, %ebp

/* ebx = boot info pointer, ebp = boot source; both survive to Rust. */
common_entry32:
    lgdt    {gdt_pointer}
    ljmp    ${SEL_CODE32}, $1f
1:
    LOAD_FLAT_DATA_SEGMENTS {SEL_DATA}

    /* Not every loader zeroes .bss (the stack and bootstrap page tables live there). */
    mov     $__bss_start, %edi
    mov     $__bss_end, %ecx
    sub     %edi, %ecx
    xor     %eax, %eax
    rep stosb
    mov     $boot_stack_top, %esp

    /* PML4[0] -> PDPT; PDPT[0..4] -> four page directories of 2 MiB pages. */
    BUILD_IDENTITY_MAP boot_pml4, boot_pdpt, boot_page_directories, BOOT_MAP_GIB
    ENTER_LONG_MODE boot_pml4, {SEL_CODE64}, long_mode_entry

.code64
long_mode_entry:
    LOAD_FLAT_DATA_SEGMENTS {SEL_DATA}
    /* The upper halves of the registers are undefined after the mode switch: the 32-bit
     * moves zero-extend. */
    mov     %ebp, %edi
    mov     %ebx, %esi
    mov     $boot_stack_top, %esp
    xor     %ebp, %ebp
    call    {rust_entry}
4:
    cli
    hlt
    jmp     4b
.popsection


.pushsection .bss
    .balign PAGE_SIZE
boot_pml4:
    .skip PAGE_SIZE
boot_pdpt:
    .skip PAGE_SIZE
boot_page_directories:
    .skip PAGE_SIZE * BOOT_MAP_GIB
.global boot_stack_bottom
boot_stack_bottom:
    .skip BOOT_STACK_SIZE
.global boot_stack_top
boot_stack_top:
.popsection
