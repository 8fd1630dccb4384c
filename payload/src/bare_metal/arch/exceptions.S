/*
 * CPU exception entry for the boot processor while parkboot runs. Every vector gets a
 * stub that makes the stack look the same (vector, error code, then the CPU's frame)
 * and calls {exception_handler}(frame) in Rust, which prints and stops. The NMI stub
 * instead counts the NMI and returns: an NMI is not an error, and the park tests inject
 * them on purpose.
 *
 * Operands: {exception_handler} sym, {nmi_count} sym (AtomicU64).
 */

.set NMI_VECTOR, 2
.set STUB_ALIGN, 16

/* Vectors for which the CPU pushes an error code itself. */
.macro exception_stub vector
    .balign STUB_ALIGN
    endbr64                             /* a valid target should IBT still be on */
    .if (\vector == 8) || (\vector >= 10 && \vector <= 14) || (\vector == 17) || (\vector == 21) || (\vector == 29) || (\vector == 30)
    .else
    push    $0                          /* no error code: keep the frame shape */
    .endif
    push    $\vector
    jmp     exception_common
.endm

.pushsection .text
.code64
.global exception_stubs
    .balign STUB_ALIGN
exception_stubs:
.irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .if \vector == NMI_VECTOR
    .balign STUB_ALIGN
    endbr64
    jmp     nmi_entry
    .else
    exception_stub \vector
    .endif
.endr

exception_common:
    /* Save the general registers so the handler can print them. */
    push    %rax
    push    %rbx
    push    %rcx
    push    %rdx
    push    %rsi
    push    %rdi
    push    %rbp
    push    %r8
    push    %r9
    push    %r10
    push    %r11
    push    %r12
    push    %r13
    push    %r14
    push    %r15
    mov     %rsp, %rdi
    and     $-16, %rsp
    call    {exception_handler}
1:
    cli
    hlt
    jmp     1b

nmi_entry:
    lock incq {nmi_count}(%rip)
    iretq
.popsection
