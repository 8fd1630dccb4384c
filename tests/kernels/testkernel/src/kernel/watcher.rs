//! The HLT wait's division of work, as a park-aware kernel finds it: exactly one
//! parked CPU is the watcher (the table's `watcher`) and every other parked CPU sleeps
//! with its doorbell armed, so only the watcher takes timer ticks.

use super::*;

/// Fails with `Check::OneWatcher` unless, within `timeout` TSC ticks, the table names
/// one of the `expected` (parked) slots as the watcher and every other one is armed.
pub(super) fn one_watcher(
    table: &ParkTable,
    expected: &[usize],
    timeout: u64,
) -> Result<(), Failure> {
    let watcher_slot = || {
        let watcher = table.watcher.load(Ordering::Acquire);
        expected
            .iter()
            .position(|&index| slot_at(table, index).apic_id.wrapping_add(1) == watcher)
    };
    let settled = || {
        watcher_slot().is_some_and(|w| {
            expected.iter().enumerate().all(|(i, &index)| {
                i == w || slot_at(table, index).doorbell.load(Ordering::Acquire) == doorbell::ARMED
            })
        })
    };
    if !wait_until(timeout, settled) {
        let armed = expected
            .iter()
            .filter(|&&index| {
                slot_at(table, index).doorbell.load(Ordering::Acquire) == doorbell::ARMED
            })
            .count();
        fail!(
            Check::OneWatcher,
            "HLT wait: watcher field {:#x} names {} parked CPU; {armed} of {} parked CPUs \
             sleep with their doorbell armed",
            table.watcher.load(Ordering::Acquire),
            if watcher_slot().is_some() { "a" } else { "no" },
            expected.len()
        );
    }
    say!(
        "HLT wait: APIC ID {} watches the mailbox; the other {} parked CPUs sleep with \
         their doorbell armed",
        table.watcher.load(Ordering::Acquire).wrapping_sub(1),
        expected.len() - 1
    );
    Ok(())
}
