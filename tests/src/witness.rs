//! The INIT IPI witness: what QEMU saw written to the local APIC's interrupt command
//! register, read from its trace.
//!
//! With [`Boot::trace_init_ipis`](crate::Boot::trace_init_ipis) QEMU logs every local
//! APIC register write as `apic_register_write register 0x30 = 0x...`. Register 0x30 is
//! the ICR (MMIO offset 0x300 in xAPIC mode, MSR 0x830 in x2APIC mode, where the value is
//! 64 bits wide with the destination in the high half). Its delivery mode, bits 10:8,
//! is 5 for INIT and 6 for STARTUP, whose vector is bits 7:0.
//!
//! parkboot parks its application processors with STARTUP IPIs to its park trampoline
//! and must never INIT them again, since an INIT would throw a parked CPU out of the
//! park loop. It announces the trampoline on the serial console with
//! `parkboot: starting APs: trampoline 0xXXXX (SIPI vector 0xYY)` before it sends them;
//! the witness counts the INIT writes that follow the first STARTUP IPI with that
//! vector.
//!
//! The firmware that runs before parkboot under QEMU (SeaBIOS) sends its own INIT and
//! STARTUP IPIs (vector 0x10) to count the CPUs. So that these never count as parking,
//! the trace also logs the serial port's transmit writes (`serial_write`): the witness
//! rebuilds the console text from them and takes the first park-vector STARTUP IPI
//! *after* the `starting APs` line. When the trace has no serial writes, or no such
//! STARTUP IPI follows the line, it falls back to the first park-vector STARTUP IPI
//! in the whole trace.

use std::io::BufRead;

use crate::STARTING_APS_MARKER;

/// Index of the interrupt command register in the `apic_register_write` trace.
pub const ICR_REGISTER: u32 = 0x30;
/// ICR delivery mode of an INIT IPI.
pub const DELIVERY_MODE_INIT: u64 = 5;
/// ICR delivery mode of a STARTUP IPI.
pub const DELIVERY_MODE_STARTUP: u64 = 6;
/// The QEMU trace events the witness reads.
pub const TRACE_EVENTS: [&str; 2] = ["apic_register_write", "serial_write"];

const APIC_EVENT: &str = "apic_register_write register ";
const SERIAL_EVENT: &str = "serial_write ";
/// UART register offsets in the `serial_write` trace.
const UART_DATA: u64 = 0;
const UART_LINE_CONTROL: u64 = 3;
/// Line control bit that turns offsets 0 and 1 into the divisor latch.
const LINE_CONTROL_DIVISOR_LATCH: u64 = 0x80;

/// What the trace showed about INIT and STARTUP IPIs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InitIpiWitness {
    /// ICR writes with delivery mode INIT (assert and de-assert both count), the
    /// firmware's included.
    pub total_inits: u64,
    /// ICR writes with delivery mode STARTUP, the firmware's included.
    pub total_sipis: u64,
    /// The park trampoline's SIPI vector, from the `parkboot: starting APs:` line.
    pub park_vector: Option<u8>,
    /// STARTUP IPIs with the park vector from the park point on (the first counted).
    pub park_sipis: u64,
    /// INIT writes after the first STARTUP IPI to the park trampoline; `None` when
    /// there is no `parkboot: starting APs:` line. `Some(0)` when the line is there
    /// but no such STARTUP IPI was seen: check `park_sipis` for that case.
    pub inits_after_park: Option<u64>,
    /// Whether the park point was placed after the `starting APs` line in the trace's
    /// own order (the serial writes were traced), rather than by the fallback.
    pub ordered_by_serial_trace: bool,
}

/// One ICR write seen in the trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcrWrite {
    /// Delivery mode INIT.
    Init,
    /// Delivery mode STARTUP with this vector.
    Startup(u8),
    /// Any other delivery mode (fixed, NMI, ...).
    Other,
}

impl IcrWrite {
    /// Decodes an ICR value (32-bit xAPIC or 64-bit x2APIC).
    pub fn decode(value: u64) -> IcrWrite {
        match (value >> 8) & 7 {
            DELIVERY_MODE_INIT => IcrWrite::Init,
            DELIVERY_MODE_STARTUP => IcrWrite::Startup((value & 0xff) as u8),
            _ => IcrWrite::Other,
        }
    }
}

/// Parses one trace line; returns the ICR write it records, if it records one.
/// Accepts the plain form and the one with a `pid@seconds:` timestamp prefix.
pub fn parse_icr_write(line: &str) -> Option<IcrWrite> {
    let rest = &line[line.find(APIC_EVENT)? + APIC_EVENT.len()..];
    let (register, value) = rest.split_once('=')?;
    if parse_hex(register.trim())? != u64::from(ICR_REGISTER) {
        return None;
    }
    let value = value.split_whitespace().next()?;
    Some(IcrWrite::decode(parse_hex(value)?))
}

/// Parses one `serial_write write addr 0x00 val 0x70` trace line into
/// (register offset, value).
pub fn parse_serial_write(line: &str) -> Option<(u64, u64)> {
    let rest = &line[line.find(SERIAL_EVENT)? + SERIAL_EVENT.len()..];
    let after = |key: &str| -> Option<u64> {
        let text = &rest[rest.find(key)? + key.len()..];
        parse_hex(text.split_whitespace().next()?)
    };
    Some((after("addr ")?, after("val ")?))
}

fn parse_hex(text: &str) -> Option<u64> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    u64::from_str_radix(digits, 16).ok()
}

/// The park trampoline's SIPI vector from a serial log, taken from the first
/// `parkboot: starting APs: ... (SIPI vector 0xYY)` line.
pub fn park_vector_from_serial(serial: &str) -> Option<u8> {
    let line = serial
        .lines()
        .find(|line| line.contains(STARTING_APS_MARKER))?;
    let rest = &line[line.find("SIPI vector")? + "SIPI vector".len()..];
    let token = rest
        .trim_start()
        .split(|c: char| c.is_whitespace() || c == ')' || c == ',')
        .next()?;
    u8::try_from(parse_hex(token)?).ok()
}

/// Builds the witness from the trace, read line by line. `serial_park_vector` is the
/// park vector from the serial log, used when the trace has no serial writes.
pub fn witness_from_trace<R: BufRead>(
    trace: R,
    serial_park_vector: Option<u8>,
) -> std::io::Result<InitIpiWitness> {
    // ICR writes in order, each with whether the `starting APs` line preceded it.
    let mut writes: Vec<(IcrWrite, bool)> = Vec::new();
    let mut console_line: Vec<u8> = Vec::new();
    let mut divisor_latch = false;
    let mut trace_park_vector: Option<u8> = None;
    for line in trace.split(b'\n') {
        let line = line?;
        let line = String::from_utf8_lossy(&line);
        if let Some(write) = parse_icr_write(&line) {
            writes.push((write, trace_park_vector.is_some()));
        } else if let Some((register, value)) = parse_serial_write(&line) {
            match register {
                UART_LINE_CONTROL => divisor_latch = value & LINE_CONTROL_DIVISOR_LATCH != 0,
                UART_DATA if !divisor_latch => {
                    if value == u64::from(b'\n') {
                        if trace_park_vector.is_none() {
                            trace_park_vector =
                                park_vector_from_serial(&String::from_utf8_lossy(&console_line));
                        }
                        console_line.clear();
                    } else {
                        console_line.push(value as u8);
                    }
                }
                _ => {}
            }
        }
    }

    let mut witness = InitIpiWitness {
        park_vector: trace_park_vector.or(serial_park_vector),
        ..InitIpiWitness::default()
    };
    for (write, _) in &writes {
        match write {
            IcrWrite::Init => witness.total_inits += 1,
            IcrWrite::Startup(_) => witness.total_sipis += 1,
            IcrWrite::Other => {}
        }
    }
    let Some(vector) = witness.park_vector else {
        return Ok(witness);
    };
    let is_park_sipi = |write: &IcrWrite| *write == IcrWrite::Startup(vector);
    let after_line = writes
        .iter()
        .position(|(write, after_line)| *after_line && is_park_sipi(write));
    witness.ordered_by_serial_trace = after_line.is_some();
    let park_point =
        after_line.or_else(|| writes.iter().position(|(write, _)| is_park_sipi(write)));
    let from_park = park_point.map_or(&writes[writes.len()..], |at| &writes[at..]);
    witness.park_sipis = from_park
        .iter()
        .filter(|(write, _)| is_park_sipi(write))
        .count() as u64;
    witness.inits_after_park = Some(
        from_park
            .iter()
            .filter(|(write, _)| *write == IcrWrite::Init)
            .count() as u64,
    );
    Ok(witness)
}

/// Builds the witness from trace text and the serial log.
pub fn witness_from_text(trace: &str, serial: &str) -> InitIpiWitness {
    witness_from_trace(trace.as_bytes(), park_vector_from_serial(serial))
        .expect("reading from memory cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERIAL: &str = "[0.001] parkboot: memory map ok\n\
        [0.002] parkboot: starting APs: trampoline 0x8000 (SIPI vector 0x08)\n\
        [0.003] parkboot: result: pass\n";

    /// `serial_write` trace lines for `text` sent to the transmit register.
    fn serial_trace(text: &str) -> String {
        text.bytes()
            .map(|byte| format!("serial_write write addr 0x00 val 0x{byte:02x}\n"))
            .collect()
    }

    #[test]
    fn decodes_delivery_modes() {
        assert_eq!(IcrWrite::decode(0xc500), IcrWrite::Init);
        assert_eq!(IcrWrite::decode(0x8500), IcrWrite::Init);
        assert_eq!(IcrWrite::decode(0x0608), IcrWrite::Startup(0x08));
        assert_eq!(IcrWrite::decode(0xc4608), IcrWrite::Startup(0x08));
        assert_eq!(IcrWrite::decode(0x40ef), IcrWrite::Other);
        // x2APIC: destination in the high half.
        assert_eq!(
            IcrWrite::decode(0x0000_0003_0000_069a),
            IcrWrite::Startup(0x9a)
        );
        assert_eq!(IcrWrite::decode(0x0000_0003_0000_c500), IcrWrite::Init);
    }

    #[test]
    fn parses_trace_lines() {
        assert_eq!(
            parse_icr_write("apic_register_write register 0x30 = 0xc500"),
            Some(IcrWrite::Init)
        );
        assert_eq!(
            parse_icr_write("12345@1700000000.123456:apic_register_write register 0x30 = 0x69a"),
            Some(IcrWrite::Startup(0x9a))
        );
        assert_eq!(
            parse_icr_write("apic_register_write register 0x30 = 0x20000c500"),
            Some(IcrWrite::Init)
        );
        // Other registers (EOI, timer, ICR high) are not ICR writes.
        assert_eq!(
            parse_icr_write("apic_register_write register 0x0b = 0x0"),
            None
        );
        assert_eq!(
            parse_icr_write("apic_register_write register 0x31 = 0x1000000"),
            None
        );
        assert_eq!(parse_icr_write("apic_mem_writel 0x300 = 0xc500"), None);
        assert_eq!(parse_icr_write(""), None);
        assert_eq!(
            parse_icr_write("apic_register_write register 0x30 = zz"),
            None
        );
        assert_eq!(
            parse_icr_write("apic_register_write register 0x30 = 0x123456789abcdef01234"),
            None
        );
        assert_eq!(
            parse_serial_write("serial_write write addr 0x00 val 0x70"),
            Some((0, 0x70))
        );
        assert_eq!(
            parse_serial_write("77@1700000000.000001:serial_write write addr 0x03 val 0x80"),
            Some((3, 0x80))
        );
        assert_eq!(
            parse_serial_write("serial_read read addr 0x05 val 0x60"),
            None
        );
    }

    #[test]
    fn finds_the_park_vector() {
        assert_eq!(park_vector_from_serial(SERIAL), Some(0x08));
        assert_eq!(
            park_vector_from_serial(
                "parkboot: starting APs: trampoline 0x9a000 (SIPI vector 0x9a)"
            ),
            Some(0x9a)
        );
        assert_eq!(park_vector_from_serial("parkboot: result: pass\n"), None);
        assert_eq!(
            park_vector_from_serial(
                "parkboot: starting APs: trampoline 0x8000 (SIPI vector 0x1234)"
            ),
            None
        );
    }

    #[test]
    fn counts_inits_after_the_park_sipi() {
        let trace = "\
apic_register_write register 0x0f = 0x1ff
apic_register_write register 0x31 = 0x1000000
apic_register_write register 0x30 = 0xc4500
apic_register_write register 0x30 = 0xc4608
apic_register_write register 0x30 = 0xc4608
apic_register_write register 0x0b = 0x0
apic_register_write register 0x30 = 0x0000000100000000c500
apic_register_write register 0x30 = 0xc500
apic_register_write register 0x30 = 0x8500
apic_register_write register 0x30 = 0x69a
";
        let witness = witness_from_text(trace, SERIAL);
        assert_eq!(
            witness,
            InitIpiWitness {
                total_inits: 4,
                total_sipis: 3,
                park_vector: Some(0x08),
                park_sipis: 2,
                inits_after_park: Some(3),
                ordered_by_serial_trace: false,
            }
        );
    }

    #[test]
    fn no_park_line_means_unknown() {
        let trace = "apic_register_write register 0x30 = 0xc500\n\
                     apic_register_write register 0x30 = 0x608\n";
        let witness = witness_from_text(trace, "parkboot: result: pass\n");
        assert_eq!(witness.total_inits, 1);
        assert_eq!(witness.total_sipis, 1);
        assert_eq!(witness.park_vector, None);
        assert_eq!(witness.inits_after_park, None);
    }

    #[test]
    fn inits_before_the_park_sipi_do_not_count() {
        let trace = "apic_register_write register 0x30 = 0xc500\n\
                     apic_register_write register 0x30 = 0x8500\n\
                     apic_register_write register 0x30 = 0x610\n\
                     apic_register_write register 0x30 = 0x608\n";
        let witness = witness_from_text(trace, SERIAL);
        assert_eq!(witness.total_inits, 2);
        assert_eq!(witness.park_sipis, 1);
        assert_eq!(witness.inits_after_park, Some(0));
    }

    #[test]
    fn park_line_but_no_park_sipi() {
        let trace = "apic_register_write register 0x30 = 0xc500\n";
        let witness = witness_from_text(trace, SERIAL);
        assert_eq!(witness.park_sipis, 0);
        assert_eq!(witness.inits_after_park, Some(0));
    }

    #[test]
    fn firmware_sipi_with_the_park_vector_does_not_count() {
        // SeaBIOS counts CPUs with INIT + STARTUP vector 0x10; here parkboot's
        // trampoline has the same vector. parkboot then sets the UART divisor (the
        // data writes under the divisor latch are no text), prints its line, sends
        // INIT, STARTUP, STARTUP, and later a stray INIT follows.
        let mut trace = String::from(
            "apic_register_write register 0x30 = 0xc4500\n\
             apic_register_write register 0x30 = 0xc4610\n\
             serial_write write addr 0x03 val 0x80\n\
             serial_write write addr 0x00 val 0x0a\n\
             serial_write write addr 0x01 val 0x00\n\
             serial_write write addr 0x03 val 0x03\n",
        );
        trace += &serial_trace("parkboot: hello\r\n");
        trace += &serial_trace("parkboot: starting APs: trampoline 0x10000 (SIPI vector 0x10)\r\n");
        trace += "apic_register_write register 0x30 = 0xc4500\n\
                  apic_register_write register 0x30 = 0xc4610\n\
                  apic_register_write register 0x30 = 0xc4610\n";
        trace += &serial_trace("parkboot: result: pass\n");
        trace += "apic_register_write register 0x30 = 0x0000000200000500\n";
        let serial = "parkboot: starting APs: trampoline 0x10000 (SIPI vector 0x10)\n";
        let witness = witness_from_text(&trace, serial);
        assert_eq!(
            witness,
            InitIpiWitness {
                total_inits: 3,
                total_sipis: 3,
                park_vector: Some(0x10),
                park_sipis: 2,
                inits_after_park: Some(1),
                ordered_by_serial_trace: true,
            }
        );

        // Without the serial writes the firmware's STARTUP IPI would be the park
        // point, and parkboot's own INIT would count.
        let apic_only: String = trace
            .lines()
            .filter(|line| !line.starts_with("serial_write"))
            .map(|line| format!("{line}\n"))
            .collect();
        let fallback = witness_from_text(&apic_only, serial);
        assert_eq!(fallback.inits_after_park, Some(2));
        assert!(!fallback.ordered_by_serial_trace);
    }
}
