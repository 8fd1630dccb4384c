//! Starting QEMU, reading the guest's serial console and ending the run.

use std::ffi::OsString;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::outcome::{summary_from_serial, ExitStatusKind, Outcome};
use crate::witness::{park_vector_from_serial, witness_from_trace};
use crate::{CONFIG_FW_CFG_NAME, DEBUG_EXIT_PORT};

/// QEMU binary, unless `PARKBOOT_QEMU` names another.
pub const DEFAULT_QEMU: &str = "qemu-system-x86_64";
/// Accelerator, unless [`Boot::accel`] or `PARKBOOT_ACCEL` says otherwise.
/// Single-threaded TCG round-robins the vCPUs on one host thread: with more vCPUs
/// than host cores, a parked vCPU spinning on PAUSE hands the thread on at once
/// instead of holding a host core for a whole time slice (~4 us per mailbox wakeup
/// instead of ~16 ms on a two-core host).
pub const DEFAULT_ACCEL: &str = "tcg,thread=single";
/// Timeout of a run unless [`Boot::timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The HMP prompt that ends every monitor answer.
const MONITOR_PROMPT: &[u8] = b"(qemu) ";

/// What QEMU starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// An ELF image passed with `-kernel`, after QEMU's default firmware (SeaBIOS)
    /// (parkboot has a PVH note; QEMU enters it there).
    Kernel(PathBuf),
    /// A firmware image passed with `-bios` instead of SeaBIOS, e.g. a coreboot ROM
    /// with parkboot as its payload; no `-kernel`.
    Bios(PathBuf),
}

/// One QEMU run of a parkboot image (or a test kernel), built up with the builder
/// methods and started with [`Boot::run`] or [`Boot::run_with`].
///
/// Every run uses `-display none -serial stdio` (`-serial none` with [`Boot::serial`]),
/// `-no-reboot` and an isa-debug-exit device
/// at port 0xf4; the guest's COM1 is QEMU's stdin and stdout.
#[derive(Clone, Debug)]
pub struct Boot {
    /// What QEMU starts.
    pub start: Start,
    /// `-initrd`: one file, or a comma-separated list of modules.
    pub initrd: Option<String>,
    /// `-append`: the command line handed to the image.
    pub append: Option<String>,
    /// `-smp`: number of CPUs.
    pub smp: u32,
    /// `-m`: memory in MiB.
    pub memory_mib: u32,
    /// `-machine`.
    pub machine: String,
    /// `-accel`; `None` means `PARKBOOT_ACCEL` if set, else [`DEFAULT_ACCEL`].
    pub accel: Option<String>,
    /// `-cpu`; `None` leaves QEMU's default model.
    pub cpu: Option<String>,
    /// `-fw_cfg name=NAME,file=PATH` entries.
    pub fw_cfg_files: Vec<(String, PathBuf)>,
    /// `-fw_cfg name=NAME,string=TEXT` entries.
    pub fw_cfg_strings: Vec<(String, String)>,
    /// Trace local APIC register writes (and the serial port's writes, which place
    /// them relative to the console text) and build the
    /// [`InitIpiWitness`](crate::InitIpiWitness).
    pub trace_init_ipis: bool,
    /// Give the run a human monitor on a unix socket, for [`Control::monitor`].
    pub monitor: bool,
    /// Give the guest a COM1 (QEMU's stdin and stdout); `false` means `-serial none`:
    /// no serial port at all, and no serial lines for the run to read.
    pub serial: bool,
    /// Wall-time limit of the run; QEMU is killed when it passes.
    pub timeout: Duration,
    /// Further QEMU arguments, appended last.
    pub extra_args: Vec<String>,
    /// Echo serial lines (and QEMU's stderr) live to stderr. Defaults to on when
    /// `PARKBOOT_VERBOSE=1`.
    pub echo: bool,
}

impl Boot {
    /// A run of `image` (`-kernel`) with the defaults: 1 CPU, 512 MiB, q35, TCG, 60 s.
    pub fn new(image: impl Into<PathBuf>) -> Boot {
        Boot::starting(Start::Kernel(image.into()))
    }

    /// A run of the firmware image `rom` (`-bios`, no SeaBIOS, no `-kernel`) with the
    /// same defaults.
    pub fn rom(rom: impl Into<PathBuf>) -> Boot {
        Boot::starting(Start::Bios(rom.into()))
    }

    fn starting(start: Start) -> Boot {
        Boot {
            start,
            initrd: None,
            append: None,
            smp: 1,
            memory_mib: 512,
            machine: "q35".to_string(),
            accel: None,
            cpu: None,
            fw_cfg_files: Vec::new(),
            fw_cfg_strings: Vec::new(),
            trace_init_ipis: false,
            monitor: false,
            serial: true,
            timeout: DEFAULT_TIMEOUT,
            extra_args: Vec::new(),
            echo: std::env::var("PARKBOOT_VERBOSE").is_ok_and(|value| value == "1"),
        }
    }

    /// Sets `-initrd` to one file.
    pub fn initrd(mut self, path: impl AsRef<Path>) -> Boot {
        self.initrd = Some(path.as_ref().display().to_string());
        self
    }

    /// Appends a module to the `-initrd` list (QEMU separates modules with commas;
    /// a module may carry its own command line after a space).
    pub fn module(mut self, module: impl AsRef<str>) -> Boot {
        self.initrd = Some(match self.initrd.take() {
            Some(list) => format!("{list},{}", module.as_ref()),
            None => module.as_ref().to_string(),
        });
        self
    }

    /// Sets `-append`.
    pub fn append(mut self, command_line: impl Into<String>) -> Boot {
        self.append = Some(command_line.into());
        self
    }

    /// Sets the number of CPUs.
    pub fn smp(mut self, cpus: u32) -> Boot {
        self.smp = cpus;
        self
    }

    /// Sets the memory size in MiB.
    pub fn memory_mib(mut self, mib: u32) -> Boot {
        self.memory_mib = mib;
        self
    }

    /// Sets the machine type.
    pub fn machine(mut self, machine: impl Into<String>) -> Boot {
        self.machine = machine.into();
        self
    }

    /// Sets the accelerator (`tcg`, `tcg,thread=single`, `kvm`), overriding
    /// `PARKBOOT_ACCEL`.
    pub fn accel(mut self, accel: impl Into<String>) -> Boot {
        self.accel = Some(accel.into());
        self
    }

    /// Sets the CPU model (`-cpu max` has x2APIC under TCG).
    pub fn cpu(mut self, model: impl Into<String>) -> Boot {
        self.cpu = Some(model.into());
        self
    }

    /// Adds a fw_cfg file (`name` should start with `opt/`).
    pub fn fw_cfg_file(mut self, name: impl Into<String>, path: impl Into<PathBuf>) -> Boot {
        self.fw_cfg_files.push((name.into(), path.into()));
        self
    }

    /// Adds a fw_cfg string (`name` should start with `opt/`).
    pub fn fw_cfg_string(mut self, name: impl Into<String>, text: impl Into<String>) -> Boot {
        self.fw_cfg_strings.push((name.into(), text.into()));
        self
    }

    /// Passes parkboot's configuration file as fw_cfg `opt/parkboot/config`.
    pub fn config_file(self, path: impl Into<PathBuf>) -> Boot {
        self.fw_cfg_file(CONFIG_FW_CFG_NAME, path)
    }

    /// Passes parkboot's configuration text as fw_cfg `opt/parkboot/config`.
    pub fn config_text(self, text: impl Into<String>) -> Boot {
        self.fw_cfg_string(CONFIG_FW_CFG_NAME, text)
    }

    /// Traces local APIC register writes to build the INIT IPI witness.
    pub fn trace_init_ipis(mut self, on: bool) -> Boot {
        self.trace_init_ipis = on;
        self
    }

    /// Gives the run a human monitor for [`Control::monitor`].
    pub fn monitor(mut self, on: bool) -> Boot {
        self.monitor = on;
        self
    }

    /// Gives the guest a serial port (the default) or none at all (`-serial none`).
    pub fn serial(mut self, on: bool) -> Boot {
        self.serial = on;
        self
    }

    /// Sets the wall-time limit.
    pub fn timeout(mut self, timeout: Duration) -> Boot {
        self.timeout = timeout;
        self
    }

    /// Appends one QEMU argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Boot {
        self.extra_args.push(arg.into());
        self
    }

    /// Appends QEMU arguments.
    pub fn args<I, S>(mut self, args: I) -> Boot
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.extra_args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Echoes serial lines live to stderr (or not), whatever `PARKBOOT_VERBOSE` says.
    pub fn echo(mut self, on: bool) -> Boot {
        self.echo = on;
        self
    }

    /// The accelerator this run uses.
    pub fn effective_accel(&self) -> String {
        if let Some(accel) = &self.accel {
            return accel.clone();
        }
        match std::env::var("PARKBOOT_ACCEL") {
            Ok(accel) if !accel.is_empty() => accel,
            _ => DEFAULT_ACCEL.to_string(),
        }
    }

    /// The QEMU program (`PARKBOOT_QEMU` or `qemu-system-x86_64`).
    pub fn qemu_program() -> OsString {
        match std::env::var_os("PARKBOOT_QEMU") {
            Some(program) if !program.is_empty() => program,
            _ => OsString::from(DEFAULT_QEMU),
        }
    }

    /// The QEMU arguments, with the trace file and monitor socket at these paths.
    pub fn qemu_args(
        &self,
        trace_file: Option<&Path>,
        monitor_socket: Option<&Path>,
    ) -> Vec<String> {
        let mut args: Vec<String> = Vec::new();
        let mut push = |items: &[&str]| args.extend(items.iter().map(|item| item.to_string()));
        push(&["-machine", &self.machine]);
        push(&["-accel", &self.effective_accel()]);
        if let Some(cpu) = &self.cpu {
            push(&["-cpu", cpu]);
        }
        push(&["-smp", &self.smp.to_string()]);
        push(&["-m", &format!("{}M", self.memory_mib)]);
        push(&[
            "-display",
            "none",
            "-serial",
            if self.serial { "stdio" } else { "none" },
        ]);
        match monitor_socket {
            Some(socket) => push(&[
                "-monitor",
                &format!(
                    "unix:{},server=on,wait=off",
                    escape_option(&socket.display().to_string())
                ),
            ]),
            None => push(&["-monitor", "none"]),
        }
        push(&["-no-reboot"]);
        push(&[
            "-device",
            &format!("isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=0x04"),
        ]);
        match &self.start {
            Start::Kernel(image) => push(&["-kernel", &image.display().to_string()]),
            Start::Bios(rom) => push(&["-bios", &rom.display().to_string()]),
        }
        if let Some(initrd) = &self.initrd {
            push(&["-initrd", initrd]);
        }
        if let Some(append) = &self.append {
            push(&["-append", append]);
        }
        for (name, path) in &self.fw_cfg_files {
            push(&[
                "-fw_cfg",
                &format!(
                    "name={},file={}",
                    escape_option(name),
                    escape_option(&path.display().to_string())
                ),
            ]);
        }
        for (name, text) in &self.fw_cfg_strings {
            push(&[
                "-fw_cfg",
                &format!(
                    "name={},string={}",
                    escape_option(name),
                    escape_option(text)
                ),
            ]);
        }
        if let Some(trace) = trace_file {
            for event in crate::witness::TRACE_EVENTS {
                push(&["-trace", event]);
            }
            push(&["-D", &trace.display().to_string()]);
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// Boots and waits for the end; see [`Boot::run_with`].
    pub fn run(&self) -> Outcome {
        self.run_with(|_, _| {})
    }

    /// Boots, calls `on_line` for every serial line as it arrives, and waits for QEMU
    /// to exit, for the timeout, or for [`Control::stop`]. A line is what the guest
    /// printed up to `\n`, without the `\n` and a `\r` before it.
    pub fn run_with<F>(&self, mut on_line: F) -> Outcome
    where
        F: FnMut(&str, &mut Control),
    {
        let program = Boot::qemu_program();
        let mut outcome = Outcome {
            status: ExitStatusKind::NotStarted,
            serial: String::new(),
            qemu_stderr: String::new(),
            duration: Duration::ZERO,
            init_ipis: None,
            summary: None,
            command: Vec::new(),
            harness_error: None,
        };
        let run_dir = match RunDir::create() {
            Ok(dir) => dir,
            Err(error) => {
                outcome.harness_error =
                    Some(format!("cannot create a temporary directory: {error}"));
                return outcome;
            }
        };
        let trace_file = self
            .trace_init_ipis
            .then(|| run_dir.path.join("apic.trace"));
        let monitor_socket = self.monitor.then(|| run_dir.path.join("monitor.sock"));
        let args = self.qemu_args(trace_file.as_deref(), monitor_socket.as_deref());
        outcome.command = std::iter::once(program.to_string_lossy().into_owned())
            .chain(args.iter().cloned())
            .collect();
        if self.echo {
            eprintln!("parkboot-tests: {}", outcome.command.join(" "));
        }

        let start = Instant::now();
        let deadline = start + self.timeout;
        let mut child = match Command::new(&program)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => QemuProcess(child),
            Err(error) => {
                outcome.harness_error = Some(format!(
                    "cannot start {}: {error} (is QEMU 10 installed? scripts/test installs it)",
                    program.to_string_lossy()
                ));
                return outcome;
            }
        };

        let (line_sender, lines) = mpsc::channel::<String>();
        let stdout = child.0.stdout.take().expect("stdout is piped");
        let stdout_reader = thread::spawn(move || {
            read_lines(stdout, |line| {
                // The receiver is gone only when the run is over.
                let _ = line_sender.send(line);
            })
        });
        let stderr = child.0.stderr.take().expect("stderr is piped");
        let echo = self.echo;
        let stderr_reader = thread::spawn(move || {
            let mut collected = String::new();
            read_lines(stderr, |line| {
                if echo {
                    eprintln!("qemu: {line}");
                }
                collected.push_str(&line);
                collected.push('\n');
            });
            collected
        });

        let mut control = Control {
            pid: child.0.id(),
            stdin: child.0.stdin.take(),
            monitor_socket,
            monitor: None,
            stop_requested: false,
            deadline,
        };
        let keep = |line: &str, serial: &mut String| {
            if echo {
                eprintln!("{line}");
            }
            serial.push_str(line);
            serial.push('\n');
        };
        let ending = loop {
            match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    keep(&line, &mut outcome.serial);
                    on_line(&line, &mut control);
                    if control.stop_requested {
                        break Ending::Stopped;
                    }
                }
                Err(RecvTimeoutError::Timeout) => break Ending::TimedOut,
                Err(RecvTimeoutError::Disconnected) => break Ending::OutputClosed,
            }
        };
        drop(control);

        let status = match ending {
            Ending::OutputClosed => child.0.wait().map(status_kind),
            Ending::TimedOut => end_child(&mut child.0, ExitStatusKind::TimedOut),
            Ending::Stopped => end_child(&mut child.0, ExitStatusKind::Stopped),
        };
        outcome.duration = start.elapsed();
        match status {
            Ok(status) => outcome.status = status,
            Err(error) => {
                outcome.status = ExitStatusKind::Signal(0);
                outcome.harness_error = Some(format!("waiting for QEMU failed: {error}"));
            }
        }
        // QEMU has exited, so both readers are at the end of their pipes.
        let _ = stdout_reader.join();
        for line in lines.try_iter() {
            keep(&line, &mut outcome.serial);
        }
        outcome.qemu_stderr = stderr_reader.join().unwrap_or_default();
        outcome.summary = summary_from_serial(&outcome.serial);

        if let Some(trace_file) = trace_file {
            let park_vector = park_vector_from_serial(&outcome.serial);
            match fs::File::open(&trace_file)
                .and_then(|file| witness_from_trace(BufReader::new(file), park_vector))
            {
                Ok(witness) => outcome.init_ipis = Some(witness),
                Err(error) => {
                    if outcome.status != ExitStatusKind::Other(1) {
                        outcome.harness_error = Some(format!(
                            "cannot read the APIC trace {}: {error}",
                            trace_file.display()
                        ));
                    }
                }
            }
        }
        outcome
    }
}

/// The QEMU child process; killed if the run is abandoned (a panicking line
/// callback), so that no QEMU outlives its test.
struct QemuProcess(Child);

impl Drop for QemuProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

enum Ending {
    OutputClosed,
    TimedOut,
    Stopped,
}

/// Kills QEMU unless it has already exited; `killed` is the status to report if the
/// harness killed it.
fn end_child(child: &mut Child, killed: ExitStatusKind) -> io::Result<ExitStatusKind> {
    if let Some(status) = child.try_wait()? {
        return Ok(status_kind(status));
    }
    child.kill()?;
    child.wait()?;
    Ok(killed)
}

fn status_kind(status: ExitStatus) -> ExitStatusKind {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitStatusKind::from_code(code),
        (None, Some(signal)) => ExitStatusKind::Signal(signal),
        (None, None) => ExitStatusKind::Signal(0),
    }
}

/// Reads `source` to its end, handing over each line (lossy UTF-8, without the line
/// ending); a last line without `\n` is handed over too.
fn read_lines(source: impl Read, mut each: impl FnMut(String)) {
    let mut reader = BufReader::new(source);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        match reader.read_until(b'\n', &mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                while matches!(buffer.last(), Some(b'\n' | b'\r')) {
                    buffer.pop();
                }
                each(String::from_utf8_lossy(&buffer).into_owned());
            }
        }
    }
}

/// QEMU's option syntax separates options with commas; a literal comma is doubled.
fn escape_option(text: &str) -> String {
    text.replace(',', ",,")
}

/// What the line callback can do while the guest runs.
pub struct Control {
    pid: u32,
    stdin: Option<ChildStdin>,
    monitor_socket: Option<PathBuf>,
    monitor: Option<Monitor>,
    stop_requested: bool,
    deadline: Instant,
}

impl Control {
    /// Writes bytes to the guest's COM1 input.
    pub fn send_serial(&mut self, bytes: &[u8]) -> io::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "QEMU's stdin is closed"))?;
        stdin.write_all(bytes)?;
        stdin.flush()
    }

    /// Sends a human-monitor command (e.g. `nmi`, `info status`) and waits for the
    /// monitor's next prompt; returns the command's output. Needs [`Boot::monitor`].
    pub fn monitor(&mut self, command: &str) -> io::Result<String> {
        let remaining = self
            .deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        if self.monitor.is_none() {
            let path = self.monitor_socket.as_ref().ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotConnected,
                    "this run has no monitor: use Boot::monitor(true)",
                )
            })?;
            let stream = UnixStream::connect(path)?;
            stream.set_read_timeout(Some(remaining))?;
            let mut monitor = Monitor {
                stream,
                buffer: Vec::new(),
            };
            monitor.read_to_prompt()?;
            self.monitor = Some(monitor);
        }
        let monitor = self.monitor.as_mut().expect("connected above");
        monitor.stream.set_read_timeout(Some(remaining))?;
        monitor.stream.write_all(command.as_bytes())?;
        monitor.stream.write_all(b"\n")?;
        let answer = monitor.read_to_prompt()?;
        Ok(monitor_output(&answer, command))
    }

    /// Ends the run: QEMU is killed after the callback returns, and the outcome's
    /// status is [`ExitStatusKind::Stopped`] unless QEMU had already exited.
    pub fn stop(&mut self) {
        self.stop_requested = true;
    }

    /// Whether [`Control::stop`] was called.
    pub fn is_stopping(&self) -> bool {
        self.stop_requested
    }

    /// Time left before the run's timeout.
    pub fn time_left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Host CPU time QEMU has used so far, all its threads together (the first field
    /// of each `/proc/PID/task/TID/schedstat`, in nanoseconds). Unlike the host clock
    /// it does not grow while QEMU waits for a host core, so it measures emulation
    /// work on a busy host too. `None` where /proc does not say.
    pub fn qemu_cpu_time(&self) -> Option<Duration> {
        cpu_time_of(self.pid)
    }
}

/// The CPU time of every thread of process `pid` so far (see [`Control::qemu_cpu_time`]).
pub fn cpu_time_of(pid: u32) -> Option<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        // A thread may end between the listing and the read: it is left out.
        if let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) {
            total += schedstat_cpu_ns(&text)?;
        }
    }
    Some(Duration::from_nanos(total))
}

/// The first field of a schedstat line: nanoseconds spent on a CPU.
fn schedstat_cpu_ns(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

struct Monitor {
    stream: UnixStream,
    buffer: Vec<u8>,
}

impl Monitor {
    /// Reads up to and including the next prompt; returns the text before it.
    fn read_to_prompt(&mut self) -> io::Result<String> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(at) = find(&self.buffer, MONITOR_PROMPT) {
                let text = String::from_utf8_lossy(&self.buffer[..at]).into_owned();
                self.buffer.drain(..at + MONITOR_PROMPT.len());
                return Ok(text);
            }
            let count = self.stream.read(&mut chunk)?;
            if count == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the QEMU monitor closed the connection",
                ));
            }
            self.buffer.extend_from_slice(&chunk[..count]);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The monitor's answer without terminal escape sequences, carriage returns and the
/// echo of the command.
fn monitor_output(answer: &str, command: &str) -> String {
    let mut plain = String::with_capacity(answer.len());
    let mut chars = answer.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    // Parameters and intermediates up to the final byte (@ to ~).
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
            }
            '\r' => {}
            c => plain.push(c),
        }
    }
    let mut lines: Vec<&str> = plain.lines().collect();
    if lines
        .first()
        .is_some_and(|first| first.trim_end().ends_with(command.trim()))
    {
        lines.remove(0);
    }
    lines.join("\n").trim_end().to_string()
}

/// A private temporary directory for one run's trace file and monitor socket,
/// removed when the run ends.
struct RunDir {
    path: PathBuf,
}

impl RunDir {
    fn create() -> io::Result<RunDir> {
        static RUNS: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|since| since.subsec_nanos())
            .unwrap_or(0);
        loop {
            let path = std::env::temp_dir().join(format!(
                "parkboot-qemu-{}-{}-{nanos:x}",
                std::process::id(),
                RUNS.fetch_add(1, Ordering::Relaxed)
            ));
            match fs::create_dir(&path) {
                Ok(()) => return Ok(RunDir { path }),
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(error) => return Err(error),
            }
        }
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_gives_the_cpu_nanoseconds() {
        assert_eq!(schedstat_cpu_ns("123456789 2000 17\n"), Some(123_456_789));
        assert_eq!(schedstat_cpu_ns(""), None);
        assert_eq!(schedstat_cpu_ns("x 1 2"), None);
    }

    #[test]
    fn cpu_time_of_this_process_grows_with_work() {
        let before = cpu_time_of(std::process::id()).expect("/proc is readable");
        let mut x = 0u64;
        let spin_until = Instant::now() + Duration::from_millis(50);
        while Instant::now() < spin_until {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let after = cpu_time_of(std::process::id()).expect("/proc is readable");
        assert!(after > before, "{before:?} -> {after:?}");
        assert_eq!(cpu_time_of(u32::MAX), None);
    }

    #[test]
    fn command_line_has_the_fixed_options() {
        let boot = Boot::new("/images/parkboot")
            .smp(4)
            .accel("tcg,thread=single")
            .module("/images/kernel console=ttyS0")
            .module("/images/initrd")
            .append("quiet")
            .config_file("/configs/a,b.toml")
            .fw_cfg_string("opt/parkboot/note", "x,y")
            .arg("-cpu")
            .arg("max");
        let args = boot.qemu_args(
            Some(Path::new("/tmp/run/apic.trace")),
            Some(Path::new("/tmp/run/monitor.sock")),
        );
        let joined = args.join(" ");
        for expected in [
            "-machine q35",
            "-accel tcg,thread=single",
            "-smp 4",
            "-m 512M",
            "-display none -serial stdio",
            "-monitor unix:/tmp/run/monitor.sock,server=on,wait=off",
            "-no-reboot",
            "-device isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-kernel /images/parkboot",
            "-initrd /images/kernel console=ttyS0,/images/initrd",
            "-append quiet",
            "-fw_cfg name=opt/parkboot/config,file=/configs/a,,b.toml",
            "-fw_cfg name=opt/parkboot/note,string=x,,y",
            "-trace apic_register_write -trace serial_write -D /tmp/run/apic.trace",
        ] {
            assert!(
                joined.contains(expected),
                "missing {expected:?} in {joined}"
            );
        }
        assert!(joined.ends_with("-cpu max"));

        let plain = Boot::new("/images/parkboot")
            .accel("tcg")
            .qemu_args(None, None);
        let joined = plain.join(" ");
        assert!(joined.contains("-monitor none"));
        assert!(joined.contains("-smp 1"));
        assert!(!joined.contains("-trace"));
        assert!(!joined.contains("-initrd"));

        let silent = Boot::new("/images/parkboot")
            .serial(false)
            .qemu_args(None, None)
            .join(" ");
        assert!(silent.contains("-display none -serial none"), "{silent}");
        assert!(!joined.contains("-bios"));

        let rom = Boot::rom("/roms/coreboot.rom").qemu_args(None, None);
        let joined = rom.join(" ");
        assert!(joined.contains("-bios /roms/coreboot.rom"), "{joined}");
        assert!(!joined.contains("-kernel"), "{joined}");
    }

    #[test]
    fn monitor_output_drops_echo_and_escapes() {
        let answer = "info status\r\n\u{1b}[K\u{1b}[DVM status: running\r\n";
        assert_eq!(monitor_output(answer, "info status"), "VM status: running");
        assert_eq!(monitor_output("nmi\r\n", "nmi"), "");
    }

    #[test]
    fn splits_lines() {
        let mut lines = Vec::new();
        read_lines(&b"one\r\ntwo\n\nthree"[..], |line| lines.push(line));
        assert_eq!(lines, ["one", "two", "", "three"]);
    }
}
