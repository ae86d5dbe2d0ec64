//! `apply_hostile`: arbitrary tar bytes applied by `layer_apply::Applier` into a root with a
//! canary tree around it, in a jail where `/` is a throwaway tmpfs (see `ovdiff_fuzz::jail`).
//!
//! Input: `[flags, compression, tar bytes...]` (see [`Flags`]). The tar is applied as given, or
//! (the default) with every header's checksum rewritten first so mutations of names, types and
//! sizes reach the applier.
//!
//! Asserts, whatever the result:
//! - nothing outside the root changed: a snapshot of the whole jail (every entry's type, mode,
//!   owner, size, inode, nlink, mtime/ctime in ns, content, link target and xattrs) is equal
//!   before and after; the root is still the same directory inode;
//! - no panic; a failure is a typed `ApplyError`, never `Root`/`Layer` (the root exists and no
//!   layer file is involved), its `applied()` count and an Ok's `entries() + skipped` never
//!   exceed the blocks of the stream that could be headers (`rawtar::max_headers`), and its
//!   message names the entry;
//! - inside the root, no xattr the policy does not allow: no `trusted.*` ever except the
//!   applier's own `trusted.overlay.opaque=y` in trusted overlay form, no `user.overlay.*` except
//!   `user.overlay.opaque=y` in user overlay form, nothing but `security.capability` in compat
//!   mode.

#![no_main]

use std::io::Write as _;

use layer_apply::{
    Applier, ApplyError, OverlayNamespace, OverlayWhiteouts, TrustedXattrs, XattrPolicy,
};
use libfuzzer_sys::fuzz_target;
use ovdiff_fuzz::jail::{reset_target, Jail, View, NOT_CANARY};
use ovdiff_fuzz::rawtar::{fix_checksums, max_headers};
use ovdiff_fuzz::walk::{diff_snapshots, snapshot, walk, WalkOptions};

/// The first input byte: the applier's options and how the tar bytes are used.
#[derive(Debug, Clone, Copy)]
struct Flags(u8);

impl Flags {
    /// Apply the bytes as they are (no checksum fix-up).
    const RAW: u8 = 1 << 0;
    /// Overlay form (whiteouts become 0/0 devices, opaque an xattr).
    const OVERLAY: u8 = 1 << 1;
    /// In overlay form, the `user.overlay.*` namespace instead of `trusted.overlay.*`.
    const USERXATTR: u8 = 1 << 2;
    /// `TrustedXattrs::Skip` instead of `Refuse`.
    const SKIP_TRUSTED: u8 = 1 << 3;
    /// `XattrPolicy::Wide` instead of `Compat`.
    const WIDE: u8 = 1 << 4;
    /// `preserve_owner(false)`.
    const NO_OWNER: u8 = 1 << 5;
    /// Start from a populated root (symlinks pointing out, a hardlink pair, `etc/passwd`).
    const BASE: u8 = 1 << 6;
    /// `require_end_marker(false)`.
    const NO_END_MARKER: u8 = 1 << 7;

    fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    fn overlay(self) -> Option<OverlayWhiteouts> {
        self.has(Self::OVERLAY).then(|| {
            if self.has(Self::USERXATTR) {
                OverlayWhiteouts::user()
            } else {
                OverlayWhiteouts::trusted()
            }
        })
    }

    fn policy(self) -> XattrPolicy {
        if self.has(Self::WIDE) {
            XattrPolicy::Wide
        } else {
            XattrPolicy::Compat
        }
    }

    fn applier(self, view: &View) -> Applier {
        let mut a = Applier::new(&view.target)
            .xattr_policy(self.policy())
            .trusted_xattrs(if self.has(Self::SKIP_TRUSTED) {
                TrustedXattrs::Skip
            } else {
                TrustedXattrs::Refuse
            })
            .preserve_owner(!self.has(Self::NO_OWNER))
            .require_end_marker(!self.has(Self::NO_END_MARKER));
        if let Some(form) = self.overlay() {
            a = a.overlay_whiteouts(form);
        }
        a
    }
}

/// The layer bytes the applier reads: the tar (checksums fixed unless RAW), compressed as the
/// second input byte says (0 mod 4 or 3: plain, 1: gzip, 2: zstd).
fn encode(flags: Flags, compression: u8, tar: &[u8]) -> Vec<u8> {
    let mut tar = tar.to_vec();
    if !flags.has(Flags::RAW) {
        fix_checksums(&mut tar);
    }
    match compression % 4 {
        1 => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let _ = gz.write_all(&tar);
            gz.finish().unwrap_or_default()
        }
        2 => zstd::encode_all(&tar[..], 1).unwrap_or_default(),
        _ => tar,
    }
}

/// A populated root like the breakout fixtures': symlinks out of the root (absolute and
/// relative, to the canary and to `/etc`), a hardlink pair, `etc/passwd`, nested dirs.
fn populate(view: &View) {
    use std::os::unix::fs::symlink;
    let t = &view.target;
    let ok = |r: std::io::Result<()>| r.unwrap_or_else(|e| panic!("populate root: {e}"));
    ok(std::fs::create_dir_all(t.join("etc")));
    ok(std::fs::write(t.join("etc/passwd"), b"inside"));
    ok(std::fs::create_dir_all(t.join("d/sub")));
    ok(std::fs::write(t.join("d/f"), b"data"));
    ok(std::fs::hard_link(t.join("d/f"), t.join("d/f2")));
    ok(symlink("/canary", t.join("abs")));
    ok(symlink("../canary", t.join("rel")));
    ok(symlink("/etc", t.join("localetc")));
    ok(symlink("../../../../etc/passwd", t.join("passwdlink")));
    ok(symlink("/dne", t.join("dead")));
}

/// Whether the applier may have left xattr `name = value` in the root under `flags`.
fn xattr_allowed(flags: Flags, name: &[u8], value: &[u8]) -> bool {
    if let Some(form) = flags.overlay() {
        let own = match form.namespace {
            OverlayNamespace::Trusted => &b"trusted.overlay.opaque"[..],
            OverlayNamespace::User => &b"user.overlay.opaque"[..],
        };
        if name == own {
            return value == b"y";
        }
    }
    if name.starts_with(b"trusted.") {
        return false;
    }
    flags.policy().allows(name)
}

/// A tar name as `ApplyError` shows it: the one escaped form of `fs_change::escape`.
fn display_name(name: &[u8]) -> String {
    fs_change::escape::Escaped(name).to_string()
}

fn check(data: &[u8]) {
    let [flags, compression, tar @ ..] = data else {
        return;
    };
    let flags = Flags(*flags);
    let layer = encode(flags, *compression, tar);
    // Not the headers tar-rs reads: the applier's reader takes PAX `size` overrides, old GNU
    // sparse extension blocks and signed checksums, so it may legitimately read more headers
    // than tar-rs 0.4 in raw mode (seeds `pax_size_hides_headers`, `signed_checksum`). Nor a
    // second copy of the applier's framing, which would check the reader against itself. The
    // bound counts every aligned block that passes a looser checksum test than the applier's:
    // sound under any framing, since each reported entry was read from one such block.
    let headers = max_headers(&layer);

    Jail::get().run(move |view| {
        reset_target(view);
        if flags.has(Flags::BASE) {
            populate(view);
        }
        let before = snapshot(&view.top, NOT_CANARY);
        let root_before = walk(&view.target, &[], WalkOptions::default());

        let res = flags.applier(view).apply(&layer[..]);

        let after = snapshot(&view.top, NOT_CANARY);
        let diff = diff_snapshots(&before, &after);
        assert!(
            diff.is_empty(),
            "apply wrote outside its root (result: {res:?}):\n{diff}"
        );
        let root_after = walk(
            &view.target,
            &[],
            WalkOptions {
                data: false,
                xattrs: true,
            },
        );
        let (Some(rb), Some(ra)) = (root_before.first(), root_after.first()) else {
            panic!("the apply root is gone (result: {res:?})");
        };
        assert_eq!(
            (rb.stat.st_ino, rb.file_type()),
            (ra.stat.st_ino, ra.file_type()),
            "the apply root was replaced (result: {res:?})"
        );

        match &res {
            Ok(stats) => assert!(
                stats.entries() + stats.skipped <= headers,
                "stats count {} entries + {} skipped from a stream of {headers} possible headers: \
                 {stats:?}",
                stats.entries(),
                stats.skipped
            ),
            Err(e @ (ApplyError::Root { .. } | ApplyError::Layer { .. })) => {
                panic!("impossible error for an existing root and an in-memory layer: {e:?}")
            }
            Err(e) => {
                assert!(
                    e.applied() <= headers,
                    "error says {} entries applied from a stream of {headers} possible headers: \
                     {e:?}",
                    e.applied()
                );
                if let ApplyError::Entry { path, .. } = e {
                    let msg = e.to_string();
                    let shown = display_name(path);
                    assert!(
                        msg.contains(&shown),
                        "entry error message {msg:?} does not name the entry {shown:?}"
                    );
                }
            }
        }
        if let Err(e) = res {
            // The io::Error conversion keeps the kind a caller branches on.
            let kind = e.kind();
            let io: std::io::Error = e.into();
            assert_eq!(io.kind(), kind, "io::Error from ApplyError lost its kind");
        }

        for node in &root_after {
            for (name, value) in &node.xattrs {
                assert!(
                    xattr_allowed(flags, name, value),
                    "xattr {:?}={:?} on /{} is outside the policy (flags {:#010b})",
                    String::from_utf8_lossy(name),
                    String::from_utf8_lossy(value),
                    String::from_utf8_lossy(&node.path),
                    flags.0
                );
            }
        }
    });
}

fuzz_target!(|data: &[u8]| check(data));
