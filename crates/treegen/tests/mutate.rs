//! Seeded mutations: reproducible plans that always apply, and each kind does what it says.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use fs_change::FileType;
use treegen::{
    apply_mutations, assert_same_tree, diff_snapshots, snapshot_copy, Content, GenSpec,
    MtimePolicy, Mutation, MutationSpec, SnapshotOptions, Timestamp, TreeBuilder, TreeSnapshot,
};

fn snap(p: &std::path::Path) -> TreeSnapshot {
    TreeSnapshot::capture_with(p, SnapshotOptions::new().mtime(MtimePolicy::NonDirs)).unwrap()
}

#[test]
fn plans_are_reproducible() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    GenSpec::new(10).files(300).generate(&a).unwrap();
    GenSpec::new(10).files(300).generate(&b).unwrap();
    let pa = MutationSpec::new(3).count(40).plan(&a).unwrap();
    let pb = MutationSpec::new(3).count(40).plan(&b).unwrap();
    assert_eq!(pa, pb);
    assert!(pa.len() >= 40);
    let other = MutationSpec::new(4).count(40).plan(&a).unwrap();
    assert_ne!(pa, other);
    // Applied to identical trees, a plan gives identical trees.
    apply_mutations(&a, &pa).unwrap();
    apply_mutations(&b, &pb).unwrap();
    assert_same_tree(&snap(&a), &snap(&b));
}

#[test]
fn plans_always_apply_and_change_the_tree() {
    for seed in 0..24u64 {
        for overlay_safe in [false, true] {
            let tmp = tempfile::tempdir().unwrap();
            let (base, new) = (tmp.path().join("base"), tmp.path().join("new"));
            GenSpec::new(seed)
                .files(150)
                .long_path(seed % 3 == 0)
                .generate(&base)
                .unwrap();
            snapshot_copy(&base, &new).unwrap();
            let plan = MutationSpec::new(seed)
                .count(60)
                .overlay_safe(overlay_safe)
                .compat_visible(seed % 2 == 0)
                .plan(&new)
                .unwrap();
            let report = apply_mutations(&new, &plan)
                .unwrap_or_else(|e| panic!("seed {seed}: {e}\nplan: {plan:#?}"));
            assert_eq!(report.applied, plan.len());
            assert!(!diff_snapshots(&snap(&base), &snap(&new)).is_empty());
        }
    }
}

#[test]
fn plans_use_every_kind_of_step() {
    let tmp = tempfile::tempdir().unwrap();
    GenSpec::new(1).files(300).generate(tmp.path()).unwrap();
    let plan = MutationSpec::new(1).count(400).plan(tmp.path()).unwrap();
    let has = |f: &dyn Fn(&Mutation) -> bool| plan.iter().any(f);
    assert!(has(&|m| matches!(m, Mutation::Write { .. })));
    assert!(has(&|m| matches!(m, Mutation::Append { .. })));
    assert!(has(&|m| matches!(m, Mutation::Truncate { .. })));
    assert!(has(&|m| matches!(m, Mutation::Chmod { .. })));
    assert!(has(&|m| matches!(m, Mutation::Touch { mtime: None, .. })));
    assert!(has(&|m| matches!(
        m,
        Mutation::Touch { mtime: Some(_), .. }
    )));
    assert!(has(&|m| matches!(m, Mutation::Remove { .. })));
    assert!(has(&|m| matches!(m, Mutation::RemoveAll { .. })));
    assert!(has(&|m| matches!(m, Mutation::Mkdir { .. })));
    assert!(has(&|m| matches!(m, Mutation::CreateFile { .. })));
    assert!(has(&|m| matches!(m, Mutation::Symlink { .. })));
    assert!(has(&|m| matches!(m, Mutation::Fifo { .. })));
    assert!(has(&|m| matches!(m, Mutation::Hardlink { .. })));
    assert!(has(&|m| matches!(m, Mutation::Rename { .. })));
    assert!(has(&|m| matches!(m, Mutation::SetXattr { .. })));
    if rustix::process::geteuid().is_root() {
        assert!(has(&|m| matches!(m, Mutation::Chown { .. })));
        assert!(has(&|m| matches!(m, Mutation::Device { .. })));
    }
}

#[test]
fn each_mutation_does_what_it_says() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    TreeBuilder::new(t)
        .file("f", b"hello", 0o644)
        .file("g", b"0123456789", 0o644)
        .file("h", b"x", 0o644)
        .symlink("l", "f")
        .file("d/a", b"a", 0o644)
        .file("d/sub/b", b"b", 0o644)
        .file("e/c", b"c", 0o644)
        .mtime("h", 1_500_000_000, 7)
        .build()
        .unwrap();
    let p = |s: &str| treegen::RelPath::from(s);
    let t1 = Timestamp::new(1_700_000_000, 5);
    let mut list = vec![
        Mutation::Write {
            path: p("f"),
            content: Content::new(1, 3, false),
            mtime: t1,
        },
        Mutation::Append {
            path: p("g"),
            content: Content::new(2, 5, false),
            mtime: t1,
        },
        Mutation::Truncate {
            path: p("g"),
            len: 4,
            mtime: t1,
        },
        Mutation::Chmod {
            path: p("g"),
            mode: 0o600,
        },
        Mutation::Touch {
            path: p("h"),
            mtime: None,
        },
        Mutation::Touch {
            path: p("d/a"),
            mtime: Some(Timestamp::new(1_600_000_000, 0)),
        },
        Mutation::Rename {
            from: p("d"),
            to: p("e/moved"),
        },
        Mutation::Rename {
            from: p("h"),
            to: p("e/h2"),
        },
        Mutation::RemoveAll {
            path: p("e/moved/sub"),
        },
        Mutation::Remove { path: p("l") },
        Mutation::CreateFile {
            path: p("l"),
            content: Content::new(3, 9, true),
            mode: 0o640,
            mtime: t1,
        },
        Mutation::Mkdir {
            path: p("nd"),
            mode: 0o750,
        },
        Mutation::Symlink {
            path: p("nd/s"),
            target: "../f".into(),
            mtime: t1,
        },
        Mutation::Fifo {
            path: p("nd/p"),
            mode: 0o644,
            mtime: t1,
        },
        Mutation::Hardlink {
            path: p("nd/f-link"),
            existing: p("f"),
        },
        Mutation::SetXattr {
            path: p("f"),
            name: "user.k".into(),
            value: b"\xffv".into(),
        },
    ];
    if rustix::process::geteuid().is_root() {
        list.push(Mutation::Chown {
            path: p("nd"),
            uid: 1000,
            gid: 33,
        });
        list.push(Mutation::Device {
            path: p("nd/null"),
            block: false,
            major: 1,
            minor: 3,
            mtime: t1,
        });
    }
    let report = apply_mutations(t, &list).unwrap();
    assert_eq!(report.applied, list.len());
    assert_eq!(report.renames_copied, 0);
    let s = TreeSnapshot::capture_with(t, SnapshotOptions::new().mtime(MtimePolicy::All)).unwrap();
    let get = |k: &str| {
        s.get(k.as_bytes()).unwrap_or_else(|| {
            panic!(
                "{k} missing: {:#?}",
                s.entries()
                    .keys()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .collect::<Vec<_>>()
            )
        })
    };
    assert_eq!(
        std::fs::read(t.join("f")).unwrap(),
        Content::new(1, 3, false).bytes()
    );
    assert_eq!(get("f").mtime, Some(t1));
    assert_eq!(
        get("f").xattrs,
        vec![(b"user.k".to_vec(), b"\xffv".to_vec())]
    );
    assert_eq!(
        get("f").hardlinks,
        vec![b"f".to_vec(), b"nd/f-link".to_vec()]
    );
    let mut g = b"0123456789".to_vec();
    g.extend(Content::new(2, 5, false).bytes());
    g.truncate(4);
    assert_eq!(std::fs::read(t.join("g")).unwrap(), g);
    assert_eq!(get("g").mode, 0o600);
    assert_eq!(get("e/h2").mtime, Some(Timestamp::new(1_500_000_000, 7)));
    assert!(s.get(b"h").is_none() && s.get(b"d").is_none());
    assert_eq!(
        get("e/moved/a").mtime,
        Some(Timestamp::new(1_600_000_000, 0))
    );
    assert!(s.get(b"e/moved/sub").is_none());
    assert_eq!(get("l").file_type, FileType::Regular);
    assert_eq!(get("l").mode, 0o640);
    assert_eq!(get("nd").mode, 0o750);
    assert_eq!(get("nd/s").link_target.as_deref(), Some(&b"../f"[..]));
    assert_eq!(get("nd/p").file_type, FileType::Fifo);
    assert_eq!(get("nd/p").mode, 0o644);
    if rustix::process::geteuid().is_root() {
        assert_eq!((get("nd").uid, get("nd").gid), (1000, 33));
        assert_eq!(get("nd/null").rdev, Some((1, 3)));
    }
}

#[test]
fn invalid_mutations_name_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    TreeBuilder::new(tmp.path())
        .dir("d", 0o755)
        .symlink("l", "d")
        .build()
        .unwrap();
    let cases = [
        (
            Mutation::Remove {
                path: "missing".into(),
            },
            "missing",
        ),
        (Mutation::Remove { path: "d".into() }, "is a Dir"),
        (
            Mutation::Chmod {
                path: "l".into(),
                mode: 0o600,
            },
            "chmod of a symlink",
        ),
        (
            Mutation::Rename {
                from: "d".into(),
                to: "d/x".into(),
            },
            "into itself",
        ),
        (
            Mutation::Write {
                path: "d".into(),
                content: Content::new(0, 1, false),
                mtime: Timestamp::new(0, 0),
            },
            "is a Dir",
        ),
    ];
    for (m, expect) in cases {
        let err = apply_mutations(tmp.path(), std::slice::from_ref(&m)).unwrap_err();
        assert!(err.to_string().contains(expect), "{m:?}: {err}");
    }
}

#[test]
fn kept_paths_survive() {
    for seed in 0..8u64 {
        let tmp = tempfile::tempdir().unwrap();
        let report = GenSpec::new(seed)
            .files(60)
            .long_path(true)
            .generate(tmp.path())
            .unwrap();
        let long = report.long_path.unwrap();
        let plan = MutationSpec::new(seed)
            .count(150)
            .keep(&long)
            .plan(tmp.path())
            .unwrap();
        apply_mutations(tmp.path(), &plan).unwrap();
        let s = snap(tmp.path());
        assert_eq!(
            s.get(&long).map(|e| e.file_type),
            Some(FileType::Regular),
            "seed {seed}"
        );
    }
}
