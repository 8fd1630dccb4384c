//! Every AP is started once, parked, woken through the ACPI mailbox and handed back
//! through the ResetVector, over and over; NMIs do not disturb parked CPUs.

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
    assert!(
        outcome.find_line("testkernel: iteration 2/2").is_some(),
        "{}",
        outcome.report()
    );
}

fn summary_field(outcome: &Outcome, key: &str) -> String {
    let summary = outcome
        .summary
        .as_deref()
        .unwrap_or_else(|| panic!("no summary line\n{}", outcome.report()));
    parkboot_tests::json::object_members(summary)
        .expect("summary is JSON")
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("summary has no {key}: {summary}"))
}

/// With a CPU model that offers MONITOR and `park_wait = mwait` (auto would choose HLT,
/// since QEMU sets CPUID's hypervisor bit), the default boot (configs/default.cfg:
/// self-check on, the test kernel's loop) parks with MWAIT, and
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
    assert_eq!(summary_field(&outcome, "park_wait"), "\"mwait\"");
    assert_eq!(
        summary_field(&outcome, "aps_parked"),
        (CPUS - 1).to_string()
    );
    assert!(
        outcome.find_line("waiting with MONITOR/MWAIT").is_some(),
        "{}",
        outcome.report()
    );
    assert_eq!(summary_field(&outcome, "iterations_failed"), "0");
    assert_eq!(
        summary_field(&outcome, "cpus_woken_min"),
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
    assert_eq!(summary_field(&outcome, "park_wait"), "\"pause\"");
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
    assert_eq!(summary_field(&outcome, "park_wait"), "\"hlt\"");
    assert!(
        outcome
            .find_line("waiting with HLT and a 100 us local-APIC timer")
            .is_some(),
        "{}",
        outcome.report()
    );
    assert_eq!(
        summary_field(&outcome, "aps_parked"),
        (CPUS - 1).to_string()
    );
    assert_eq!(summary_field(&outcome, "iterations_done"), "3");
    assert_eq!(
        summary_field(&outcome, "cpus_woken_min"),
        (CPUS - 1).to_string()
    );
    assert_eq!(summary_field(&outcome, "iterations_failed"), "0");
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
