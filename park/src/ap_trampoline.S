/*
 * The AP start trampoline. The boot processor copies it to a page below 1 MiB, fills
 * in its data (GDT pointer, CR3, 64-bit entry) and sends INIT-SIPI-SIPI with that page
 * as the SIPI vector. Each AP starts here in real mode at CS:0 = page:0, enters long
 * mode on parkboot's firmware page tables and jumps to park_ap_start in the park code.
 * It runs once per AP, ever. Position-independent: the page base comes from CS.
 */

.set CR0_PE,    1 << 0
.set CR0_ET,    1 << 4
.set CR0_NE,    1 << 5
.set CR0_PG,    1 << 31
/* CR0 is loaded whole, never ORed into what INIT left: caches on (CD and NW clear),
 * x87 errors reported natively. */
.set CR0_PROTECTED, CR0_PE | CR0_ET | CR0_NE
.set CR0_PAGED,     CR0_PROTECTED | CR0_PG
.set CR4_PAE,   1 << 5
.set CR4_MCE,   1 << 6
.set MSR_EFER,  0xC0000080
.set EFER_LME,  1 << 8
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
    mov     ${SEL_DATA}, %eax
    mov     %eax, %ds
    mov     %eax, %es
    mov     %eax, %ss
    mov     %eax, %fs
    mov     %eax, %gs
    /* MCE: a machine check must reach parkboot's #MC handler, not shut the CPU down. */
    mov     %cr4, %eax
    or      $(CR4_PAE | CR4_MCE), %eax
    mov     %eax, %cr4
    mov     (park_trampoline_cr3 - park_trampoline_start)(%ebx), %eax
    mov     %eax, %cr3
    mov     $MSR_EFER, %ecx
    rdmsr
    or      $EFER_LME, %eax
    wrmsr
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
