//! Every AP is started once, parked, woken through the ACPI mailbox and handed back
//! through the ResetVector, over and over; NMIs do not disturb parked CPUs.
// Test code and its harness: a failed expectation is a panic.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use parkboot_tests::{parkboot_image, test_kernel, Boot, Outcome};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(300);
const ROUNDS: u32 = 100;

fn config(rounds: u32, extra: &str) -> String {
    format!("self_check = on\nself_check_rounds = {rounds}\non_finish = qemu-exit\n{extra}")
}

/// The park table lines parkboot prints at the end, one per CPU.
fn check_park_table(outcome: &Outcome, cpus: u32, rounds: u32) {
    let expected_aps = cpus - 1;
    assert!(
        outcome
            .find_line(&format!(
                "parkboot: parked {expected_aps} of {expected_aps} APs"
            ))
            .is_some(),
        "not every AP parked\n{}",
        outcome.report()
    );
    let rows: Vec<&str> = outcome
        .lines()
        .filter(|l| l.contains(" parked ") && l.contains(" starts "))
        .collect();
    assert_eq!(rows.len() as u32, expected_aps, "{}", outcome.report());
    // Each AP: started once, woken `rounds` times by the mailbox plus once by wake-all,
    // and back through the ResetVector as often.
    let wakes = rounds + 1;
    for row in rows {
        assert!(
            row.contains(" starts 1 "),
            "INIT-SIPI-SIPI count must stay 1: {row}"
        );
        assert!(row.contains(&format!(" wakes {wakes} ")), "{row}");
        assert!(row.contains(&format!(" returns {wakes} ")), "{row}");
    }
    let witness = outcome.init_ipis.as_ref().expect("INIT IPI witness");
    assert_eq!(
        witness.inits_after_park,
        Some(0),
        "INIT IPIs after the first park: {witness:?}"
    );
}

fn park_loop(cpus: u32) {
    let outcome = Boot::new(parkboot_image())
        .smp(cpus)
        .config_text(config(ROUNDS, ""))
        .trace_init_ipis(true)
        .timeout(TIMEOUT)
        .run();
    outcome.assert_pass();
    if cpus > 1 {
        check_park_table(&outcome, cpus, ROUNDS);
    } else {
        assert!(
            outcome.find_line("no APs to park").is_some(),
            "{}",
            outcome.report()
        );
    }
}

#[test]
fn park_and_wake_100_times_smp1() {
    park_loop(1);
}

#[test]
fn park_and_wake_100_times_smp2() {
    park_loop(2);
}

#[test]
fn park_and_wake_100_times_smp4() {
    park_loop(4);
}

#[test]
fn park_and_wake_100_times_smp8() {
    park_loop(8);
}

#[test]
fn parking_works_from_the_coreboot_entry() {
    let outcome = Boot::new(test_kernel("cbshim"))
        .initrd(parkboot_image())
        .smp(4)
        .config_text(config(10, ""))
        .trace_init_ipis(true)
        .timeout(TIMEOUT)
        .run();
    outcome.assert_pass();
    assert!(outcome
        .find_line("started from its coreboot entry")
        .is_some());
    check_park_table(&outcome, 4, 10);
}

#[test]
fn parked_cpus_survive_nmis_and_stay_wakeable() {
    const NMIS: u32 = 3;
    const MACHINE_CHECK: &str = "mce 1 1 0xb000000000000000 0x5 0 0";
    let outcome = Boot::new(parkboot_image())
        .smp(4)
        .config_text(config(5, "nmi_test = on\n"))
        .monitor(true)
        .trace_init_ipis(true)
        .timeout(TIMEOUT)
        .run_with(|line, ctl| {
            if line.contains("NMI test: waiting for NMIs") {
                for _ in 0..NMIS {
                    ctl.monitor("nmi").expect("monitor nmi");
                }
                // And an uncorrected machine check (MCi_STATUS VAL|UC|EN, MCG_STATUS
                // MCIP|RIPV) on the CPU with index 1 (APIC ID 1).
                ctl.monitor(MACHINE_CHECK).expect("monitor mce");
                ctl.send_serial(b"g").expect("go-ahead");
            }
        });
    outcome.assert_pass();
    let survivors = outcome.count_lines("NMIs and is still parked");
    assert_eq!(survivors, 3, "{}", outcome.report());
    let ap1 = outcome
        .lines()
        .find(|l| l.contains("APIC ID    1  parked") && l.contains(" starts "))
        .unwrap_or_else(|| panic!("no park table row for APIC ID 1\n{}", outcome.report()));
    assert!(
        ap1.ends_with("machine checks 1"),
        "the #MC was not counted: {ap1}"
    );
    // And afterwards every AP still answers the mailbox: the self-check ran after.
    check_park_table(&outcome, 4, 5);
}

/// An uncorrected machine check whose MCG_STATUS has RIPV clear (MCIP only: the
/// interrupted instruction cannot be resumed) on a parked CPU: the handler restarts
/// the park loop on the slot's stack instead of returning, and the CPU stays parked
/// and wakeable. (Under TCG the interrupted RIP is in fact resumable, so an IRETQ
/// would survive too: this runs the restart path end to end, it cannot show the
/// difference.)
#[test]
fn a_machine_check_without_ripv_restarts_the_park_loop() {
    use park::table::offsets::{SLOT_MACHINE_CHECK_COUNT, SLOT_SIZE, TABLE_SLOTS};
    const MACHINE_CHECK: &str = "mce 2 1 0xb000000000000000 0x4 0 0";
    // The CPU with index 2 has slot 2 (slot 0 is the boot processor's).
    const SLOT: u64 = 2;
    let mut table: Option<u64> = None;
    let outcome = Boot::new(parkboot_image())
        .smp(4)
        .config_text(config(5, "nmi_test = on\n"))
        .monitor(true)
        .trace_init_ipis(true)
        .timeout(TIMEOUT)
        .run_with(|line, ctl| {
            if let Some(rest) = line.split("(park table 0x").nth(1) {
                table = rest
                    .split(',')
                    .next()
                    .and_then(|hex| u64::from_str_radix(hex, 16).ok());
            }
            if line.contains("NMI test: waiting for NMIs") {
                // The machine check on APIC ID 2, then one NMI for the test's count,
                // and only once the #MC handler has counted the machine check: a CPU
                // with both pending takes the NMI first, and the #MC would cut the NMI
                // handler short before it counts. The count is read from the slot in
                // guest memory.
                ctl.monitor(MACHINE_CHECK).expect("monitor mce");
                let table = table.expect("the park table's address in the log");
                let count = table
                    + (TABLE_SLOTS + SLOT_SIZE * SLOT as usize + SLOT_MACHINE_CHECK_COUNT) as u64;
                while ctl.time_left() > Duration::ZERO {
                    let answer = ctl
                        .monitor(&format!("xp /1wx {count:#x}"))
                        .expect("monitor xp");
                    let value = answer
                        .split_whitespace()
                        .last()
                        .and_then(|v| u32::from_str_radix(v.trim_start_matches("0x"), 16).ok());
                    if value.is_some_and(|v| v > 0) {
                        break;
                    }
                }
                ctl.monitor("nmi").expect("monitor nmi");
                ctl.send_serial(b"g").expect("go-ahead");
            }
        });
    outcome.assert_pass();
    let ap2 = outcome
        .lines()
        .find(|l| l.contains("APIC ID    2  parked") && l.contains(" starts "))
        .unwrap_or_else(|| panic!("no park table row for APIC ID 2\n{}", outcome.report()));
    assert!(
        ap2.ends_with("machine checks 1"),
        "the #MC was not counted: {ap2}"
    );
    check_park_table(&outcome, 4, 5);
}

#[test]
fn parks_through_x2apic_mode() {
    let outcome = Boot::new(parkboot_image())
        .smp(4)
        .cpu("qemu64,+x2apic")
        .config_text(config(ROUNDS, "x2apic = on\n"))
        .trace_init_ipis(true)
        .timeout(TIMEOUT)
        .run();
    outcome.assert_pass();
    assert!(
        outcome.find_line("local APIC in x2APIC mode").is_some(),
        "{}",
        outcome.report()
    );
    check_park_table(&outcome, 4, ROUNDS);
}

#[test]
fn a_cpu_that_never_answers_is_reported_and_boot_goes_on() {
    // cbshim adds APIC ID 7 to the MADT: listed and enabled, but no such CPU exists.
    let config = "self_check = on\non_finish = qemu-exit\nap_timeout_ms = 200\n\
        [entry test-kernel]\nkernel = fw_cfg:opt/parkboot/kernel\niterations = 2\n";
    let outcome = Boot::new(test_kernel("cbshim"))
        .initrd(parkboot_image())
        .append("cbshim.ghost-cpu")
        .smp(4)
        .config_text(config)
        .fw_cfg_file("opt/parkboot/kernel", test_kernel("testkernel"))
        .trace_init_ipis(true)
        .timeout(TIMEOUT)
        .run();
    outcome.assert_pass();
    let missing = outcome
        .find_line("ERROR: CPU with APIC ID 7 did not reach the park loop")
        .unwrap_or_else(|| panic!("the missing CPU is not reported\n{}", outcome.report()));
    assert!(missing.contains("going on without it"), "{missing}");
    assert!(
        outcome.find_line("parkboot: parked 3 of 4 APs").is_some(),
        "{}",
        outcome.report()
    );
    assert!(
        outcome.find_line("APIC ID    7  not responding").is_some(),
        "{}",
        outcome.report()
    );
    // Not in any kernel's MADT: the test kernel checks that every CPU its MADT
    // advertises is parked or the boot processor, in both iterations.
    let withheld = outcome
        .find_line("APIC ID 7 withheld from the kernels' MADT")
        .unwrap_or_else(|| panic!("the ghost CPU is not withheld\n{}", outcome.report()));
    assert!(withheld.contains("not responding"), "{withheld}");
    assert_eq!(
        outcome.count_lines("4 CPUs advertised, each parked or the boot processor"),
        2,
        "{}",
        outcome.report()
    );
    assert!(
        outcome.find_line("testkernel: iteration 2/2").is_some(),
        "{}",
        outcome.report()
    );
}

/// With a CPU model that offers MONITOR, the default boot (configs/default.cfg:
/// self-check on, `park_wait` = auto, the test kernel's loop) parks with MWAIT, and
/// both wake-alls (parkboot's self-check and the test kernel's) wake every CPU through
/// the library's doorbell alone. TCG runs MONITOR/MWAIT end to end (it does not sleep
/// in MWAIT with more than one CPU, so a missed wakeup shows on hardware only).
#[test]
fn default_boot_waits_with_mwait_where_the_cpu_offers_monitor() {
    const CPUS: u32 = 8;
    let default_config =
        std::fs::read_to_string(parkboot_tests::workspace_root().join("configs/default.cfg"))
            .expect("configs/default.cfg");
    let outcome = Boot::new(parkboot_image())
        .smp(CPUS)
        .cpu("max")
        .config_text(format!("park_wait = mwait\n{default_config}"))
        .fw_cfg_file("opt/parkboot/kernel", test_kernel("testkernel"))
        .trace_init_ipis(true)
        .timeout(TIMEOUT)
        .run();
    outcome.assert_pass();
    assert_eq!(outcome.summary_field("park_wait"), "\"mwait\"");
    assert_eq!(outcome.summary_field("aps_parked"), (CPUS - 1).to_string());
    assert!(
        outcome.find_line("waiting with MONITOR/MWAIT").is_some(),
        "{}",
        outcome.report()
    );
    assert_eq!(outcome.summary_field("iterations_failed"), "0");
    assert_eq!(
        outcome.summary_field("cpus_woken_min"),
        (CPUS - 1).to_string()
    );
    let witness = outcome.init_ipis.as_ref().expect("INIT IPI witness");
    assert_eq!(witness.inits_after_park, Some(0), "{witness:?}");
}

/// `park_wait = pause` forces the PAUSE loop.
#[test]
fn parked_cpus_wait_with_pause_when_asked() {
    let outcome = Boot::new(parkboot_image())
        .smp(2)
        .config_text(config(1, "park_wait = pause\n"))
        .timeout(TIMEOUT)
        .run();
    outcome.assert_pass();
    assert_eq!(outcome.summary_field("park_wait"), "\"pause\"");
}

/// Parks a machine through the default loop (the test kernel, 2 iterations) with
/// `qemu_smp` as QEMU's `-smp` and x2APIC, and checks the summary, that every AP with
/// a slot is parked, woken by the test kernel and back, and 0 INIT IPIs after park.
fn boot_many(qemu_smp: &str, cpus: u32) -> Outcome {
    let config = "self_check = on\nself_check_rounds = 1\non_finish = qemu-exit\n\
        [entry test-kernel]\nkernel = fw_cfg:opt/parkboot/kernel\niterations = 2\n";
    let outcome = Boot::new(parkboot_image())
        .smp(cpus)
        .cpu("qemu64,+x2apic")
        .args(["-smp", qemu_smp])
        .config_text(config)
        .fw_cfg_file("opt/parkboot/kernel", test_kernel("testkernel"))
        .trace_init_ipis(true)
        .timeout(TIMEOUT)
        .run();
    outcome.assert_pass();
    assert_eq!(outcome.summary_field("iterations_failed"), "0");
    let witness = outcome.init_ipis.as_ref().expect("INIT IPI witness");
    assert_eq!(witness.inits_after_park, Some(0), "{witness:?}");
    outcome
}

/// APIC IDs above 255 (two sockets of 75 CPUs whose topology puts the second socket
/// at APIC ID 256 and up) are parked, woken by the test kernel through the mailbox
/// and the doorbell, and handed back, like the others.
#[test]
fn apic_ids_above_255_are_parked() {
    let outcome = boot_many("150,sockets=2,dies=5,cores=5,threads=3", 150);
    assert_eq!(outcome.summary_field("aps_parked"), "149");
    assert_eq!(outcome.summary_field("aps_beyond_table"), "0");
    for apic_id in [256, 300, 402] {
        let row = format!("APIC ID  {apic_id}  parked          starts 1  wakes 2  returns 2");
        assert!(
            outcome.find_line(&row).is_some(),
            "no '{row}'\n{}",
            outcome.report()
        );
    }
    assert_eq!(outcome.summary_field("cpus_woken_min"), "149");
}

/// More CPUs than the park table has slots (256): the first 255 APs are parked and
/// every kernel wakes them; APIC IDs 256-299 are named in the log and the summary, not
/// started (no INIT at all after park, no slot), and the boot goes on.
#[test]
fn cpus_beyond_the_park_table_are_named_and_boot_goes_on() {
    let outcome = boot_many("300", 300);
    assert!(
        outcome
            .find_line(
                "the MADT lists 300 CPUs, the park table has 256 slots: 44 CPUs beyond it are \
                 not started and not parked, and kernels do not get them: APIC IDs 256-299"
            )
            .is_some(),
        "{}",
        outcome.report()
    );
    assert_eq!(outcome.summary_field("aps"), "255");
    assert_eq!(outcome.summary_field("aps_parked"), "255");
    assert_eq!(outcome.summary_field("aps_beyond_table"), "44");
    assert_eq!(outcome.summary_field("beyond_table"), "\"256-299\"");
    assert_eq!(outcome.summary_field("cpus_woken_min"), "255");
    // Every parked AP has its entry, each whole: the summary stays JSON at this count.
    let per_ap = outcome.summary_field("per_ap");
    assert_eq!(per_ap.matches("{\"apic_id\":").count(), 255, "{per_ap}");
    assert!(per_ap.starts_with('[') && per_ap.ends_with(']'), "{per_ap}");
    assert!(
        outcome.find_line("APIC ID  256  ").is_some()
            && !outcome.lines().any(|l| l.contains("APIC ID  256  parked")),
        "{}",
        outcome.report()
    );
    // Only the 255 APs with a slot got STARTUP IPIs (two each at most).
    let witness = outcome.init_ipis.as_ref().expect("INIT IPI witness");
    assert!(witness.park_sipis <= 2 * 255, "{witness:?}");
}

/// QEMU's default CPU model offers no MONITOR (and sets the hypervisor bit): with
/// `park_wait = auto` parked CPUs wait with HLT and the park timer. 100 mailbox
/// wakeups per AP, the wake-all round and the test kernel's loop all pass, and the
/// test kernel finds each woken AP's local-APIC timer masked with nothing of the park
/// timer pending or in service (kernels never inherit it).
#[test]
fn parked_cpus_wait_with_hlt_without_monitor() {
    const CPUS: u32 = 4;
    const ROUNDS: u32 = 100;
    let outcome = Boot::new(parkboot_image())
        .smp(CPUS)
        .config_text(config(
            ROUNDS,
            "park_timer_us = 100\n[entry test-kernel]\nkernel = fw_cfg:opt/parkboot/kernel\nformat = multiboot2\niterations = 3\n",
        ))
        .fw_cfg_file("opt/parkboot/kernel", test_kernel("testkernel"))
        .trace_init_ipis(true)
        .timeout(TIMEOUT)
        .run();
    outcome.assert_pass();
    assert_eq!(outcome.summary_field("park_wait"), "\"hlt\"");
    assert!(
        outcome
            .find_line("waiting with HLT and a 100 us local-APIC timer")
            .is_some(),
        "{}",
        outcome.report()
    );
    assert_eq!(outcome.summary_field("aps_parked"), (CPUS - 1).to_string());
    assert_eq!(outcome.summary_field("iterations_done"), "3");
    assert_eq!(
        outcome.summary_field("cpus_woken_min"),
        (CPUS - 1).to_string()
    );
    assert_eq!(outcome.summary_field("iterations_failed"), "0");
    assert!(
        outcome
            .find_line("woke with the park timer masked, nothing pending or in service")
            .is_some(),
        "{}",
        outcome.report()
    );
    let witness = outcome.init_ipis.as_ref().expect("INIT IPI witness");
    assert_eq!(witness.inits_after_park, Some(0), "{witness:?}");
}
