/*
 * Leaving long mode: the one place parkboot does it. Multiboot2 kernels (the only
 * 32-bit entry parkboot boots) expect 32-bit protected mode with paging off, so this
 * drops from 64-bit mode to compatibility mode (needs a 32-bit code segment),
 * clears CR4.PCIDE (clearing CR0.PG with it set is a #GP), turns paging off (which
 * clears EFER.LMA), clears EFER.LME, then clears CR4.PAE and CR4.LA57 (a kernel that
 * re-entered with 5-level paging leaves LA57 set, and it can only change with paging
 * off), and jumps.
 *
 * rdi = entry, esi = value for eax, edx = value for ebx, rcx = stack pointer.
 * This code, parkboot's GDT ({gdt_pointer}) and the stack must be identity-mapped
 * below 4 GiB.
 */

/* CR0_PG, CR4_PAE, CR4_LA57, MSR_EFER, EFER_LME and LOAD_FLAT_DATA_SEGMENTS come from
 * park/src/asm/long_mode.inc, assembled in front of this file. */
.set CR4_PCIDE, 1 << 17

.pushsection .text.handoff, "ax"
.code64
.global handoff_enter_protected_mode32
handoff_enter_protected_mode32:
    cli
    mov     %edx, %ebx
    mov     %rcx, %rsp
    lgdt    {gdt_pointer}(%rip)
    pushq   ${SEL_CODE32}
    lea     1f(%rip), %rax
    push    %rax
    lretq
.code32
1:
    LOAD_FLAT_DATA_SEGMENTS {SEL_DATA}
    mov     %cr4, %eax
    and     $~CR4_PCIDE, %eax
    mov     %eax, %cr4
    mov     %cr0, %eax
    and     $~CR0_PG, %eax
    mov     %eax, %cr0
    mov     $MSR_EFER, %ecx
    rdmsr
    and     $~EFER_LME, %eax
    wrmsr
    mov     %cr4, %eax
    and     $~(CR4_PAE | CR4_LA57), %eax
    mov     %eax, %cr4
    mov     %esi, %eax
    jmp     *%edi
.popsection
