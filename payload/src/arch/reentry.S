/*
 * The re-entry vector (park::reentry): a park-aware kernel gives the boot processor
 * back to parkboot here, in 64-bit mode, interrupts off, on page tables that map this
 * page. Nothing of the kernel's state is used: parkboot's CR3 first (a PML5-wrapped
 * copy when CR4.LA57 is on, as at the ResetVector), then its boot stack, GDT and
 * segments, then Rust.
 *
 * rdi = park::reentry::ReentryRequest, rsi = kernel report (or 0); passed on to
 * {rust_reentry}(request, report) -> !. {firmware_cr3} and {firmware_cr3_la57} are
 * AtomicU64 statics set before the first kernel is booted.
 */

.set CR4_LA57, 1 << 12

.pushsection .text.reentry, "ax"
.code64
.global parkboot_reentry
parkboot_reentry:
    endbr64
    cli
    mov     %rdi, %r12
    mov     %rsi, %r13
    mov     %cr4, %rax
    test    $CR4_LA57, %eax
    jnz     1f
    mov     {firmware_cr3}(%rip), %rax
    jmp     2f
1:
    mov     {firmware_cr3_la57}(%rip), %rax
2:
    mov     %rax, %cr3
    /* The kernel's stack may not be mapped any more: parkboot's boot stack is. Its
     * old contents are dead: parkboot's state lives in statics. */
    mov     $boot_stack_top, %esp
    lgdt    {gdt_pointer}(%rip)
    lea     3f(%rip), %rax
    pushq   ${SEL_CODE64}
    push    %rax
    lretq
3:
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
4:
    cli
    hlt
    jmp     4b
.popsection
