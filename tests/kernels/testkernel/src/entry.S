/*
 * parkboot's test kernel: multiboot2 header, 32-bit entry, long mode, exception
 * handlers, and the AP entry the parked CPUs are woken into.
 *
 * A multiboot2 loader enters testkernel_entry in 32-bit protected mode, paging off,
 * flat CS/DS/ES/SS, EAX = the multiboot2 magic, EBX = the boot information; the GDT,
 * IDT and ESP are the loader's and must not be relied on. So the entry loads its own
 * GDT and stack, identity-maps the first 4 GiB with 2 MiB pages (the boot information,
 * the ACPI tables, the park table, the mailbox and parkboot's re-entry vector all live
 * there), enters long mode, loads its own IDT and calls
 *     kernel_main(magic: u32, boot_info: u32) -> !
 *
 * Rust passes in, as const/sym operands:
 *   {kernel_main} {exception_handler} {ap_proofs}
 *   {BOOTLOADER_MAGIC}  {TAG_CMDLINE} {TAG_MMAP} {TAG_ACPI_NEW_RSDP}  (multiboot2)
 *   {SEL_CODE32} {SEL_CODE64} {SEL_DATA}                            (GDT selectors)
 *   {COM1} {QEMU_DEBUG_EXIT_PORT} {QEMU_EXIT_FAIL}
 *   {TABLE_SLOTS_OFFSET} {TABLE_SLOT_SIZE} {TABLE_RESET_VECTOR} {SLOT_APIC_ID}
 *                                                                   (park table ABI)
 *   {MAX_CPUS}                                                      (AP_PROOFS entries)
 *   {PROOF_APIC_ID} {PROOF_TSC} {PROOF_SIZE_SHIFT}                  (ApProof layout)
 *   {PROOF_LVT_TIMER} {PROOF_TIMER_ISR} {PROOF_TIMER_IRR} {TIMER_VECTOR_WORD}
 */

.set MSR_IA32_APIC_BASE,    0x1B
.set APIC_BASE_X2APIC,      1 << 10
.set APIC_BASE_ENABLE,      1 << 11
.set APIC_BASE_ADDRESS_MASK, 0xFFFFFFFFFF000
.set XAPIC_LVT_TIMER,       0x320
.set XAPIC_ISR0,            0x100
.set XAPIC_IRR0,            0x200
.set XAPIC_REGISTER_STRIDE, 0x10
.set X2APIC_MSR_LVT_TIMER,  0x832
.set X2APIC_MSR_ISR0,       0x810
.set X2APIC_MSR_IRR0,       0x820

.set MULTIBOOT2_HEADER_MAGIC,       0xE85250D6
.set MULTIBOOT2_ARCH_I386,          0      /* 32-bit protected mode entry */
.set MULTIBOOT2_HEADER_TAG_END,     0
.set MULTIBOOT2_HEADER_TAG_INFO_REQUEST, 1
.set MULTIBOOT2_TAG_REQUIRED,       0      /* flags: the loader must honour the tag */
.set MULTIBOOT2_TAG_ALIGN,          8
.set MULTIBOOT2_END_TAG_SIZE,       8      /* the end tag is just its header */

/* The mode-switch macros and their constants (LOAD_FLAT_DATA_SEGMENTS,
 * BUILD_IDENTITY_MAP, ENTER_LONG_MODE, PAGE_SIZE, ...) come from parkboot's
 * park/src/asm/long_mode.inc, assembled in front of this file. */
.set IDENTITY_MAP_GIB,  4
.set STACK_SIZE,        0x10000
.set STACK_ALIGN,       16

/* GDT descriptors (base 0, limit 4 GiB): access byte 0x9a = present, ring 0, code,
 * readable; 0x92 = present, ring 0, data, writable. Flags nibble 0xc = 4 KiB
 * granularity, 32-bit; 0xa = 4 KiB granularity, 64-bit (L). */
.set GDT_CODE32,        0x00cf9a000000ffff
.set GDT_CODE64,        0x00af9a000000ffff
.set GDT_DATA,          0x00cf92000000ffff

/* IDT: 256 16-byte gates; type 0x8e = present, ring 0, 64-bit interrupt gate (so
 * interrupts stay off in the handler). */
.set IDT_VECTORS,       256
.set IDT_GATE_SIZE,     16
.set IDT_GATE_INTERRUPT, 0x8e
.set IDT_GATE_TYPE_SHIFT, 40
.set IDT_SELECTOR_SHIFT, 16
.set IDT_OFFSET_MID_SHIFT, 48
.set OFFSET_LOW_MASK,   0xffff
.set EXCEPTION_VECTORS, 32
.set STUB_ALIGN,        16
.set NO_VECTOR,         256             /* reported for any vector above 31 */

.set HEX_DIGITS_PER_U32, 8
.set NIBBLE_BITS,       4
.set NIBBLE_MASK,       0xf
.set ASCII_NEWLINE,     10

/* The header multiboot2 loaders look for in the first 32 KiB of the file. */
.pushsection .multiboot2, "a"
    .balign MULTIBOOT2_TAG_ALIGN
multiboot2_header:
    .long MULTIBOOT2_HEADER_MAGIC
    .long MULTIBOOT2_ARCH_I386
    .long multiboot2_header_end - multiboot2_header
    /* magic + architecture + header_length + checksum == 0 (mod 2^32) */
    .long -(MULTIBOOT2_HEADER_MAGIC + MULTIBOOT2_ARCH_I386 + (multiboot2_header_end - multiboot2_header))

    /* What the kernel needs in the boot information. */
    .balign MULTIBOOT2_TAG_ALIGN
info_request_tag:
    .short MULTIBOOT2_HEADER_TAG_INFO_REQUEST
    .short MULTIBOOT2_TAG_REQUIRED
    .long info_request_tag_end - info_request_tag
    .long {TAG_MMAP}
    .long {TAG_ACPI_NEW_RSDP}
    .long {TAG_CMDLINE}
info_request_tag_end:

    .balign MULTIBOOT2_TAG_ALIGN
    .short MULTIBOOT2_HEADER_TAG_END
    .short MULTIBOOT2_TAG_REQUIRED
    .long MULTIBOOT2_END_TAG_SIZE
multiboot2_header_end:
.popsection

.pushsection .text.entry, "ax"
.code32

.global testkernel_entry
testkernel_entry:
    cli
    cld
    cmp     ${BOOTLOADER_MAGIC}, %eax
    jne     bad_magic

    /* EBX (the boot information) survives everything below up to kernel_main. */
    lgdt    kernel_gdt_pointer
    ljmp    ${SEL_CODE32}, $1f
1:
    LOAD_FLAT_DATA_SEGMENTS {SEL_DATA}

    /* parkboot reloads the image (and zeroes .bss) every iteration; zeroing here too
     * keeps each run independent of what any loader leaves in .bss. */
    mov     $__bss_start, %edi
    mov     $__bss_end, %ecx
    sub     %edi, %ecx
    xor     %eax, %eax
    rep stosb
    mov     $kernel_stack_top, %esp

    /* PML4[0] -> PDPT; PDPT[0..4] -> four page directories of 2 MiB pages; the
     * upper half of every 2 MiB entry stays 0: the map ends at 4 GiB. */
    BUILD_IDENTITY_MAP kernel_pml4, kernel_pdpt, kernel_page_directories, IDENTITY_MAP_GIB
    ENTER_LONG_MODE kernel_pml4, {SEL_CODE64}, long_mode_entry

/* Not entered by a multiboot2 loader: say so on COM1 (with EAX in hex) and end QEMU
 * with the failure code. No stack exists yet, so this uses registers only. */
bad_magic:
    mov     %eax, %ebp
    mov     $bad_magic_message, %esi
    mov     ${COM1}, %dx
4:
    movzbl  (%esi), %eax
    test    %al, %al
    jz      5f
    outb    %al, %dx
    inc     %esi
    jmp     4b
5:
    mov     $HEX_DIGITS_PER_U32, %ecx
6:
    rol     $NIBBLE_BITS, %ebp
    mov     %ebp, %eax
    and     $NIBBLE_MASK, %eax
    movzbl  hex_digits(%eax), %eax
    outb    %al, %dx
    loop    6b
    mov     $ASCII_NEWLINE, %al
    outb    %al, %dx
    mov     ${QEMU_DEBUG_EXIT_PORT}, %dx
    mov     ${QEMU_EXIT_FAIL}, %eax
    outl    %eax, %dx
7:
    cli
    hlt
    jmp     7b

.code64
long_mode_entry:
    LOAD_FLAT_DATA_SEGMENTS {SEL_DATA}
    mov     $kernel_stack_top, %esp

    /* IDT: vectors 0-31 get their own stub (STUB_ALIGN apart), the rest share one.
     * Gate: offset[15:0] | selector << 16 | type << 40 | offset[31:16] << 48, then
     * offset[63:32] (the kernel lives below 4 GiB, so 0) in the second quadword. */
    lea     kernel_idt(%rip), %rdi
    lea     exception_stubs(%rip), %rdx
    xor     %ecx, %ecx
8:
    cmp     $EXCEPTION_VECTORS, %ecx
    jb      9f
    lea     unexpected_vector_stub(%rip), %rdx
9:
    mov     %rdx, %rax
    and     $OFFSET_LOW_MASK, %eax
    or      $({SEL_CODE64} << IDT_SELECTOR_SHIFT), %eax
    movabs  $(IDT_GATE_INTERRUPT << IDT_GATE_TYPE_SHIFT), %r8
    or      %r8, %rax
    mov     %rdx, %r8
    shr     $IDT_SELECTOR_SHIFT, %r8
    and     $OFFSET_LOW_MASK, %r8d
    shl     $IDT_OFFSET_MID_SHIFT, %r8
    or      %r8, %rax
    mov     %rax, (%rdi)
    mov     %rdx, %rax
    shr     $32, %rax
    mov     %rax, 8(%rdi)
    add     $IDT_GATE_SIZE, %rdi
    add     $STUB_ALIGN, %rdx
    inc     %ecx
    cmp     $IDT_VECTORS, %ecx
    jb      8b
    lidt    kernel_idt_pointer(%rip)

    /* The upper halves of the registers are undefined after the mode switch: the
     * 32-bit moves zero-extend. */
    mov     ${BOOTLOADER_MAGIC}, %edi
    mov     %ebx, %esi
    xor     %ebp, %ebp
    call    {kernel_main}
10:
    cli
    hlt
    jmp     10b

/* Exceptions on the boot processor: one stub per vector 0-31 so the handler knows the
 * vector; every stack is made to look alike (vector, error code, CPU frame) and the
 * Rust handler prints it and ends QEMU with the failure code. */
.macro exception_stub vector
    .balign STUB_ALIGN
    .if (\vector == 8) || (\vector >= 10 && \vector <= 14) || (\vector == 17) || (\vector == 21) || (\vector == 29) || (\vector == 30)
    .else
    pushq   $0                          /* no error code from the CPU: a placeholder */
    .endif
    pushq   $\vector
    jmp     exception_common
.endm

    .balign STUB_ALIGN
exception_stubs:
.irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    exception_stub \vector
.endr
    .balign STUB_ALIGN
unexpected_vector_stub:
    pushq   $0
    pushq   $NO_VECTOR
    jmp     exception_common

exception_common:
    mov     %rsp, %rdi                  /* the frame: vector, error code, RIP, ... */
    and     $-STACK_ALIGN, %rsp         /* the ABI's call alignment, whatever the frame */
    call    {exception_handler}
11:
    cli
    hlt
    jmp     11b

/*
 * The AP entry: where the test kernel wakes parked APs, through the mailbox and
 * through the doorbell. parkboot's park code jumps here in 64-bit mode on its own page
 * tables, GDT, IDT and the AP's park stack, interrupts off, with rdi = this AP's park
 * slot and rsi = the park table. The AP touches no stack (the kernel's is the boot
 * processor's): it stamps its proof in registers only and hands itself back.
 */
    .balign STUB_ALIGN
.global testkernel_ap_entry
testkernel_ap_entry:
    endbr64                             /* a valid indirect-jump target with IBT on */
    xor     %r9d, %r9d                  /* hand back at once */
    jmp     13f

/* The same, but after stamping its proof the AP waits until the boot processor sets
 * {ap_hold_release} before it hands itself back: a CPU kept running in the kernel
 * (the stale-doorbell check rings the doorbell meanwhile). */
    .balign STUB_ALIGN
.global testkernel_ap_hold_entry
testkernel_ap_hold_entry:
    endbr64
    mov     $1, %r9d
13:
    /* The TSC first: the wake latency ends here. */
    rdtsc
    shl     $32, %rdx
    or      %rdx, %rax
    mov     %rax, %r8

    /* Slot index = (slot - (table + slots_offset)) / slot_size, both from the table
     * (park table version 2); a slot address that is not on a slot (a broken rdi)
     * stamps nothing, so the boot processor times out and reports it. */
    mov     %rdi, %rax
    sub     %rsi, %rax
    movl    {TABLE_SLOTS_OFFSET}(%rsi), %ecx
    sub     %rcx, %rax
    jb      12f
    movl    {TABLE_SLOT_SIZE}(%rsi), %ecx
    test    %ecx, %ecx
    jz      12f
    xor     %edx, %edx
    div     %rcx
    test    %rdx, %rdx
    jnz     12f
    cmp     ${MAX_CPUS}, %rax
    jae     12f
    mov     %rax, %rcx
    shl     ${PROOF_SIZE_SHIFT}, %rcx
    lea     {ap_proofs}(%rip), %rdx
    add     %rdx, %rcx
    mov     {SLOT_APIC_ID}(%rdi), %eax
    movl    %eax, {PROOF_APIC_ID}(%rcx)
    /* The local APIC as parkboot left it: the park timer must not come along. */
    mov     %rcx, %r10
    mov     $MSR_IA32_APIC_BASE, %ecx
    rdmsr
    test    $APIC_BASE_ENABLE, %eax
    jz      17f
    test    $APIC_BASE_X2APIC, %eax
    jz      16f
    mov     $X2APIC_MSR_LVT_TIMER, %ecx
    rdmsr
    movl    %eax, {PROOF_LVT_TIMER}(%r10)
    mov     $(X2APIC_MSR_ISR0 + {TIMER_VECTOR_WORD}), %ecx
    rdmsr
    movl    %eax, {PROOF_TIMER_ISR}(%r10)
    mov     $(X2APIC_MSR_IRR0 + {TIMER_VECTOR_WORD}), %ecx
    rdmsr
    movl    %eax, {PROOF_TIMER_IRR}(%r10)
    jmp     17f
16:
    shl     $32, %rdx
    or      %rdx, %rax
    movabs  $APIC_BASE_ADDRESS_MASK, %rdx
    and     %rdx, %rax
    movl    XAPIC_LVT_TIMER(%rax), %edx
    movl    %edx, {PROOF_LVT_TIMER}(%r10)
    movl    (XAPIC_ISR0 + {TIMER_VECTOR_WORD} * XAPIC_REGISTER_STRIDE)(%rax), %edx
    movl    %edx, {PROOF_TIMER_ISR}(%r10)
    movl    (XAPIC_IRR0 + {TIMER_VECTOR_WORD} * XAPIC_REGISTER_STRIDE)(%rax), %edx
    movl    %edx, {PROOF_TIMER_IRR}(%r10)
17:
    mov     %r10, %rcx
    /* The TSC last: the boot processor waits for it to become nonzero, and x86 keeps
     * stores in order, so the APIC ID is visible by then. */
    mov     %r8, {PROOF_TSC}(%rcx)
12:
    test    %r9d, %r9d
    jz      14f
15:
    pause
    cmpl    $0, {ap_hold_release}(%rip)
    je      15b
14:
    /* Hand the AP back as Linux does on kexec: rdi = the ResetVector, rsi = the page
     * tables in use (parkboot's, which map it). */
    mov     {TABLE_RESET_VECTOR}(%rsi), %rdi
    mov     %cr3, %rsi
    jmp     *%rdi
.popsection

.pushsection .rodata
bad_magic_message:
    .asciz "testkernel: error: not started by a multiboot2 loader: EAX = 0x"
hex_digits:
    .ascii "0123456789abcdef"
.popsection

.pushsection .data
    .balign 16
/* Selectors: SEL_CODE32 0x08, SEL_CODE64 0x10, SEL_DATA 0x18 (Linux's 64-bit boot
 * protocol and parkboot's park GDT use the same indexes). */
kernel_gdt:
    .quad 0                             /* null */
    .quad GDT_CODE32
    .quad GDT_CODE64
    .quad GDT_DATA
kernel_gdt_end:
kernel_gdt_pointer:
    .short kernel_gdt_end - kernel_gdt - 1
    .quad kernel_gdt
    .balign 16
kernel_idt_pointer:
    .short IDT_VECTORS * IDT_GATE_SIZE - 1
    .quad kernel_idt
.popsection

.pushsection .bss
    .balign PAGE_SIZE
kernel_pml4:
    .skip PAGE_SIZE
kernel_pdpt:
    .skip PAGE_SIZE
kernel_page_directories:
    .skip PAGE_SIZE * IDENTITY_MAP_GIB
kernel_idt:
    .skip IDT_VECTORS * IDT_GATE_SIZE
    .balign STACK_ALIGN
kernel_stack_bottom:
    .skip STACK_SIZE
kernel_stack_top:
.popsection
