//! `mount_options`: arbitrary overlay option strings through `ovdiff::mounts::OverlayConfig`.
//!
//! Input: `[defaults, text...]`. The first byte's low six bits are the overlay module defaults
//! (`KernelDefaults`: redirect_dir, redirect_always_follow, index, nfs_export, metacopy,
//! xino_auto); the rest is text (invalid UTF-8 replaced), read two ways: as an option list, one
//! option per line (`OverlayConfig::parse`, containerd's `Mount.Options`), and whole as a
//! mount(2) data string (`OverlayConfig::parse_data`, commas split, `\` escapes).
//!
//! Asserts, for each config that parses:
//! - `render()` succeeds (every path came from a `str`) and `parse(render(c)) == c`, and
//!   rendering is stable: `render(parse(render(c))) == render(c)`;
//! - when no kept-verbatim option (flag or unrecognized) is empty or holds `,` or `\`, the
//!   rendered list joined with `,` is a data string that `parse_data` reads back as `c`;
//! - `effective()` obeys the kernel's `ovl_fs_params_verify` outcomes: metacopy only with
//!   `redirect_dir=on`, `nfs_export` only with `index`, `userxattr` forces `nofollow` and no
//!   metacopy and refuses verity, verity implies metacopy, no upper means no `volatile` and no
//!   `uuid=on`;
//! - `hazards()` is empty exactly when every option was understood, the kernel would mount it,
//!   and neither `index` nor `nfs_export` is in force; each unrecognized option is a hazard.
//!
//! A config that fails to parse must fail with a typed `MountError`, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ovdiff::mounts::{
    Hazard, KernelDefaults, MountError, OverlayConfig, RedirectMode, UuidMode, Verity,
};

fn defaults(bits: u8) -> KernelDefaults {
    KernelDefaults {
        redirect_dir: bits & 1 != 0,
        redirect_always_follow: bits & 2 != 0,
        index: bits & 4 != 0,
        nfs_export: bits & 8 != 0,
        metacopy: bits & 16 != 0,
        xino_auto: bits & 32 != 0,
    }
}

fn check_config(cfg: &OverlayConfig, how: &str, d: &KernelDefaults) {
    let rendered = cfg.render().unwrap_or_else(|e| {
        panic!("{how}: config parsed from text does not render: {e}\n{cfg:#?}")
    });
    let reparsed = OverlayConfig::parse(&rendered);
    assert_eq!(
        reparsed.as_ref(),
        Ok(cfg),
        "{how}: parse(render(c)) != c; rendered as {rendered:?}"
    );
    let rerendered = reparsed.as_ref().ok().and_then(|c| c.render().ok());
    assert_eq!(
        rerendered.as_ref(),
        Some(&rendered),
        "{how}: render is not stable"
    );

    let verbatim_safe = cfg
        .flags
        .iter()
        .chain(&cfg.unrecognized)
        .all(|o| !o.is_empty() && !o.contains(',') && !o.contains('\\'));
    if verbatim_safe {
        let data = rendered.join(",");
        assert_eq!(
            OverlayConfig::parse_data(&data).as_ref(),
            Ok(cfg),
            "{how}: parse_data(render(c).join(\",\")) != c; data string {data:?}"
        );
    }

    let hazards = cfg.hazards(d);
    let effective = cfg.effective(d);
    match &effective {
        Ok(e) => {
            let ctx = || format!("{how}: effective {e:?} of {rendered:?} under {d:?}");
            assert!(
                !e.metacopy || e.redirect == RedirectMode::On,
                "metacopy without redirect_dir=on: {}",
                ctx()
            );
            assert!(
                !e.nfs_export || e.index,
                "nfs_export without index: {}",
                ctx()
            );
            if cfg.userxattr {
                assert!(
                    e.redirect == RedirectMode::NoFollow && !e.metacopy,
                    "userxattr with redirects or metacopy: {}",
                    ctx()
                );
                assert_eq!(e.verity, Verity::Off, "userxattr with verity: {}", ctx());
            }
            if e.verity != Verity::Off {
                assert!(e.metacopy, "verity without metacopy: {}", ctx());
            }
            assert_eq!(e.has_upper, cfg.upperdir.is_some(), "has_upper: {}", ctx());
            if !e.has_upper {
                assert!(
                    !e.volatile && e.uuid != UuidMode::On && (!e.index || e.nfs_export),
                    "non-upper mount with volatile, uuid=on or index: {}",
                    ctx()
                );
            }
        }
        Err(MountError::Conflict { .. }) => {}
        Err(other) => panic!("{how}: effective() failed with a non-conflict error: {other:?}"),
    }
    let understood = cfg.unrecognized.is_empty();
    let safe = matches!(&effective, Ok(e) if !e.index && !e.nfs_export);
    assert_eq!(
        hazards.is_empty(),
        understood && safe,
        "{how}: hazards {hazards:?} for {rendered:?} (effective {effective:?})"
    );
    let unknown = hazards
        .iter()
        .filter(|h| matches!(h, Hazard::UnknownOption { .. } | Hazard::BadValue { .. }))
        .count();
    assert_eq!(
        unknown,
        cfg.unrecognized.len(),
        "{how}: {} unrecognized options but {unknown} unknown/bad-value hazards: {hazards:?}",
        cfg.unrecognized.len()
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&bits, text)) = data.split_first() else {
        return;
    };
    let d = defaults(bits);
    let text = String::from_utf8_lossy(text);

    let list: Vec<&str> = text.split('\n').collect();
    match OverlayConfig::parse(&list) {
        Ok(cfg) => check_config(&cfg, "option list", &d),
        Err(e) => {
            // Typed, printable, and an io::Error of kind InvalidInput.
            let _ = e.to_string();
            assert_eq!(
                std::io::Error::from(e).kind(),
                std::io::ErrorKind::InvalidInput
            );
        }
    }
    match OverlayConfig::parse_data(&text) {
        Ok(cfg) => check_config(&cfg, "data string", &d),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
