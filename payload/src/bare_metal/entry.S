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

.set CR0_PE,            1 << 0
.set CR0_PG,            1 << 31
.set CR4_PAE,           1 << 5
.set MSR_EFER,          0xC0000080
.set EFER_LME,          1 << 8
.set PTE_PRESENT,       1 << 0
.set PTE_WRITABLE,      1 << 1
.set PTE_LARGE,         1 << 7
.set LARGE_PAGE_SIZE,   0x200000
.set BOOT_MAP_GIB,      4               /* the bootstrap map covers 0-4 GiB */
.set ENTRIES_PER_TABLE, 512
.set PAGE_SIZE,         4096
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
    mov     ${SEL_DATA}, %eax
    mov     %eax, %ds
    mov     %eax, %es
    mov     %eax, %ss
    mov     %eax, %fs
    mov     %eax, %gs

    /* Not every loader zeroes .bss (the stack and bootstrap page tables live there). */
    mov     $__bss_start, %edi
    mov     $__bss_end, %ecx
    sub     %edi, %ecx
    xor     %eax, %eax
    rep stosb
    mov     $boot_stack_top, %esp

    /* PML4[0] -> PDPT; PDPT[0..4] -> four page directories of 2 MiB pages. */
    mov     $boot_pdpt, %eax
    or      $(PTE_PRESENT | PTE_WRITABLE), %eax
    mov     %eax, boot_pml4

    mov     $boot_page_directories, %eax
    or      $(PTE_PRESENT | PTE_WRITABLE), %eax
    xor     %ecx, %ecx
2:
    mov     %eax, boot_pdpt(, %ecx, 8)
    add     $PAGE_SIZE, %eax
    inc     %ecx
    cmp     $BOOT_MAP_GIB, %ecx
    jb      2b

    mov     $(PTE_PRESENT | PTE_WRITABLE | PTE_LARGE), %eax
    xor     %ecx, %ecx
3:
    mov     %eax, boot_page_directories(, %ecx, 8)
    add     $LARGE_PAGE_SIZE, %eax
    inc     %ecx
    cmp     $(BOOT_MAP_GIB * ENTRIES_PER_TABLE), %ecx
    jb      3b

    mov     %cr4, %eax
    or      $CR4_PAE, %eax
    mov     %eax, %cr4
    mov     $boot_pml4, %eax
    mov     %eax, %cr3
    mov     $MSR_EFER, %ecx
    rdmsr
    or      $EFER_LME, %eax
    wrmsr
    mov     %cr0, %eax
    or      $(CR0_PG | CR0_PE), %eax
    mov     %eax, %cr0
    ljmp    ${SEL_CODE64}, $long_mode_entry

.code64
long_mode_entry:
    mov     ${SEL_DATA}, %eax
    mov     %eax, %ds
    mov     %eax, %es
    mov     %eax, %ss
    mov     %eax, %fs
    mov     %eax, %gs
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
