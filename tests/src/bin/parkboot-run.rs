//! `parkboot-run`: boots parkboot once under QEMU, the program behind `scripts/run`.
//!
//! Prints the guest's serial log live on stdout as the guest printed it, then a result
//! line, and with `--json` one last line of JSON: the guest's `parkboot: summary:`
//! object merged with `ok`, `exit`, `seconds` and, with `--trace-init-ipis`,
//! `init_ipis_after_park`. Exits 0 only when the run passed.
// Test code and its harness: a failed expectation is a panic.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use parkboot_tests::rom::{parse_cbfs_file, Compression, Rom, RomBuilder};
use parkboot_tests::{parkboot_image_path, release_binary_path, Boot, Outcome, SUMMARY_MARKER};
use serde_json::{json, Map, Value};

const USAGE: &str = "\
usage: parkboot-run [options] [-- extra QEMU arguments]

  --image PATH         parkboot ELF (default: target/x86_64-unknown-none/release/parkboot,
                       or $PARKBOOT_IMAGE)
  --entry pvh|coreboot how QEMU enters parkboot (default pvh); with coreboot, QEMU boots
                       the shim and the shim enters parkboot through its coreboot entry
  --shim PATH          the coreboot-entry shim (default: .../release/cbshim)
  --rom BASE.rom       boot a real coreboot ROM with -bios (no SeaBIOS, no -kernel): a
                       copy of BASE.rom with parkboot as fallback/payload and the
                       configuration as CBFS parkboot/config (instead of fw_cfg)
  --cbfs NAME=FILE[:lzma|lz4|none]
                       with --rom: also put FILE into the ROM as CBFS file NAME
  --smp N              CPUs (default 4)
  --memory MIB         memory in MiB (default 512)
  --config PATH        parkboot configuration, passed as fw_cfg opt/parkboot/config
  --timeout SECS       kill QEMU after this many seconds (default 60)
  --accel A            QEMU accelerator (default $PARKBOOT_ACCEL or tcg)
  --kernel PATH        kernel for the configuration's entries (fw_cfg opt/parkboot/kernel)
  --initrd PATH        initrd for them (fw_cfg opt/parkboot/initrd)
  --loops N            iterations of every entry (rewrites `iterations` in the configuration)
  --append TEXT        kernel command line of every entry (rewrites `cmdline`)
  --no-park            baseline: parkboot leaves the APs for the kernel's INIT/SIPI
  --trace-init-ipis    count INIT IPIs sent after the APs were parked
  --json               end with one line of JSON describing the run
  -h, --help           this text
";

#[derive(Debug, PartialEq)]
enum Entry {
    Pvh,
    Coreboot,
}

/// A CBFS file for `--rom`: name, file, compression.
type CbfsFile = (String, PathBuf, Compression);

#[derive(Debug)]
struct Options {
    image: Option<PathBuf>,
    entry: Entry,
    shim: Option<PathBuf>,
    rom: Option<PathBuf>,
    cbfs: Vec<CbfsFile>,
    smp: u32,
    memory_mib: Option<u32>,
    config: Option<PathBuf>,
    timeout: Option<Duration>,
    accel: Option<String>,
    trace_init_ipis: bool,
    json: bool,
    kernel: Option<PathBuf>,
    initrd: Option<PathBuf>,
    loops: Option<u32>,
    append: Option<String>,
    no_park: bool,
    extra_args: Vec<String>,
}

fn parse_options(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        image: None,
        entry: Entry::Pvh,
        shim: None,
        rom: None,
        cbfs: Vec::new(),
        smp: 4,
        memory_mib: None,
        config: None,
        timeout: None,
        accel: None,
        trace_init_ipis: false,
        json: false,
        kernel: None,
        initrd: None,
        loops: None,
        append: None,
        no_park: false,
        extra_args: Vec::new(),
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (name, inline_value) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => {
                (name.to_string(), Some(value.to_string()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            match inline_value.clone() {
                Some(value) => Ok(value),
                None => args.next().ok_or_else(|| format!("{name} needs {what}")),
            }
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(None),
            "--" => {
                options.extra_args.extend(args.by_ref());
            }
            "--image" => options.image = Some(value("a path")?.into()),
            "--shim" => options.shim = Some(value("a path")?.into()),
            "--rom" => options.rom = Some(value("a coreboot ROM")?.into()),
            "--cbfs" => options
                .cbfs
                .push(parse_cbfs_file(&value("NAME=FILE[:lzma|lz4|none]")?)?),
            "--config" => options.config = Some(value("a path")?.into()),
            "--entry" => {
                options.entry = match value("pvh or coreboot")?.as_str() {
                    "pvh" => Entry::Pvh,
                    "coreboot" => Entry::Coreboot,
                    other => return Err(format!("--entry {other}: expected pvh or coreboot")),
                }
            }
            "--smp" => options.smp = number(&name, &value("a CPU count")?)?,
            "--memory" => options.memory_mib = Some(number(&name, &value("a size in MiB")?)?),
            "--timeout" => {
                let text = value("seconds")?;
                let seconds: f64 = text
                    .parse()
                    .ok()
                    .filter(|seconds: &f64| seconds.is_finite() && *seconds > 0.0)
                    .ok_or_else(|| format!("--timeout {text}: expected a number of seconds"))?;
                options.timeout = Some(Duration::from_secs_f64(seconds));
            }
            "--accel" => options.accel = Some(value("an accelerator")?),
            "--trace-init-ipis" => options.trace_init_ipis = true,
            "--json" => options.json = true,
            "--kernel" => options.kernel = Some(value("a path")?.into()),
            "--initrd" => options.initrd = Some(value("a path")?.into()),
            "--loops" => options.loops = Some(number(&name, &value("a count")?)?),
            "--append" => options.append = Some(value("a command line")?),
            "--no-park" => options.no_park = true,
            other => return Err(format!("unknown option {other}")),
        }
    }
    if options.smp == 0 {
        return Err("--smp 0: need at least one CPU".to_string());
    }
    if options.rom.is_some() && options.entry != Entry::Pvh {
        return Err("--rom boots parkboot from coreboot itself: leave out --entry".to_string());
    }
    if options.rom.is_none() && !options.cbfs.is_empty() {
        return Err("--cbfs needs --rom".to_string());
    }
    Ok(Some(options))
}

fn number(name: &str, text: &str) -> Result<u32, String> {
    text.parse()
        .map_err(|_| format!("{name} {text}: expected a whole number"))
}

/// Checks that a file exists, else says how to build it.
fn existing(path: PathBuf, what: &str, build: &str) -> Result<PathBuf, String> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{what} {} not found: build it first: {build}",
            path.display()
        ))
    }
}

/// The QEMU run the options describe, and with `--rom` the ROM it boots (which must
/// live as long as the run).
fn boot_for(options: &Options) -> Result<(Boot, Option<Rom>), String> {
    let image = existing(
        options.image.clone().unwrap_or_else(parkboot_image_path),
        "parkboot image",
        "cargo build -p parkboot --release --target x86_64-unknown-none",
    )?;
    let config = match &options.config {
        Some(config) => {
            let text = std::fs::read_to_string(config)
                .map_err(|e| format!("configuration {}: {e}", config.display()))?;
            Some(adjust_config(
                &text,
                options.loops,
                options.append.as_deref(),
                options.no_park,
            ))
        }
        None => None,
    };
    let mut rom = None;
    let mut boot = match (&options.rom, &options.entry) {
        (Some(base), _) => {
            let base = existing(base.clone(), "coreboot ROM", "scripts/rom --qemu")?;
            let mut builder = RomBuilder::new(base, &image);
            if let Some(text) = &config {
                builder = builder.config_text(text.clone());
            }
            for (name, path, compression) in &options.cbfs {
                if !path.is_file() {
                    return Err(format!("--cbfs {name}: {} not found", path.display()));
                }
                builder = builder.file(name.clone(), path.clone(), *compression);
            }
            let built = builder.build()?;
            let boot = Boot::rom(&built.path);
            rom = Some(built);
            boot
        }
        (None, Entry::Pvh) => Boot::new(image),
        (None, Entry::Coreboot) => {
            let shim = existing(
                options
                    .shim
                    .clone()
                    .unwrap_or_else(|| release_binary_path("cbshim")),
                "coreboot-entry shim",
                "cargo build -p cbshim --release --target x86_64-unknown-none",
            )?;
            Boot::new(shim).initrd(image)
        }
    };
    boot = boot
        .smp(options.smp)
        .echo(false)
        .trace_init_ipis(options.trace_init_ipis);
    if let Some(memory_mib) = options.memory_mib {
        boot = boot.memory_mib(memory_mib);
    }
    // With --rom the configuration is in CBFS.
    if let (Some(text), None) = (config, &rom) {
        boot = boot.config_text(text);
    }
    for (name, path) in [
        ("opt/parkboot/kernel", &options.kernel),
        ("opt/parkboot/initrd", &options.initrd),
    ] {
        if let Some(path) = path {
            if !path.is_file() {
                return Err(format!("{} not found", path.display()));
            }
            boot = boot.fw_cfg_file(name, path);
        }
    }
    if let Some(timeout) = options.timeout {
        boot = boot.timeout(timeout);
    }
    if let Some(accel) = &options.accel {
        boot = boot.accel(accel);
    }
    Ok((boot.args(options.extra_args.iter().cloned()), rom))
}

/// Applies `--loops`, `--append` and `--no-park` to a configuration's text: every
/// entry's `iterations` and `cmdline` are replaced (or added), and `park = off` is put
/// before the first entry.
fn adjust_config(text: &str, loops: Option<u32>, append: Option<&str>, no_park: bool) -> String {
    let key = |line: &str| {
        line.split_once('=')
            .map(|(k, _)| k.trim().to_string())
            .unwrap_or_default()
    };
    // The lines that replace (or, where an entry has none, are added to) each entry's.
    let loops_line = loops.map(|n| format!("iterations = {n}"));
    let cmdline_line = append.map(|a| {
        format!(
            "cmdline = \"{}\"",
            a.replace('\\', "\\\\").replace('"', "\\\"")
        )
    });
    let mut out = Vec::new();
    if no_park {
        out.push("park = off".to_string());
    }
    let mut in_entry = false;
    let (mut seen_loops, mut seen_cmdline) = (false, false);
    let close_entry = |out: &mut Vec<String>, seen_loops: bool, seen_cmdline: bool| {
        out.extend(loops_line.clone().filter(|_| !seen_loops));
        out.extend(cmdline_line.clone().filter(|_| !seen_cmdline));
    };
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("[entry") {
            if in_entry {
                close_entry(&mut out, seen_loops, seen_cmdline);
            }
            in_entry = true;
            seen_loops = false;
            seen_cmdline = false;
            out.push(line.to_string());
            continue;
        }
        match (key(trimmed).as_str(), &loops_line, &cmdline_line) {
            ("park", _, _) if no_park && !in_entry => continue,
            ("iterations", Some(replacement), _) if in_entry => {
                seen_loops = true;
                out.push(replacement.clone());
            }
            ("cmdline", _, Some(replacement)) if in_entry => {
                seen_cmdline = true;
                out.push(replacement.clone());
            }
            _ => out.push(line.to_string()),
        }
    }
    if in_entry {
        close_entry(&mut out, seen_loops, seen_cmdline);
    }
    out.join("\n") + "\n"
}

struct LinuxRow {
    iteration: String,
    cpus: String,
    bringup_ms: String,
    cycle: Option<Duration>,
    /// QEMU's host CPU time over the same cycle.
    cpu_cycle: Option<Duration>,
}

/// Lines that mark the phases of a Linux kexec cycle, in the order they come: the old
/// kernel's last words before it jumps, the new kernel's first, its SMP bring-up, its
/// init, and the init's iteration line. Which of them appear depends on the kernel's
/// log level (`loglevel=7` shows them all).
const PHASE_MARKS: &[(&str, &str)] = &[
    ("kexec", "kexec_core: Starting new kernel"),
    ("kernel", "Linux version "),
    ("smp_start", "smp: Bringing up secondary CPUs"),
    ("smp_done", "smp: Brought up "),
    ("init", "Run /init as init process"),
    ("iteration", "parkboot-linux: iteration "),
];

/// Per phase (`from->to` of consecutive marks), the host-clock and QEMU-CPU-time
/// durations of every occurrence, in the order the phases first appear.
fn linux_phases(
    marks: &[(&'static str, Duration, Option<Duration>)],
) -> Vec<(String, Vec<u128>, Vec<u128>)> {
    let mut phases: Vec<(String, Vec<u128>, Vec<u128>)> = Vec::new();
    for pair in marks.windows(2) {
        let [(from, at, cpu), (to, next_at, next_cpu)] = pair else {
            continue;
        };
        let name = format!("{from}->{to}");
        let index = match phases.iter().position(|(n, _, _)| *n == name) {
            Some(index) => index,
            None => {
                phases.push((name, Vec::new(), Vec::new()));
                phases.len() - 1
            }
        };
        let entry = &mut phases[index];
        entry.1.push(next_at.saturating_sub(*at).as_nanos());
        if let (Some(cpu), Some(next_cpu)) = (cpu, next_cpu) {
            entry.2.push(next_cpu.saturating_sub(*cpu).as_nanos());
        }
    }
    phases
}

/// One `parkboot-linux: iteration` line: its text after that prefix, when it arrived
/// (host clock, from the start of the run) and QEMU's CPU time then.
struct TimedLine {
    text: String,
    at: Duration,
    cpu: Option<Duration>,
}

struct LinuxTable {
    rows: Vec<LinuxRow>,
}

/// Rows from `parkboot-linux: iteration I/N: cpus online C/C, smp bring-up T ms...`
/// lines, the host time each arrived and QEMU's CPU time then.
fn linux_iteration_table(lines: &[TimedLine]) -> LinuxTable {
    let mut rows = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let text = &line.text;
        let iteration = text.split(':').next().unwrap_or("?").to_string();
        let after = |key: &str| {
            text.split(key)
                .nth(1)
                .and_then(|rest| rest.split([',', ' ']).find(|w| !w.is_empty()))
                .unwrap_or("?")
                .to_string()
        };
        rows.push(LinuxRow {
            iteration,
            cpus: after("cpus online "),
            bringup_ms: after("smp bring-up "),
            cycle: lines.get(i + 1).map(|next| next.at.saturating_sub(line.at)),
            cpu_cycle: lines
                .get(i + 1)
                .and_then(|next| Some(next.cpu?.saturating_sub(line.cpu?))),
        });
    }
    LinuxTable { rows }
}

impl LinuxTable {
    /// JSON members for the summary: per-iteration rows and the kexec cycle spread.
    fn json(&self) -> Option<Map<String, Value>> {
        if self.rows.is_empty() {
            return None;
        }
        let nanos = |cycle: Duration| u64::try_from(cycle.as_nanos()).unwrap_or(u64::MAX);
        let mut cycles: Vec<u64> = self
            .rows
            .iter()
            .filter_map(|r| r.cycle.map(nanos))
            .collect();
        cycles.sort_unstable();
        let iterations: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                json!({
                    "iteration": r.iteration,
                    "cpus_online": r.cpus,
                    // Not a number, or not finite: null.
                    "smp_bringup_ms": r.bringup_ms.parse::<f64>().ok(),
                    "kexec_cycle_ns": r.cycle.map(nanos),
                    "kexec_cycle_cpu_ns": r.cpu_cycle.map(nanos),
                })
            })
            .collect();
        let mut members = Map::new();
        members.insert("linux_iterations".to_string(), iterations.into());
        if let (Some(min), Some(max)) = (cycles.first(), cycles.last()) {
            let median = cycles[cycles.len() / 2];
            members.insert(
                "iteration_ns".to_string(),
                json!({"min": min, "median": median, "max": max}),
            );
        }
        Some(members)
    }
}

/// Sets the members of `extra` in `base`: a member `base` already has moves to the end
/// with its new value, new ones are appended in order.
fn merge(base: &mut Map<String, Value>, extra: Map<String, Value>) {
    for (key, value) in extra {
        base.shift_remove(&key);
        base.insert(key, value);
    }
}

/// The `--json` object: the guest's summary merged with the harness's view of the run.
fn json_object(outcome: &Outcome) -> Map<String, Value> {
    let mut extra = Map::new();
    extra.insert("ok".to_string(), outcome.passed().into());
    extra.insert("exit".to_string(), outcome.status.name().into());
    extra.insert(
        "seconds".to_string(),
        ((outcome.duration.as_secs_f64() * 1000.0).round() / 1000.0).into(),
    );
    if let Some(after_park) = outcome
        .init_ipis
        .as_ref()
        .and_then(|witness| witness.inits_after_park)
    {
        extra.insert("init_ipis_after_park".to_string(), after_park.into());
    }
    if !outcome.passed() {
        extra.insert("reason".to_string(), outcome.verdict().into());
        if let Some(error) = outcome.first_error() {
            extra.insert("error".to_string(), error.into());
        }
    }
    // parkboot's own summary (entry, config_source, park figures) and a later one from
    // the kernel it booted (the Linux init's): the later one's members win.
    let merged = outcome
        .serial
        .lines()
        .filter_map(|line| Some(line[line.find(SUMMARY_MARKER)? + SUMMARY_MARKER.len()..].trim()))
        .try_fold(Map::new(), |mut merged, next| {
            merge(&mut merged, serde_json::from_str(next)?);
            Ok::<_, serde_json::Error>(merged)
        });
    let summary = merged.or_else(|_| {
        let text = outcome
            .summary
            .as_deref()
            .filter(|text| !text.is_empty())
            .unwrap_or("{}");
        serde_json::from_str(text).map_err(|error| format!("{error} in {text}"))
    });
    match summary {
        Ok(mut summary) => {
            merge(&mut summary, extra);
            summary
        }
        Err(error) => {
            extra.insert("summary_error".to_string(), error.into());
            extra
        }
    }
}

fn main() -> ExitCode {
    let options = match parse_options(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("parkboot-run: {error}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (boot, _rom) = match boot_for(&options) {
        Ok(built) => built,
        Err(error) => {
            eprintln!("parkboot-run: {error}");
            return ExitCode::from(2);
        }
    };
    if std::env::var("PARKBOOT_VERBOSE").is_ok_and(|value| value == "1") {
        let args = boot.qemu_args(None, None);
        eprintln!(
            "parkboot-run: {} {}",
            Boot::qemu_program().to_string_lossy(),
            args.join(" ")
        );
    }

    // The serial log goes out live, line by line (stdout is line-buffered). Linux
    // iterations are timed here, on the host: each kexec restarts the guest's clocks.
    let started = std::time::Instant::now();
    let mut linux_iterations: Vec<TimedLine> = Vec::new();
    let mut marks: Vec<(&'static str, Duration, Option<Duration>)> = Vec::new();
    let outcome = boot.run_with(|line, control| {
        println!("{line}");
        if let Some((name, _)) = PHASE_MARKS.iter().find(|(_, text)| line.contains(text)) {
            marks.push((name, started.elapsed(), control.qemu_cpu_time()));
        }
        if let Some(rest) = line.split("parkboot-linux: iteration ").nth(1) {
            linux_iterations.push(TimedLine {
                text: rest.to_string(),
                at: started.elapsed(),
                cpu: control.qemu_cpu_time(),
            });
        }
    });
    let linux_table = linux_iteration_table(&linux_iterations);
    if !linux_table.rows.is_empty() {
        println!(
            "Linux kexec loop (cycle = one iteration line to the next: host clock, and QEMU's host CPU time):"
        );
        println!("  iteration  CPUs up  SMP bring-up (kernel log)  kexec cycle  QEMU CPU time");
        let seconds = |d: Option<Duration>| {
            d.map(|c| format!("{:.2} s", c.as_secs_f64()))
                .unwrap_or_else(|| "-".to_string())
        };
        for row in &linux_table.rows {
            println!(
                "  {:9}  {:7}  {:>22} ms  {:>11}  {:>13}",
                row.iteration,
                row.cpus,
                row.bringup_ms,
                seconds(row.cycle),
                seconds(row.cpu_cycle)
            );
        }
    }

    for line in outcome.qemu_stderr.lines() {
        eprintln!("qemu: {line}");
    }
    let mut result = format!("parkboot-run: {}", outcome.verdict());
    if let Some(witness) = &outcome.init_ipis {
        match witness.inits_after_park {
            Some(count) => result.push_str(&format!(
                "; INIT IPIs after park: {count} ({} park SIPIs)",
                witness.park_sipis
            )),
            None => result.push_str("; INIT IPIs after park: unknown (no 'starting APs' line)"),
        }
    }
    println!("{result}");
    if options.json {
        let mut object = json_object(&outcome);
        if let Some(extra) = linux_table.json() {
            merge(&mut object, extra);
        }
        let phases = linux_phases(&marks);
        // Only the iteration line itself: no phase marks in this kernel's log level.
        if phases
            .iter()
            .any(|(name, _, _)| name != "iteration->iteration")
        {
            let mut members = Map::new();
            for (name, host, cpu) in &phases {
                let nanos = |values: &[u128]| -> Vec<u64> {
                    values
                        .iter()
                        .map(|&v| u64::try_from(v).unwrap_or(u64::MAX))
                        .collect()
                };
                members.insert(
                    name.clone(),
                    json!({"host_ns": nanos(host), "cpu_ns": nanos(cpu)}),
                );
            }
            let mut extra = Map::new();
            extra.insert("linux_phases".to_string(), Value::Object(members));
            merge(&mut object, extra);
        }
        println!("{}", Value::Object(object));
    }
    if outcome.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_adjustments() {
        let text = "self_check = on\npark = on\n[entry a]\nkernel = fw_cfg:k\niterations = 10\n[entry b]\nkernel = fw_cfg:j\n";
        let out = adjust_config(text, Some(3), Some("console=ttyS0 x=\"y\""), true);
        assert_eq!(
            out,
            "park = off\nself_check = on\n[entry a]\nkernel = fw_cfg:k\niterations = 3\ncmdline = \"console=ttyS0 x=\\\"y\\\"\"\n[entry b]\nkernel = fw_cfg:j\niterations = 3\ncmdline = \"console=ttyS0 x=\\\"y\\\"\"\n"
        );
        assert_eq!(adjust_config(text, None, None, false), text);
    }
    use parkboot_tests::{ExitStatusKind, InitIpiWitness};

    fn parse(args: &[&str]) -> Result<Option<Options>, String> {
        parse_options(args.iter().map(|arg| arg.to_string()))
    }

    #[test]
    fn parses_options() {
        let options = parse(&[
            "--image",
            "/p",
            "--smp=2",
            "--memory",
            "256",
            "--entry",
            "coreboot",
            "--shim",
            "/s",
            "--timeout",
            "1.5",
            "--json",
            "--trace-init-ipis",
            "--accel",
            "kvm",
            "--",
            "-cpu",
            "max",
            "--json",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(options.image, Some(PathBuf::from("/p")));
        assert_eq!(options.smp, 2);
        assert_eq!(options.memory_mib, Some(256));
        assert_eq!(options.entry, Entry::Coreboot);
        assert_eq!(options.shim, Some(PathBuf::from("/s")));
        assert_eq!(options.timeout, Some(Duration::from_millis(1500)));
        assert!(options.json && options.trace_init_ipis);
        assert_eq!(options.accel.as_deref(), Some("kvm"));
        assert_eq!(options.extra_args, ["-cpu", "max", "--json"]);

        let defaults = parse(&[]).unwrap().unwrap();
        assert_eq!(defaults.smp, 4);
        assert_eq!(defaults.entry, Entry::Pvh);
        assert!(parse(&["--help"]).unwrap().is_none());
        assert!(parse(&["--smp"]).is_err());
        assert!(parse(&["--smp", "x"]).is_err());
        assert!(parse(&["--smp", "0"]).is_err());
        assert!(parse(&["--entry", "efi"]).is_err());
        assert!(parse(&["--timeout", "-1"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
    }

    #[test]
    fn missing_image_says_how_to_build_it() {
        let options = parse(&["--image", "/nonexistent/parkboot"])
            .unwrap()
            .unwrap();
        let error = boot_for(&options).unwrap_err();
        assert!(error.contains("build it first"), "{error}");
        let options = parse(&["--image", "/nonexistent/parkboot", "--entry", "coreboot"])
            .unwrap()
            .unwrap();
        assert!(boot_for(&options).unwrap_err().contains("build it first"));
    }

    #[test]
    fn coreboot_entry_boots_the_shim_with_parkboot_as_initrd() {
        let this = std::env::current_exe().unwrap();
        let this = this.to_str().unwrap();
        let options = parse(&["--image", this, "--entry", "coreboot", "--shim", this])
            .unwrap()
            .unwrap();
        let (boot, rom) = boot_for(&options).unwrap();
        assert_eq!(boot.initrd.as_deref(), Some(this));
        assert_eq!(boot.smp, 4);
        assert!(rom.is_none());
    }

    #[test]
    fn rom_options() {
        let options = parse(&[
            "--rom",
            "/b.rom",
            "--cbfs",
            "parkboot/kernel=/k:lzma",
            "--cbfs=x=/y",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(options.rom, Some(PathBuf::from("/b.rom")));
        assert_eq!(
            options.cbfs,
            [
                (
                    "parkboot/kernel".to_string(),
                    PathBuf::from("/k"),
                    Compression::Lzma
                ),
                ("x".to_string(), PathBuf::from("/y"), Compression::None)
            ]
        );
        assert!(parse(&["--rom", "/b.rom", "--entry", "coreboot"]).is_err());
        assert!(parse(&["--cbfs", "a=/b"]).is_err());
        assert!(parse(&["--rom", "/b.rom", "--cbfs", "nofile"]).is_err());
        let this = std::env::current_exe().unwrap();
        let options = parse(&[
            "--image",
            this.to_str().unwrap(),
            "--rom",
            "/nonexistent.rom",
        ])
        .unwrap()
        .unwrap();
        assert!(boot_for(&options)
            .unwrap_err()
            .contains("scripts/rom --qemu"));
    }

    /// The `--json` line as `main` prints it (without Linux iterations).
    fn json_line(outcome: &Outcome) -> String {
        Value::Object(json_object(outcome)).to_string()
    }

    fn outcome(status: ExitStatusKind, serial: &str) -> Outcome {
        Outcome {
            status,
            serial: serial.to_string(),
            qemu_stderr: String::new(),
            duration: Duration::from_millis(1234),
            init_ipis: None,
            summary: serial
                .lines()
                .find_map(|line| line.strip_prefix("parkboot: summary: "))
                .map(str::to_string),
            command: Vec::new(),
            harness_error: None,
        }
    }

    #[test]
    fn phases_run_from_one_mark_to_the_next() {
        let ms = Duration::from_millis;
        let phases = linux_phases(&[
            ("iteration", ms(1000), Some(ms(900))),
            ("kexec", ms(3000), Some(ms(2800))),
            ("kernel", ms(7000), Some(ms(6000))),
            ("iteration", ms(12000), None),
            ("kexec", ms(14000), Some(ms(12500))),
            ("kernel", ms(18500), Some(ms(16000))),
        ]);
        let names: Vec<&str> = phases.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["iteration->kexec", "kexec->kernel", "kernel->iteration"]
        );
        assert_eq!(phases[1].1, [4_000_000_000, 4_500_000_000]);
        assert_eq!(phases[1].2, [3_200_000_000, 3_500_000_000]);
        assert_eq!(phases[0].1, [2_000_000_000, 2_000_000_000]);
        assert_eq!(
            phases[0].2,
            [1_900_000_000],
            "no CPU time at one end: left out"
        );
    }

    #[test]
    fn linux_rows_time_each_cycle_on_both_clocks() {
        let line = |text: &str, at_ms: u64, cpu_ms: Option<u64>| TimedLine {
            text: text.to_string(),
            at: Duration::from_millis(at_ms),
            cpu: cpu_ms.map(Duration::from_millis),
        };
        let table = linux_iteration_table(&[
            line(
                "1/3: cpus online 4/4, smp bring-up 240.5 ms",
                1000,
                Some(900),
            ),
            line(
                "2/3: cpus online 4/4, smp bring-up 251 ms",
                8000,
                Some(7100),
            ),
            line("3/3: cpus online 3/4, smp bring-up 260 ms", 15500, None),
        ]);
        let rows = &table.rows;
        assert_eq!(rows.len(), 3);
        assert_eq!(
            (rows[0].iteration.as_str(), rows[0].cpus.as_str()),
            ("1/3", "4/4")
        );
        assert_eq!(rows[1].bringup_ms, "251");
        assert_eq!(rows[0].cycle, Some(Duration::from_millis(7000)));
        assert_eq!(rows[0].cpu_cycle, Some(Duration::from_millis(6200)));
        assert_eq!(rows[1].cycle, Some(Duration::from_millis(7500)));
        assert_eq!(rows[1].cpu_cycle, None, "no CPU time at the next line");
        assert_eq!((rows[2].cycle, rows[2].cpu_cycle), (None, None));
        let json = table.json().expect("rows");
        assert_eq!(
            json["linux_iterations"][0]["kexec_cycle_cpu_ns"],
            6_200_000_000u64
        );
        assert_eq!(
            json["linux_iterations"][1]["kexec_cycle_cpu_ns"],
            Value::Null
        );
    }

    #[test]
    fn json_line_merges_the_summary() {
        let mut run = outcome(
            ExitStatusKind::Pass,
            "parkboot: summary: {\"cpus\":4,\"parked\":3,\"ok\":\"guest\"}\nparkboot: result: pass\n",
        );
        run.init_ipis = Some(InitIpiWitness {
            inits_after_park: Some(0),
            ..InitIpiWitness::default()
        });
        assert_eq!(
            json_line(&run),
            r#"{"cpus":4,"parked":3,"ok":true,"exit":"pass","seconds":1.234,"init_ipis_after_park":0}"#
        );

        let failed = outcome(ExitStatusKind::Other(0), "parkboot: stopped: no entry\n");
        let line = json_line(&failed);
        assert!(
            line.starts_with(r#"{"ok":false,"exit":"reset-or-poweroff","seconds":1.234,"reason":"#),
            "{line}"
        );

        let two = outcome(
            ExitStatusKind::Pass,
            "parkboot: summary: {\"entry\":\"coreboot\",\"cpus\":4,\"iterations_done\":0}\nparkboot: summary: {\"entry_kind\":\"linux\",\"iterations_done\":3}\nparkboot: result: pass\n",
        );
        assert_eq!(
            json_line(&two),
            r#"{"entry":"coreboot","cpus":4,"entry_kind":"linux","iterations_done":3,"ok":true,"exit":"pass","seconds":1.234}"#
        );
        // A failed entry's named error is carried into the JSON.
        let refused = outcome(
            ExitStatusKind::Fail,
            "[    0.1] ERROR: entry 'linux' (iteration 1/5): truncated bzImage: syssize declares more\n[    0.2] ERROR: parkboot: stopped: 1 of 1 iterations failed\n",
        );
        let members: Map<String, Value> = serde_json::from_str(&json_line(&refused)).unwrap();
        assert!(
            members.iter().any(|(k, v)| k == "error"
                && v.as_str()
                    == Some(
                        "entry 'linux' (iteration 1/5): truncated bzImage: syssize declares more"
                    )),
            "{members:?}"
        );
        assert!(!json_line(&run).contains("\"error\""));

        let broken = outcome(ExitStatusKind::Fail, "parkboot: summary: {\"cpus\":\n");
        let line = json_line(&broken);
        assert!(line.contains("\"summary_error\""), "{line}");
        assert!(
            serde_json::from_str::<Map<String, Value>>(&line).is_ok(),
            "{line}"
        );
    }
}
