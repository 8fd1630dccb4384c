/*
 * The re-entry vector (park::reentry): a park-aware kernel gives the boot processor
 * back to parkboot here, in 64-bit mode, interrupts off, on page tables that map this
 * page, and nothing more is promised mapped. So everything read before the CR3 switch
 * (the code and parkboot_reentry_cr3/_la57) lives in this one page-aligned page:
 * asserted in linker.ld. Nothing of the kernel's state is used: parkboot's CR3 first
 * (a PML5-wrapped copy when CR4.LA57 is on, as at the ResetVector), a fixed CR4 and
 * CET off, then its boot stack, GDT, IDT and segments, then Rust.
 *
 * rdi = park::reentry::ReentryRequest, rsi = kernel report (or 0); passed on to
 * {rust_reentry}(request, report) -> !. parkboot_reentry_cr3/_la57 are written (by
 * reentry.rs: set_reentry_cr3) before the first kernel is booted. {idt} is the boot
 * processor's IDT, {IDT_LIMIT} its LIDT limit.
 */

/* The CR3/CR4/CET and segment macros (LOAD_CR3_FOR_PAGING_MODE, LOAD_FIXED_CR4,
 * CLEAR_SUPERVISOR_CET, LOAD_DATA_SEGMENTS_NULL_FS_GS) and PAGE_SIZE come from
 * park/src/asm/long_mode.inc, assembled in front of this file. */
.set DESCRIPTOR_POINTER_BYTES,      16      /* limit at +6, base at +8: base aligned */

.pushsection .text.reentry, "ax"
.code64
.balign PAGE_SIZE
.global parkboot_reentry
parkboot_reentry:
    endbr64                                 /* a valid target with kernel IBT on */
    cli
    mov     %rdi, %r12
    mov     %rsi, %r13
    LOAD_CR3_FOR_PAGING_MODE parkboot_reentry_cr3(%rip), parkboot_reentry_cr3_la57(%rip)
    /* The CR4 parkboot runs with, as at the ResetVector (long_mode.inc, LOAD_FIXED_CR4,
     * says why each other bit goes): PAE, MCE, LA57 as found; CET, FRED, PCIDE, PGE,
     * ... cleared. Bits the CPU does not have are written 0, which is allowed. */
    LOAD_FIXED_CR4
    CLEAR_SUPERVISOR_CET
    /* The kernel's stack may not be mapped any more: parkboot's boot stack is. Its
     * old contents are dead: parkboot's state lives in statics. */
    mov     $boot_stack_top, %esp
    lgdt    {gdt_pointer}(%rip)
    /* The kernel's IDT is not parkboot's (and may not be mapped): parkboot's own, so
     * an exception or NMI from here on is reported rather than a triple fault. The
     * pointer is transient: built on the stack. */
    sub     $DESCRIPTOR_POINTER_BYTES, %rsp
    movw    ${IDT_LIMIT}, 6(%rsp)
    lea     {idt}(%rip), %rax
    mov     %rax, 8(%rsp)
    lidt    6(%rsp)
    add     $DESCRIPTOR_POINTER_BYTES, %rsp
    lea     5f(%rip), %rax
    pushq   ${SEL_CODE64}
    push    %rax
    lretq
5:
    LOAD_DATA_SEGMENTS_NULL_FS_GS {SEL_DATA}
    mov     %r12, %rdi
    mov     %r13, %rsi
    call    {rust_reentry}
6:
    cli
    hlt
    jmp     6b

/* parkboot's CR3 (PML4) and its PML5 wrapper, read before the CR3 switch: in this
 * page. */
    .balign 8
.global parkboot_reentry_cr3
parkboot_reentry_cr3:
    .quad   0
.global parkboot_reentry_cr3_la57
parkboot_reentry_cr3_la57:
    .quad   0
.global parkboot_reentry_end
parkboot_reentry_end:
.popsection
