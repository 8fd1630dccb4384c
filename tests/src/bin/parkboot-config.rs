//! `parkboot-config`: checks a parkboot configuration on the host with the parser
//! parkboot itself uses at boot (`parkboot::config::parse`), so a typo is found before
//! the configuration is flashed. `scripts/rom` runs it before it builds an image.
//!
//! ```text
//! parkboot-config check FILE        parse FILE; print its entries, or the error
//! parkboot-config cbfs-files FILE   the CBFS files FILE's entries read, one a line
//! ```
//!
//! Exit status: 0 when the configuration is good, 1 when it is not, 2 on bad usage.
// Test code and its harness: a failed expectation is a panic.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::process::ExitCode;

use parkboot::config::{parse, Config, Source};

const USAGE: &str = "\
usage: parkboot-config check FILE        parse FILE as parkboot does; print its entries
       parkboot-config cbfs-files FILE   print the CBFS files FILE's entries read
";

/// Reads and parses the configuration at `path`; the error names the file and, for a
/// parse error, the line.
fn load(path: &str) -> Result<Config, String> {
    let bytes = std::fs::read(path).map_err(|error| format!("{path}: {error}"))?;
    let text = std::str::from_utf8(&bytes).map_err(|error| {
        format!(
            "{path}: not UTF-8 text (invalid byte at offset {})",
            error.valid_up_to()
        )
    })?;
    parse(text).map_err(|error| format!("{path}: {error}"))
}

/// The CBFS file names the entries read, in entry order, each once.
fn cbfs_files(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for entry in &config.entries {
        for source in std::iter::once(&entry.kernel).chain(entry.initrd.as_ref()) {
            if let Source::Cbfs(name) = source {
                if !names.iter().any(|known| known == name.as_str()) {
                    names.push(name.to_string());
                }
            }
        }
    }
    names
}

/// A short description of a good configuration.
fn describe(path: &str, config: &Config) -> String {
    let mut text = format!(
        "{path}: ok: park {}, self_check {}, on_finish {}, {} entries\n",
        on_off(config.park),
        on_off(config.self_check),
        config.on_finish,
        config.entries.len()
    );
    for entry in &config.entries {
        text += &format!(
            "  [entry {}] kernel {}, initrd {}, format {}, iterations {}\n",
            entry.name,
            entry.kernel,
            entry
                .initrd
                .as_ref()
                .map_or_else(|| "none".to_string(), ToString::to_string),
            entry.format,
            entry.iterations
        );
    }
    text
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, path) = match args.as_slice() {
        [command, path] if command == "check" || command == "cbfs-files" => (command, path),
        [flag] if flag == "-h" || flag == "--help" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match load(path) {
        Ok(config) if command == "check" => {
            print!("{}", describe(path, &config));
            ExitCode::SUCCESS
        }
        Ok(config) => {
            for name in cbfs_files(&config) {
                println!("{name}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("parkboot-config: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_each_cbfs_file_once_in_entry_order() {
        let config = parse(
            "[entry a]\nkernel = cbfs:parkboot/kernel\n\
             [entry b]\nkernel = cbfs:linux\ninitrd = fw_cfg:opt/parkboot/initrd\n\
             [entry c]\nkernel = cbfs:parkboot/kernel\ninitrd = cbfs:initrd\n",
        )
        .unwrap();
        assert_eq!(cbfs_files(&config), ["parkboot/kernel", "linux", "initrd"]);
    }

    #[test]
    fn describes_the_entries() {
        let config =
            parse("park = off\n[entry t]\nkernel = cbfs:k\nformat = multiboot2\niterations = 3\n")
                .unwrap();
        let text = describe("x.cfg", &config);
        assert!(text.starts_with("x.cfg: ok: park off, self_check on, on_finish halt, 1 entries\n"));
        assert!(
            text.contains("[entry t] kernel cbfs:k, initrd none, format multiboot2, iterations 3")
        );
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let dir = std::env::temp_dir().join(format!("parkboot-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.cfg");
        std::fs::write(
            &bad,
            "park = on\n[entry x]\nkernel = cbfs:k\nitrations = 2\n",
        )
        .unwrap();
        let path = bad.to_str().unwrap();
        let error = load(path).unwrap_err();
        assert_eq!(
            error,
            format!("{path}: line 4: unknown key 'itrations' in [entry x]")
        );
        let binary = dir.join("binary.cfg");
        std::fs::write(&binary, b"park = on\n\xff\n").unwrap();
        let error = load(binary.to_str().unwrap()).unwrap_err();
        assert!(
            error.ends_with("not UTF-8 text (invalid byte at offset 10)"),
            "{error}"
        );
        assert!(load(dir.join("missing.cfg").to_str().unwrap())
            .unwrap_err()
            .contains("No such file"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
