//! The userspace merge held against the kernel's: random layer stacks (whiteouts, xattr
//! whiteouts, opaque `y`/`x` directories, relative and absolute redirects, metacopy files,
//! escaped and foreign xattrs) are mounted read-only with `mount -t overlay -o lowerdir=…`
//! and compared with [`LayerStack`] entry by entry: names, types, modes, owners, sizes,
//! mtimes, contents, link targets, xattrs, and which lookups fail.
//!
//! Needs root and kernel overlayfs; prints `SKIP: <test>: <reason>` (recorded in the skip log)
//! and passes otherwise.

use std::path::PathBuf;
use treegen::layers;

use layers::{
    diff, kernel_overlay_unavailable, snapshot_mount, snapshot_mount_unlistable, snapshot_tree,
    Layer, Layers, Node, OverlayMount,
};
use ovdiff::mounts::{KernelDefaults, OverlayConfig};
use ovdiff::stack::LayerStack;

/// SplitMix64: small, seedable, good enough to shape test trees.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const NAMES: &[&str] = &["a", "b", "c", "d"];

fn random_path(rng: &mut Rng) -> String {
    let depth = 1 + rng.below(3);
    (0..depth)
        .map(|_| rng.pick(NAMES))
        .collect::<Vec<_>>()
        .join("/")
}

/// What a generated layer holds, for choosing redirect and metacopy targets below it.
#[derive(Default)]
struct Record {
    files: Vec<(String, u64)>,
    dirs: Vec<String>,
}

/// True when `rel` can be created in `root`: it does not exist and no ancestor is a
/// non-directory there.
fn free(root: &std::path::Path, rel: &str) -> bool {
    let mut p = root.to_path_buf();
    let comps: Vec<&str> = rel.split('/').collect();
    for (i, c) in comps.iter().enumerate() {
        p.push(c);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if i + 1 == comps.len() => {
                let _ = m;
                return false;
            }
            Ok(m) if !m.is_dir() => return false,
            Ok(_) => {}
            Err(_) => return true,
        }
    }
    true
}

fn generate(layers: &Layers, seed: u64) {
    let mut rng = Rng(seed);
    let mut below = Record::default();
    for i in (0..layers.count).rev() {
        let layer = layers.layer(i);
        let root = layers.path(i);
        let mut here = Record::default();
        let ops = 4 + rng.below(12);
        for _ in 0..ops {
            let path = random_path(&mut rng);
            let op = rng.below(100);
            let mtime = (
                1_000_000_000 + rng.below(700_000_000) as i64,
                if rng.chance(50) {
                    0
                } else {
                    rng.below(999_999_999) as i64
                },
            );
            if op < 8 {
                // An xattr on a file or directory this layer already has (user.* xattrs are
                // not allowed on symlinks and special files).
                let kind = std::fs::symlink_metadata(root.join(&path)).map(|m| m.file_type());
                if kind.is_ok_and(|t| t.is_file() || t.is_dir()) {
                    let (name, value): (&str, &[u8]) = match rng.below(3) {
                        0 => ("user.test", b"v"),
                        1 => ("trusted.overlay.overlay.esc", b"escaped"),
                        _ => ("user.overlay.foreign", b"y"),
                    };
                    layer.xattr(&path, name, value);
                }
                continue;
            }
            if !free(&root, &path) {
                continue;
            }
            match op {
                8..=32 => {
                    let len = rng.below(40);
                    let content: Vec<u8> = (0..len).map(|_| b'a' + rng.below(26) as u8).collect();
                    let mode = rng.pick(&[0o644, 0o600, 0o755, 0o4755, 0o640]);
                    layer
                        .file_mode(&path, &content, mode)
                        .mtime(&path, mtime.0, mtime.1);
                    here.files.push((path, len as u64));
                }
                33..=44 => {
                    layer
                        .dir(&path)
                        .chmod(&path, rng.pick(&[0o755, 0o700, 0o750]));
                    here.dirs.push(path);
                }
                45..=50 => {
                    let target = random_path(&mut rng);
                    layer.symlink(&path, &target).mtime(&path, mtime.0, mtime.1);
                }
                51..=60 => {
                    layer.whiteout(&path);
                }
                61..=66 => {
                    layer.xwhiteout(&path);
                }
                67..=72 => {
                    layer.opaque(&path, b"y");
                    here.dirs.push(path);
                }
                73..=77 => {
                    layer.opaque(&path, b"x");
                    here.dirs.push(path);
                }
                78..=86 => {
                    layer.dir(&path);
                    let target = if rng.chance(50) || below.dirs.is_empty() {
                        rng.pick(NAMES).to_string()
                    } else {
                        format!("/{}", below.dirs[rng.below(below.dirs.len())])
                    };
                    layer.redirect(&path, target.as_bytes());
                    here.dirs.push(path);
                }
                87..=96 => {
                    if below.files.is_empty() {
                        continue;
                    }
                    let (target, size) = below.files[rng.below(below.files.len())].clone();
                    if rng.chance(50) {
                        if free(&root, &target) {
                            layer.metacopy(&target, size, None).chmod(&target, 0o600);
                        }
                    } else {
                        layer.metacopy(&path, size, Some(&format!("/{target}")));
                    }
                }
                _ => {
                    layer.fifo(&path);
                }
            }
        }
        below.files.extend(here.files);
        below.dirs.extend(here.dirs);
    }
}

#[derive(Debug, Clone, Copy)]
struct Variant {
    name: &'static str,
    prefix: &'static str,
    options: &'static str,
}

const VARIANTS: &[Variant] = &[
    Variant {
        name: "redirects and metacopy on",
        prefix: "trusted.overlay.",
        options: "redirect_dir=on,metacopy=on",
    },
    Variant {
        name: "redirect_dir=nofollow, metacopy off",
        prefix: "trusted.overlay.",
        options: "redirect_dir=nofollow,metacopy=off",
    },
    Variant {
        name: "userxattr",
        prefix: "user.overlay.",
        options: "userxattr",
    },
];

fn lowerdir(layers: &Layers) -> String {
    let paths: Vec<String> = layers
        .paths()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    format!("lowerdir={}", paths.join(":"))
}

fn layer_listing(layers: &Layers) -> String {
    let out = std::process::Command::new("find")
        .arg(layers.dir.path())
        .arg("-printf")
        .arg("%P %y %s\n")
        .output();
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
        Err(e) => format!("(find failed: {e})"),
    }
}

/// Compares one generated stack; returns how many entries and failing lookups matched.
fn compare(seed: u64, variant: Variant) -> Result<(usize, usize), String> {
    let count = 2 + (seed % 3) as usize;
    let layers = Layers::with_prefix(count, variant.prefix);
    generate(&layers, seed);
    let data = format!("{},{}", lowerdir(&layers), variant.options);
    let target = layers.extra("merged");
    let _mount = OverlayMount::mount(&target, &data)?;
    let (mut kernel, unlistable) = snapshot_mount_unlistable(&target);
    let cfg = OverlayConfig::parse_data(&data).map_err(|e| e.to_string())?;
    let defaults = KernelDefaults::read().map_err(|e| e.to_string())?;
    let stack = LayerStack::from_config(&cfg, &defaults).map_err(|e| e.to_string())?;
    let ours = snapshot_tree(&stack.open_root().map_err(|e| e.to_string())?);
    // In a directory marked `overlay.opaque=x` the kernel's readdir looks every name up to
    // find xattr whiteouts: a name whose lookup fails is dropped, or fails the whole readdir.
    // The stack lists such names and reports the failure on lookup. Count them as matching
    // when the kernel's own lookup fails too, and skip what the kernel could not list at all,
    // provided the stack saw a failing lookup in there.
    let mut ours = ours;
    for dir in &unlistable {
        let below = |p: &String| dir.is_empty() || p.starts_with(&format!("{dir}/"));
        if !ours.iter().any(|(p, n)| below(p) && *n == Node::Error) {
            return Err(format!(
                "seed {seed}: kernel cannot list {dir:?} but the stack sees no error there"
            ));
        }
        ours.retain(|p, _| !below(p));
    }
    for (path, node) in &ours {
        if *node == Node::Error && !kernel.contains_key(path) {
            let lookup = std::fs::symlink_metadata(target.join(path));
            if lookup.is_err_and(|e| e.kind() != std::io::ErrorKind::NotFound) {
                kernel.insert(path.clone(), Node::Error);
            }
        }
    }
    let d = diff(&kernel, &ours);
    if d.is_empty() {
        let errors = kernel.values().filter(|n| **n == Node::Error).count();
        Ok((kernel.len(), errors))
    } else {
        if std::env::var_os("OVDIFF_KEEP_FAILED").is_some() {
            println!("kept {}", layers.dir.path().display());
            std::mem::forget(layers.dir);
            return Err(format!("seed {seed}, {}:\n{d}", variant.name));
        }
        Err(format!(
            "seed {seed}, {}: stack differs from the kernel's merged view\n{d}\nlayers:\n{}",
            variant.name,
            layer_listing(&layers)
        ))
    }
}

#[test]
fn random_stacks_match_the_kernel_merged_view() {
    if let Some(reason) = kernel_overlay_unavailable() {
        treegen::skip!("mount-overlay", "{reason}");
    }
    let seeds: u64 = std::env::var("OVDIFF_STACK_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let mut failures = Vec::new();
    let (mut entries, mut errors) = (0usize, 0usize);
    for variant in VARIANTS {
        for seed in 0..seeds {
            match compare(seed, *variant) {
                Ok((e, f)) => {
                    entries += e;
                    errors += f;
                }
                Err(e) => failures.push(e),
            }
        }
    }
    println!(
        "{} stacks: {entries} merged entries matched, {errors} of them failing lookups",
        seeds as usize * VARIANTS.len()
    );
    assert!(
        entries > seeds as usize,
        "the generator produced (nearly) empty trees"
    );
    if !failures.is_empty() {
        panic!(
            "{} of {} cases differ; first:\n{}",
            failures.len(),
            seeds as usize * VARIANTS.len(),
            failures[0]
        );
    }
}

#[test]
fn data_only_layer_matches_the_kernel() {
    if let Some(reason) = kernel_overlay_unavailable() {
        treegen::skip!("mount-overlay", "{reason}");
    }
    let layers = Layers::new(2);
    let data: PathBuf = layers.extra("data");
    Layer::at(&data)
        .file("blobs/one", b"first blob")
        .file("blobs/two", b"second");
    layers
        .layer(0)
        .metacopy("x/one", 10, Some("/blobs/one"))
        .metacopy("two", 6, Some("/blobs/two"))
        .file("plain", b"p");
    layers
        .layer(1)
        .file("x/lower", b"l")
        .file("two", b"hidden by metacopy? no: data wins");
    let opts = format!(
        "lowerdir={}:{}::{},metacopy=on,redirect_dir=on",
        layers.path(0).display(),
        layers.path(1).display(),
        data.display()
    );
    let target = layers.extra("merged");
    let kernel = {
        let _mount = OverlayMount::mount(&target, &opts).expect("mount with a data-only layer");
        snapshot_mount(&target)
    };
    let cfg = OverlayConfig::parse_data(&opts).expect("options");
    assert_eq!(cfg.data_only, vec![data.clone()]);
    let stack = LayerStack::from_config(&cfg, &KernelDefaults::default()).expect("stack");
    let ours = snapshot_tree(&stack.open_root().expect("root"));
    let d = diff(&kernel, &ours);
    assert!(d.is_empty(), "stack differs from the kernel:\n{d}");
}

/// Mounts `layers` read-only with `options` and compares the kernel's view with the stack
/// built from the same options; returns the (common) view.
fn assert_matches_kernel(layers: &Layers, options: &str) -> layers::Snapshot {
    let data = format!("{},{options}", lowerdir(layers));
    let target = layers.extra("merged");
    let kernel = {
        let _mount = OverlayMount::mount(&target, &data).expect("mount");
        snapshot_mount(&target)
    };
    let cfg = OverlayConfig::parse_data(&data).expect("options");
    let defaults = KernelDefaults::read().expect("module parameters");
    let stack = LayerStack::from_config(&cfg, &defaults).expect("stack");
    let ours = snapshot_tree(&stack.open_root().expect("root"));
    let d = diff(&kernel, &ours);
    assert!(
        d.is_empty(),
        "{options}: stack differs from the kernel:\n{d}"
    );
    kernel
}

#[test]
fn renamed_directories_and_metacopy_files_match_the_kernel() {
    if let Some(reason) = kernel_overlay_unavailable() {
        treegen::skip!("mount-overlay", "{reason}");
    }
    let layers = Layers::new(3);
    layers
        .layer(0)
        .whiteout("old")
        .file("new/added", b"added")
        .redirect("new", b"old")
        .dir("p/q/moved")
        .redirect("p/q/moved", b"/other/deep")
        .metacopy("chmodded", 4, None)
        .chmod("chmodded", 0o600)
        .metacopy("renamed", 8, Some("/data"))
        .opaque("opq", b"y")
        .dir("opq/inner")
        .redirect("opq/inner", b"/far/away");
    layers
        .layer(1)
        .file("old/f", b"f")
        .file("old/sub/g", b"g")
        .dir("old/sub2")
        .redirect("old/sub2", b"sub")
        .file("chmodded", b"data")
        .file("opq/hidden", b"h");
    layers
        .layer(2)
        .file("other/deep/z", b"z")
        .file("data", b"datadata")
        .file("far/away/x", b"x")
        .file("old/sub/bottom", b"b");
    let full = assert_matches_kernel(&layers, "redirect_dir=on,metacopy=on");
    for followed in [
        "new/f",
        "new/sub/g",
        "new/sub/bottom",
        "new/sub2/bottom",
        "p/q/moved/z",
        "opq/inner/x",
    ] {
        assert!(
            full.contains_key(followed),
            "{followed} not reached through its redirect"
        );
    }
    assert!(!full.contains_key("opq/hidden"));
    match full.get("renamed") {
        Some(Node::Entry { content, .. }) => assert_eq!(content.as_deref(), Some(&b"datadata"[..])),
        other => panic!("renamed metacopy file: {other:?}"),
    }
    for options in [
        "redirect_dir=follow,metacopy=on",
        "redirect_dir=nofollow,metacopy=off",
        "redirect_dir=off,metacopy=off",
    ] {
        assert_matches_kernel(&layers, options);
    }
}
