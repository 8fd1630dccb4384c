//! The runs that misbehave on purpose (`testkernel.misbehave=`, `testkernel.stale-doorbell`):
//! bad wakeup vectors, APs kept in the kernel, a corrupted park table, and the stale
//! doorbell, with the mailbox command helper they share.

use super::*;

/// `testkernel.misbehave=bad-vector`: see [`Misbehave::BadVector`].
pub(super) fn bad_vectors(
    table: &ParkTable,
    mailbox: &WakeupMailbox,
    expected: &[usize],
    timeout: u64,
) -> Result<(), Failure> {
    let parked = table.parked_count();
    let Some(&first) = expected.first() else {
        return Ok(());
    };
    let slot = slot_at(table, first);
    for vector in BAD_VECTORS {
        let refused = slot.refused_count.load(Ordering::Acquire);
        if !mailbox_command(
            mailbox,
            slot.apic_id,
            MailboxCommand::Wakeup,
            vector,
            timeout,
        ) {
            fail!(
                Check::BadVectorRefused,
                "APIC ID {}: no acknowledgement of a Wakeup to {vector:#x}",
                slot.apic_id
            );
        }
        let now = slot.refused_count.load(Ordering::Acquire);
        let recorded = slot.refused_vector.load(Ordering::Acquire);
        let state = slot.state.load(Ordering::Acquire);
        if now != refused + 1 || recorded != vector || state != CpuState::Parked as u32 {
            fail!(
                Check::BadVectorRefused,
                "APIC ID {}: Wakeup to {vector:#x}: refused {refused} -> {now}, last {recorded:#x}, state {}",
                slot.apic_id,
                state_name(state)
            );
        }
        say!(
            "bad vector: APIC ID {} refused a mailbox Wakeup to {vector:#x} and stayed parked",
            slot.apic_id
        );
    }
    let refused: Vec<u32, MAX_CPUS> = expected
        .iter()
        .map(|&i| slot_at(table, i).refused_count.load(Ordering::Acquire))
        .collect();
    table.wake_all(mailbox, NON_CANONICAL_VECTOR);
    for (&index, &before) in expected.iter().zip(refused.iter()) {
        let slot = slot_at(table, index);
        // Two Test answers: the second comes after a full look at the doorbell.
        for _ in 0..2 {
            if !mailbox_command(mailbox, slot.apic_id, MailboxCommand::Test, 0, timeout) {
                fail!(
                    Check::BadVectorRefused,
                    "APIC ID {} does not answer Test after a doorbell to {NON_CANONICAL_VECTOR:#x}",
                    slot.apic_id
                );
            }
        }
        let now = slot.refused_count.load(Ordering::Acquire);
        if now != before + 1 || slot.state() != Some(CpuState::Parked) {
            fail!(
                Check::BadVectorRefused,
                "APIC ID {}: doorbell to {NON_CANONICAL_VECTOR:#x}: refused {before} -> {now}",
                slot.apic_id
            );
        }
    }
    if table.parked_count() != parked {
        fail!(
            Check::BadVectorRefused,
            "parked_count {} after the bad vectors, {parked} before",
            table.parked_count()
        );
    }
    say!(
        "bad vector: {} APs refused a doorbell to {NON_CANONICAL_VECTOR:#x} and stayed parked",
        expected.len()
    );
    Ok(())
}

/// `testkernel.misbehave=keep-aps`: see [`Misbehave::KeepAps`].
pub(super) fn keep_aps(
    table: &ParkTable,
    mailbox: &WakeupMailbox,
    expected: &[usize],
    timeout: u64,
) -> Result<(), Failure> {
    AP_HOLD_RELEASE.store(0, Ordering::Release);
    for &index in expected {
        let slot = slot_at(table, index);
        AP_PROOFS[index].reset();
        if !mailbox_command(
            mailbox,
            slot.apic_id,
            MailboxCommand::Wakeup,
            ap_hold_entry(),
            timeout,
        ) || !wait_until(timeout, || AP_PROOFS[index].stamp().is_some())
        {
            fail!(
                Check::KeepAps,
                "APIC ID {} did not run the hold entry",
                slot.apic_id
            );
        }
        say!(
            "keep-aps: APIC ID {} held in the kernel, never handed back",
            slot.apic_id
        );
    }
    Ok(())
}

/// `testkernel.misbehave=corrupt-table`: see [`Misbehave::CorruptTable`].
pub(super) fn corrupt_table(table: &ParkTable) {
    let header = table as *const ParkTable as *mut ParkTable;
    // SAFETY: the park table parkboot gave this kernel, mapped (checked at start);
    // writing garbage into it is the point. Only fields within the header and the
    // first two slots (cpu_count >= 2 checked by the caller) are written.
    unsafe {
        let slot_count = (*header).slot_count;
        core::ptr::addr_of_mut!((*header).cpu_count).write_volatile(slot_count + 7);
        core::ptr::addr_of_mut!((*header).mailbox_address).write_volatile(0);
        let boot = table.boot_apic_id;
        core::ptr::addr_of_mut!((*header).boot_apic_id).write_volatile(boot ^ 0x55);
        let first = header
            .cast::<u8>()
            .add(table.slots_offset as usize)
            .cast::<CpuSlot>();
        let second = first
            .cast::<u8>()
            .add(table.slot_size as usize)
            .cast::<CpuSlot>();
        let apic_id = (*second).apic_id;
        core::ptr::addr_of_mut!((*second).apic_id).write_volatile(GARBAGE_APIC_ID);
        (*second).state.store(GARBAGE_STATE, Ordering::Release);
        (*first)
            .state
            .store(CpuState::Parked as u32, Ordering::Release);
        table
            .parked_count
            .fetch_add(GARBAGE_COUNT_EXTRA, Ordering::AcqRel);
        say!(
            "corrupt-table: cpu_count {}, mailbox_address 0, boot_apic_id {}, slot 1 (APIC ID {apic_id}) apic_id {GARBAGE_APIC_ID:#x} state {GARBAGE_STATE:#x}, slot 0 state parked, parked_count +{GARBAGE_COUNT_EXTRA}",
            slot_count + 7,
            boot ^ 0x55
        );
    }
}

/// `testkernel.misbehave=orphan-doorbell`: see [`Misbehave::OrphanDoorbell`]. Only in
/// the HLT wait (no doorbells otherwise).
pub(super) fn orphan_doorbell(
    table: &ParkTable,
    mailbox: &WakeupMailbox,
    expected: &[usize],
    timeout: u64,
) -> Result<(), Failure> {
    let Some(&first) = expected.first() else {
        return Ok(());
    };
    if table.flags & flags::WAIT_HLT == 0 {
        return Ok(());
    }
    let slot = slot_at(table, first);
    // It parks again after the checks' wakeups and then sleeps armed.
    if !wait_until(timeout, || slot.take_doorbell().is_some()) {
        fail!(
            Check::OrphanDoorbell,
            "APIC ID {} never slept with its doorbell armed",
            slot.apic_id
        );
    }
    if !mailbox_command(mailbox, slot.apic_id, MailboxCommand::Test, 0, timeout) {
        fail!(
            Check::OrphanDoorbell,
            "APIC ID {}: its doorbell was taken and never rung, and it no longer answers the \
             mailbox",
            slot.apic_id
        );
    }
    say!(
        "orphan doorbell: APIC ID {} answered the mailbox after its doorbell was taken and never rung",
        slot.apic_id
    );
    Ok(())
}

/// Sends `command` to `apic_id` through the mailbox and waits for the Noop.
pub(super) fn mailbox_command(
    mailbox: &WakeupMailbox,
    apic_id: u32,
    command: MailboxCommand,
    vector: u64,
    timeout: u64,
) -> bool {
    mailbox.apic_id.store(apic_id, Ordering::Relaxed);
    mailbox.wakeup_vector.store(vector, Ordering::Relaxed);
    mailbox.command.store(command as u16, Ordering::Release);
    wait_until(timeout, || {
        mailbox.command.load(Ordering::Acquire) == MailboxCommand::Noop as u16
    })
}

/// The stale doorbell: AP `held` is woken into the hold entry and kept running in the
/// kernel while the doorbell rings (the other APs answer it and come back). Then it is
/// released, comes back through the ResetVector and must stay parked: it must not
/// answer the ring it missed by running the kernel's vector again.
///
/// Proof without a sleep: after it is counted parked again, two mailbox Test commands
/// are answered by it. The park loop answers Test before it looks at the doorbell, so
/// the second answer comes after at least one full look at the doorbell; had it
/// followed the old ring, its proof would be stamped and its wake count raised.
pub(super) fn stale_doorbell(
    table: &ParkTable,
    mailbox: &WakeupMailbox,
    held: usize,
    parked_at_start: u32,
    timeout: u64,
) -> Result<(), Failure> {
    let slot = slot_at(table, held);
    let proof = &AP_PROOFS[held];
    proof.reset();
    AP_HOLD_RELEASE.store(0, Ordering::Release);
    if !mailbox_command(
        mailbox,
        slot.apic_id,
        MailboxCommand::Wakeup,
        ap_hold_entry(),
        timeout,
    ) || !wait_until(timeout, || proof.stamp().is_some())
    {
        fail!(
            Check::StaleDoorbell,
            "APIC ID {} did not run the hold entry",
            slot.apic_id
        );
    }
    let wakes_while_held = slot.wake_count.load(Ordering::Acquire);
    // The doorbell rings while the held AP runs in the kernel; the others answer.
    table.wake_all(mailbox, ap_entry());
    if !wait_until(timeout, || table.parked_count() == parked_at_start - 1) {
        fail!(
            Check::StaleDoorbell,
            "with one AP held, {} of {} others are parked again after the doorbell",
            table.parked_count(),
            parked_at_start - 1
        );
    }
    proof.reset();
    AP_HOLD_RELEASE.store(1, Ordering::Release);
    if !wait_until(timeout, || table.parked_count() == parked_at_start) {
        fail!(
            Check::StaleDoorbell,
            "APIC ID {} did not park again after its release",
            slot.apic_id
        );
    }
    for _ in 0..2 {
        if !mailbox_command(mailbox, slot.apic_id, MailboxCommand::Test, 0, timeout) {
            fail!(
                Check::StaleDoorbell,
                "APIC ID {} does not answer Test after its release",
                slot.apic_id
            );
        }
    }
    let wakes = slot.wake_count.load(Ordering::Acquire);
    if proof.stamp().is_some() || wakes != wakes_while_held {
        fail!(
            Check::StaleDoorbell,
            "APIC ID {} answered a doorbell rung while it ran (wakes {wakes_while_held} -> {wakes})",
            slot.apic_id
        );
    }
    say!(
        "stale doorbell: APIC ID {} was held running while the doorbell rang, came back and          stayed parked (wake count {wakes})",
        slot.apic_id
    );
    Ok(())
}
