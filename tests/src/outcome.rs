//! The result of one QEMU run.

use std::fmt;
use std::time::Duration;

use crate::witness::InitIpiWitness;
use crate::{
    debug_exit_status, ERROR_MARKER, EXIT_FAIL, EXIT_PASS, FAIL_MARKER, PASS_MARKER,
    STOPPED_MARKER, SUMMARY_MARKER,
};

/// How QEMU ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatusKind {
    /// The guest wrote [`EXIT_PASS`] to the isa-debug-exit port (QEMU status 33).
    Pass,
    /// The guest wrote [`EXIT_FAIL`] to the isa-debug-exit port (QEMU status 35).
    Fail,
    /// Any other QEMU exit status. 0: the guest powered off or reset (with
    /// `-no-reboot` a reset, a triple fault included, ends QEMU with 0); 1: QEMU
    /// itself failed (see its stderr); odd values from 3 up: the guest wrote
    /// `status >> 1` to the isa-debug-exit port.
    Other(i32),
    /// The run's timeout passed; QEMU was killed.
    TimedOut,
    /// The line callback asked to stop; QEMU was killed.
    Stopped,
    /// QEMU was killed by this signal from outside the harness.
    Signal(i32),
    /// QEMU could not be started at all.
    NotStarted,
}

impl ExitStatusKind {
    /// Classifies a QEMU exit status.
    pub fn from_code(code: i32) -> ExitStatusKind {
        if code == debug_exit_status(EXIT_PASS) {
            ExitStatusKind::Pass
        } else if code == debug_exit_status(EXIT_FAIL) {
            ExitStatusKind::Fail
        } else {
            ExitStatusKind::Other(code)
        }
    }

    /// A short machine-readable name: `pass`, `fail`, `reset-or-poweroff`,
    /// `qemu-error`, `debug-exit-0xNN`, `exit-N`, `timeout`, `stopped`, `signal-N`,
    /// `not-started`.
    pub fn name(&self) -> String {
        match *self {
            ExitStatusKind::Pass => "pass".to_string(),
            ExitStatusKind::Fail => "fail".to_string(),
            ExitStatusKind::Other(0) => "reset-or-poweroff".to_string(),
            ExitStatusKind::Other(1) => "qemu-error".to_string(),
            ExitStatusKind::Other(code) if code > 1 && code & 1 == 1 && code < 512 => {
                format!("debug-exit-{:#04x}", code >> 1)
            }
            ExitStatusKind::Other(code) => format!("exit-{code}"),
            ExitStatusKind::TimedOut => "timeout".to_string(),
            ExitStatusKind::Stopped => "stopped".to_string(),
            ExitStatusKind::Signal(signal) => format!("signal-{signal}"),
            ExitStatusKind::NotStarted => "not-started".to_string(),
        }
    }
}

impl fmt::Display for ExitStatusKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatusKind::Pass => write!(f, "guest reported pass (debug exit {EXIT_PASS:#04x})"),
            ExitStatusKind::Fail => write!(f, "guest reported FAIL (debug exit {EXIT_FAIL:#04x})"),
            ExitStatusKind::Other(0) => write!(
                f,
                "reset or power-off (QEMU exit 0: the guest shut down, reset or triple-faulted)"
            ),
            ExitStatusKind::Other(1) => write!(f, "QEMU error (exit 1; see its stderr)"),
            ExitStatusKind::Other(code) if code > 1 && code & 1 == 1 && code < 512 => write!(
                f,
                "guest wrote {:#04x} to the debug exit port (QEMU exit {code})",
                code >> 1
            ),
            ExitStatusKind::Other(code) => write!(f, "QEMU exit status {code}"),
            ExitStatusKind::TimedOut => write!(f, "timed out (QEMU killed)"),
            ExitStatusKind::Stopped => write!(f, "stopped by the test (QEMU killed)"),
            ExitStatusKind::Signal(signal) => write!(f, "QEMU killed by signal {signal}"),
            ExitStatusKind::NotStarted => write!(f, "QEMU could not be started"),
        }
    }
}

/// Everything one QEMU run produced.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// How QEMU ended.
    pub status: ExitStatusKind,
    /// The guest's serial output, one line per `\n` (a `\r` before it removed).
    pub serial: String,
    /// What QEMU printed on its own stderr (errors, warnings).
    pub qemu_stderr: String,
    /// Wall time from starting QEMU to its end.
    pub duration: Duration,
    /// The INIT IPI witness, when the run traced APIC register writes.
    pub init_ipis: Option<InitIpiWitness>,
    /// The JSON text of the last `parkboot: summary:` line.
    pub summary: Option<String>,
    /// The QEMU command line, for error messages.
    pub command: Vec<String>,
    /// Why the harness itself failed (QEMU not started, trace unreadable, ...).
    pub harness_error: Option<String>,
}

impl Outcome {
    /// True when QEMU exited with PASS **and** the serial log has the pass line.
    pub fn passed(&self) -> bool {
        self.status == ExitStatusKind::Pass && self.saw_pass_marker()
    }

    /// Whether a `parkboot: result: pass` line was printed.
    pub fn saw_pass_marker(&self) -> bool {
        self.find_line(PASS_MARKER).is_some()
    }

    /// The reason of the first `parkboot: result: FAIL: <why>` line.
    pub fn fail_reason(&self) -> Option<&str> {
        self.text_after(FAIL_MARKER)
    }

    /// The reason of the first `parkboot: stopped: <why>` line.
    pub fn stopped_reason(&self) -> Option<&str> {
        self.text_after(STOPPED_MARKER)
    }

    /// The first error the guest logged (the text after `ERROR: ` on the first line
    /// that has it): the named cause of a failed run, e.g. `entry 'linux' (iteration
    /// 1/5): truncated bzImage: ...`.
    pub fn first_error(&self) -> Option<&str> {
        self.text_after(ERROR_MARKER)
    }

    /// The serial lines.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.serial.lines()
    }

    /// The first serial line that contains `needle`.
    pub fn find_line(&self, needle: &str) -> Option<&str> {
        self.lines().find(|line| line.contains(needle))
    }

    /// How many serial lines contain `needle`.
    pub fn count_lines(&self, needle: &str) -> usize {
        self.lines().filter(|line| line.contains(needle)).count()
    }

    /// The text after `marker` on the first line that contains it.
    pub fn text_after(&self, marker: &str) -> Option<&str> {
        let line = self.find_line(marker)?;
        Some(line[line.find(marker)? + marker.len()..].trim_end())
    }

    /// The last `count` serial lines.
    pub fn last_lines(&self, count: usize) -> Vec<&str> {
        let lines: Vec<&str> = self.lines().collect();
        lines[lines.len().saturating_sub(count)..].to_vec()
    }

    /// A one-line verdict, e.g. `pass in 0.84 s` or
    /// `FAIL in 1.20 s: guest reported FAIL (...): parked 2 of 3`.
    pub fn verdict(&self) -> String {
        let seconds = self.duration.as_secs_f64();
        if self.passed() {
            return format!("pass in {seconds:.2} s");
        }
        let mut text = format!("FAIL in {seconds:.2} s: {}", self.status);
        if self.status == ExitStatusKind::Pass {
            text.push_str(&format!(", but no '{PASS_MARKER}' line"));
        }
        if self.status == ExitStatusKind::Other(1) {
            if let Some(error) = self
                .qemu_stderr
                .lines()
                .rfind(|line| !line.trim().is_empty())
            {
                text.push_str(&format!(": {}", error.trim()));
            }
        }
        if let Some(reason) = self.fail_reason() {
            text.push_str(&format!("; guest says: {reason}"));
        }
        if let Some(reason) = self.stopped_reason() {
            text.push_str(&format!("; parkboot stopped: {reason}"));
        }
        if let Some(error) = &self.harness_error {
            text.push_str(&format!("; harness: {error}"));
        }
        text
    }

    /// A report for a failed run: verdict, command, QEMU's stderr and the last 40
    /// serial lines.
    pub fn report(&self) -> String {
        let mut text = format!("parkboot run: {}\n", self.verdict());
        text.push_str(&format!("command: {}\n", self.command.join(" ")));
        let stderr = self.qemu_stderr.trim_end();
        if !stderr.is_empty() {
            text.push_str(&format!("QEMU stderr:\n{stderr}\n"));
        }
        let lines = self.last_lines(40);
        if lines.is_empty() {
            text.push_str("serial: (nothing printed)\n");
        } else {
            text.push_str(&format!("last {} serial lines:\n", lines.len()));
            for line in lines {
                text.push_str("  | ");
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }

    /// Panics with [`Outcome::report`] unless the run passed.
    #[track_caller]
    /// The value (JSON text) of `key` in the last summary line; panics, with the run's
    /// report, when there is no summary or no such member.
    pub fn summary_field(&self, key: &str) -> String {
        let summary = self
            .summary
            .as_deref()
            .unwrap_or_else(|| panic!("no summary line\n{}", self.report()));
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(summary)
            .unwrap_or_else(|e| panic!("the summary is not JSON ({e}): {summary}"))
            .get(key)
            .map(serde_json::Value::to_string)
            .unwrap_or_else(|| panic!("the summary has no {key}: {summary}"))
    }

    pub fn assert_pass(&self) {
        if !self.passed() {
            panic!("{}", self.report());
        }
    }
}

/// The JSON text after the last summary marker in `serial`.
pub(crate) fn summary_from_serial(serial: &str) -> Option<String> {
    serial
        .lines()
        .filter_map(|line| {
            let at = line.find(SUMMARY_MARKER)?;
            Some(line[at + SUMMARY_MARKER.len()..].trim().to_string())
        })
        .next_back()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: ExitStatusKind, serial: &str) -> Outcome {
        Outcome {
            status,
            serial: serial.to_string(),
            qemu_stderr: String::new(),
            duration: Duration::from_millis(1500),
            init_ipis: None,
            summary: summary_from_serial(serial),
            command: vec!["qemu-system-x86_64".to_string()],
            harness_error: None,
        }
    }

    #[test]
    fn classifies_exit_codes() {
        assert_eq!(ExitStatusKind::from_code(33), ExitStatusKind::Pass);
        assert_eq!(ExitStatusKind::from_code(35), ExitStatusKind::Fail);
        assert_eq!(ExitStatusKind::from_code(0), ExitStatusKind::Other(0));
        assert_eq!(ExitStatusKind::Other(0).name(), "reset-or-poweroff");
        assert_eq!(ExitStatusKind::Other(1).name(), "qemu-error");
        assert_eq!(ExitStatusKind::Other(37).name(), "debug-exit-0x12");
        assert_eq!(ExitStatusKind::Other(2).name(), "exit-2");
        assert!(ExitStatusKind::Other(0)
            .to_string()
            .contains("reset or power-off"));
    }

    #[test]
    fn pass_needs_exit_and_marker() {
        let serial = "[0.1] parkboot: hello\r\n[0.2] parkboot: summary: {\"cpus\":4}\n\
                      [0.3] parkboot: result: pass\n";
        let run = outcome(ExitStatusKind::Pass, &serial.replace("\r\n", "\n"));
        assert!(run.passed());
        run.assert_pass();
        assert_eq!(run.summary.as_deref(), Some("{\"cpus\":4}"));
        assert_eq!(run.count_lines("parkboot:"), 3);
        assert_eq!(run.find_line("hello"), Some("[0.1] parkboot: hello"));

        let no_marker = outcome(ExitStatusKind::Pass, "[0.1] parkboot: hello\n");
        assert!(!no_marker.passed());
        assert!(no_marker
            .verdict()
            .contains("no 'parkboot: result: pass' line"));

        let marker_only = outcome(ExitStatusKind::Other(0), serial);
        assert!(!marker_only.passed());
    }

    #[test]
    fn failure_report_has_reason_and_tail() {
        let mut serial = String::new();
        for index in 0..50 {
            serial.push_str(&format!("line {index}\n"));
        }
        serial.push_str("parkboot: result: FAIL: parked 2 of 3\n");
        let run = outcome(ExitStatusKind::Fail, &serial);
        assert_eq!(run.fail_reason(), Some("parked 2 of 3"));
        let report = run.report();
        assert!(report.contains("guest says: parked 2 of 3"), "{report}");
        assert!(report.contains("last 40 serial lines"), "{report}");
        assert!(report.contains("  | line 49"), "{report}");
        assert!(!report.contains("  | line 10\n"), "{report}");
        let panic = std::panic::catch_unwind(|| run.assert_pass()).unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(message.contains("parked 2 of 3"));
    }

    #[test]
    fn stopped_reason_is_reported() {
        let run = outcome(
            ExitStatusKind::Other(0),
            "parkboot: stopped: no boot entry\n",
        );
        assert_eq!(run.stopped_reason(), Some("no boot entry"));
        assert!(run.verdict().contains("parkboot stopped: no boot entry"));
    }
}
