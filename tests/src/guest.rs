//! Tiny PVH guests, assembled here byte by byte, that exercise the harness under QEMU
//! without parkboot: serial output, serial input, the debug exit port, the monitor,
//! timeouts and the INIT IPI witness.
//!
//! Each guest is a 32-bit ELF with a PVH note (XEN_ELFNOTE_PHYS32_ENTRY), loaded at
//! 1 MiB. QEMU enters it in flat 32-bit protected mode with paging off; the guest uses
//! no stack.

use std::path::PathBuf;
use std::time::Duration;

use crate::{Boot, ExitStatusKind, EXIT_FAIL, EXIT_PASS};

const LOAD_ADDRESS: u32 = 0x10_0000;
const ELF_HEADER_SIZE: usize = 52;
const PROGRAM_HEADER_SIZE: usize = 32;
const NOTE_OFFSET: usize = ELF_HEADER_SIZE + 2 * PROGRAM_HEADER_SIZE;
const NOTE_SIZE: usize = 20;
const CODE_OFFSET: usize = 0x100;
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
const COM1: u16 = 0x3f8;
const COM1_LINE_STATUS: u16 = COM1 + 5;
const LINE_STATUS_DATA_READY: u8 = 0x01;
const LINE_STATUS_TRANSMIT_EMPTY: u8 = 0x20;
const LOCAL_APIC_ICR_LOW: u32 = 0xfee0_0300;

/// A minimal x86 (32-bit) assembler: just the instructions the guests need.
#[derive(Default)]
struct Assembler {
    code: Vec<u8>,
    /// (position of the rel8 byte, label)
    fixups: Vec<(usize, usize)>,
    labels: Vec<Option<usize>>,
    /// (position of an imm32 holding a string address, index into `strings`)
    string_fixups: Vec<(usize, usize)>,
    strings: Vec<Vec<u8>>,
}

impl Assembler {
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }

    fn bind(&mut self, label: usize) {
        self.labels[label] = Some(self.code.len());
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.code.extend_from_slice(bytes);
    }

    fn jump8(&mut self, opcode: u8, label: usize) {
        self.bytes(&[opcode, 0]);
        self.fixups.push((self.code.len() - 1, label));
    }

    fn jz(&mut self, label: usize) {
        self.jump8(0x74, label);
    }

    fn jmp(&mut self, label: usize) {
        self.jump8(0xeb, label);
    }

    fn mov_dx(&mut self, port: u16) {
        self.bytes(&[0x66, 0xba]);
        self.bytes(&port.to_le_bytes());
    }

    fn mov_al(&mut self, value: u8) {
        self.bytes(&[0xb0, value]);
    }

    /// Waits until the line status register has `bit`; clobbers al, dx.
    fn wait_line_status(&mut self, bit: u8) {
        let wait = self.label();
        self.mov_dx(COM1_LINE_STATUS);
        self.bind(wait);
        self.bytes(&[0xec, 0xa8, bit]); // in al, dx; test al, bit
        self.jz(wait);
    }

    /// Prints `text` on COM1; clobbers eax, ebx, edx, esi.
    fn print(&mut self, text: &str) {
        let mut bytes = text.as_bytes().to_vec();
        bytes.push(0);
        self.strings.push(bytes);
        self.bytes(&[0xbe, 0, 0, 0, 0]); // mov esi, string
        self.string_fixups
            .push((self.code.len() - 4, self.strings.len() - 1));
        let next = self.label();
        let done = self.label();
        self.bind(next);
        self.bytes(&[0xac, 0x84, 0xc0]); // lodsb; test al, al
        self.jz(done);
        self.bytes(&[0x88, 0xc3]); // mov bl, al
        self.wait_line_status(LINE_STATUS_TRANSMIT_EMPTY);
        self.bytes(&[0x88, 0xd8]); // mov al, bl
        self.mov_dx(COM1);
        self.bytes(&[0xee]); // out dx, al
        self.jmp(next);
        self.bind(done);
    }

    /// Writes `value` to the isa-debug-exit port, which ends QEMU.
    fn debug_exit(&mut self, value: u8) {
        self.mov_dx(crate::DEBUG_EXIT_PORT);
        self.mov_al(value);
        self.bytes(&[0xee]);
    }

    /// Writes `value` to the local APIC's ICR (low half; the high half stays 0).
    fn write_icr(&mut self, value: u32) {
        self.bytes(&[0xb8]); // mov eax, value
        self.bytes(&value.to_le_bytes());
        self.bytes(&[0xa3]); // mov [ICR], eax
        self.bytes(&LOCAL_APIC_ICR_LOW.to_le_bytes());
    }

    /// Spins forever.
    fn spin(&mut self) {
        let here = self.label();
        self.bind(here);
        self.bytes(&[0xf3, 0x90]); // pause
        self.jmp(here);
    }

    /// Links the code and strings into a PVH ELF image.
    fn elf(mut self) -> Vec<u8> {
        for (at, label) in std::mem::take(&mut self.fixups) {
            let target = self.labels[label].expect("label bound") as isize;
            let relative = target - (at as isize + 1);
            self.code[at] = i8::try_from(relative).expect("jump within 128 bytes") as u8;
        }
        let mut image = vec![0u8; CODE_OFFSET];
        let strings_offset = CODE_OFFSET + self.code.len();
        let mut string_addresses = Vec::new();
        let mut strings = Vec::new();
        for string in &self.strings {
            string_addresses.push(LOAD_ADDRESS + (strings_offset + strings.len()) as u32);
            strings.extend_from_slice(string);
        }
        for (at, index) in &self.string_fixups {
            self.code[*at..*at + 4].copy_from_slice(&string_addresses[*index].to_le_bytes());
        }
        image.extend_from_slice(&self.code);
        image.extend_from_slice(&strings);
        let size = image.len() as u32;
        let entry = LOAD_ADDRESS + CODE_OFFSET as u32;

        let mut header = Vec::new();
        header.extend_from_slice(b"\x7fELF");
        header.extend_from_slice(&[1, 1, 1, 0]); // 32-bit, little endian, version 1
        header.extend_from_slice(&[0; 8]);
        header.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        header.extend_from_slice(&3u16.to_le_bytes()); // EM_386
        header.extend_from_slice(&1u32.to_le_bytes()); // version
        header.extend_from_slice(&entry.to_le_bytes());
        header.extend_from_slice(&(ELF_HEADER_SIZE as u32).to_le_bytes()); // phoff
        header.extend_from_slice(&0u32.to_le_bytes()); // shoff
        header.extend_from_slice(&0u32.to_le_bytes()); // flags
        header.extend_from_slice(&(ELF_HEADER_SIZE as u16).to_le_bytes());
        header.extend_from_slice(&(PROGRAM_HEADER_SIZE as u16).to_le_bytes());
        header.extend_from_slice(&2u16.to_le_bytes()); // phnum
        header.extend_from_slice(&40u16.to_le_bytes()); // shentsize
        header.extend_from_slice(&0u16.to_le_bytes()); // shnum
        header.extend_from_slice(&0u16.to_le_bytes()); // shstrndx
        assert_eq!(header.len(), ELF_HEADER_SIZE);

        // PT_LOAD: the whole file at 1 MiB, read-write-execute.
        for word in [1, 0, LOAD_ADDRESS, LOAD_ADDRESS, size, size, 7, 0x1000] {
            header.extend_from_slice(&u32::to_le_bytes(word));
        }
        // PT_NOTE: the PVH entry note.
        let note_address = LOAD_ADDRESS + NOTE_OFFSET as u32;
        for word in [
            4,
            NOTE_OFFSET as u32,
            note_address,
            note_address,
            NOTE_SIZE as u32,
            NOTE_SIZE as u32,
            4,
            4,
        ] {
            header.extend_from_slice(&u32::to_le_bytes(word));
        }
        assert_eq!(header.len(), NOTE_OFFSET);
        for word in [4, 4, XEN_ELFNOTE_PHYS32_ENTRY] {
            header.extend_from_slice(&u32::to_le_bytes(word));
        }
        header.extend_from_slice(b"Xen\0");
        header.extend_from_slice(&entry.to_le_bytes());
        assert_eq!(header.len(), NOTE_OFFSET + NOTE_SIZE);
        image[..header.len()].copy_from_slice(&header);
        image
    }
}

/// A guest image in a temporary file, removed when dropped.
struct GuestImage(PathBuf);

impl Drop for GuestImage {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl std::fmt::Display for GuestImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.display().fmt(f)
    }
}

/// Writes a guest image to a fresh temporary file.
fn guest_file(name: &str, build: impl FnOnce(&mut Assembler)) -> GuestImage {
    let mut assembler = Assembler::default();
    build(&mut assembler);
    let path =
        std::env::temp_dir().join(format!("parkboot-guest-{}-{name}.elf", std::process::id()));
    std::fs::write(&path, assembler.elf()).expect("write guest image");
    GuestImage(path)
}

fn boot(image: &GuestImage) -> Boot {
    Boot::new(&image.0)
        .memory_mib(64)
        .timeout(Duration::from_secs(30))
}

#[test]
fn passing_guest_passes() {
    let image = guest_file("pass", |asm| {
        asm.print("hello from the guest\r\n");
        asm.print("parkboot: summary: {\"cpus\":1,\"parked\":0}\n");
        asm.print("parkboot: result: pass\n");
        asm.debug_exit(EXIT_PASS);
        asm.spin();
    });
    let outcome = boot(&image).run();
    outcome.assert_pass();
    assert_eq!(outcome.find_line("hello"), Some("hello from the guest"));
    assert_eq!(
        outcome.summary.as_deref(),
        Some("{\"cpus\":1,\"parked\":0}")
    );
    assert!(outcome.init_ipis.is_none());
}

#[test]
fn failing_guest_fails_with_its_reason() {
    let image = guest_file("fail", |asm| {
        asm.print("parkboot: result: FAIL: parked 0 of 3\n");
        asm.debug_exit(EXIT_FAIL);
        asm.spin();
    });
    let outcome = boot(&image).run();
    assert_eq!(outcome.status, ExitStatusKind::Fail, "{}", outcome.report());
    assert!(!outcome.passed());
    assert_eq!(outcome.fail_reason(), Some("parked 0 of 3"));
}

#[test]
fn pass_exit_without_pass_line_is_not_a_pass() {
    let image = guest_file("silent-pass", |asm| {
        asm.print("parkboot: summary: {}\n");
        asm.debug_exit(EXIT_PASS);
        asm.spin();
    });
    let outcome = boot(&image).run();
    assert_eq!(outcome.status, ExitStatusKind::Pass, "{}", outcome.report());
    assert!(!outcome.passed());
}

#[test]
fn triple_fault_is_reset_or_power_off() {
    let image = guest_file("triple-fault", |asm| {
        asm.print("parkboot: stopped: about to fault\n");
        // lidt with a zero limit (the 6 bytes at 0x500 are zeroed first), then int3.
        asm.bytes(&[0x31, 0xc0]); // xor eax, eax
        asm.bytes(&[0xa3, 0x00, 0x05, 0x00, 0x00]); // mov [0x500], eax
        asm.bytes(&[0xa3, 0x04, 0x05, 0x00, 0x00]); // mov [0x504], eax
        asm.bytes(&[0x0f, 0x01, 0x1d, 0x00, 0x05, 0x00, 0x00]); // lidt [0x500]
        asm.bytes(&[0xcc]); // int3
        asm.spin();
    });
    let outcome = boot(&image).run();
    assert_eq!(
        outcome.status,
        ExitStatusKind::Other(0),
        "{}",
        outcome.report()
    );
    assert_eq!(outcome.stopped_reason(), Some("about to fault"));
    assert!(outcome.verdict().contains("reset or power-off"));
}

#[test]
fn serial_input_reaches_the_guest() {
    let image = guest_file("echo", |asm| {
        let next = asm.label();
        let quit = asm.label();
        asm.print("ready for input\n");
        asm.bind(next);
        asm.wait_line_status(LINE_STATUS_DATA_READY);
        asm.mov_dx(COM1);
        asm.bytes(&[0xec, 0x88, 0xc3]); // in al, dx; mov bl, al
        asm.bytes(&[0x3c, b'q']); // cmp al, 'q'
        asm.jz(quit);
        asm.wait_line_status(LINE_STATUS_TRANSMIT_EMPTY);
        asm.bytes(&[0x88, 0xd8]); // mov al, bl
        asm.mov_dx(COM1);
        asm.bytes(&[0xee]); // out dx, al
        asm.jmp(next);
        asm.bind(quit);
        asm.print("parkboot: result: pass\n");
        asm.debug_exit(EXIT_PASS);
        asm.spin();
    });
    let mut sent = false;
    let outcome = boot(&image).run_with(|line, control| {
        if line == "ready for input" {
            control.send_serial(b"echo this\r\n").unwrap();
            control.send_serial(b"q").unwrap();
            sent = true;
        }
    });
    outcome.assert_pass();
    assert!(sent);
    assert_eq!(outcome.find_line("echo"), Some("echo this"));
}

#[test]
fn timeout_kills_a_silent_guest() {
    let image = guest_file("spin", |asm| {
        asm.print("spinning\n");
        asm.spin();
    });
    let outcome = boot(&image).timeout(Duration::from_secs(2)).run();
    assert_eq!(
        outcome.status,
        ExitStatusKind::TimedOut,
        "{}",
        outcome.report()
    );
    assert!(outcome.duration >= Duration::from_secs(2));
    assert!(outcome.duration < Duration::from_secs(20));
    assert_eq!(outcome.count_lines("spinning"), 1);
}

#[test]
fn monitor_command_and_stop() {
    let image = guest_file("monitor", |asm| {
        asm.print("spinning\n");
        asm.spin();
    });
    let mut answers = Vec::new();
    let outcome = boot(&image).monitor(true).run_with(|line, control| {
        if line == "spinning" {
            answers.push(control.monitor("info status").unwrap());
            answers.push(control.monitor("info status").unwrap());
            control.stop();
        }
    });
    assert_eq!(
        outcome.status,
        ExitStatusKind::Stopped,
        "{}",
        outcome.report()
    );
    assert_eq!(answers, ["VM status: running", "VM status: running"]);
    assert!(outcome.duration < Duration::from_secs(20));
}

#[test]
fn monitor_nmi_reaches_the_guest() {
    // The guest has no interrupt table of its own, so an NMI escalates to a triple
    // fault, which ends QEMU (exit 0 under -no-reboot).
    let image = guest_file("nmi", |asm| {
        asm.print("spinning\n");
        asm.spin();
    });
    let outcome = boot(&image).monitor(true).run_with(|line, control| {
        if line == "spinning" {
            // QEMU may exit before the monitor's next prompt: the answer does not matter.
            let _ = control.monitor("nmi");
        }
    });
    assert_eq!(
        outcome.status,
        ExitStatusKind::Other(0),
        "{}",
        outcome.report()
    );
}

#[test]
fn monitor_without_a_monitor_is_an_error() {
    let image = guest_file("no-monitor", |asm| {
        asm.print("spinning\n");
        asm.spin();
    });
    let mut error = None;
    let outcome = boot(&image).run_with(|_, control| {
        error = control.monitor("info status").err();
        control.stop();
    });
    assert_eq!(outcome.status, ExitStatusKind::Stopped);
    assert!(error.unwrap().to_string().contains("Boot::monitor(true)"));
}

#[test]
fn init_ipi_witness_counts_inits_after_the_park_sipi() {
    // All-excluding-self shorthand: with one CPU nobody receives these, but QEMU
    // traces every ICR write.
    const ALL_BUT_SELF_INIT: u32 = 0x000c_4500;
    const ALL_BUT_SELF_STARTUP: u32 = 0x000c_4600;
    // parkboot's vector here is SeaBIOS's own (0x10), so the firmware's STARTUP IPI
    // must not count as the park point.
    let image = guest_file("ipis", |asm| {
        asm.print("parkboot: starting APs: trampoline 0x10000 (SIPI vector 0x10)\n");
        asm.write_icr(ALL_BUT_SELF_INIT);
        asm.write_icr(ALL_BUT_SELF_STARTUP | 0x10);
        asm.write_icr(ALL_BUT_SELF_STARTUP | 0x10);
        asm.write_icr(ALL_BUT_SELF_INIT);
        asm.print("parkboot: result: pass\n");
        asm.debug_exit(EXIT_PASS);
        asm.spin();
    });
    let outcome = boot(&image).trace_init_ipis(true).run();
    outcome.assert_pass();
    let witness = outcome.init_ipis.clone().expect("witness");
    // The firmware (SeaBIOS) sends its own INIT and STARTUP first.
    assert!(witness.total_inits >= 2, "{witness:?}");
    assert!(witness.total_sipis >= 2, "{witness:?}");
    assert_eq!(witness.park_vector, Some(0x10));
    assert_eq!(witness.park_sipis, 2, "{witness:?}");
    assert_eq!(witness.inits_after_park, Some(1), "{witness:?}");
    assert!(witness.ordered_by_serial_trace, "{witness:?}");
}

#[test]
fn missing_image_is_a_clean_qemu_error() {
    let outcome = Boot::new("/nonexistent/parkboot")
        .timeout(Duration::from_secs(30))
        .run();
    assert_eq!(
        outcome.status,
        ExitStatusKind::Other(1),
        "{}",
        outcome.report()
    );
    assert!(!outcome.passed());
    assert!(
        outcome.qemu_stderr.contains("/nonexistent/parkboot"),
        "{}",
        outcome.qemu_stderr
    );
    let report = outcome.report();
    assert!(report.contains("QEMU error"), "{report}");
    assert!(report.contains("QEMU stderr:"), "{report}");
}

#[test]
fn missing_qemu_is_reported() {
    // Not through PARKBOOT_QEMU: the environment is shared by parallel tests.
    let outcome = Boot::new("/nonexistent/parkboot").accel("tcg").run();
    // QEMU is installed here, so this only checks that the path reaches QEMU.
    assert_ne!(outcome.status, ExitStatusKind::NotStarted);
}

#[test]
fn a_panicking_callback_does_not_leave_qemu_running() {
    let image = guest_file("abandoned", |asm| {
        asm.print("spinning\n");
        asm.spin();
    });
    let mut pid = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        boot(&image).run_with(|_, _| {
            pid = Some(std::process::id());
            panic!("the test gave up");
        })
    }));
    assert!(result.is_err());
    assert!(pid.is_some());
    // No process is left whose command line names this test's image.
    let image_name = image.to_string();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let command_line = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&command_line).contains(&image_name),
            "QEMU {:?} still running",
            entry.file_name()
        );
    }
}
