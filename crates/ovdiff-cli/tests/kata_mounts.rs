//! Kata Containers layer mounts over real directories: a Kata option list gives the same
//! changes and the same layer bytes as the equivalent `lowerdir=` list, and a layer that is
//! not a readable directory is refused with its name.

use std::path::{Path, PathBuf};
use std::process::Command;
use treegen::layers;

use fs_change::Change;
use layers::Layers;
use ovdiff::mounts::{
    KataError, KataLayer, KataMount, KernelDefaults, LayerProblem, LAYER_OPTION,
    LAYER_SRC_PREFIX_OPTION, OVERLAY_RW_OPTION,
};
use ovdiff::{Diff, Differ, Error};

/// Two lower layers and an upperdir with a delete, a modify and an add (kernel encoding).
struct Scenario {
    l: Layers,
    upper: PathBuf,
    work: PathBuf,
}

fn scenario() -> Scenario {
    let l = Layers::new(2);
    l.layer(1)
        .file("etc/passwd", b"root")
        .file("etc/shadow", b"s")
        .file("usr/bin/tool", b"v1");
    l.layer(0)
        .file("etc/hosts", b"h")
        .file("usr/bin/tool", b"v2");
    let upper = l.extra("upper");
    let work = l.extra("work");
    layers::Layer::at(&upper)
        .dir("etc")
        .whiteout("etc/shadow")
        .file("etc/passwd", b"root\nuser")
        .file("new", b"n");
    Scenario { l, upper, work }
}

fn bind_layer(name: &str) -> KataLayer {
    KataLayer {
        name: name.to_string(),
        source: PathBuf::from(name),
        fs_type: "bind".into(),
        options: vec!["ro".into(), "io.katacontainers.fs-opt.is-layer".into()],
    }
}

/// The `io.katacontainers.fs-opt.layer=` option describing `l`, as Kata's runtime writes it:
/// base64 of `NAME,FSTYPE[,OPTION…]`.
fn kata_option(l: &KataLayer) -> String {
    use base64::Engine;
    let mut info = vec![l.name.as_str(), l.fs_type.as_str()];
    info.extend(l.options.iter().map(String::as_str));
    format!(
        "{LAYER_OPTION}{}",
        base64::engine::general_purpose::STANDARD.encode(info.join(","))
    )
}

fn kata_options(s: &Scenario, extra: &[String]) -> String {
    let mut options = vec![
        format!("{LAYER_SRC_PREFIX_OPTION}{}", s.l.dir.path().display()),
        kata_option(&bind_layer("L0")),
        kata_option(&bind_layer("L1")),
        OVERLAY_RW_OPTION.to_string(),
    ];
    options.extend_from_slice(extra);
    options.push(format!("upperdir={}", s.upper.display()));
    options.push(format!("workdir={}", s.work.display()));
    options.push("index=off".into());
    options.join(",")
}

fn lowerdir_options(s: &Scenario) -> String {
    format!(
        "lowerdir={}:{},upperdir={},workdir={},index=off",
        s.l.path(0).display(),
        s.l.path(1).display(),
        s.upper.display(),
        s.work.display()
    )
}

fn changes(options: &str, differ: Differ) -> Vec<String> {
    let mut out: Vec<Change> = Vec::new();
    Diff::mount_options(options)
        .expect("options resolve")
        .differ(differ)
        .kernel_defaults(KernelDefaults::default())
        .changes(&mut out)
        .expect("diff");
    out.iter().map(Change::line).collect()
}

fn layer_bytes(options: &str) -> Vec<u8> {
    let mut blob = Vec::new();
    Diff::mount_options(options)
        .expect("options resolve")
        .kernel_defaults(KernelDefaults::default())
        .source_date_epoch(Some(1_700_000_000))
        .write_layer(&mut blob)
        .expect("layer");
    blob
}

#[test]
fn kata_option_list_diffs_like_the_equivalent_lowerdir_list() {
    let s = scenario();
    let plain = lowerdir_options(&s);
    let expected = changes(&plain, Differ::Overlay);
    assert_eq!(
        expected,
        ["M /etc/passwd", "D /etc/shadow", "A /new"],
        "the scenario itself"
    );
    let with_names = kata_options(&s, &["lowerdir=L0:L1".to_string()]);
    for kata in [kata_options(&s, &[]), with_names] {
        for differ in [Differ::Overlay, Differ::Naive, Differ::Auto] {
            assert_eq!(changes(&kata, differ), expected, "{kata} / {differ:?}");
        }
        assert_eq!(layer_bytes(&kata), layer_bytes(&plain), "{kata}");
    }
}

#[test]
fn kata_mount_resolves_to_a_layer_stack() {
    let s = scenario();
    let options: Vec<String> = kata_options(&s, &[]).split(',').map(String::from).collect();
    let mount = KataMount::resolve(&options).expect("directories");
    assert_eq!(mount.config.lowers, s.l.paths());
    assert!(mount.overlay_rw);
    let stack = mount.stack(&KernelDefaults::default()).expect("stack");
    let layers: Vec<PathBuf> = stack.layers().map(Path::to_path_buf).collect();
    assert_eq!(layers, s.l.paths());
}

#[test]
fn unreadable_layers_are_refused_with_their_name() {
    let s = scenario();
    std::fs::write(s.l.dir.path().join("image.tar"), b"not a directory").expect("write");
    let tardev = KataLayer {
        name: "image.tar".into(),
        source: PathBuf::new(),
        fs_type: "tar".into(),
        options: vec![
            "ro".into(),
            "io.katacontainers.fs-opt.block_device=file".into(),
            "io.katacontainers.fs-opt.is-layer".into(),
        ],
    };
    let as_bind = KataLayer {
        fs_type: "bind".into(),
        options: Vec::new(),
        ..tardev.clone()
    };
    type Expect = fn(&LayerProblem) -> bool;
    let cases: [(KataLayer, Expect); 3] = [
        (tardev, |p| matches!(p, LayerProblem::BlockDevice { .. })),
        (as_bind, |p| matches!(p, LayerProblem::NotADirectory)),
        (bind_layer("no-such-layer"), |p| {
            matches!(p, LayerProblem::Unreadable { .. })
        }),
    ];
    for (layer, expected) in cases {
        let options = kata_options(&s, &[kata_option(&layer)]);
        let err = Diff::mount_options(&options).expect_err("refused");
        match &err {
            Error::Kata(KataError::Unsupported {
                index: 2,
                name,
                problem,
                ..
            }) => {
                assert_eq!(name, &layer.name);
                assert!(expected(problem), "{problem:?}");
            }
            other => panic!("{}: {other:?}", layer.name),
        }
        assert!(err.to_string().contains(&layer.name), "{err}");
    }
}

#[test]
fn cli_mount_options_accept_kata_layers() {
    let s = scenario();
    let run = |options: &str| {
        Command::new(env!("CARGO_BIN_EXE_ovdiff"))
            .args(["changes", "--differ", "overlay", "--mount-options", options])
            .output()
            .expect("run ovdiff")
    };
    let out = run(&kata_options(&s, &[]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "M /etc/passwd\nD /etc/shadow\nA /new\n"
    );
    let mut blocked = bind_layer("L1");
    blocked.fs_type = "erofs".into();
    let out = run(&kata_options(&s, &[kata_option(&blocked)]));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("L1") && stderr.contains("erofs"),
        "{stderr}"
    );
}

#[test]
fn a_guest_side_upper_is_named_in_the_error() {
    let s = scenario();
    let options = [
        format!("{LAYER_SRC_PREFIX_OPTION}{}", s.l.dir.path().display()),
        kata_option(&bind_layer("L0")),
        OVERLAY_RW_OPTION.to_string(),
    ]
    .join(",");
    let err = Diff::mount_options(&options).expect_err("no upperdir");
    assert!(matches!(err, Error::Options(_)), "{err:?}");
    assert!(err.to_string().contains("overlay-rw"), "{err}");
}
