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

.set CR4_PAE,                       1 << 5
.set CR4_MCE,                       1 << 6
.set CR4_LA57,                      1 << 12
.set CPUID_LEAF_STRUCTURED_EXTENDED, 7
.set CPUID_ECX_CET_SS,              1 << 7
.set CPUID_EDX_CET_IBT,             1 << 20
.set MSR_IA32_S_CET,                0x6A2
.set PAGE_SIZE,                     4096
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
    mov     %cr4, %rdx
    test    $CR4_LA57, %edx
    jnz     1f
    mov     parkboot_reentry_cr3(%rip), %rax
    jmp     2f
1:
    mov     parkboot_reentry_cr3_la57(%rip), %rax
2:
    mov     %rax, %cr3
    /* The CR4 parkboot runs with, as at the ResetVector (park.S, LOAD_FIXED_CR4, says
     * why each other bit goes): PAE, MCE, LA57 as found; CET, FRED, PCIDE, PGE, ...
     * cleared. Bits the CPU does not have are written 0, which is allowed. */
    and     $CR4_LA57, %edx
    or      $(CR4_PAE | CR4_MCE), %edx
    mov     %rdx, %cr4
    /* IA32_S_CET off where CPUID says CET exists (the MSR #GPs elsewhere). */
    xor     %eax, %eax
    cpuid
    cmp     $CPUID_LEAF_STRUCTURED_EXTENDED, %eax
    jb      4f
    mov     $CPUID_LEAF_STRUCTURED_EXTENDED, %eax
    xor     %ecx, %ecx
    cpuid
    test    $CPUID_ECX_CET_SS, %ecx
    jnz     3f
    test    $CPUID_EDX_CET_IBT, %edx
    jz      4f
3:
    mov     $MSR_IA32_S_CET, %ecx
    xor     %eax, %eax
    xor     %edx, %edx
    wrmsr
4:
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
    mov     ${SEL_DATA}, %eax
    mov     %eax, %ds
    mov     %eax, %es
    mov     %eax, %ss
    xor     %eax, %eax
    mov     %eax, %fs
    mov     %eax, %gs
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
