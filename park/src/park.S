/*
 * The park code: what every parked AP runs, from the moment it first arrives until a
 * kernel wakes it, and again each time a kernel hands it back. The boot processor
 * copies this blob into the park region (page-aligned, so the ResetVector at offset 0
 * fits in one page) and fills in park_code_data. All references inside the blob are
 * RIP-relative, so the copy runs wherever it is placed.
 *
 * Register use while parked:
 *   r12 = this CPU's slot   r13 = the park table   r14d = this CPU's APIC ID
 *   rbx = the wakeup mailbox
 *   rbp = the watcher's current timer count in the loop; the vector being jumped to
 *         when the CPU leaves
 *   r15d = how the CPU entered (ENTRY_START or ENTRY_RETURN); from park_enter on,
 *   r15 = the park timer's local APIC for the HLT wait: its xAPIC MMIO base,
 *   TIMER_X2APIC in x2APIC mode, TIMER_NONE when the CPU does not wait with HLT
 *
 * The HLT wait has one watcher (the table's `watcher`: APIC ID + 1 of the CPU that
 * claimed it first): it alone looks at the mailbox and the doorbell every park-timer
 * period and sends WAKE_VECTOR to a sleeping CPU they concern. Every other CPU sleeps
 * in HLT with only a backstop tick (sleeper_timer_count, many periods) of its own, so
 * N parked CPUs cost one timer tick per period, not N. Every CPU in that HLT, the
 * watcher too, has its slot's doorbell ARMED: whoever takes it (ARMED -> RUNG) sends
 * it one WAKE_VECTOR, the watcher or a kernel (CpuSlot::take_doorbell).
 * A watcher that leaves (or sees a wake-all) rings every sleeper; one of them takes
 * the role over.
 *
 * Constants in braces come from the Rust ABI definitions (park::table,
 * park::mailbox, park::code) as const operands, so layout lives in one place.
 */

.set CR4_PAE,               1 << 5
.set CR4_MCE,               1 << 6
.set CPUID_LEAF_STRUCTURED_EXTENDED, 7
.set CPUID_ECX_CET_SS,      1 << 7
.set CPUID_EDX_CET_IBT,     1 << 20
.set MSR_IA32_S_CET,        0x6A2
.set MCG_STATUS_RIPV,       1 << 0
.set MSR_EFER,              0xC0000080
.set EFER_NXE,              1 << 11
.set CPUID_EXTENDED_MAX,    0x80000000
.set CPUID_EXTENDED_FEATURES, 0x80000001
.set CPUID_EDX_NX,          1 << 20
.set MSR_IA32_APIC_BASE,    0x1B
.set APIC_BASE_X2APIC,      1 << 10
.set APIC_BASE_ENABLE,      1 << 11
.set APIC_BASE_ADDRESS_MASK, 0xFFFFFFFFFF000
.set XAPIC_SPURIOUS,        0xF0
.set XAPIC_LVT_LINT0,       0x350
.set XAPIC_LVT_LINT1,       0x360
.set X2APIC_MSR_SPURIOUS,   0x80F
.set X2APIC_MSR_LVT_LINT0,  0x835                /* 0x800 + (XAPIC_LVT_LINT0 >> 4) */
.set X2APIC_MSR_LVT_LINT1,  0x836                /* 0x800 + (XAPIC_LVT_LINT1 >> 4) */
.set APIC_SOFTWARE_ENABLE,  1 << 8
.set LVT_DELIVERY_NMI,      0b100 << 8
.set LVT_MASKED,            1 << 16
.set CR4_LA57,              1 << 12
.set MSR_IA32_MCG_STATUS,   0x17A
.set MSR_IA32_MCG_CAP,      0x179
.set MSR_IA32_MCG_CTL,      0x17B
.set MSR_IA32_MC0_CTL,      0x400
.set MC_BANK_MSR_STRIDE,    4
.set MCG_CAP_COUNT_MASK,    0xFF
.set MCG_CAP_CTL_P,         1 << 8
.set CPUID_EDX_MCA,         1 << 14
.set CPUID_LEAF_TOPOLOGY,   0xB
.set CPUID_LEAF_FEATURES,   0x1
.set INITIAL_APIC_ID_SHIFT, 24
.set ENTRY_START,           1
.set ENTRY_RETURN,          2
.set PAGE_SIZE,             4096
.set STUB_ALIGN,            16
.set NO_VECTOR,             256                 /* recorded for any vector above 31 */
.set MACHINE_CHECK_VECTOR,  18
.set MACHINE_CHECK_SAVED_BYTES, 8 * 8           /* the registers the #MC handler pushes */
/* The HLT wait: a local-APIC timer interrupt, armed before each HLT, ends it. */
.set TIMER_NONE,            0                   /* r15: PAUSE or MWAIT wait, no timer */
.set TIMER_X2APIC,          1                   /* r15: timer programmed through MSRs */
.set XAPIC_EOI,             0xB0
.set XAPIC_TPR,             0x80
.set XAPIC_ISR0,            0x100
.set XAPIC_REGISTER_STRIDE, 0x10
.set X2APIC_MSR_TPR,        0x808
.set X2APIC_MSR_ISR0,       0x810
.set ISR_WORDS,             8                   /* 256 vectors, 32 per register */
.set MAX_STALE_EOIS,        256
.set XAPIC_LVT_TIMER,       0x320
.set XAPIC_TIMER_INITIAL,   0x380
.set XAPIC_TIMER_DIVIDE,    0x3E0
.set X2APIC_MSR_EOI,        0x80B
.set X2APIC_MSR_LVT_TIMER,  0x832
.set X2APIC_MSR_TIMER_INITIAL, 0x838
.set X2APIC_MSR_TIMER_DIVIDE, 0x83E
.set TIMER_DIVIDE_BY_1,     0xB
/* The watcher's wake interrupt: fixed delivery, physical destination. */
.set XAPIC_ICR_LOW,         0x300
.set XAPIC_ICR_HIGH,        0x310
.set XAPIC_ICR_DEST_SHIFT,  24
.set ICR_DELIVERY_PENDING,  1 << 12
.set ICR_IDLE_SPINS,        1 << 20             /* bounded wait for a busy xAPIC ICR */
.set X2APIC_MSR_ICR,        0x830
.set RING_ALL,              0xFFFFFFFF          /* park_ring: every sleeping CPU */
.set SETTLE_WINDOWS,        1 << 20             /* SETTLE_DOORBELL's bound on a ring */

/* r12 = slot of the CPU running this (0 if the table has none), r13 = park table,
 * r14d = APIC ID. Uses no stack: the ResetVector runs it before it has one.
 * Clobbers rax, rbx, rcx, rdx. The APIC ID comes from CPUID, which works whatever
 * mode (xAPIC, x2APIC, soft-disabled) the kernel left the local APIC in. */
.macro FIND_SLOT
    xor     %eax, %eax
    cpuid
    cmp     $CPUID_LEAF_TOPOLOGY, %eax
    jb      .Linitial_id\@
    mov     $CPUID_LEAF_TOPOLOGY, %eax
    xor     %ecx, %ecx
    cpuid
    test    %ebx, %ebx
    jz      .Linitial_id\@
    mov     %edx, %r14d
    jmp     .Lhave_id\@
.Linitial_id\@:
    mov     $CPUID_LEAF_FEATURES, %eax
    cpuid
    shr     $INITIAL_APIC_ID_SHIFT, %ebx
    mov     %ebx, %r14d
.Lhave_id\@:
    mov     park_code_data + {DATA_TABLE}(%rip), %r13
    /* The slot count from parkboot's own copy, not the table's cpu_count: a kernel
     * may have written anything into the table. */
    mov     park_code_data + {DATA_CPU_COUNT}(%rip), %ecx
    lea     {TABLE_SLOTS}(%r13), %r12
.Lnext_slot\@:
    test    %ecx, %ecx
    jz      .Lno_slot\@
    cmp     {SLOT_APIC_ID}(%r12), %r14d
    je      .Lfound\@
    add     ${SLOT_SIZE}, %r12
    dec     %ecx
    jmp     .Lnext_slot\@
.Lno_slot\@:
    xor     %r12d, %r12d
.Lfound\@:
.endm

/* Platform NMIs reach a CPU through its local APIC's LINT1 entry, which INIT and a
 * kernel's soft-disable leave masked. Program it for NMI delivery, as coreboot does on
 * every CPU, so a parked CPU does see NMIs (and its handler keeps it parked). LINT0,
 * where the legacy 8259 PIC's ExtINT arrives, is masked: a parked CPU takes no PIC
 * interrupt (whose vector, 8 for the PIT under a BIOS, would land on an exception
 * entry of the park IDT while the HLT wait has interrupts on).
 * Clobbers rax, rcx, rdx. */
.macro ROUTE_PLATFORM_NMI
    mov     $MSR_IA32_APIC_BASE, %ecx
    rdmsr
    test    $APIC_BASE_ENABLE, %eax
    jz      .Lnmi_routed\@
    test    $APIC_BASE_X2APIC, %eax
    jz      .Lxapic\@
    mov     $X2APIC_MSR_SPURIOUS, %ecx
    rdmsr
    or      $APIC_SOFTWARE_ENABLE, %eax
    wrmsr
    xor     %edx, %edx
    mov     $X2APIC_MSR_LVT_LINT0, %ecx
    mov     $LVT_MASKED, %eax
    wrmsr
    mov     $X2APIC_MSR_LVT_LINT1, %ecx
    mov     $LVT_DELIVERY_NMI, %eax
    wrmsr
    jmp     .Lnmi_routed\@
.Lxapic\@:
    shl     $32, %rdx
    or      %rdx, %rax
    movabs  $APIC_BASE_ADDRESS_MASK, %rcx
    and     %rcx, %rax
    orl     $APIC_SOFTWARE_ENABLE, XAPIC_SPURIOUS(%rax)
    movl    $LVT_MASKED, XAPIC_LVT_LINT0(%rax)
    movl    $LVT_DELIVERY_NMI, XAPIC_LVT_LINT1(%rax)
.Lnmi_routed\@:
.endm

/* The reverse of ROUTE_PLATFORM_NMI for a CPU leaving the park loop: LINT1 masked, as
 * INIT leaves it. Clobbers rax, rcx, rdx. */
.macro MASK_PLATFORM_NMI
    mov     $MSR_IA32_APIC_BASE, %ecx
    rdmsr
    test    $APIC_BASE_ENABLE, %eax
    jz      .Lnmi_masked\@
    test    $APIC_BASE_X2APIC, %eax
    jz      .Lxapic\@
    mov     $X2APIC_MSR_LVT_LINT1, %ecx
    mov     $(LVT_MASKED | LVT_DELIVERY_NMI), %eax
    xor     %edx, %edx
    wrmsr
    jmp     .Lnmi_masked\@
.Lxapic\@:
    shl     $32, %rdx
    or      %rdx, %rax
    movabs  $APIC_BASE_ADDRESS_MASK, %rcx
    and     %rcx, %rax
    movl    $(LVT_MASKED | LVT_DELIVERY_NMI), XAPIC_LVT_LINT1(%rax)
.Lnmi_masked\@:
.endm

/* Woken CPUs keep this EFER, and Linux's 64-bit wakeup path (trampoline_start64)
 * loads page tables that use the NX bit without setting EFER.NXE itself: with NXE off
 * those entries fault as reserved. So a parked CPU has NXE on wherever CPUID offers it.
 * Clobbers rax, rbx, rcx, rdx. */
.macro ENABLE_NO_EXECUTE
    mov     $CPUID_EXTENDED_MAX, %eax
    cpuid
    cmp     $CPUID_EXTENDED_FEATURES, %eax
    jb      .Lno_nx\@
    mov     $CPUID_EXTENDED_FEATURES, %eax
    cpuid
    test    $CPUID_EDX_NX, %edx
    jz      .Lno_nx\@
    mov     $MSR_EFER, %ecx
    rdmsr
    or      $EFER_NXE, %eax
    wrmsr
.Lno_nx\@:
.endm

/* Machine-check banks report errors only when their control MSRs enable them, so on
 * its first start a parked CPU enables MCG_CTL and every bank whose control reads 0
 * (nothing enabled): an uncorrected error then reaches the #MC handler and is counted
 * in the slot. A bank control that is not 0 was set by firmware on purpose (some banks
 * have errata masks) and stays. On return through the ResetVector this is not run at
 * all: the masks the previous kernel chose stay as they are.
 * Clobbers rax, rbx, rcx, rdx, rsi. */
.macro ENABLE_MACHINE_CHECKS
    mov     $CPUID_LEAF_FEATURES, %eax
    cpuid
    test    $CPUID_EDX_MCA, %edx
    jz      .Lno_mca\@
    mov     $MSR_IA32_MCG_CAP, %ecx
    rdmsr
    mov     %eax, %esi
    test    $MCG_CAP_CTL_P, %esi
    jz      .Lbanks\@
    mov     $MSR_IA32_MCG_CTL, %ecx
    rdmsr
    or      %edx, %eax
    jnz     .Lbanks\@
    mov     $-1, %eax
    mov     $-1, %edx
    wrmsr
.Lbanks\@:
    and     $MCG_CAP_COUNT_MASK, %esi
    mov     $MSR_IA32_MC0_CTL, %ecx
.Lnext_bank\@:
    test    %esi, %esi
    jz      .Lno_mca\@
    rdmsr
    or      %edx, %eax
    jnz     .Lkeep_bank\@
    mov     $-1, %eax
    mov     $-1, %edx
    wrmsr
.Lkeep_bank\@:
    add     $MC_BANK_MSR_STRIDE, %ecx
    dec     %esi
    jmp     .Lnext_bank\@
.Lno_mca\@:
.endm

/* LOAD_CR3_FOR_PAGING_MODE, LOAD_FIXED_CR4, CLEAR_SUPERVISOR_CET and
 * LOAD_DATA_SEGMENTS_NULL_FS_GS: asm/long_mode.inc, assembled in front of this file. */

/* rax = TSC */
.macro READ_TSC
    rdtsc
    shl     $32, %rdx
    or      %rdx, %rax
.endm

/* A wakeup vector is followed only if it is nonzero and below the end of parkboot's
 * identity map (park_code_data's vector_limit, at most 2^47, so this also refuses
 * every non-canonical address): anything else would fault, or run whatever sits at
 * address 0, on a CPU that is then lost. rbp = the vector; jumps to \refused if it
 * is not followed. */
.macro CHECK_VECTOR refused
    test    %rbp, %rbp
    jz      \refused
    cmp     park_code_data + {DATA_VECTOR_LIMIT}(%rip), %rbp
    jae     \refused
.endm

/* A refused vector: recorded in the slot (the last one, and a count) for parkboot
 * and the kernel to see; the CPU stays Parked and parked_count is unchanged. */
.macro RECORD_REFUSED_VECTOR
    mov     %rbp, {SLOT_REFUSED_VECTOR}(%r12)
    lock incl {SLOT_REFUSED_COUNT}(%r12)
.endm

/* The HLT wait's timer: one-shot, vector {TIMER_VECTOR}, timer_initial_count ticks
 * (divide by 1), armed again before every HLT (ARM_PARK_TIMER), so each HLT has a
 * tick of its own coming whatever happened to the last one; programmed each time a
 * CPU enters the park loop when the table
 * asks for WAIT_HLT and the local APIC is enabled. Sets r15 (see the top of this file).
 * A CPU handed back by a kernel may bring that kernel's interrupts along: pending
 * (IRR; taken and ended by park_interrupt_handler in park_enter's window), in service (ISR;
 * ended here, or they would block the timer's lower-priority vector for good), or a
 * raised task priority (set to 0 here). Clobbers rax, rcx, rdx, rsi. */
.macro START_PARK_TIMER
    mov     $TIMER_NONE, %r15d
    testl   ${FLAG_WAIT_HLT}, park_code_data + {DATA_FLAGS}(%rip)
    jz      .Ltimer_done\@
    mov     $MSR_IA32_APIC_BASE, %ecx
    rdmsr
    test    $APIC_BASE_ENABLE, %eax
    jz      .Ltimer_done\@
    test    $APIC_BASE_X2APIC, %eax
    jz      .Lxapic\@
    mov     $TIMER_X2APIC, %r15d
    xor     %edx, %edx
    xor     %eax, %eax
    mov     $X2APIC_MSR_TPR, %ecx
    wrmsr
    mov     $MAX_STALE_EOIS, %esi
.Lx2apic_isr\@:
    mov     $X2APIC_MSR_ISR0, %ecx
.Lx2apic_isr_word\@:
    rdmsr
    test    %eax, %eax
    jnz     .Lx2apic_eoi\@
    inc     %ecx
    cmp     $(X2APIC_MSR_ISR0 + ISR_WORDS), %ecx
    jb      .Lx2apic_isr_word\@
    jmp     .Lx2apic_program\@
.Lx2apic_eoi\@:
    mov     $X2APIC_MSR_EOI, %ecx
    xor     %eax, %eax
    xor     %edx, %edx
    wrmsr
    dec     %esi
    jnz     .Lx2apic_isr\@
.Lx2apic_program\@:
    xor     %edx, %edx
    mov     $X2APIC_MSR_TIMER_DIVIDE, %ecx
    mov     $TIMER_DIVIDE_BY_1, %eax
    wrmsr
    mov     $X2APIC_MSR_LVT_TIMER, %ecx
    mov     ${TIMER_VECTOR}, %eax
    wrmsr
    jmp     .Ltimer_done\@
.Lxapic\@:
    shl     $32, %rdx
    or      %rdx, %rax
    movabs  $APIC_BASE_ADDRESS_MASK, %rcx
    and     %rcx, %rax
    mov     %rax, %r15
    movl    $0, XAPIC_TPR(%r15)
    mov     $MAX_STALE_EOIS, %esi
.Lxapic_isr\@:
    xor     %ecx, %ecx
.Lxapic_isr_word\@:
    mov     %ecx, %eax
    shl     $4, %eax                            /* * XAPIC_REGISTER_STRIDE */
    movl    XAPIC_ISR0(%r15, %rax), %eax
    test    %eax, %eax
    jnz     .Lxapic_eoi\@
    inc     %ecx
    cmp     $ISR_WORDS, %ecx
    jb      .Lxapic_isr_word\@
    jmp     .Lxapic_program\@
.Lxapic_eoi\@:
    movl    $0, XAPIC_EOI(%r15)
    dec     %esi
    jnz     .Lxapic_isr\@
.Lxapic_program\@:
    movl    $TIMER_DIVIDE_BY_1, XAPIC_TIMER_DIVIDE(%r15)
    movl    ${TIMER_VECTOR}, XAPIC_LVT_TIMER(%r15)
.Ltimer_done\@:
.endm

/* One-shot timer of eax counts from now (r15 names the local APIC, not TIMER_NONE).
 * Clobbers rax, rcx, rdx. */
.macro ARM_PARK_TIMER
    cmp     $TIMER_X2APIC, %r15
    jne     .Lxapic\@
    mov     $X2APIC_MSR_TIMER_INITIAL, %ecx
    xor     %edx, %edx
    wrmsr
    jmp     .Larmed\@
.Lxapic\@:
    movl    %eax, XAPIC_TIMER_INITIAL(%r15)
.Larmed\@:
.endm

/* End of service for the interrupt being handled (harmless when none is in service).
 * Does nothing when r15 names no local APIC. Clobbers rax, rcx, rdx. */
.macro PARK_TIMER_EOI
    cmp     $TIMER_NONE, %r15
    je      .Leoi_done\@
    cmp     $TIMER_X2APIC, %r15
    jne     .Lxapic\@
    mov     $X2APIC_MSR_EOI, %ecx
    xor     %eax, %eax
    xor     %edx, %edx
    wrmsr
    jmp     .Leoi_done\@
.Lxapic\@:
    movl    $0, XAPIC_EOI(%r15)
.Leoi_done\@:
.endm

/* A CPU leaving the park loop takes no timer with it: the timer is masked and
 * stopped, an interrupt it had already raised is taken here (one instruction with
 * interrupts on) and ended, so no kernel finds it pending or in service.
 * Clobbers rax, rcx, rdx. */
.macro STOP_PARK_TIMER
    cmp     $TIMER_NONE, %r15
    je      .Lstopped\@
    cmp     $TIMER_X2APIC, %r15
    jne     .Lxapic\@
    xor     %edx, %edx
    mov     $X2APIC_MSR_LVT_TIMER, %ecx
    mov     $(LVT_MASKED | {TIMER_VECTOR}), %eax
    wrmsr
    mov     $X2APIC_MSR_TIMER_INITIAL, %ecx
    xor     %eax, %eax
    wrmsr
    jmp     .Ldrain\@
.Lxapic\@:
    movl    $(LVT_MASKED | {TIMER_VECTOR}), XAPIC_LVT_TIMER(%r15)
    movl    $0, XAPIC_TIMER_INITIAL(%r15)
.Ldrain\@:
    sti
    nop                                         /* the one instruction after STI */
    cli
    mov     $TIMER_NONE, %r15d
.Lstopped\@:
.endm

/* The wake interrupt to the CPU whose APIC ID is in edx (r15 names this CPU's local
 * APIC). Clobbers rax, rcx, rdx. */
.macro SEND_WAKE_INTERRUPT
    cmp     $TIMER_X2APIC, %r15
    jne     .Lxapic\@
    mov     $X2APIC_MSR_ICR, %ecx
    mov     ${WAKE_VECTOR}, %eax
    wrmsr                                       /* edx: destination */
    jmp     .Lsent\@
.Lxapic\@:
    mov     $ICR_IDLE_SPINS, %ecx
.Lbusy\@:
    testl   $ICR_DELIVERY_PENDING, XAPIC_ICR_LOW(%r15)
    jz      .Lidle\@
    pause
    dec     %ecx
    jnz     .Lbusy\@
.Lidle\@:
    shl     $XAPIC_ICR_DEST_SHIFT, %edx
    movl    %edx, XAPIC_ICR_HIGH(%r15)
    movl    ${WAKE_VECTOR}, XAPIC_ICR_LOW(%r15)
.Lsent\@:
.endm

/* A watcher leaving the park loop gives the role up and rings every sleeper: one of
 * them takes it over (and a wake-all reaches them all). The role is cleared before
 * the doorbells are read, and a sleeper arms its doorbell before it reads the role
 * (both locked): either it sees no watcher and claims the role, or it is rung.
 * Clobbers rax, rcx, rdx, rsi, rdi, r8. */
.macro RESIGN_WATCHER
    cmp     $TIMER_NONE, %r15
    je      .Lnot_watcher\@
    lea     1(%r14), %eax
    xor     %ecx, %ecx
    lock cmpxchg %ecx, {TABLE_WATCHER}(%r13)
    jne     .Lnot_watcher\@
    mov     $RING_ALL, %edi
    call    park_ring
.Lnot_watcher\@:
.endm

/* After a sleep with the doorbell armed: back to IDLE, and never with a wake interrupt
 * still on its way. ARMED (nobody rang) or DELIVERED (it came): IDLE at once. RUNG:
 * the ringer is sending it; interrupts are opened for one instruction at a time until
 * its handler has marked it DELIVERED, for SETTLE_WINDOWS windows at most. A ringer
 * that has not sent by then never will (a machine check restarted it between its
 * exchange and its send, or a kernel took the doorbell and stopped): waiting on would
 * leave this CPU deaf to the mailbox for good. Clobbers rax, rcx, rdx. */
.macro SETTLE_DOORBELL
    mov     $SETTLE_WINDOWS, %edx
.Lsettle\@:
    mov     ${DOORBELL_ARMED}, %eax
    mov     ${DOORBELL_IDLE}, %ecx
    lock cmpxchg %ecx, {SLOT_DOORBELL}(%r12)
    je      .Lsettled\@
    cmp     ${DOORBELL_RUNG}, %eax
    jne     .Lidle\@                           /* DELIVERED (or already IDLE) */
    dec     %edx
    jz      .Lidle\@                           /* a ring that will not come */
    sti
    pause                                       /* the one instruction after STI */
    cli
    jmp     .Lsettle\@
.Lidle\@:
    movl    ${DOORBELL_IDLE}, {SLOT_DOORBELL}(%r12)
.Lsettled\@:
.endm

/* Before a CPU leaves for a vector: LINT1 masked again (the next kernel's first code,
 * e.g. Linux's trampoline, runs with an empty IDT, where a platform NMI routed
 * through LINT1 would shut the CPU down; the kernel programs LINT1 itself), then
 * state Running, parked_count one lower, wake_count one higher, the TSC stamped.
 * The park timer is stopped first. Clobbers rax, rcx, rdx. */
.macro LEAVE_BOOKKEEPING
    RESIGN_WATCHER
    STOP_PARK_TIMER
    MASK_PLATFORM_NMI
    movl    ${STATE_RUNNING}, {SLOT_STATE}(%r12)
    lock decl {TABLE_PARKED_COUNT}(%r13)
    lock incq {SLOT_WAKE_COUNT}(%r12)
    READ_TSC
    mov     %rax, {SLOT_LAST_WAKE_TSC}(%r12)
.endm

.pushsection .text.park_blobs, "ax"
.balign PAGE_SIZE
.global park_code_start
park_code_start:

/*
 * The ResetVector (offset 0). A kernel jumps here in 64-bit mode, interrupts off, on
 * its own page tables (which map this page), with its GDT and IDT no longer usable
 * (Linux: rdi = this address, rsi = its identity map). Nothing of the kernel's state
 * is used: switch to parkboot's page tables first, then stack, GDT and IDT.
 */
.global park_reset_vector
park_reset_vector:
    endbr64                                     /* a valid target with kernel IBT on */
    cli
    /* CR4.LA57 can only change with paging off, so a CPU handed back with 5-level
     * paging on gets the same identity map under a PML5. Until the CR3 switch only
     * this page is known to be mapped: park_code_data is in it (the blob fits in one
     * page: asserted in parkboot's linker.ld). */
    LOAD_CR3_FOR_PAGING_MODE park_code_data+{DATA_FIRMWARE_CR3}(%rip), park_code_data+{DATA_FIRMWARE_CR3_LA57}(%rip)
    LOAD_FIXED_CR4
    CLEAR_SUPERVISOR_CET
    mov     $ENTRY_RETURN, %r15d
    jmp     park_cpu_entry

/* First arrival, from the trampoline: long mode on the firmware page tables. */
.global park_ap_start
park_ap_start:
    mov     $ENTRY_START, %r15d

park_cpu_entry:
    FIND_SLOT
    test    %r12, %r12
    jz      park_unknown_cpu
    mov     {SLOT_STACK_TOP}(%r12), %rsp
    lgdt    park_code_data + {DATA_GDT_LIMIT}(%rip)
    lidt    park_code_data + {DATA_IDT_LIMIT}(%rip)
    /* CS still names a descriptor of the old GDT: reload it (and SS) from parkboot's
     * with an IRETQ to the next instruction rather than a far return, because IRETQ
     * also ends NMI blocking: Linux hands CPUs back from NMI context (its crash and
     * stop paths call stop_this_cpu from the NMI handler), and a CPU that parked with
     * NMIs blocked would never take another. RFLAGS is kept (IF is 0). */
    mov     %rsp, %rax
    pushq   ${SEL_DATA}
    push    %rax
    pushfq
    pushq   ${SEL_CODE64}
    lea     1f(%rip), %rax
    push    %rax
    iretq
1:
    LOAD_DATA_SEGMENTS_NULL_FS_GS {SEL_DATA}
    mov     %cr4, %rax
    or      $CR4_MCE, %rax
    mov     %rax, %cr4
    ROUTE_PLATFORM_NMI
    ENABLE_NO_EXECUTE
    cmp     $ENTRY_START, %r15d
    jne     2f
    ENABLE_MACHINE_CHECKS
    lock incl {SLOT_START_COUNT}(%r12)
    READ_TSC
    mov     %rax, {SLOT_FIRST_PARK_TSC}(%r12)
    jmp     park_enter
2:
    lock incq {SLOT_RETURN_COUNT}(%r12)

park_enter:
    /* A wake-all rung before this CPU (re)entered the park loop is not for it: on
     * first start it did not exist yet, and on return through the ResetVector it was
     * running in the kernel that rang it (or one before); answering now would send it
     * to a vector in memory that kernel no longer owns. Done before the CPU counts as
     * parked, so a doorbell rung once parked_count includes it is always answered. */
    mov     {TABLE_WAKE_ALL_GENERATION}(%r13), %rax
    mov     %rax, {SLOT_WAKE_ALL_SEEN}(%r12)
    READ_TSC
    mov     %rax, {SLOT_LAST_PARK_TSC}(%r12)
    movl    ${DOORBELL_IDLE}, {SLOT_DOORBELL}(%r12)
    movl    ${STATE_PARKED}, {SLOT_STATE}(%r12)
    lock incl {TABLE_PARKED_COUNT}(%r13)
    mov     park_code_data + {DATA_MAILBOX}(%rip), %rbx
    START_PARK_TIMER
    cmp     $TIMER_NONE, %r15
    je      park_loop
    /* Interrupts a kernel left pending are taken (and ended) now, before this CPU can
     * arm its doorbell, so none of them can pass for the watcher's wake interrupt. */
    sti
    nop                                         /* the one instruction after STI */
    cli

park_loop:
    testl   ${FLAG_WAIT_MWAIT}, park_code_data + {DATA_FLAGS}(%rip)
    jz      1f
    /* Arm the monitor before looking, so a write after the look still wakes MWAIT. */
    mov     %rbx, %rax
    xor     %ecx, %ecx
    xor     %edx, %edx
    monitor
1:
    movzwl  {MAILBOX_COMMAND}(%rbx), %eax
    cmp     ${COMMAND_WAKEUP}, %eax
    je      park_mailbox_wakeup
    cmp     ${COMMAND_TEST}, %eax
    je      park_mailbox_test
park_check_wake_all:
    mov     {TABLE_WAKE_ALL_GENERATION}(%r13), %rax
    cmp     {SLOT_WAKE_ALL_SEEN}(%r12), %rax
    jne     park_wake_all
    testl   ${FLAG_WAIT_MWAIT}, park_code_data + {DATA_FLAGS}(%rip)
    jz      2f
    xor     %eax, %eax
    xor     %ecx, %ecx
    mwait
    jmp     park_loop
2:
    cmp     $TIMER_NONE, %r15
    je      park_pause
    /* The HLT wait. Interrupts are on for the HLT alone (STI's one-instruction shadow
     * covers it): an interrupt that comes between the look above and the HLT stays
     * pending and ends the HLT at once. */
    mov     {TABLE_WATCHER}(%r13), %eax
    lea     1(%r14), %ecx
    cmp     %ecx, %eax
    je      park_watch
    test    %eax, %eax
    jnz     park_sleep
    mov     park_code_data + {DATA_TIMER_INITIAL_COUNT}(%rip), %ebp
    lock cmpxchg %ecx, {TABLE_WATCHER}(%r13)    /* no watcher: claim the role */
    jmp     park_loop

/* The watcher: a command in the mailbox for another CPU rings that CPU (its own and
 * the doorbell it has just looked at itself), then HLT until the next tick. A
 * write that lands between the look and the HLT is seen one period (ebp) later at
 * most. The period doubles on every tick that finds the mailbox empty, up to
 * watcher_idle_timer_count, and is one park-timer period again once a command
 * comes. */
park_watch:
    movzwl  {MAILBOX_COMMAND}(%rbx), %eax
    cmp     ${COMMAND_NOOP}, %eax
    je      2f
    mov     park_code_data + {DATA_TIMER_INITIAL_COUNT}(%rip), %ebp
    mov     {MAILBOX_APIC_ID}(%rbx), %edi
    cmp     %r14d, %edi
    je      1f
    call    park_ring
    jmp     1f
2:
    add     %ebp, %ebp
    jc      3f                                  /* past 2^32: the longest period */
    cmp     park_code_data + {DATA_WATCHER_IDLE_TIMER_COUNT}(%rip), %ebp
    jbe     4f
3:
    mov     park_code_data + {DATA_WATCHER_IDLE_TIMER_COUNT}(%rip), %ebp
4:
    test    %ebp, %ebp
    jnz     1f
    mov     park_code_data + {DATA_TIMER_INITIAL_COUNT}(%rip), %ebp
1:
    mov     %ebp, %eax
    jmp     park_sleep_for_eax

/* HLT with the doorbell armed (locked, so the look below comes after it: a CPU that
 * rings after the look finds it armed), until rung, the timer of eax counts (the
 * watcher's period, or a sleeper's backstop), or an NMI. The watcher sleeps armed like
 * any other CPU, so a kernel may ring it too. The look once more covers what the
 * watcher would otherwise have to ring it for: a mailbox command for this CPU, a
 * wake-all, and no watcher left. */
park_sleep:
    mov     park_code_data + {DATA_SLEEPER_TIMER_COUNT}(%rip), %eax
park_sleep_for_eax:
    ARM_PARK_TIMER
    mov     ${DOORBELL_ARMED}, %eax
    xchg    %eax, {SLOT_DOORBELL}(%r12)
    movzwl  {MAILBOX_COMMAND}(%rbx), %eax
    cmp     ${COMMAND_NOOP}, %eax
    je      1f
    cmp     {MAILBOX_APIC_ID}(%rbx), %r14d
    je      park_settle
1:
    mov     {TABLE_WAKE_ALL_GENERATION}(%r13), %rax
    cmp     {SLOT_WAKE_ALL_SEEN}(%r12), %rax
    jne     park_settle
    cmpl    $0, {TABLE_WATCHER}(%r13)
    je      park_settle
    sti
    hlt
    cli
park_settle:
    SETTLE_DOORBELL
    jmp     park_loop

park_pause:
    pause
    jmp     park_loop

/* Rings sleeping CPUs: the one whose APIC ID is in edi, or every one for RING_ALL
 * (never this CPU). Each ARMED doorbell taken (ARMED -> RUNG, locked) gets exactly one
 * wake interrupt. Clobbers rax, rcx, rdx, rsi, r8. */
park_ring:
    lea     {TABLE_SLOTS}(%r13), %rsi
    mov     park_code_data + {DATA_CPU_COUNT}(%rip), %r8d
1:
    test    %r8d, %r8d
    jz      4f
    cmp     %r12, %rsi
    je      3f
    cmp     $RING_ALL, %edi
    je      2f
    cmp     {SLOT_APIC_ID}(%rsi), %edi
    jne     3f
2:
    mov     ${DOORBELL_ARMED}, %eax
    mov     ${DOORBELL_RUNG}, %ecx
    lock cmpxchg %ecx, {SLOT_DOORBELL}(%rsi)
    jne     3f
    mov     {SLOT_APIC_ID}(%rsi), %edx
    SEND_WAKE_INTERRUPT
3:
    add     ${SLOT_SIZE}, %rsi
    dec     %r8d
    jmp     1b
4:
    ret

park_mailbox_wakeup:
    cmp     {MAILBOX_APIC_ID}(%rbx), %r14d
    jne     park_check_wake_all
    /* ACPI order: read the vector, then acknowledge by clearing the command. The
     * bookkeeping comes between the two, so an OS that sees the acknowledgement also
     * sees this CPU counted as running (parked_count already lower); nothing of the
     * mailbox is read after the acknowledgement. */
    mov     {MAILBOX_WAKEUP_VECTOR}(%rbx), %rbp
    CHECK_VECTOR park_mailbox_refused
    LEAVE_BOOKKEEPING
    movw    ${COMMAND_NOOP}, {MAILBOX_COMMAND}(%rbx)
    jmp     park_jump

/* A bad vector through the mailbox: recorded, then acknowledged all the same (an OS
 * such as Linux waits for the Noop without a timeout), and the CPU keeps parking. */
park_mailbox_refused:
    RECORD_REFUSED_VECTOR
    movw    ${COMMAND_NOOP}, {MAILBOX_COMMAND}(%rbx)
    jmp     park_loop

park_mailbox_test:
    cmp     {MAILBOX_APIC_ID}(%rbx), %r14d
    jne     park_check_wake_all
    movw    ${COMMAND_NOOP}, {MAILBOX_COMMAND}(%rbx)
    jmp     park_loop

park_wake_all:
    mov     %rax, {SLOT_WAKE_ALL_SEEN}(%r12)
    /* The watcher passes a wake-all on to every sleeper (each answers it itself). */
    cmp     $TIMER_NONE, %r15
    je      1f
    lea     1(%r14), %ecx
    cmp     {TABLE_WATCHER}(%r13), %ecx
    jne     1f
    mov     $RING_ALL, %edi
    call    park_ring
    mov     {TABLE_WAKE_ALL_GENERATION}(%r13), %rax   /* park_ring clobbered it */
1:
    mov     {TABLE_WAKE_ALL_VECTOR}(%r13), %rbp
    test    %rbp, %rbp
    jz      park_loop                           /* 0: stay parked, by design */
    CHECK_VECTOR park_wake_all_refused
    LEAVE_BOOKKEEPING
    jmp     park_jump

park_wake_all_refused:
    RECORD_REFUSED_VECTOR
    jmp     park_loop

/* Leave for the vector in rbp: long mode, this identity map, interrupts off, flat
 * selectors. rdi = this CPU's slot and rsi = the park table, for park-aware kernels. */
park_jump:
    mov     %r12, %rdi
    mov     %r13, %rsi
    jmp     *%rbp

/* A CPU the park table does not list came through the ResetVector: it has no stack
 * and no slot to report in, so it stops here. */
park_unknown_cpu:
    cli
    hlt
    jmp     park_unknown_cpu

/*
 * parkboot's self-check vector: proves the CPU ran in this round, then hands it back
 * exactly as Linux does on kexec. Before waking it, the boot processor writes the
 * round's sequence number N (1 or more, below 2^32) into kernel_scratch[0]; the CPU
 * writes its TSC into kernel_scratch[1] (a latency figure only), then
 * (N << 32) | its APIC ID into kernel_scratch[0], the proof the boot processor waits
 * for. No TSC of one CPU is ever compared with another's: they need not be in sync.
 */
.set SELF_CHECK_SEQUENCE_SHIFT, 32
.global park_self_check_vector
park_self_check_vector:
    endbr64
    mov     %rdi, %rcx
    READ_TSC
    mov     %rax, {SLOT_KERNEL_SCRATCH} + 8(%rcx)
    mov     {SLOT_KERNEL_SCRATCH}(%rcx), %rax
    shl     $SELF_CHECK_SEQUENCE_SHIFT, %rax
    mov     {SLOT_APIC_ID}(%rcx), %edx
    or      %rdx, %rax
    mov     %rax, {SLOT_KERNEL_SCRATCH}(%rcx)   /* after the TSC: x86 keeps store order */
    mov     {TABLE_RESET_VECTOR}(%rsi), %rdi
    mov     %cr3, %rsi
    jmp     *%rdi

/* Every external interrupt while a CPU waits with HLT (IDT vectors 32-255 in that
 * mode): the park timer's, and any a kernel left pending or a device still sends.
 * It only ends the interrupt (r15 names the local APIC: interrupts are on only
 * inside the park loop's HLT and STOP_PARK_TIMER) and returns to the loop. */
.global park_interrupt_handler
park_interrupt_handler:
    endbr64                                     /* IDT entries are IBT targets */
    push    %rax
    push    %rcx
    push    %rdx
    PARK_TIMER_EOI
    pop     %rdx
    pop     %rcx
    pop     %rax
    iretq

/* The watcher's wake interrupt (WAKE_VECTOR, HLT wait only): marks the doorbell
 * DELIVERED if it was RUNG (so an interrupt of this vector that a kernel left pending
 * cannot pass for it), ends it, and returns to the loop (interrupts are on only
 * inside the park loop, where r12 is this CPU's slot). */
.global park_wake_interrupt_handler
park_wake_interrupt_handler:
    endbr64                                     /* IDT entries are IBT targets */
    push    %rax
    push    %rcx
    push    %rdx
    mov     ${DOORBELL_RUNG}, %eax
    mov     ${DOORBELL_DELIVERED}, %ecx
    lock cmpxchg %ecx, {SLOT_DOORBELL}(%r12)
    PARK_TIMER_EOI
    pop     %rdx
    pop     %rcx
    pop     %rax
    iretq

/* NMI: count it in the slot and return to whatever the CPU was doing (parking). */
.global park_nmi_handler
park_nmi_handler:
    endbr64
    push    %rax
    push    %rbx
    push    %rcx
    push    %rdx
    push    %r12
    push    %r13
    push    %r14
    FIND_SLOT
    test    %r12, %r12
    jz      1f
    lock incl {SLOT_NMI_COUNT}(%r12)
1:
    pop     %r14
    pop     %r13
    pop     %r12
    pop     %rdx
    pop     %rcx
    pop     %rbx
    pop     %rax
    iretq

/* #MC: record it, clear MCG_STATUS.MCIP (a second machine check while MCIP is set
 * shuts the CPU down), and go back to parking. With MCG_STATUS.RIPV set the
 * interrupted instruction can be resumed: IRETQ. With RIPV clear it cannot: a CPU
 * whose slot says Parked restarts its park loop on the slot's stack (parking keeps no
 * state but the slot and the registers FIND_SLOT sets; a mailbox Wakeup caught half
 * way is still in the mailbox and is answered again); a CPU in any other state (on
 * its way in or out) is marked Faulted with vector 18 and stops, as for any fault. */
.global park_machine_check_handler
park_machine_check_handler:
    endbr64
    push    %rax
    push    %rbx
    push    %rcx
    push    %rdx
    push    %rsi
    push    %r12
    push    %r13
    push    %r14
    FIND_SLOT
    test    %r12, %r12
    jz      1f
    lock incl {SLOT_MACHINE_CHECK_COUNT}(%r12)
1:
    mov     $MSR_IA32_MCG_STATUS, %ecx
    rdmsr
    mov     %eax, %esi
    xor     %eax, %eax
    xor     %edx, %edx
    wrmsr
    test    $MCG_STATUS_RIPV, %esi
    jz      park_machine_check_restart
    pop     %r14
    pop     %r13
    pop     %r12
    pop     %rsi
    pop     %rdx
    pop     %rcx
    pop     %rbx
    pop     %rax
    iretq

park_machine_check_restart:
    test    %r12, %r12
    jz      park_unknown_cpu
    cmpl    ${STATE_PARKED}, {SLOT_STATE}(%r12)
    jne     1f
    /* Into park_loop on a fresh stack through an IRETQ, which also ends NMI blocking:
     * the #MC may have interrupted the NMI handler, whose own IRETQ now never runs.
     * RFLAGS is kept (IF is 0). */
    mov     {SLOT_STACK_TOP}(%r12), %rax
    mov     park_code_data + {DATA_MAILBOX}(%rip), %rbx
    pushq   ${SEL_DATA}
    push    %rax
    pushfq
    pushq   ${SEL_CODE64}
    lea     park_loop(%rip), %rax
    push    %rax
    iretq
1:
    add     $MACHINE_CHECK_SAVED_BYTES, %rsp    /* down to the CPU's frame */
    pushq   $0                                  /* #MC pushes no error code */
    pushq   $MACHINE_CHECK_VECTOR
    jmp     park_fault

/* Any other exception: one stub per vector 0-31 (same stride), so the handler knows
 * the vector; all stacks are made to look alike (vector, error code, CPU frame). */
.macro fault_stub vector
    .balign STUB_ALIGN
    endbr64                                     /* IDT entries are IBT targets */
    .if (\vector == 8) || (\vector >= 10 && \vector <= 14) || (\vector == 17) || (\vector == 21) || (\vector == 29) || (\vector == 30)
    .else
    pushq   $0
    .endif
    pushq   $\vector
    jmp     park_fault
.endm

    .balign STUB_ALIGN
.global park_fault_stubs
park_fault_stubs:
.irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    fault_stub \vector
.endr
    .balign STUB_ALIGN
.global park_unexpected_vector_stub
park_unexpected_vector_stub:
    endbr64
    pushq   $0
    pushq   $NO_VECTOR
    jmp     park_fault

/* Stack: vector, error code, RIP, CS, RFLAGS, RSP, SS. Records the fault in the slot,
 * marks the CPU Faulted (no longer counted as parked) and stops it for good; NMIs
 * still return here. */
park_fault:
    FIND_SLOT
    test    %r12, %r12
    jz      2f
    mov     (%rsp), %rax
    movl    %eax, {SLOT_FAULT_VECTOR}(%r12)
    mov     16(%rsp), %rax
    mov     %rax, {SLOT_FAULT_RIP}(%r12)
    cmpl    ${STATE_PARKED}, {SLOT_STATE}(%r12)
    jne     1f
    lock decl {TABLE_PARKED_COUNT}(%r13)
1:
    movl    ${STATE_FAULTED}, {SLOT_STATE}(%r12)
    /* A faulted watcher gives the role up (the sleepers' backstop tick finds it free). */
    lea     1(%r14), %eax
    xor     %ecx, %ecx
    lock cmpxchg %ecx, {TABLE_WATCHER}(%r13)
2:
    cli
    hlt
    jmp     2b

/* Filled in by the boot processor; layout = park::code::ParkCodeData. */
    .balign 64
.global park_code_data
park_code_data:
    .skip   {DATA_SIZE}
.global park_code_end
park_code_end:
.popsection
