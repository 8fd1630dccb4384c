//! parkboot's boot configuration: what to check at boot, whether to park the APs, which
//! kernels to boot and how often, and what to do when done.
//!
//! parkboot reads it at boot from the fw_cfg file [`CONFIG_FW_CFG_FILE`], then lets the
//! boot command line (PVH `-append`, coreboot's command line) override the global
//! settings with `parkboot.KEY=VALUE` words, so one image serves many test runs.
//!
//! The format is line-based text (`configs/README.md` is the user documentation):
//!
//! ```text
//! # global settings
//! self_check = on        # on|off
//! park = on              # on|off
//! on_finish = halt       # halt | reset | qemu-exit
//! ap_timeout_ms = 1000
//!
//! [entry test-kernel]
//! kernel = fw_cfg:opt/parkboot/kernel
//! initrd = fw_cfg:opt/parkboot/initrd
//! cmdline = "console=ttyS0"
//! format = auto          # auto | multiboot2 | linux
//! iterations = 10
//! kernel_sha256 = 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//! ```
//!
//! Everything is fixed-capacity (no allocator at boot), and every error names the line
//! and the problem, because a typo in a test configuration should cost one boot, not an
//! afternoon.

use core::fmt;

use heapless::{String, Vec};

use crate::platform::fw_cfg::FW_CFG_MAX_FILE_PATH;
use crate::platform::MAX_CMDLINE;

mod wait;
pub use wait::{park_timer_initial_count, ParkWait, WaitMode};

/// The fw_cfg file parkboot reads its configuration from.
pub const CONFIG_FW_CFG_FILE: &str = "opt/parkboot/config";
/// Prefix of the command line words that override global settings.
pub const CMDLINE_PREFIX: &str = "parkboot.";
/// Most boot entries a configuration may hold.
pub const MAX_ENTRIES: usize = 8;
/// Longest entry name, in bytes.
pub const MAX_ENTRY_NAME: usize = 32;
/// Longest source name (fw_cfg or CBFS file name), in bytes.
pub const MAX_SOURCE_NAME: usize = 64;
/// Longest fw_cfg file name: the directory's name field minus its NUL.
const MAX_FW_CFG_NAME: usize = FW_CFG_MAX_FILE_PATH - 1;
/// Longest quote of offending input an error keeps (short enough that errors stay
/// cheap to return by value).
const MAX_SNIPPET: usize = 40;
/// The Linux command line convention: words after this one belong to init, not to
/// parkboot.
const CMDLINE_END_OF_OPTIONS: &str = "--";

/// An entry's name.
pub type EntryName = String<MAX_ENTRY_NAME>;
/// A file name inside a [`Source`].
pub type SourceName = String<MAX_SOURCE_NAME>;
/// A piece of offending input quoted in an error.
pub type Snippet = String<MAX_SNIPPET>;

/// What parkboot does after the last iteration of the last entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFinish {
    /// Stop the BSP (the APs stay parked).
    Halt,
    /// Reset the machine.
    Reset,
    /// Write the result to QEMU's isa-debug-exit port (0xf4), so scripted runs end
    /// with an exit status.
    QemuExit,
}

impl OnFinish {
    const ALL: [OnFinish; 3] = [OnFinish::Halt, OnFinish::Reset, OnFinish::QemuExit];

    /// The spelling the configuration uses.
    pub fn as_str(self) -> &'static str {
        match self {
            OnFinish::Halt => "halt",
            OnFinish::Reset => "reset",
            OnFinish::QemuExit => "qemu-exit",
        }
    }
}

impl fmt::Display for OnFinish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a kernel image is to be booted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Decide from the image: a multiboot2 header or a Linux setup header.
    Auto,
    /// Boot through the multiboot2 protocol.
    Multiboot2,
    /// Boot through the Linux/x86 boot protocol.
    Linux,
}

impl Format {
    const ALL: [Format; 3] = [Format::Auto, Format::Multiboot2, Format::Linux];

    /// The spelling the configuration uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Multiboot2 => "multiboot2",
            Format::Linux => "linux",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a kernel or initrd comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `fw_cfg:NAME`: an fw_cfg file (`-fw_cfg name=NAME,file=...`).
    FwCfg(SourceName),
    /// `fw_cfg:kernel`: the image QEMU was given with `-kernel`.
    QemuKernel,
    /// `fw_cfg:initrd`: the file QEMU was given with `-initrd`.
    QemuInitrd,
    /// `cbfs:NAME`: a file in coreboot's CBFS.
    Cbfs(SourceName),
    /// `module:N`: PVH boot module N (counting from 0).
    Module(u32),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::FwCfg(name) => write!(f, "fw_cfg:{name}"),
            Source::QemuKernel => f.write_str("fw_cfg:kernel"),
            Source::QemuInitrd => f.write_str("fw_cfg:initrd"),
            Source::Cbfs(name) => write!(f, "cbfs:{name}"),
            Source::Module(index) => write!(f, "module:{index}"),
        }
    }
}

/// A SHA-256 digest an entry pins one of its images to (`kernel_sha256 =`,
/// `initrd_sha256 =`): 64 hexadecimal digits in the configuration, as `sha256sum`
/// prints them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sha256Pin(pub [u8; SHA256_BYTES]);

/// Bytes of a SHA-256 digest.
pub const SHA256_BYTES: usize = 32;
/// Hexadecimal digits of a SHA-256 digest.
pub const SHA256_HEX_DIGITS: usize = 2 * SHA256_BYTES;

impl Sha256Pin {
    /// Reads 64 hexadecimal digits (either case); the error says what is wrong.
    pub fn parse_hex(text: &str) -> Result<Self, DigestProblem> {
        let length = text.chars().count();
        if length != SHA256_HEX_DIGITS {
            return Err(DigestProblem::Length { found: length });
        }
        let mut digest = [0u8; SHA256_BYTES];
        for (position, c) in text.chars().enumerate() {
            let nibble = c
                .to_digit(16)
                .ok_or(DigestProblem::NotHex { position, found: c })?;
            // Cannot fail: 64 characters fill exactly 32 bytes.
            if let Some(byte) = digest.get_mut(position / 2) {
                *byte |= (nibble as u8) << if position % 2 == 0 { 4 } else { 0 };
            }
        }
        Ok(Sha256Pin(digest))
    }
}

impl Sha256Pin {
    /// The SHA-256 of `bytes`, to compare with a pin.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::{Digest, Sha256};
        Sha256Pin(Sha256::digest(bytes).into())
    }
}

impl fmt::Display for Sha256Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// Why a `*_sha256` value is not a SHA-256 digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DigestProblem {
    /// Not 64 characters long.
    Length { found: usize },
    /// The character at `position` (counting from 0) is not a hexadecimal digit.
    NotHex { position: usize, found: char },
}

/// One boot entry: a kernel booted `iterations` times in a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: EntryName,
    pub kernel: Source,
    pub initrd: Option<Source>,
    pub cmdline: String<MAX_CMDLINE>,
    pub format: Format,
    /// How many times to boot this entry in a loop; at least 1.
    pub iterations: u32,
    /// The SHA-256 the kernel image must have as read from its source (before any
    /// gzip inflation); a mismatch refuses the entry.
    pub kernel_sha256: Option<Sha256Pin>,
    /// The same for the initrd.
    pub initrd_sha256: Option<Sha256Pin>,
}

/// The whole configuration.
///
/// It holds up to [`MAX_ENTRIES`] entries of about 1.2 KiB each, so it is best kept in a
/// static rather than on a small boot stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Wake every AP through the mailbox at boot and time it.
    pub self_check: bool,
    /// Park the APs; off is the baseline mode, where the APs are left for the kernel to
    /// start by INIT/SIPI.
    pub park: bool,
    pub on_finish: OnFinish,
    /// How long the BSP waits for an AP to reach the park loop.
    pub ap_timeout_ms: u32,
    /// How many times the self-check wakes each AP through the mailbox.
    pub self_check_rounds: u32,
    /// Wait at boot, with every AP parked, for NMIs from the test harness; go on when a
    /// byte arrives on the console.
    pub nmi_test: bool,
    /// How parked CPUs wait for a wakeup.
    pub park_wait: ParkWait,
    /// The HLT wait's timer period in microseconds: the longest a wakeup waits.
    pub park_timer_us: u32,
    /// Touch an unmapped address (or panic) once the platform is known, to show (and
    /// test) the exception and panic reports: parkboot then stops.
    pub fault_test: FaultTest,
    /// Switch the boot processor's local APIC to x2APIC mode before starting the APs
    /// (it is switched anyway when an APIC ID above 254 needs it).
    pub x2apic: bool,
    pub entries: Vec<Entry, MAX_ENTRIES>,
}

/// What `fault_test` does once the platform is known (parkboot then stops).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultTest {
    /// Nothing (`off`).
    Off,
    /// Read an address no page table maps (`on`): a page fault.
    Unmapped,
    /// The same read while a log line is being written (`while-logging`): the fault
    /// arrives with the console lock held.
    WhileLogging,
    /// Panic while a log line is being written (`panic-while-logging`).
    PanicWhileLogging,
}

impl FaultTest {
    const ALL: [FaultTest; 4] = [
        FaultTest::Off,
        FaultTest::Unmapped,
        FaultTest::WhileLogging,
        FaultTest::PanicWhileLogging,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FaultTest::Off => "off",
            FaultTest::Unmapped => "on",
            FaultTest::WhileLogging => "while-logging",
            FaultTest::PanicWhileLogging => "panic-while-logging",
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        let g = Globals::DEFAULT;
        Config {
            self_check: g.self_check,
            park: g.park,
            on_finish: g.on_finish,
            ap_timeout_ms: g.ap_timeout_ms,
            self_check_rounds: g.self_check_rounds,
            nmi_test: g.nmi_test,
            park_wait: g.park_wait,
            park_timer_us: g.park_timer_us,
            fault_test: g.fault_test,
            x2apic: g.x2apic,
            entries: Vec::new(),
        }
    }
}

impl Config {
    /// The entry called `name`.
    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// Applies the `parkboot.KEY=VALUE` words of a kernel-style command line to the
    /// global settings; other words are someone else's and are ignored, as is
    /// everything after `--`. Values may be double-quoted. Either every override
    /// applies or, on error, none does.
    pub fn apply_cmdline(&mut self, cmdline: &str) -> Result<(), ConfigError> {
        let mut globals = self.globals();
        for word in Words::new(cmdline) {
            if word == CMDLINE_END_OF_OPTIONS {
                break;
            }
            let Some(setting) = word.strip_prefix(CMDLINE_PREFIX) else {
                continue;
            };
            let fail = |kind| ConfigError {
                location: Location::CommandLine,
                kind,
            };
            let (key, value) = setting.split_once('=').ok_or_else(|| {
                fail(ErrorKind::BadCmdlineWord {
                    word: snippet(word),
                })
            })?;
            let key = GlobalKey::lookup(key).ok_or_else(|| {
                fail(ErrorKind::UnknownKey {
                    key: snippet(key),
                    entry: None,
                })
            })?;
            key.apply(&mut globals, strip_quotes(value)).map_err(fail)?;
        }
        self.set_globals(globals);
        Ok(())
    }

    fn globals(&self) -> Globals {
        Globals {
            self_check: self.self_check,
            park: self.park,
            on_finish: self.on_finish,
            ap_timeout_ms: self.ap_timeout_ms,
            self_check_rounds: self.self_check_rounds,
            nmi_test: self.nmi_test,
            park_wait: self.park_wait,
            park_timer_us: self.park_timer_us,
            fault_test: self.fault_test,
            x2apic: self.x2apic,
        }
    }

    fn set_globals(&mut self, g: Globals) {
        self.self_check = g.self_check;
        self.park = g.park;
        self.on_finish = g.on_finish;
        self.ap_timeout_ms = g.ap_timeout_ms;
        self.self_check_rounds = g.self_check_rounds;
        self.nmi_test = g.nmi_test;
        self.park_wait = g.park_wait;
        self.park_timer_us = g.park_timer_us;
        self.fault_test = g.fault_test;
        self.x2apic = g.x2apic;
    }
}

// ---------------------------------------------------------------------------------------
// Errors.

/// Where in the input an error is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A line of the configuration text, counting from 1.
    Line(usize),
    /// The command line given to [`Config::apply_cmdline`].
    CommandLine,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(line) => write!(f, "line {line}"),
            Location::CommandLine => f.write_str("command line"),
        }
    }
}

/// What is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The line's shape is wrong; the text says how.
    Syntax(&'static str),
    /// A `parkboot.` command line word without `=VALUE`.
    BadCmdlineWord { word: Snippet },
    /// A `[...]` header other than `[entry NAME]`.
    UnknownSection { header: Snippet },
    /// `[entry NAME]` with an empty, too long or spaced name.
    BadEntryName { name: Snippet },
    /// Two entries with the same name.
    DuplicateEntry { name: EntryName },
    /// More than [`MAX_ENTRIES`] entries.
    TooManyEntries,
    /// A key parkboot does not know; `entry` is the section it appeared in.
    UnknownKey {
        key: Snippet,
        entry: Option<EntryName>,
    },
    /// A global setting inside an entry section.
    GlobalInEntry { key: &'static str },
    /// An entry setting before the first entry section.
    EntryKeyOutsideEntry { key: &'static str },
    /// The same key twice in one section.
    DuplicateKey {
        key: &'static str,
        first_line: usize,
    },
    /// A value that is not one of the allowed ones.
    InvalidValue {
        key: &'static str,
        expected: &'static str,
        found: Snippet,
    },
    /// A value longer than parkboot can hold.
    ValueTooLong { key: Snippet, max: usize },
    /// An entry without a `kernel` line.
    MissingKernel { entry: EntryName },
    /// A `*_sha256` value that is not 64 hexadecimal digits.
    BadDigest {
        key: &'static str,
        problem: DigestProblem,
    },
    /// `initrd_sha256` in an entry without an `initrd`.
    PinWithoutImage {
        entry: EntryName,
        key: &'static str,
        image: &'static str,
    },
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Syntax(what) => f.write_str(what),
            ErrorKind::BadCmdlineWord { word } => {
                write!(f, "'{word}' is not of the form parkboot.KEY=VALUE")
            }
            ErrorKind::UnknownSection { header } => {
                write!(f, "unknown section '[{header}]': sections are [entry NAME]")
            }
            ErrorKind::BadEntryName { name } => write!(
                f,
                "entry name '{name}' must be 1 to {MAX_ENTRY_NAME} bytes without spaces"
            ),
            ErrorKind::DuplicateEntry { name } => write!(f, "entry '{name}' is defined twice"),
            ErrorKind::TooManyEntries => {
                write!(f, "too many entries: parkboot holds at most {MAX_ENTRIES}")
            }
            ErrorKind::UnknownKey {
                key,
                entry: Some(entry),
            } => write!(f, "unknown key '{key}' in [entry {entry}]"),
            ErrorKind::UnknownKey { key, entry: None } => {
                write!(f, "unknown key '{key}' in the global settings")
            }
            ErrorKind::GlobalInEntry { key } => write!(
                f,
                "'{key}' is a global setting: put it before the first [entry] section"
            ),
            ErrorKind::EntryKeyOutsideEntry { key } => {
                write!(f, "'{key}' belongs in an [entry NAME] section")
            }
            ErrorKind::DuplicateKey { key, first_line } => {
                write!(f, "'{key}' is already set on line {first_line}")
            }
            ErrorKind::InvalidValue {
                key,
                expected,
                found,
            } => write!(f, "{key} must be {expected}, found '{found}'"),
            ErrorKind::ValueTooLong { key, max } => {
                write!(f, "the value of '{key}' is longer than {max} bytes")
            }
            ErrorKind::MissingKernel { entry } => write!(f, "entry '{entry}' has no kernel"),
            ErrorKind::BadDigest {
                key,
                problem: DigestProblem::Length { found },
            } => write!(
                f,
                "{key} must be {SHA256_HEX_DIGITS} hexadecimal digits (a SHA-256 as sha256sum prints it), found {found} characters"
            ),
            ErrorKind::BadDigest {
                key,
                problem: DigestProblem::NotHex { position, found },
            } => write!(
                f,
                "{key} must be {SHA256_HEX_DIGITS} hexadecimal digits (a SHA-256 as sha256sum prints it), found '{}' at position {}",
                found.escape_debug(),
                position + 1
            ),
            ErrorKind::PinWithoutImage {
                entry,
                key,
                image,
            } => write!(
                f,
                "entry '{entry}' pins its {image} with {key} but has no {image} line"
            ),
        }
    }
}

/// A configuration error: where and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub location: Location,
    pub kind: ErrorKind,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.kind)
    }
}

/// `text` cut to fit an error message, marked with "..." when cut.
fn snippet(text: &str) -> Snippet {
    const ELLIPSIS: &str = "...";
    let mut out = Snippet::new();
    if out.push_str(text).is_ok() {
        return out;
    }
    for c in text.chars() {
        if out.len() + c.len_utf8() + ELLIPSIS.len() > MAX_SNIPPET {
            break;
        }
        // Cannot fail: the length was checked above.
        let _ = out.push(c);
    }
    let _ = out.push_str(ELLIPSIS);
    out
}

// ---------------------------------------------------------------------------------------
// Settings.

/// The global settings, apart from the entries, so command line overrides can be
/// staged and applied all at once.
#[derive(Clone, Copy)]
struct Globals {
    self_check: bool,
    park: bool,
    on_finish: OnFinish,
    ap_timeout_ms: u32,
    self_check_rounds: u32,
    nmi_test: bool,
    park_wait: ParkWait,
    park_timer_us: u32,
    fault_test: FaultTest,
    x2apic: bool,
}

impl Globals {
    const DEFAULT: Globals = Globals {
        self_check: true,
        park: true,
        on_finish: OnFinish::Halt,
        ap_timeout_ms: 1000,
        self_check_rounds: 1,
        nmi_test: false,
        park_wait: ParkWait::Auto,
        park_timer_us: DEFAULT_PARK_TIMER_US,
        fault_test: FaultTest::Off,
        x2apic: false,
    };
}

const EXPECTED_SWITCH: &str = "on or off";
const EXPECTED_COUNT: &str = "a whole number from 1 to 4294967295";
const EXPECTED_ON_FINISH: &str = "halt, reset or qemu-exit";
const EXPECTED_PARK_WAIT: &str = "auto, pause, hlt or mwait";
const EXPECTED_FAULT_TEST: &str = "on, off, while-logging or panic-while-logging";
/// The HLT wait's default period. Linux wakes APs one after the other and waits for
/// each acknowledgement, so a bring-up waits about half a period more per AP (about
/// 16 ms for 31 APs at 1 ms); each period also costs every parked CPU one timer
/// interrupt, which under QEMU TCG takes the host from the CPU booting the kernel
/// (at -smp 4, 200 us made the kexec hand-over phase slower than spinning did).
pub const DEFAULT_PARK_TIMER_US: u32 = 1000;
const MAX_PARK_TIMER_US: u32 = 100_000;
const EXPECTED_PARK_TIMER: &str = "a whole number of microseconds from 1 to 100000";
/// The self-check keeps every wake time; this bounds that memory.
const MAX_SELF_CHECK_ROUNDS: u32 = 1000;
const EXPECTED_ROUNDS: &str = "a whole number from 1 to 1000";
const EXPECTED_FORMAT: &str = "auto, multiboot2 or linux";
const EXPECTED_SOURCE: &str = "fw_cfg:NAME, fw_cfg:kernel, fw_cfg:initrd, cbfs:NAME or module:N";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GlobalKey {
    SelfCheck,
    Park,
    OnFinish,
    ApTimeoutMs,
    SelfCheckRounds,
    NmiTest,
    ParkWait,
    ParkTimerUs,
    FaultTest,
    X2Apic,
}

impl GlobalKey {
    const ALL: [GlobalKey; 10] = [
        GlobalKey::SelfCheck,
        GlobalKey::Park,
        GlobalKey::OnFinish,
        GlobalKey::ApTimeoutMs,
        GlobalKey::SelfCheckRounds,
        GlobalKey::NmiTest,
        GlobalKey::ParkWait,
        GlobalKey::ParkTimerUs,
        GlobalKey::FaultTest,
        GlobalKey::X2Apic,
    ];

    fn name(self) -> &'static str {
        match self {
            GlobalKey::SelfCheck => "self_check",
            GlobalKey::Park => "park",
            GlobalKey::OnFinish => "on_finish",
            GlobalKey::ApTimeoutMs => "ap_timeout_ms",
            GlobalKey::SelfCheckRounds => "self_check_rounds",
            GlobalKey::NmiTest => "nmi_test",
            GlobalKey::ParkWait => "park_wait",
            GlobalKey::ParkTimerUs => "park_timer_us",
            GlobalKey::FaultTest => "fault_test",
            GlobalKey::X2Apic => "x2apic",
        }
    }

    fn lookup(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == key)
    }

    fn apply(self, g: &mut Globals, value: &str) -> Result<(), ErrorKind> {
        let key = self.name();
        match self {
            GlobalKey::SelfCheck => g.self_check = parse_switch(key, value)?,
            GlobalKey::Park => g.park = parse_switch(key, value)?,
            GlobalKey::OnFinish => {
                g.on_finish = OnFinish::ALL
                    .into_iter()
                    .find(|o| o.as_str() == value)
                    .ok_or_else(|| invalid(key, EXPECTED_ON_FINISH, value))?;
            }
            GlobalKey::ApTimeoutMs => g.ap_timeout_ms = parse_count(key, value)?,
            GlobalKey::SelfCheckRounds => {
                let rounds = parse_count(key, value)?;
                if rounds > MAX_SELF_CHECK_ROUNDS {
                    return Err(invalid(key, EXPECTED_ROUNDS, value));
                }
                g.self_check_rounds = rounds;
            }
            GlobalKey::NmiTest => g.nmi_test = parse_switch(key, value)?,
            GlobalKey::FaultTest => {
                g.fault_test = FaultTest::ALL
                    .into_iter()
                    .find(|t| t.as_str() == value)
                    .ok_or_else(|| invalid(key, EXPECTED_FAULT_TEST, value))?;
            }
            GlobalKey::X2Apic => g.x2apic = parse_switch(key, value)?,
            GlobalKey::ParkTimerUs => {
                let us = parse_count(key, value)?;
                if us > MAX_PARK_TIMER_US {
                    return Err(invalid(key, EXPECTED_PARK_TIMER, value));
                }
                g.park_timer_us = us;
            }
            GlobalKey::ParkWait => {
                g.park_wait = ParkWait::ALL
                    .into_iter()
                    .find(|w| w.as_str() == value)
                    .ok_or_else(|| invalid(key, EXPECTED_PARK_WAIT, value))?;
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EntryKey {
    Kernel,
    Initrd,
    Cmdline,
    Format,
    Iterations,
    KernelSha256,
    InitrdSha256,
}

impl EntryKey {
    const ALL: [EntryKey; 7] = [
        EntryKey::Kernel,
        EntryKey::Initrd,
        EntryKey::Cmdline,
        EntryKey::Format,
        EntryKey::Iterations,
        EntryKey::KernelSha256,
        EntryKey::InitrdSha256,
    ];

    fn name(self) -> &'static str {
        match self {
            EntryKey::Kernel => "kernel",
            EntryKey::Initrd => "initrd",
            EntryKey::Cmdline => "cmdline",
            EntryKey::Format => "format",
            EntryKey::Iterations => "iterations",
            EntryKey::KernelSha256 => "kernel_sha256",
            EntryKey::InitrdSha256 => "initrd_sha256",
        }
    }

    fn lookup(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == key)
    }
}

fn invalid(key: &'static str, expected: &'static str, found: &str) -> ErrorKind {
    ErrorKind::InvalidValue {
        key,
        expected,
        found: snippet(found),
    }
}

fn parse_switch(key: &'static str, value: &str) -> Result<bool, ErrorKind> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(invalid(key, EXPECTED_SWITCH, value)),
    }
}

fn parse_count(key: &'static str, value: &str) -> Result<u32, ErrorKind> {
    value
        .parse::<u32>()
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| invalid(key, EXPECTED_COUNT, value))
}

fn source_name(key: &'static str, name: &str, max: usize) -> Result<SourceName, ErrorKind> {
    if name.is_empty() {
        return Err(ErrorKind::Syntax("a source needs a name after ':'"));
    }
    if name.len() > max {
        return Err(ErrorKind::ValueTooLong {
            key: snippet(key),
            max,
        });
    }
    SourceName::try_from(name).map_err(|()| ErrorKind::ValueTooLong {
        key: snippet(key),
        max,
    })
}

fn parse_pin(key: &'static str, value: &str) -> Result<Sha256Pin, ErrorKind> {
    Sha256Pin::parse_hex(value).map_err(|problem| ErrorKind::BadDigest { key, problem })
}

fn parse_source(key: &'static str, value: &str) -> Result<Source, ErrorKind> {
    let Some((scheme, name)) = value.split_once(':') else {
        return Err(invalid(key, EXPECTED_SOURCE, value));
    };
    match scheme {
        "fw_cfg" => match name {
            "kernel" => Ok(Source::QemuKernel),
            "initrd" => Ok(Source::QemuInitrd),
            _ => source_name(key, name, MAX_FW_CFG_NAME).map(Source::FwCfg),
        },
        "cbfs" => source_name(key, name, MAX_SOURCE_NAME).map(Source::Cbfs),
        "module" => name
            .parse::<u32>()
            .map(Source::Module)
            .map_err(|_| invalid(key, EXPECTED_SOURCE, value)),
        _ => Err(invalid(key, EXPECTED_SOURCE, value)),
    }
}

// ---------------------------------------------------------------------------------------
// Parsing.

/// An entry while its section is being read.
struct EntryBuilder {
    /// Line of the `[entry NAME]` header.
    line: usize,
    name: EntryName,
    kernel: Option<Source>,
    initrd: Option<Source>,
    cmdline: String<MAX_CMDLINE>,
    format: Format,
    iterations: u32,
    kernel_sha256: Option<Sha256Pin>,
    initrd_sha256: Option<Sha256Pin>,
    /// Line each key was set on, by `EntryKey` order.
    seen: [Option<usize>; EntryKey::ALL.len()],
}

impl EntryBuilder {
    fn new(line: usize, name: EntryName) -> Self {
        EntryBuilder {
            line,
            name,
            kernel: None,
            initrd: None,
            cmdline: String::new(),
            format: Format::Auto,
            iterations: 1,
            kernel_sha256: None,
            initrd_sha256: None,
            seen: [None; EntryKey::ALL.len()],
        }
    }

    fn set(&mut self, key: EntryKey, value: &str) -> Result<(), ErrorKind> {
        let name = key.name();
        match key {
            EntryKey::Kernel => self.kernel = Some(parse_source(name, value)?),
            EntryKey::Initrd => self.initrd = Some(parse_source(name, value)?),
            EntryKey::Cmdline => {
                self.cmdline = String::try_from(value).map_err(|()| ErrorKind::ValueTooLong {
                    key: snippet(name),
                    max: MAX_CMDLINE,
                })?;
            }
            EntryKey::Format => {
                self.format = Format::ALL
                    .into_iter()
                    .find(|f| f.as_str() == value)
                    .ok_or_else(|| invalid(name, EXPECTED_FORMAT, value))?;
            }
            EntryKey::Iterations => self.iterations = parse_count(name, value)?,
            EntryKey::KernelSha256 => self.kernel_sha256 = Some(parse_pin(name, value)?),
            EntryKey::InitrdSha256 => self.initrd_sha256 = Some(parse_pin(name, value)?),
        }
        Ok(())
    }

    fn finish(self) -> Result<Entry, ConfigError> {
        let Some(kernel) = self.kernel else {
            return Err(ConfigError {
                location: Location::Line(self.line),
                kind: ErrorKind::MissingKernel { entry: self.name },
            });
        };
        let initrd_pin_line = self
            .seen
            .get(EntryKey::InitrdSha256 as usize)
            .copied()
            .flatten();
        if let (None, Some(pin_line)) = (&self.initrd, initrd_pin_line) {
            return Err(ConfigError {
                location: Location::Line(pin_line),
                kind: ErrorKind::PinWithoutImage {
                    entry: self.name,
                    key: EntryKey::InitrdSha256.name(),
                    image: "initrd",
                },
            });
        }
        Ok(Entry {
            name: self.name,
            kernel,
            initrd: self.initrd,
            cmdline: self.cmdline,
            format: self.format,
            iterations: self.iterations,
            kernel_sha256: self.kernel_sha256,
            initrd_sha256: self.initrd_sha256,
        })
    }
}

/// Records that a key was set on `line`, failing if its section set it before.
fn mark_seen(seen: &mut Option<usize>, key: &'static str, line: usize) -> Result<(), ErrorKind> {
    if let Some(first_line) = *seen {
        return Err(ErrorKind::DuplicateKey { key, first_line });
    }
    *seen = Some(line);
    Ok(())
}

/// `line` without its `#` comment; a `#` inside double quotes is text.
fn strip_comment(line: &str) -> &str {
    let mut in_quote = false;
    let mut escaped = false;
    for (at, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quote => escaped = true,
            '"' => in_quote = !in_quote,
            '#' if !in_quote => return line.split_at(at).0,
            _ => {}
        }
    }
    line
}

/// Decodes a value: a double-quoted value loses its quotes and `\"` and `\\` become
/// `"` and `\` (any other backslash stays as it is); an unquoted value is taken as it
/// is (already trimmed).
fn decode_value(key: &str, raw: &str) -> Result<String<MAX_CMDLINE>, ErrorKind> {
    let too_long = || ErrorKind::ValueTooLong {
        key: snippet(key),
        max: MAX_CMDLINE,
    };
    let Some(body) = raw.strip_prefix('"') else {
        return String::try_from(raw).map_err(|()| too_long());
    };
    let mut out = String::<MAX_CMDLINE>::new();
    let mut chars = body.char_indices();
    while let Some((at, c)) = chars.next() {
        let pushed = match c {
            '"' => {
                let rest = body.get(at + c.len_utf8()..).unwrap_or("");
                if !rest.trim().is_empty() {
                    return Err(ErrorKind::Syntax("text after the closing quote"));
                }
                return Ok(out);
            }
            '\\' => match chars.next() {
                Some((_, escaped @ ('"' | '\\'))) => out.push(escaped),
                Some((_, other)) => out.push('\\').and_then(|()| out.push(other)),
                None => out.push('\\'),
            },
            c => out.push(c),
        };
        pushed.map_err(|()| too_long())?;
    }
    Err(ErrorKind::Syntax("missing closing quote"))
}

/// A command line value without its surrounding double quotes, if it has them.
fn strip_quotes(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

/// The name in an `[entry NAME]` header (the text between the brackets).
fn parse_section(inner: &str) -> Result<EntryName, ErrorKind> {
    let inner = inner.trim();
    let (kind, name) = inner
        .split_once(char::is_whitespace)
        .map_or((inner, ""), |(kind, name)| (kind, name.trim()));
    if kind != "entry" {
        return Err(ErrorKind::UnknownSection {
            header: snippet(inner),
        });
    }
    let bad = || ErrorKind::BadEntryName {
        name: snippet(name),
    };
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(bad());
    }
    EntryName::try_from(name).map_err(|()| bad())
}

/// Parses a configuration text; settings not given keep their defaults.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let mut config = Config::default();
    let mut globals = config.globals();
    let mut globals_seen = [None; GlobalKey::ALL.len()];
    let mut current: Option<EntryBuilder> = None;

    for (index, raw_line) in text.lines().enumerate() {
        let line = index + 1;
        let at = |kind| ConfigError {
            location: Location::Line(line),
            kind,
        };
        let text = strip_comment(raw_line).trim();
        if text.is_empty() {
            continue;
        }

        if let Some(header) = text.strip_prefix('[') {
            let inner = header
                .strip_suffix(']')
                .ok_or_else(|| at(ErrorKind::Syntax("a section header must end with ']'")))?;
            let name = parse_section(inner).map_err(at)?;
            let defined = config.entries.len() + usize::from(current.is_some());
            let taken = config.entries.iter().any(|e| e.name == name)
                || current.as_ref().is_some_and(|b| b.name == name);
            if taken {
                return Err(at(ErrorKind::DuplicateEntry { name }));
            }
            if defined >= MAX_ENTRIES {
                return Err(at(ErrorKind::TooManyEntries));
            }
            if let Some(done) = current.take() {
                // Cannot fail: `defined` counted this entry and stayed below the limit.
                let _ = config.entries.push(done.finish()?);
            }
            current = Some(EntryBuilder::new(line, name));
            continue;
        }

        let (key, raw_value) = text.split_once('=').ok_or_else(|| {
            at(ErrorKind::Syntax(
                "expected 'key = value' or '[entry NAME]'",
            ))
        })?;
        let key = key.trim();
        if key.is_empty() {
            return Err(at(ErrorKind::Syntax("missing key before '='")));
        }
        let value = decode_value(key, raw_value.trim()).map_err(at)?;
        let value = value.as_str();

        match current.as_mut() {
            None => {
                if let Some(k) = GlobalKey::lookup(key) {
                    // The table has one slot per key, in declaration order.
                    if let Some(slot) = globals_seen.get_mut(k as usize) {
                        mark_seen(slot, k.name(), line).map_err(at)?;
                    }
                    k.apply(&mut globals, value).map_err(at)?;
                } else if let Some(k) = EntryKey::lookup(key) {
                    return Err(at(ErrorKind::EntryKeyOutsideEntry { key: k.name() }));
                } else {
                    return Err(at(ErrorKind::UnknownKey {
                        key: snippet(key),
                        entry: None,
                    }));
                }
            }
            Some(builder) => {
                if let Some(k) = EntryKey::lookup(key) {
                    // The table has one slot per key, in declaration order.
                    if let Some(slot) = builder.seen.get_mut(k as usize) {
                        mark_seen(slot, k.name(), line).map_err(at)?;
                    }
                    builder.set(k, value).map_err(at)?;
                } else if let Some(k) = GlobalKey::lookup(key) {
                    return Err(at(ErrorKind::GlobalInEntry { key: k.name() }));
                } else {
                    return Err(at(ErrorKind::UnknownKey {
                        key: snippet(key),
                        entry: Some(builder.name.clone()),
                    }));
                }
            }
        }
    }

    if let Some(done) = current.take() {
        // Cannot fail: every header checked that its entry fits.
        let _ = config.entries.push(done.finish()?);
    }
    config.set_globals(globals);
    Ok(config)
}

/// The words of a command line: runs of non-blank characters, where blanks inside
/// double quotes do not split (as the Linux kernel reads its command line).
struct Words<'a> {
    rest: &'a str,
}

impl<'a> Words<'a> {
    fn new(text: &'a str) -> Self {
        Words { rest: text }
    }
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let text = self.rest.trim_start();
        if text.is_empty() {
            self.rest = text;
            return None;
        }
        let mut in_quote = false;
        let mut end = text.len();
        for (at, c) in text.char_indices() {
            if c == '"' {
                in_quote = !in_quote;
            } else if c.is_whitespace() && !in_quote {
                end = at;
                break;
            }
        }
        let (word, rest) = text.split_at(end);
        self.rest = rest;
        Some(word)
    }
}

// ---------------------------------------------------------------------------------------
// Host tests.

/// What to do at the end when the configuration cannot be used (it is broken, or not
/// text): the command line's `parkboot.on_finish=` wins, as it would over a good
/// configuration; else a global `on_finish = ...` line of the broken text; else `None`.
/// So a run that asked to exit QEMU on finishing also exits on a configuration error,
/// instead of halting until its timeout.
pub fn on_finish_despite_errors(config_text: Option<&str>, cmdline: &str) -> Option<OnFinish> {
    let lookup = |value: &str| OnFinish::ALL.into_iter().find(|o| o.as_str() == value);
    let key = GlobalKey::OnFinish.name();
    let from_cmdline = Words::new(cmdline)
        .take_while(|&w| w != CMDLINE_END_OF_OPTIONS)
        .filter_map(|w| w.strip_prefix(CMDLINE_PREFIX)?.split_once('='))
        .filter(|&(k, _)| k == key)
        .filter_map(|(_, v)| lookup(strip_quotes(v)))
        .last();
    let from_text = || {
        config_text?
            .lines()
            .map(|line| strip_comment(line).trim())
            .take_while(|line| !line.starts_with('['))
            .filter_map(|line| line.split_once('='))
            .filter(|(k, _)| k.trim() == key)
            .filter_map(|(_, v)| lookup(strip_quotes(v.trim())))
            .last()
    };
    from_cmdline.or_else(from_text)
}

#[cfg(test)]
mod tests;
