//! Coreboot ROMs for the QEMU tests: a copy of the base q35 ROM (built once by
//! `scripts/rom`/`scripts/test` from Debian's coreboot source, without a payload) with
//! parkboot as `fallback/payload`, its configuration as `parkboot/config` and further
//! CBFS files, put in with Debian's `cbfstool` exactly as a user would.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::workspace_root;

/// The CBFS file parkboot reads its configuration from.
pub const CBFS_CONFIG: &str = "parkboot/config";
/// The CBFS file coreboot starts as its payload.
pub const CBFS_PAYLOAD: &str = "fallback/payload";
/// `cbfstool`, unless `PARKBOOT_CBFSTOOL` names another.
pub const DEFAULT_CBFSTOOL: &str = "cbfstool";

/// How cbfstool stores a file (`-c`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Lzma,
    Lz4,
}

impl Compression {
    /// cbfstool's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lzma => "lzma",
            Compression::Lz4 => "lz4",
        }
    }

    /// Parses `none`, `lzma` or `lz4`.
    pub fn parse(text: &str) -> Option<Compression> {
        [Compression::None, Compression::Lzma, Compression::Lz4]
            .into_iter()
            .find(|compression| compression.as_str() == text)
    }
}

/// Path of the base ROM: `PARKBOOT_BASE_ROM` when set, else the newest
/// `target/coreboot/q35-*.rom`; `None` when there is none.
pub fn base_rom_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PARKBOOT_BASE_ROM").filter(|path| !path.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let dir = workspace_root().join("target/coreboot");
    fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name().is_some_and(|name| {
                let name = name.to_string_lossy();
                name.starts_with("q35-") && name.ends_with(".rom")
            })
        })
        .max_by_key(|path| fs::metadata(path).and_then(|meta| meta.modified()).ok())
}

/// The base ROM. Panics with the command that builds it if it is missing.
pub fn base_rom() -> PathBuf {
    match base_rom_path() {
        Some(path) if path.is_file() => path,
        other => panic!(
            "no base coreboot ROM{}: scripts/test builds it (or: scripts/rom --qemu -o /dev/null; \
             it is cached under target/coreboot/)",
            other.map_or(String::new(), |path| format!(" at {}", path.display()))
        ),
    }
}

/// The cbfstool program.
pub fn cbfstool_program() -> PathBuf {
    match std::env::var_os("PARKBOOT_CBFSTOOL") {
        Some(program) if !program.is_empty() => PathBuf::from(program),
        _ => PathBuf::from(DEFAULT_CBFSTOOL),
    }
}

/// Runs cbfstool; the error carries the command and its output.
pub fn cbfstool(rom: &Path, args: &[&str]) -> Result<String, String> {
    let program = cbfstool_program();
    let output = Command::new(&program)
        .arg(rom)
        .args(args)
        .output()
        .map_err(|error| {
            format!(
                "cannot run {}: {error} (Debian's coreboot-utils; scripts/test installs it)",
                program.display()
            )
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "cbfstool {} {} failed: {}{}",
            rom.display(),
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// A ROM to be made from a base image.
#[derive(Clone, Debug)]
pub struct RomBuilder {
    base: PathBuf,
    payload: PathBuf,
    config: Option<String>,
    files: Vec<(String, PathBuf, Compression)>,
    /// Files stored with a SHA-256 hash attribute (`cbfstool add -A sha256`).
    hashed: Vec<String>,
}

impl RomBuilder {
    /// A copy of `base` with `payload` (parkboot's ELF) as `fallback/payload`.
    pub fn new(base: impl Into<PathBuf>, payload: impl Into<PathBuf>) -> RomBuilder {
        RomBuilder {
            base: base.into(),
            payload: payload.into(),
            config: None,
            files: Vec::new(),
            hashed: Vec::new(),
        }
    }

    /// Puts `text` into the ROM as `parkboot/config`.
    pub fn config_text(mut self, text: impl Into<String>) -> RomBuilder {
        self.config = Some(text.into());
        self
    }

    /// Adds the raw CBFS file `name` with the contents of `path`.
    pub fn file(
        mut self,
        name: impl Into<String>,
        path: impl Into<PathBuf>,
        compression: Compression,
    ) -> RomBuilder {
        self.files.push((name.into(), path.into(), compression));
        self
    }

    /// Adds the raw CBFS file `name` like [`RomBuilder::file`], with a SHA-256 hash
    /// attribute that parkboot checks before using the file.
    pub fn file_with_sha256(
        mut self,
        name: impl Into<String>,
        path: impl Into<PathBuf>,
        compression: Compression,
    ) -> RomBuilder {
        let name = name.into();
        self.hashed.push(name.clone());
        self.file(name, path, compression)
    }

    /// Writes the ROM into a fresh temporary directory, removed when the [`Rom`] is
    /// dropped.
    pub fn build(&self) -> Result<Rom, String> {
        static ROMS: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "parkboot-rom-{}-{}",
            std::process::id(),
            ROMS.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let rom = Rom {
            path: dir.join("coreboot.rom"),
            dir,
        };
        fs::copy(&self.base, &rom.path)
            .map_err(|e| format!("copying the base ROM {}: {e}", self.base.display()))?;
        let listing = cbfstool(&rom.path, &["print"])?;
        let present = |name: &str| {
            listing
                .lines()
                .any(|line| line.split_whitespace().next() == Some(name))
        };
        let mut files: Vec<(String, PathBuf, Compression)> = self.files.clone();
        if let Some(text) = &self.config {
            let config = rom.dir.join("parkboot.cfg");
            fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
            files.insert(0, (CBFS_CONFIG.to_string(), config, Compression::None));
        }
        if present(CBFS_PAYLOAD) {
            cbfstool(&rom.path, &["remove", "-n", CBFS_PAYLOAD])?;
        }
        let path_text = |path: &Path| path.to_str().map(str::to_string);
        let payload = path_text(&self.payload)
            .ok_or_else(|| format!("{}: not a UTF-8 path", self.payload.display()))?;
        cbfstool(
            &rom.path,
            &[
                "add-payload",
                "-f",
                &payload,
                "-n",
                CBFS_PAYLOAD,
                "-c",
                "lzma",
            ],
        )?;
        for (name, path, compression) in &files {
            if present(name) {
                cbfstool(&rom.path, &["remove", "-n", name])?;
            }
            let file =
                path_text(path).ok_or_else(|| format!("{}: not a UTF-8 path", path.display()))?;
            let mut args = vec![
                "add",
                "-t",
                "raw",
                "-n",
                name,
                "-f",
                &file,
                "-c",
                compression.as_str(),
            ];
            if self.hashed.contains(name) {
                args.extend(["-A", "sha256"]);
            }
            cbfstool(&rom.path, &args)?;
        }
        Ok(rom)
    }
}

/// A ROM in its own temporary directory.
#[derive(Debug)]
pub struct Rom {
    pub path: PathBuf,
    dir: PathBuf,
}

impl Rom {
    /// `cbfstool print` of the ROM.
    pub fn layout(&self) -> Result<String, String> {
        cbfstool(&self.path, &["print"])
    }
}

impl Drop for Rom {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Parses `NAME=FILE[:lzma|lz4|none]` (the `--add` syntax of `scripts/rom`).
pub fn parse_cbfs_file(spec: &str) -> Result<(String, PathBuf, Compression), String> {
    let (name, file) = spec
        .split_once('=')
        .filter(|(name, file)| !name.is_empty() && !file.is_empty())
        .ok_or_else(|| format!("{spec}: expected NAME=FILE[:lzma|lz4|none]"))?;
    let (file, compression) = match file.rsplit_once(':') {
        Some((path, suffix)) => match Compression::parse(suffix) {
            Some(compression) => (path, compression),
            None => (file, Compression::None),
        },
        None => (file, Compression::None),
    };
    Ok((name.to_string(), PathBuf::from(file), compression))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cbfs_file_specs() {
        assert_eq!(
            parse_cbfs_file("parkboot/kernel=/k/testkernel:lzma").unwrap(),
            (
                "parkboot/kernel".to_string(),
                PathBuf::from("/k/testkernel"),
                Compression::Lzma
            )
        );
        assert_eq!(
            parse_cbfs_file("a=b:c").unwrap(),
            ("a".to_string(), PathBuf::from("b:c"), Compression::None)
        );
        assert_eq!(parse_cbfs_file("a=f:lz4").unwrap().2, Compression::Lz4);
        assert!(parse_cbfs_file("=f").is_err());
        assert!(parse_cbfs_file("a=").is_err());
        assert!(parse_cbfs_file("a").is_err());
    }
}
