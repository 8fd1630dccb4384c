#[test]
fn on_finish_survives_a_broken_configuration() {
    let broken = "on_finish = qemu-exit\nnot a setting\n[entry x]\non_finish = reset\n";
    assert!(parse(broken).is_err());
    assert_eq!(
        on_finish_despite_errors(Some(broken), ""),
        Some(OnFinish::QemuExit)
    );
    // The command line wins, as it does over a good configuration.
    assert_eq!(
        on_finish_despite_errors(Some(broken), "quiet parkboot.on_finish=reset"),
        Some(OnFinish::Reset)
    );
    assert_eq!(
        on_finish_despite_errors(None, "parkboot.on_finish=\"qemu-exit\""),
        Some(OnFinish::QemuExit)
    );
    // After `--`, in an entry, in a comment, or a bad value: not taken.
    assert_eq!(
        on_finish_despite_errors(None, "-- parkboot.on_finish=reset"),
        None
    );
    assert_eq!(
        on_finish_despite_errors(Some("[entry a]\non_finish = reset"), ""),
        None
    );
    assert_eq!(
        on_finish_despite_errors(Some("# on_finish = reset\non_finish = sometimes"), ""),
        None
    );
    assert_eq!(on_finish_despite_errors(None, ""), None);
}

use super::*;
use std::string::ToString;
use std::{format, vec};

fn err(text: &str) -> std::string::String {
    parse(text).unwrap_err().to_string()
}

fn name(s: &str) -> SourceName {
    SourceName::try_from(s).unwrap()
}

#[test]
fn defaults() {
    for text in ["", "\n\n", "# only a comment\n   # another\n", "  \t \r\n"] {
        let c = parse(text).unwrap();
        assert_eq!(c, Config::default());
        assert!(c.self_check);
        assert!(c.park);
        assert_eq!(c.on_finish, OnFinish::Halt);
        assert_eq!(c.ap_timeout_ms, 1000);
        assert!(c.entries.is_empty());
    }
}

const EXAMPLE: &str = r#"# global settings
self_check = on        # on|off: wake every AP through the mailbox at boot and time it
park = on              # on|off: off = baseline mode
on_finish = halt       # halt | reset | qemu-exit
ap_timeout_ms = 1000   # how long the BSP waits for an AP to reach the park loop

[entry test-kernel]
kernel = fw_cfg:opt/parkboot/kernel    # fw_cfg:NAME | fw_cfg:kernel | cbfs:NAME | module:N
initrd = fw_cfg:opt/parkboot/initrd    # optional, same sources
cmdline = "console=ttyS0"              # optional
format = auto          # auto | multiboot2 | linux
iterations = 10        # how many times to boot this entry in a loop (>= 1)
"#;

#[test]
fn documented_example() {
    let c = parse(EXAMPLE).unwrap();
    assert_eq!(c.entries.len(), 1);
    let e = &c.entries[0];
    assert_eq!(e.name, "test-kernel");
    assert_eq!(e.kernel, Source::FwCfg(name("opt/parkboot/kernel")));
    assert_eq!(e.initrd, Some(Source::FwCfg(name("opt/parkboot/initrd"))));
    assert_eq!(e.cmdline, "console=ttyS0");
    assert_eq!(e.format, Format::Auto);
    assert_eq!(e.iterations, 10);
    assert_eq!(c.entry("test-kernel"), Some(e));
    assert_eq!(c.entry("other"), None);
}

#[test]
fn shipped_default_config_parses() {
    let c = parse(include_str!("../../../configs/default.cfg")).unwrap();
    assert!(c.self_check);
    assert!(c.park);
    assert_eq!(c.on_finish, OnFinish::QemuExit);
    let e = c.entry("test-kernel").expect("the test kernel entry");
    assert_eq!((e.format, e.iterations), (Format::Multiboot2, 10));
    let linux = parse(include_str!("../../../configs/linux.cfg")).unwrap();
    let e = linux.entry("linux").expect("the Linux entry");
    assert_eq!(e.format, Format::Linux);
    assert!(e.initrd.is_some());
}

#[test]
fn global_keys() {
    let c = parse("self_check = off\npark = off\non_finish = qemu-exit\nap_timeout_ms = 250\n")
        .unwrap();
    assert!(!c.self_check);
    assert!(!c.park);
    assert_eq!(c.on_finish, OnFinish::QemuExit);
    assert_eq!(c.ap_timeout_ms, 250);
    assert_eq!(
        parse("on_finish = reset").unwrap().on_finish,
        OnFinish::Reset
    );
    assert_eq!(parse("on_finish=halt").unwrap().on_finish, OnFinish::Halt);
    assert_eq!(
        parse("ap_timeout_ms = 4294967295").unwrap().ap_timeout_ms,
        u32::MAX
    );
}

#[test]
fn entry_keys_and_defaults() {
    let c = parse("[entry minimal]\nkernel = module:0\n").unwrap();
    let e = &c.entries[0];
    assert_eq!(e.kernel, Source::Module(0));
    assert_eq!(e.initrd, None);
    assert_eq!(e.cmdline, "");
    assert_eq!(e.format, Format::Auto);
    assert_eq!(e.iterations, 1);

    let c = parse(
        "[entry a]\nkernel = cbfs:img/linux\ninitrd = module:3\nformat = linux\n\
             iterations = 7\ncmdline = quiet loglevel=0\n\
             [entry b]\nkernel = fw_cfg:kernel\ninitrd = fw_cfg:initrd\nformat = multiboot2\n",
    )
    .unwrap();
    let a = &c.entries[0];
    assert_eq!(a.kernel, Source::Cbfs(name("img/linux")));
    assert_eq!(a.initrd, Some(Source::Module(3)));
    assert_eq!(a.format, Format::Linux);
    assert_eq!(a.iterations, 7);
    assert_eq!(a.cmdline, "quiet loglevel=0");
    let b = &c.entries[1];
    assert_eq!(b.kernel, Source::QemuKernel);
    assert_eq!(b.initrd, Some(Source::QemuInitrd));
    assert_eq!(b.format, Format::Multiboot2);
}

#[test]
fn sources_display_as_written() {
    for text in [
        "fw_cfg:opt/x",
        "fw_cfg:kernel",
        "fw_cfg:initrd",
        "cbfs:fallback/linux",
        "module:12",
    ] {
        assert_eq!(parse_source("kernel", text).unwrap().to_string(), text);
    }
}

#[test]
fn quoting_and_comments() {
    let c = parse(
        "[entry q]\nkernel = \"fw_cfg:opt/k\"   # quoted source\n\
             cmdline = \"a # not a comment \\\"x y\\\" c:\\\\d \\n\"  # comment\n",
    )
    .unwrap();
    let e = &c.entries[0];
    assert_eq!(e.kernel, Source::FwCfg(name("opt/k")));
    assert_eq!(e.cmdline, r#"a # not a comment "x y" c:\d \n"#);

    // Unquoted: '#' starts a comment, inner spaces stay, quotes inside are kept.
    let c = parse("[entry u]\nkernel = module:1\ncmdline = a b#c\n").unwrap();
    assert_eq!(c.entries[0].cmdline, "a b");
    let c = parse("[entry u]\nkernel = module:1\ncmdline = foo=\"a # b\" c\n").unwrap();
    assert_eq!(c.entries[0].cmdline, "foo=\"a # b\" c");
    // Quotes keep leading and trailing spaces; an empty quoted value is empty.
    let c = parse("[entry u]\nkernel = module:1\ncmdline = \"  x  \"\n").unwrap();
    assert_eq!(c.entries[0].cmdline, "  x  ");
    let c = parse("[entry u]\nkernel = module:1\ncmdline = \"\"\n").unwrap();
    assert_eq!(c.entries[0].cmdline, "");
    // Windows line endings and indentation.
    let c = parse("  park = off\r\n\t[entry w]  \r\n  kernel = module:2\r\n").unwrap();
    assert!(!c.park);
    assert_eq!(c.entries[0].kernel, Source::Module(2));
    // Quoted global values.
    assert_eq!(
        parse("on_finish = \"reset\"").unwrap().on_finish,
        OnFinish::Reset
    );
}

#[test]
fn quoting_errors() {
    assert_eq!(
        err("[entry q]\nkernel = module:0\ncmdline = \"abc\n"),
        "line 3: missing closing quote"
    );
    assert_eq!(
        err("[entry q]\nkernel = module:0\ncmdline = \"abc\" def\n"),
        "line 3: text after the closing quote"
    );
}

/// `sha256sum` of the empty input: a digest with every hex digit 0-f in it.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

#[test]
fn pinned_images() {
    let c = parse(&format!(
        "[entry pinned]\nkernel = cbfs:parkboot/kernel\ninitrd = fw_cfg:opt/initrd\n\
             kernel_sha256 = {EMPTY_SHA256}\ninitrd_sha256 = {}\n\
             [entry loose]\nkernel = module:0\n",
        EMPTY_SHA256.to_uppercase()
    ))
    .unwrap();
    let pinned = c.entry("pinned").unwrap();
    let expected = [
        0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9,
        0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52,
        0xb8, 0x55,
    ];
    assert_eq!(pinned.kernel_sha256, Some(Sha256Pin(expected)));
    // Upper case reads the same, and the digest prints as sha256sum does.
    assert_eq!(pinned.initrd_sha256, Some(Sha256Pin(expected)));
    assert_eq!(Sha256Pin(expected).to_string(), EMPTY_SHA256);
    assert_eq!(Sha256Pin::of(b""), Sha256Pin(expected));
    assert_eq!(
        Sha256Pin::of(b"abc").to_string(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let loose = c.entry("loose").unwrap();
    assert_eq!((loose.kernel_sha256, loose.initrd_sha256), (None, None));
    // Quoted, with a comment after it.
    let c = parse(&format!(
        "[entry q]\nkernel = module:0\nkernel_sha256 = \"{EMPTY_SHA256}\" # pinned\n"
    ))
    .unwrap();
    assert_eq!(c.entries[0].kernel_sha256, Some(Sha256Pin(expected)));
}

#[test]
fn pin_errors() {
    let entry = "[entry e]\nkernel = module:0\ninitrd = module:1\n";
    assert_eq!(
            err(&format!("{entry}kernel_sha256 = {}", &EMPTY_SHA256[..63])),
            "line 4: kernel_sha256 must be 64 hexadecimal digits (a SHA-256 as sha256sum prints it), found 63 characters"
        );
    assert_eq!(
            err(&format!("{entry}initrd_sha256 = {EMPTY_SHA256}0")),
            "line 4: initrd_sha256 must be 64 hexadecimal digits (a SHA-256 as sha256sum prints it), found 65 characters"
        );
    let mut not_hex = EMPTY_SHA256.to_string();
    not_hex.replace_range(9..10, "g");
    assert_eq!(
            err(&format!("{entry}kernel_sha256 = {not_hex}")),
            "line 4: kernel_sha256 must be 64 hexadecimal digits (a SHA-256 as sha256sum prints it), found 'g' at position 10"
        );
    // A sha256sum line pasted whole: the file name makes it too long.
    assert!(
        err(&format!("{entry}kernel_sha256 = {EMPTY_SHA256}  vmlinuz"))
            .contains("found 73 characters")
    );
    // Multi-byte characters are counted as characters, never split.
    let wide = "é".repeat(64);
    assert!(err(&format!("{entry}kernel_sha256 = {wide}")).ends_with("found 'é' at position 1"));
    assert_eq!(
            err(&format!("{entry}kernel_sha256 = ")),
            "line 4: kernel_sha256 must be 64 hexadecimal digits (a SHA-256 as sha256sum prints it), found 0 characters"
        );
    assert_eq!(
        err(&format!(
            "{entry}kernel_sha256 = {EMPTY_SHA256}\nkernel_sha256 = {EMPTY_SHA256}"
        )),
        "line 5: 'kernel_sha256' is already set on line 4"
    );
    assert_eq!(
            err(&format!("[entry e]\nkernel = module:0\n\ninitrd_sha256 = {EMPTY_SHA256}\n[entry f]\nkernel = module:1")),
            "line 4: entry 'e' pins its initrd with initrd_sha256 but has no initrd line"
        );
    assert_eq!(
        err(&format!("kernel_sha256 = {EMPTY_SHA256}")),
        "line 1: 'kernel_sha256' belongs in an [entry NAME] section"
    );
    assert_eq!(
        err(&format!(
            "[entry e]\nkernel = module:0\nsha256 = {EMPTY_SHA256}"
        )),
        "line 3: unknown key 'sha256' in [entry e]"
    );
}

#[test]
fn messages_from_the_brief() {
    assert_eq!(
        err("# c\n\n\n\n[entry test-kernel]\nkernel = module:0\nitrations = 3\n"),
        "line 7: unknown key 'itrations' in [entry test-kernel]"
    );
    assert_eq!(
        err("self_check = on\npark = on\non_finish = exit\n"),
        "line 3: on_finish must be halt, reset or qemu-exit, found 'exit'"
    );
    assert_eq!(
        err("\n\n\n\n\n\n\n\n[entry x]\ncmdline = \"quiet\"\n"),
        "line 9: entry 'x' has no kernel"
    );
}

#[test]
fn value_errors() {
    assert_eq!(
        err("park = yes"),
        "line 1: park must be on or off, found 'yes'"
    );
    assert_eq!(
        err("self_check = ON"),
        "line 1: self_check must be on or off, found 'ON'"
    );
    assert_eq!(
        err("ap_timeout_ms = 0"),
        "line 1: ap_timeout_ms must be a whole number from 1 to 4294967295, found '0'"
    );
    assert_eq!(
        err("ap_timeout_ms = 4294967296"),
        "line 1: ap_timeout_ms must be a whole number from 1 to 4294967295, found '4294967296'"
    );
    assert_eq!(
        err("ap_timeout_ms = -5"),
        "line 1: ap_timeout_ms must be a whole number from 1 to 4294967295, found '-5'"
    );
    assert_eq!(
        err("[entry e]\nkernel = module:0\niterations = 0"),
        "line 3: iterations must be a whole number from 1 to 4294967295, found '0'"
    );
    assert_eq!(
        err("[entry e]\nkernel = module:0\nformat = elf"),
        "line 3: format must be auto, multiboot2 or linux, found 'elf'"
    );
    let bad_source = "must be fw_cfg:NAME, fw_cfg:kernel, fw_cfg:initrd, cbfs:NAME or module:N";
    assert_eq!(
        err("[entry e]\nkernel = /boot/vmlinuz"),
        format!("line 2: kernel {bad_source}, found '/boot/vmlinuz'")
    );
    assert_eq!(
        err("[entry e]\nkernel = http:x"),
        format!("line 2: kernel {bad_source}, found 'http:x'")
    );
    assert_eq!(
        err("[entry e]\nkernel = module:one"),
        format!("line 2: kernel {bad_source}, found 'module:one'")
    );
    assert_eq!(
        err("[entry e]\nkernel = module:0\ninitrd = cbfs:"),
        "line 3: a source needs a name after ':'"
    );
    let long_fw_cfg = format!("[entry e]\nkernel = fw_cfg:opt/{}", "k".repeat(60));
    assert_eq!(
        err(&long_fw_cfg),
        "line 2: the value of 'kernel' is longer than 55 bytes"
    );
    let long_cbfs = format!("[entry e]\nkernel = cbfs:{}", "k".repeat(65));
    assert_eq!(
        err(&long_cbfs),
        "line 2: the value of 'kernel' is longer than 64 bytes"
    );
    let long_cmdline = format!(
        "[entry e]\nkernel = module:0\ncmdline = \"{}\"",
        "x".repeat(MAX_CMDLINE + 1)
    );
    assert_eq!(
        err(&long_cmdline),
        "line 3: the value of 'cmdline' is longer than 1024 bytes"
    );
    let fits = format!(
        "[entry e]\nkernel = module:0\ncmdline = {}",
        "x".repeat(MAX_CMDLINE)
    );
    assert_eq!(parse(&fits).unwrap().entries[0].cmdline.len(), MAX_CMDLINE);
    // A long offending value is quoted shortened.
    let msg = err(&format!("park = {}", "y".repeat(100)));
    assert!(msg.ends_with("...'"), "{msg}");
    assert!(msg.len() < 120, "{msg}");
}

#[test]
fn structure_errors() {
    assert_eq!(
        err("park"),
        "line 1: expected 'key = value' or '[entry NAME]'"
    );
    assert_eq!(err(" = on"), "line 1: missing key before '='");
    assert_eq!(
        err("colour = blue"),
        "line 1: unknown key 'colour' in the global settings"
    );
    assert_eq!(
        err("[entry a]\nkernel = module:0\npark = off"),
        "line 3: 'park' is a global setting: put it before the first [entry] section"
    );
    assert_eq!(
        err("kernel = module:0"),
        "line 1: 'kernel' belongs in an [entry NAME] section"
    );
    assert_eq!(
        err("park = on\n# again\npark = off"),
        "line 3: 'park' is already set on line 1"
    );
    assert_eq!(
        err("[entry a]\nkernel = module:0\nkernel = module:1"),
        "line 3: 'kernel' is already set on line 2"
    );
    assert_eq!(
        err("[global]"),
        "line 1: unknown section '[global]': sections are [entry NAME]"
    );
    assert_eq!(
        err("[entry a"),
        "line 1: a section header must end with ']'"
    );
    assert_eq!(
        err("[entry]"),
        "line 1: entry name '' must be 1 to 32 bytes without spaces"
    );
    assert_eq!(
        err("[entry two words]"),
        "line 1: entry name 'two words' must be 1 to 32 bytes without spaces"
    );
    assert!(parse(&format!("[entry {}]\nkernel = module:0", "n".repeat(32))).is_ok());
    assert_eq!(
        err(&format!("[entry {}]", "n".repeat(33))),
        format!(
            "line 1: entry name '{}' must be 1 to 32 bytes without spaces",
            "n".repeat(33)
        )
    );
    assert_eq!(
        err("[entry a]\nkernel = module:0\n[entry a]\nkernel = module:1"),
        "line 3: entry 'a' is defined twice"
    );
    // The same key may appear once per entry.
    let c = parse("[entry a]\nkernel = module:0\n[entry b]\nkernel = module:1").unwrap();
    assert_eq!(c.entries.len(), 2);
    // A missing kernel is reported when the next section starts, at its header.
    assert_eq!(
        err("[entry a]\n[entry b]\nkernel = module:0"),
        "line 1: entry 'a' has no kernel"
    );
}

#[test]
fn too_many_entries() {
    let mut text = std::string::String::new();
    for i in 0..MAX_ENTRIES {
        text.push_str(&format!("[entry e{i}]\nkernel = module:{i}\n"));
    }
    let c = parse(&text).unwrap();
    assert_eq!(c.entries.len(), MAX_ENTRIES);
    assert_eq!(c.entries[MAX_ENTRIES - 1].kernel, Source::Module(7));
    text.push_str("[entry one-too-many]\nkernel = module:8\n");
    assert_eq!(
        err(&text),
        "line 17: too many entries: parkboot holds at most 8"
    );
}

#[test]
fn cmdline_overrides() {
    let mut c = parse(EXAMPLE).unwrap();
    let before = c.clone();
    c.apply_cmdline(
        "console=ttyS0 parkboot.park=off quiet parkboot.on_finish=qemu-exit \
             parkboot.ap_timeout_ms=\"50\" parkboot.self_check=off root=\"/dev/a b\"",
    )
    .unwrap();
    assert!(!c.park);
    assert!(!c.self_check);
    assert_eq!(c.on_finish, OnFinish::QemuExit);
    assert_eq!(c.ap_timeout_ms, 50);
    assert_eq!(c.entries, before.entries);

    // Later words win; words after "--" belong to init.
    let mut c = Config::default();
    c.apply_cmdline("parkboot.park=off parkboot.park=on -- parkboot.park=off")
        .unwrap();
    assert!(c.park);
    // Nothing of ours: nothing changes.
    let mut c = Config::default();
    c.apply_cmdline("").unwrap();
    c.apply_cmdline("   console=ttyS0  nokaslr  ").unwrap();
    assert_eq!(c, Config::default());
}

#[test]
fn cmdline_override_errors_change_nothing() {
    let mut c = Config::default();
    let e = c
        .apply_cmdline("parkboot.park=off parkboot.on_finish=exit")
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "command line: on_finish must be halt, reset or qemu-exit, found 'exit'"
    );
    assert_eq!(
        c,
        Config::default(),
        "a failed override must not half-apply"
    );
    assert_eq!(
        c.apply_cmdline("parkboot.parkk=on")
            .unwrap_err()
            .to_string(),
        "command line: unknown key 'parkk' in the global settings"
    );
    assert_eq!(
        c.apply_cmdline("parkboot.kernel=module:0")
            .unwrap_err()
            .to_string(),
        "command line: unknown key 'kernel' in the global settings"
    );
    assert_eq!(
        c.apply_cmdline("parkboot.park").unwrap_err().to_string(),
        "command line: 'parkboot.park' is not of the form parkboot.KEY=VALUE"
    );
}

#[test]
fn words_split_like_linux() {
    let words: vec::Vec<_> = Words::new("  a b=\"c d\"\te  \"f g\" ").collect();
    assert_eq!(words, ["a", "b=\"c d\"", "e", "\"f g\""]);
    assert_eq!(Words::new("").count(), 0);
    assert_eq!(
        Words::new("unterminated=\"x y").collect::<vec::Vec<_>>(),
        ["unterminated=\"x y"]
    );
}

#[test]
fn park_wait_resolves_by_cpu_and_setting() {
    use WaitMode::*;
    // (setting, MONITOR, timer usable) -> mode
    let cases = [
        (ParkWait::Auto, true, true, Mwait),
        (ParkWait::Auto, true, false, Mwait),
        (ParkWait::Auto, false, true, Hlt),
        (ParkWait::Auto, false, false, Pause),
        (ParkWait::Pause, true, true, Pause),
        (ParkWait::Hlt, true, true, Hlt),
        (ParkWait::Hlt, true, false, Pause),
        (ParkWait::Mwait, true, true, Mwait),
        (ParkWait::Mwait, false, true, Pause),
        (ParkWait::Mwait, false, false, Pause),
    ];
    for (setting, monitor, timer, mode) in cases {
        assert_eq!(
            setting.resolve(monitor, timer),
            mode,
            "{setting:?} monitor={monitor} timer={timer}"
        );
    }
}

#[test]
fn park_timer_count_from_rate_and_period() {
    assert_eq!(park_timer_initial_count(1_000_000_000, 200), 200_000);
    assert_eq!(park_timer_initial_count(25_000_000, 100), 2_500);
    assert_eq!(park_timer_initial_count(1_000, 1), 1);
    assert_eq!(park_timer_initial_count(u64::MAX, 100_000), u32::MAX);
}

#[test]
fn fault_test_settings() {
    assert_eq!(parse("").unwrap().fault_test, FaultTest::Off);
    for (text, expected) in [
        ("off", FaultTest::Off),
        ("on", FaultTest::Unmapped),
        ("while-logging", FaultTest::WhileLogging),
        ("panic-while-logging", FaultTest::PanicWhileLogging),
    ] {
        let c = parse(&format!("fault_test = {text}\n")).unwrap();
        assert_eq!(c.fault_test, expected, "{text}");
    }
    assert_eq!(
        parse("fault_test = yes").unwrap_err().to_string(),
        "line 1: fault_test must be on, off, while-logging or panic-while-logging, found 'yes'"
    );
}

#[test]
fn park_test_settings() {
    let c = parse("").unwrap();
    assert_eq!(
        (c.self_check_rounds, c.nmi_test, c.park_wait),
        (1, false, ParkWait::Auto)
    );
    let c = parse("self_check_rounds = 100\nnmi_test = on\npark_wait = pause\n").unwrap();
    assert_eq!(
        (c.self_check_rounds, c.nmi_test, c.park_wait),
        (100, true, ParkWait::Pause)
    );
    assert_eq!(
        parse("self_check_rounds = 1001").unwrap_err().to_string(),
        "line 1: self_check_rounds must be a whole number from 1 to 1000, found '1001'"
    );
    assert_eq!(
        parse("park_wait = spin").unwrap_err().to_string(),
        "line 1: park_wait must be auto, pause, hlt or mwait, found 'spin'"
    );
    assert_eq!(
        parse("park_wait = mwait").unwrap().park_wait,
        ParkWait::Mwait
    );
    let c = parse("park_wait = hlt\npark_timer_us = 50\n").unwrap();
    assert_eq!((c.park_wait, c.park_timer_us), (ParkWait::Hlt, 50));
    assert_eq!(parse("").unwrap().park_timer_us, DEFAULT_PARK_TIMER_US);
    assert_eq!(
            parse("park_timer_us = 100001").unwrap_err().to_string(),
            "line 1: park_timer_us must be a whole number of microseconds from 1 to 100000, found '100001'"
        );
    assert!(parse("park_timer_us = 0").is_err());
    assert!(!parse("").unwrap().x2apic);
    assert!(parse("x2apic = on").unwrap().x2apic);
    let mut c = parse("").unwrap();
    c.apply_cmdline("parkboot.self_check_rounds=7 parkboot.nmi_test=on")
        .unwrap();
    assert_eq!((c.self_check_rounds, c.nmi_test), (7, true));
}
