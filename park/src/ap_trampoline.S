/*
 * The AP start trampoline. The boot processor copies it to a page below 1 MiB, fills
 * in its data (GDT pointer, CR3, 64-bit entry) and sends INIT-SIPI-SIPI with that page
 * as the SIPI vector. Each AP starts here in real mode at CS:0 = page:0, enters long
 * mode on parkboot's firmware page tables and jumps to park_ap_start in the park code.
 * It runs once per AP, ever. Position-independent: the page base comes from CS.
 */

/* CR0_PE, CR0_PG, CR4_*, MSR_EFER, EFER_LME and the mode-switch macros come from
 * asm/long_mode.inc, assembled in front of this file. */
.set CR0_ET,    1 << 4
.set CR0_NE,    1 << 5
/* CR0 is loaded whole, never ORed into what INIT left: caches on (CD and NW clear),
 * x87 errors reported natively. */
.set CR0_PROTECTED, CR0_PE | CR0_ET | CR0_NE
.set CR0_PAGED,     CR0_PROTECTED | CR0_PG
.set REAL_MODE_SEGMENT_SHIFT, 4

.pushsection .text.park_blobs, "ax"
.balign 16
.global park_trampoline_start
park_trampoline_start:
.code16
    cli
    cld
    mov     %cs, %ax
    mov     %ax, %ds
    movzwl  %ax, %ebx
    shl     $REAL_MODE_SEGMENT_SHIFT, %ebx      /* ebx = physical base of this page */
    lgdtl   (park_trampoline_gdt_pointer - park_trampoline_start)
    mov     $CR0_PROTECTED, %eax
    mov     %eax, %cr0
    ljmpl   *(park_trampoline_far32 - park_trampoline_start)

.code32
.global park_trampoline_protected_mode
park_trampoline_protected_mode:
    LOAD_FLAT_DATA_SEGMENTS {SEL_DATA}
    /* MCE: a machine check must reach parkboot's #MC handler, not shut the CPU down. */
    SET_CR4_BITS CR4_PAE|CR4_MCE
    mov     (park_trampoline_cr3 - park_trampoline_start)(%ebx), %eax
    mov     %eax, %cr3
    SET_EFER_LME
    mov     $CR0_PAGED, %eax
    mov     %eax, %cr0
    ljmp    *(park_trampoline_far64 - park_trampoline_start)(%ebx)

.code64
.global park_trampoline_long_mode
park_trampoline_long_mode:
    mov     %ebx, %ebx                          /* upper half undefined after the switch */
    jmp     *(park_trampoline_entry64 - park_trampoline_start)(%rbx)

/* Data, filled in by the boot processor in the copy. */
    .balign 8
.global park_trampoline_gdt_pointer
park_trampoline_gdt_pointer:
    .word   0                                   /* limit */
    .long   0                                   /* base: the park GDT, below 4 GiB */
    .balign 8
.global park_trampoline_cr3
park_trampoline_cr3:
    .long   0                                   /* firmware PML4, below 4 GiB */
    .long   0
.global park_trampoline_entry64
park_trampoline_entry64:
    .quad   0                                   /* park_ap_start in the park code copy */
/* Far pointers to the two labels above: absolute addresses, so the boot processor
 * writes them once it has placed the page. */
.global park_trampoline_far32
park_trampoline_far32:
    .long   0
    .word   {SEL_CODE32}
.global park_trampoline_far64
park_trampoline_far64:
    .long   0
    .word   {SEL_CODE64}
.global park_trampoline_end
park_trampoline_end:
.popsection
