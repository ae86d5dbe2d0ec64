//! Writes the committed seed corpora under `fuzz/seeds/<target>/`.
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example gen_corpus            # all targets
//! cargo run --manifest-path fuzz/Cargo.toml --example gen_corpus -- apply_hostile
//! ```
//!
//! Seeds are deterministic; rerunning rewrites the same files. `apply_hostile` seeds are
//! containerd's `TestBreakouts` cases (pkg/archive/tar_test.go) plus the escapes our
//! `layer-apply/tests/breakouts.rs` adds, each as `[flags, compression, tar]`.

use std::fs;
use std::path::{Path, PathBuf};

use ovdiff_fuzz::rawtar::{RawEntry as E, RawTar as Tar};
use treegen::rawtar::{padded, pax_header, pax_record, set_signed_checksum};

/// `apply_hostile` flag bits (see `fuzz_targets/apply_hostile.rs`).
const RAW: u8 = 1 << 0;
const OVERLAY: u8 = 1 << 1;
const USERXATTR: u8 = 1 << 2;
const SKIP_TRUSTED: u8 = 1 << 3;
const WIDE: u8 = 1 << 4;
const BASE: u8 = 1 << 6;
const NO_END_MARKER: u8 = 1 << 7;

fn passwd_layer() -> Tar {
    Tar::new()
        .add(E::dir("etc").mode(0o770))
        .add(E::file("/etc/passwd", b"inside"))
}

/// containerd's breakout cases, and ours aimed at the jail's canary (`/canary`, `/etc`).
fn breakouts() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("symlink_absolute", Tar::new().add(E::dir("etc")).add(E::symlink("/etc", "localetc")).add(E::file("/localetc/unbroken", b"unbroken")).finish()),
        ("symlink_up_and_out", Tar::new().add(E::dir("etc")).add(E::dir("dummy")).add(E::symlink("/dummy/../etc", "localetc")).add(E::file("/localetc/unbroken", b"unbroken")).finish()),
        ("symlink_multiple_absolute", Tar::new().add(E::dir("etc")).add(E::dir("dummy")).add(E::symlink("/etc", "/dummy/etc")).add(E::symlink("/dummy/etc", "localetc")).add(E::file("/dummy/etc/unbroken", b"unbroken")).finish()),
        ("symlink_multiple_relative", Tar::new().add(E::dir("etc")).add(E::dir("dummy")).add(E::symlink("/etc", "/dummy/etc")).add(E::symlink("./dummy/etc", "localetc")).add(E::file("/dummy/etc/unbroken", b"unbroken")).finish()),
        ("symlink_empty_file", Tar::new().add(E::dir("etc")).add(E::file("etc/emptied", b"notempty")).add(E::symlink("/etc", "localetc")).add(E::file("/localetc/emptied", b"")).finish()),
        ("hardlink_relative", passwd_layer().add(E::dir("breakouts")).add(E::symlink("../../etc", "breakouts/d1")).add(E::link("/breakouts/d1/passwd", "breakouts/mypasswd")).finish()),
        ("hardlink_down_and_out", passwd_layer().add(E::dir("breakouts")).add(E::dir("downandout")).add(E::symlink("../downandout/../../etc", "breakouts/d1")).add(E::link("/breakouts/d1/passwd", "breakouts/mypasswd")).finish()),
        ("hardlink_absolute", passwd_layer().add(E::symlink("/etc", "localetc")).add(E::link("/localetc/passwd", "localpasswd")).finish()),
        ("hardlink_relative_long", passwd_layer().add(E::symlink("../../../../../../../etc", "localetc")).add(E::link("/localetc/passwd", "localpasswd")).finish()),
        ("hardlink_relative_up_and_out", passwd_layer().add(E::symlink("upandout/../../../etc", "localetc")).add(E::link("/localetc/passwd", "localpasswd")).finish()),
        ("hardlink_direct_relative", passwd_layer().add(E::link("../../../../../etc/passwd", "localpasswd")).finish()),
        ("hardlink_direct_absolute", passwd_layer().add(E::link("/etc/passwd", "localpasswd")).finish()),
        ("symlink_parent_directory", passwd_layer().add(E::symlink("/etc/", "..")).add(E::link("/etc/passwd", "localpasswd")).finish()),
        ("symlink_empty_filename", passwd_layer().add(E::symlink("/etc/", "")).add(E::link("/etc/passwd", "localpasswd")).finish()),
        ("symlink_parent_relative", passwd_layer().add(E::symlink("/etc/", "localetc/sub/..")).add(E::link("/etc/passwd", "/localetc/localpasswd")).finish()),
        ("symlink_slash_ended", passwd_layer().add(E::dir("localetc/").mode(0o770)).add(E::link("/etc/passwd", "/localetc/localpasswd")).finish()),
        ("symlink_override_directory", Tar::new().add(E::dir("localetc")).add(E::symlink("/etc", "localetc")).add(E::link("/etc/passwd", "/localetc/localpasswd")).finish()),
        ("symlink_override_directory_relative", Tar::new().add(E::dir("localetc")).add(E::symlink("../../etc", "localetc")).add(E::link("/etc/passwd", "/localetc/localpasswd")).finish()),
        ("directory_override_symlink", Tar::new().add(E::symlink("/etc", "localetc")).add(E::dir("/localetc/")).add(E::link("/etc/passwd", "/localetc/localpasswd")).finish()),
        ("whiteout_root_parent", Tar::new().add(E::whiteout(".wh...")).finish()),
        ("whiteout_parent", Tar::new().add(E::whiteout("etc/.wh...")).finish()),
        ("whiteout_root", Tar::new().add(E::whiteout(".wh..")).finish()),
        ("whiteout_current_directory", Tar::new().add(E::whiteout("etc/.wh..")).finish()),
        ("whiteout_symlink", Tar::new().add(E::symlink("/etc", "localetc")).add(E::whiteout(".wh.localetc")).finish()),
        ("whiteout_symlink_path", Tar::new().add(E::symlink("/etc", "localetc")).add(E::whiteout("localetc/.wh.whitedout")).add(E::whiteout("localetc/.wh.passwd")).finish()),
        ("whiteout_directory_name", Tar::new().add(E::file(".wh.etc/somefile", b"non-empty")).finish()),
        ("whiteout_dead_symlink_parent", Tar::new().add(E::symlink("/dne", "localetc")).add(E::whiteout("localetc/.wh.etc")).finish()),
        ("whiteout_relative_path", Tar::new().add(E::whiteout("dne/../.wh.etc")).finish()),
        ("symlink_override_path", Tar::new().add(E::dir("etc")).add(E::file("etc/passwd", b"first")).add(E::symlink("/etc", "etc")).add(E::file("etc/passwd", b"broken")).finish()),
        ("hardlink_symlink_before_create_target", Tar::new().add(E::dir("etc").mode(0o770)).add(E::symlink("/etc/passwd", "localpasswd")).add(E::link("localpasswd", "localpasswd-dup")).add(E::file("/etc/passwd", b"after")).finish()),
        ("hardlink_symlink_relative", passwd_layer().add(E::symlink("../../../../../etc/passwd", "passwdlink")).add(E::link("/passwdlink", "localpasswd")).finish()),
        ("hardlink_symlink_absolute", passwd_layer().add(E::symlink("/etc/passwd", "passwdlink")).add(E::link("/passwdlink", "localpasswd")).finish()),
        ("hardlink_symlink_chmod", Tar::new().add(E::symlink("/perm400", "/also-exists-outside-root")).add(E::link("/also-exists-outside-root", "sketchylink").mode(0o777)).finish()),
        ("relative_symlink_parent_into_canary", Tar::new().add(E::symlink("../canary", "c")).add(E::file("c/file", b"overwritten")).add(E::file("c/new", b"new")).finish()),
        ("absolute_symlink_parent_into_canary", Tar::new().add(E::symlink("/canary", "c")).add(E::file("c/file", b"overwritten")).add(E::dir("c/sub")).add(E::whiteout("c/.wh.sub")).finish()),
        ("raw_dotdot_names", Tar::new().add(E::file("../canary/file", b"overwritten")).add(E::file("../../../../etc/unbroken", b"x")).add(E::whiteout("../canary/.wh.sub")).add(E::whiteout("../.wh.canary")).finish()),
        ("hardlink_to_outside_file", Tar::new().add(E::link("/canary/file", "stolen")).add(E::link("../canary/file", "stolen2")).finish()),
        ("whiteout_through_symlink_parents", Tar::new().add(E::symlink("/canary", "abs")).add(E::symlink("../canary", "rel")).add(E::whiteout("abs/.wh.file")).add(E::whiteout("rel/.wh.sub")).add(E::whiteout("abs/.wh..wh..opq")).add(E::whiteout("rel/.wh..wh..opq")).finish()),
        ("existing_symlink_replaced", Tar::new().add(E::symlink("/canary/file", "f")).add(E::symlink("../canary/file", "g")).add(E::symlink("/canary", "h")).add(E::file("f", b"mine").mode(0o600)).add(E::fifo("g")).add(E::dir("h")).finish()),
        ("opaque_through_symlink", Tar::new().add(E::symlink("/etc", "e")).add(E::whiteout("e/.wh..wh..opq")).add(E::whiteout("localetc/.wh..wh..opq")).add(E::whiteout("abs/.wh..wh..opq")).finish()),
        ("xattrs_hostile", Tar::new()
            .add(E::dir("x").xattr("trusted.overlay.opaque", b"y"))
            .add(E::file("y", b"1").xattr("user.overlay.redirect", b"/canary").xattr("user.ok", b"v"))
            .add(E::file("z", b"1").xattr("security.capability", b"\x01\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"))
            .add(E::symlink("/canary/file", "s").xattr("user.x", b"1"))
            .finish()),
        ("devices_and_fifo", Tar::new().add(E::chardev("c00", 0, 0)).add(E::chardev("null", 1, 3)).add(E::fifo("fifo")).add(E::file("null", b"over a device")).finish()),
        ("long_names", Tar::new()
            .add(E::file(format!("{}/f", "d/".repeat(60).trim_end_matches('/')), b"deep"))
            .add(E::symlink(format!("/{}", "../".repeat(50)), "longlink"))
            .add(E::file("longlink/canary/file", b"escaped?"))
            .finish()),
        ("non_utf8", Tar::new().add(E::dir(b"\xff\xfe")).add(E::file(b"\xff\xfe/a\x80", b"x")).add(E::whiteout(b"\xff\xfe/.wh.a\x80")).finish()),
        ("nul_in_pax_name", Tar::new().add({
            let mut e = E::file("ok", b"x");
            e.pax.push((b"path".to_vec(), b"a\0b".to_vec()));
            e
        }).finish()),
        ("truncated", {
            let mut t = passwd_layer().add(E::file("big", &[7u8; 1500])).unterminated();
            t.truncate(t.len() - 700);
            t
        }),
        ("unterminated", passwd_layer().unterminated()),
        // A valid PAX record whose value holds newlines (binary xattrs do): length-prefixed
        // records must not be split on `\n`.
        ("pax_newline_value", Tar::new().add(E::dir("b").xattr("user.x", b"\n\n")).add(E::file("f", b"x").xattr("security.capability", treegen::rawtar::CAPABILITY_WITH_NEWLINE)).finish()),
    ]
}

/// Streams the applier's reader splits into more entries than tar-rs 0.4 in raw mode reads
/// headers (the entry-count bound `apply_hostile` once took from tar-rs failed on both), with
/// the flags each needs.
fn framing() -> Vec<(&'static str, u8, Vec<u8>)> {
    // PAX size 0 for an entry whose header says 2048: tar-rs skips the two entries after it
    // as data, the applier reads them.
    let hidden = Tar::new()
        .add(E::file("hidden1", b"1"))
        .add(E::file("hidden2", b"2"))
        .unterminated();
    let pax_size = Tar::new()
        .raw(&pax_header(&pax_record(b"size", b"0")))
        .raw(&E::file("outer", b"").header_sized(hidden.len() as u64))
        .raw(&hidden)
        .finish();
    // A checksum written as the signed byte sum (old Sun tar), kept with RAW: tar-rs refuses
    // the header, Go and the applier take it.
    let mut signed = E::file(b"caf\xe9", b"s").header();
    set_signed_checksum(&mut signed);
    let signed = Tar::new()
        .raw(&signed)
        .raw(&padded(b"s"))
        .add(E::file("after", b"a"))
        .finish();
    vec![
        ("pax_size_hides_headers", 0, pax_size),
        ("signed_checksum", RAW, signed),
    ]
}

fn write_seed(dir: &Path, name: &str, flags: u8, compression: u8, tar: &[u8]) {
    let mut data = vec![flags, compression];
    data.extend_from_slice(tar);
    let p = dir.join(name);
    fs::write(&p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

fn apply_hostile(dir: &Path) {
    let cases = breakouts();
    for (i, (name, tar)) in cases.iter().enumerate() {
        write_seed(dir, name, 0, 0, tar);
        // A spread of option combinations over the same cases, so every flag has seeds.
        let variant = match i % 6 {
            0 => Some(("base", BASE, 0)),
            1 => Some(("overlay", OVERLAY | BASE, 0)),
            2 => Some(("overlay-user-wide", OVERLAY | USERXATTR | WIDE, 0)),
            3 => Some(("gzip-skip", SKIP_TRUSTED | WIDE, 1)),
            4 => Some(("zstd-noend", NO_END_MARKER | BASE, 2)),
            _ => None,
        };
        if let Some((suffix, flags, comp)) = variant {
            write_seed(dir, &format!("{name}.{suffix}"), flags, comp, tar);
        }
    }
    for (name, flags, tar) in framing() {
        write_seed(dir, name, flags, 0, &tar);
    }
}

/// `mount_options` seeds: `[kernel-default bits, option lines...]`, from containerd's,
/// Docker's and the kernel docs' option lists plus the escape and data-only grammar.
fn mount_options(dir: &Path) {
    let cases: &[(&str, u8, &str)] = &[
        ("containerd", 0b000010, "lowerdir=/var/lib/c/snapshots/2/fs:/var/lib/c/snapshots/1/fs\nupperdir=/var/lib/c/snapshots/3/fs\nworkdir=/var/lib/c/snapshots/3/work\nindex=off"),
        ("docker", 0b000010, "lowerdir=/d/l/ABC:/d/l/DEF,upperdir=/d/x/diff,workdir=/d/x/work,index=off,context=\"system_u:object_r:container_file_t:s0:c1,c2\""),
        ("escapes", 0, "lowerdir=/a\\:b:/c\\\\d::/data\\:1::/data2\nupperdir=/u\\,x\nworkdir=/w\\\\"),
        ("append", 0b010000, "lowerdir+=/l1\nlowerdir+=/l2\ndatadir+=/d1\nupperdir=/u\nworkdir=/w\nmetacopy=on\nredirect_dir=on"),
        ("mixed_syntax", 0, "lowerdir=/a\nlowerdir+=/b"),
        ("userxattr", 0b001111, "lowerdir=/l\nupperdir=/u\nworkdir=/w\nuserxattr\nredirect_dir=nofollow\nmetacopy=off"),
        ("conflicts", 0b111111, "lowerdir=/l\nupperdir=/u\nworkdir=/w\nnfs_export=on\nindex=off\nmetacopy=on\nverity=require\nuuid=on\nxino=auto\nvolatile"),
        ("readonly_stack", 0b001001, "lowerdir=/top:/mid:/bottom::/data\nverity=on\nuuid=on\nvolatile\nro\nnodev"),
        ("unknown", 0, "lowerdir=/l\nindex=maybe\nfrobnicate\nuidmap=0:1000:1\n\n=\nredirect_dir=\nlowerdir=\ndefault_permissions"),
        ("bad_lowerdir", 0, "lowerdir=:/a\nlowerdir=/a:\nlowerdir=/a:::/b\nlowerdir=/a::/d:/b"),
        ("data_string", 0, r"lowerdir=/a\,b:/c,upperdir=/u,workdir=/w,ro,xino=off,uuid=null"),
    ];
    for (name, bits, text) in cases {
        let mut data = vec![*bits];
        data.extend_from_slice(text.as_bytes());
        let p = dir.join(name);
        fs::write(&p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }
}

/// Seeds for the `arbitrary`-driven targets: pseudo-random bytes of several lengths. Any bytes
/// decode to a valid input; long ones decode to big trees and long operation lists, which
/// libFuzzer would otherwise take a while to grow to.
fn random_seeds(dir: &Path, salt: u64) {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ salt;
    for (i, len) in [64usize, 256, 512, 1024, 1536, 2048, 3072, 4096]
        .iter()
        .cycle()
        .take(24)
        .enumerate()
    {
        let data: Vec<u8> = (0..*len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        let p = dir.join(format!("random-{i:02}-{len}"));
        fs::write(&p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }
}

fn writer_roundtrip(dir: &Path) {
    random_seeds(dir, 1);
}

fn overlay_vs_naive(dir: &Path) {
    random_seeds(dir, 2);
}

fn main() {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    type Gen = fn(&Path);
    let all: &[(&str, Gen)] = &[
        ("apply_hostile", apply_hostile),
        ("mount_options", mount_options),
        ("writer_roundtrip", writer_roundtrip),
        ("overlay_vs_naive", overlay_vs_naive),
    ];
    for (target, gen) in all {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == target) {
            continue;
        }
        let dir = here.join(target);
        // Not cleared first: hand-made seeds live beside the generated ones, which are
        // rewritten by name.
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        gen(&dir);
        let n = fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        println!("{target}: {n} seeds in {}", dir.display());
    }
}
