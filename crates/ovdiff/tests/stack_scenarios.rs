//! The userspace layer merge, one named overlay rule per test.

use fs_change::{FileType, Tree, TreeDir};
use layers::{names, read, Layer, Layers};
use ovdiff::mounts::{KernelDefaults, OverlayConfig};
use ovdiff::stack::{LayerStack, WhiteoutFormat};
use ovdiff::XattrNamespace;
use treegen::layers;

fn stack(layers: &Layers) -> LayerStack {
    LayerStack::open(&layers.paths()).expect("open stack")
}

fn root(layers: &Layers) -> ovdiff::stack::StackDir {
    stack(layers).open_root().expect("root")
}

#[test]
fn topmost_layer_wins() {
    let l = Layers::new(3);
    l.layer(0).file("a", b"top");
    l.layer(1).file("a", b"middle").file("b", b"middle-b");
    l.layer(2).file("a", b"bottom").file("c", b"bottom-c");
    let r = root(&l);
    assert_eq!(names(&r), ["a", "b", "c"]);
    assert_eq!(read(&r, "a"), b"top");
    assert_eq!(read(&r, "c"), b"bottom-c");
}

#[test]
fn directories_merge_and_report_the_topmost_metadata() {
    let l = Layers::new(2);
    l.layer(0).file("d/x", b"x").chmod("d", 0o700);
    l.layer(1).file("d/y", b"y").chmod("d", 0o755);
    let r = root(&l);
    assert_eq!(r.stat(b"d").expect("stat").expect("d").mode & 0o7777, 0o700);
    let d = r.open_dir(b"d").expect("open").expect("d");
    assert_eq!(names(&d), ["x", "y"]);
    assert_eq!(d.stat_self().expect("stat_self").mode & 0o7777, 0o700);
    assert_eq!(d.layer_dirs().len(), 2);
}

#[test]
fn char_device_whiteout_hides_a_lower_file() {
    let l = Layers::new(2);
    l.layer(0).whiteout("gone");
    l.layer(1).file("gone", b"old").file("kept", b"k");
    let r = root(&l);
    assert_eq!(names(&r), ["kept"]);
    assert!(r.stat(b"gone").expect("stat").is_none());
}

#[test]
fn whiteout_hides_a_whole_lower_directory() {
    let l = Layers::new(3);
    l.layer(0).whiteout("tree");
    l.layer(1).file("tree/a", b"a");
    l.layer(2).file("tree/b/c", b"c");
    let s = stack(&l);
    assert!(s.open_dir(b"tree").expect("open").is_none());
    assert!(s.open_dir(b"tree/b").expect("open").is_none());
}

#[test]
fn whiteout_in_the_bottom_layer_hides_only_itself() {
    let l = Layers::new(1);
    l.layer(0).whiteout("w").file("f", b"f");
    assert_eq!(names(&root(&l)), ["f"]);
}

#[test]
fn opaque_y_stops_descent_into_lower_layers() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let l = Layers::new(3);
    l.layer(0).file("d/new", b"n").opaque("d", b"y");
    l.layer(1).file("d/old", b"o");
    l.layer(2).file("d/older", b"o");
    let d = stack(&l).open_dir(b"d").expect("open").expect("d");
    assert_eq!(names(&d), ["new"]);
}

#[test]
fn opaque_in_a_middle_layer_hides_only_the_layers_below_it() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let l = Layers::new(3);
    l.layer(0).file("d/top", b"t");
    l.layer(1).file("d/mid", b"m").opaque("d", b"y");
    l.layer(2).file("d/bottom", b"b");
    let d = stack(&l).open_dir(b"d").expect("open").expect("d");
    assert_eq!(names(&d), ["mid", "top"]);
}

#[test]
fn opaque_x_is_not_opaque() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let l = Layers::new(2);
    l.layer(0).file("d/new", b"n").opaque("d", b"x");
    l.layer(1).file("d/old", b"o");
    let d = stack(&l).open_dir(b"d").expect("open").expect("d");
    assert_eq!(names(&d), ["new", "old"]);
}

#[test]
fn opaque_value_must_be_exactly_y() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let l = Layers::new(2);
    l.layer(0).file("d/new", b"n").opaque("d", b"yes");
    l.layer(1).file("d/old", b"o");
    let d = stack(&l).open_dir(b"d").expect("open").expect("d");
    assert_eq!(names(&d), ["new", "old"]);
}

#[test]
fn xattr_whiteout_hides_a_lower_entry() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let l = Layers::new(2);
    l.layer(0)
        .opaque("d", b"x")
        .xwhiteout("d/gone")
        .xwhiteout("plain/gone");
    l.layer(1)
        .file("d/gone", b"old")
        .file("d/kept", b"k")
        .file("plain/gone", b"old");
    let s = stack(&l);
    let d = s.open_dir(b"d").expect("open").expect("d");
    assert_eq!(names(&d), ["kept"]);
    let plain = s.open_dir(b"plain").expect("open").expect("plain");
    assert!(
        names(&plain).is_empty(),
        "Linux 6.18 hides it at lookup in any lower dir"
    );
}

#[test]
fn non_empty_file_or_foreign_namespace_whiteout_xattr_is_an_ordinary_file() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let l = Layers::new(2);
    l.layer(0)
        .file("big", b"data")
        .private("big", "whiteout", b"")
        .file("foreign", b"")
        .xattr("foreign", "user.overlay.whiteout", b"");
    l.layer(1).file("big", b"old").file("foreign", b"old");
    let r = root(&l);
    assert_eq!(names(&r), ["big", "foreign"]);
    assert_eq!(read(&r, "big"), b"data");
    assert_eq!(read(&r, "foreign"), b"");
}

#[test]
fn directory_over_file_and_file_over_directory() {
    let l = Layers::new(2);
    l.layer(0)
        .file("was_file/child", b"c")
        .file("was_dir", b"now a file");
    l.layer(1)
        .file("was_file", b"old")
        .file("was_dir/inner", b"i");
    let r = root(&l);
    let d = r.open_dir(b"was_file").expect("open").expect("dir");
    assert_eq!(names(&d), ["child"]);
    assert_eq!(d.layer_dirs().len(), 1);
    assert!(r.open_dir(b"was_dir").expect("open").is_none());
    assert_eq!(read(&r, "was_dir"), b"now a file");
}

#[test]
fn relative_redirect_merges_the_renamed_directory() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let l = Layers::new(2);
    l.layer(0)
        .whiteout("old")
        .file("new/added", b"a")
        .redirect("new", b"old");
    l.layer(1).file("old/kept", b"k").file("old/sub/deep", b"d");
    let s = stack(&l);
    let new = s.open_dir(b"new").expect("open").expect("new");
    assert_eq!(names(&new), ["added", "kept", "sub"]);
    let layers = new.layer_dirs();
    assert_eq!(layers[1].1, b"old", "the lower part is the redirect target");
    assert_eq!(
        read(&s.open_dir(b"new/sub").expect("open").expect("sub"), "deep"),
        b"d"
    );
    assert!(root(&l).stat(b"old").expect("stat").is_none());
}

#[test]
fn absolute_redirect_moves_the_lookup_to_another_parent() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let l = Layers::new(2);
    l.layer(0)
        .dir("a/b/moved")
        .redirect("a/b/moved", b"/x/orig");
    l.layer(1).file("x/orig/f", b"f").dir("a/b");
    let moved = stack(&l)
        .open_dir(b"a/b/moved")
        .expect("open")
        .expect("moved");
    assert_eq!(names(&moved), ["f"]);
}

#[test]
fn redirects_not_followed_are_an_error_not_a_silent_loss() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let l = Layers::new(2);
    l.layer(0).dir("new").redirect("new", b"old");
    l.layer(1).file("old/kept", b"k");
    let r = stack(&l).follow_redirects(false).open_root().expect("root");
    let err = r.stat(b"new").expect_err("must be refused");
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
}

#[test]
fn invalid_redirects_are_errors() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    for bad in [&b""[..], b"a/b", b"..", b"/x//y", b"/"] {
        let l = Layers::new(2);
        l.layer(0).dir("new").redirect("new", bad);
        l.layer(1).dir("old");
        let err = root(&l).stat(b"new").expect_err("must be refused");
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::InvalidData,
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn metacopy_file_has_top_metadata_and_lower_data() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let l = Layers::new(2);
    l.layer(0).metacopy("f", 4, None).chmod("f", 0o600);
    l.layer(1).file_mode("f", b"data", 0o644);
    let r = root(&l);
    let meta = r.stat(b"f").expect("stat").expect("f");
    assert_eq!(meta.mode & 0o7777, 0o600);
    assert_eq!(meta.size, 4);
    assert_eq!(read(&r, "f"), b"data");
    let source = r.source(b"f");
    assert_eq!(
        source.root.path(),
        l.path(1),
        "bytes come from the layer holding them"
    );
}

#[test]
fn metacopy_follows_an_absolute_redirect() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let l = Layers::new(2);
    l.layer(0).metacopy("renamed", 3, Some("/orig"));
    l.layer(1).file("orig", b"abc");
    assert_eq!(read(&root(&l), "renamed"), b"abc");
}

#[test]
fn metacopy_data_in_a_data_only_layer() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let l = Layers::new(1);
    let data = l.extra("data");
    Layer::at(&data).file("blobs/x", b"payload");
    l.layer(0)
        .metacopy("f", 7, Some("/blobs/x"))
        .metacopy("no_redirect", 3, None);
    let r = LayerStack::open(&l.paths())
        .expect("open")
        .data_only(&[&data])
        .expect("data layer")
        .open_root()
        .expect("root");
    assert_eq!(read(&r, "f"), b"payload");
    assert_eq!(r.source(b"f").root.path(), data);
    assert!(
        r.stat(b"no_redirect").is_err(),
        "data-only layers need an absolute redirect"
    );
}

#[test]
fn metacopy_without_data_or_with_metacopy_off_is_an_error() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let l = Layers::new(2);
    l.layer(0)
        .metacopy("lonely", 3, None)
        .metacopy("f", 1, None);
    l.layer(1).file("f", b"x");
    let r = root(&l);
    assert!(r.stat(b"lonely").is_err());
    let off = stack(&l).metacopy(false).open_root().expect("root");
    let err = off.stat(b"f").expect_err("must be refused");
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
}

#[test]
fn private_xattrs_are_hidden_and_escaped_ones_shown() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let l = Layers::new(2);
    l.layer(0)
        .opaque("d", b"x")
        .xattr("d", "user.keep", b"1")
        .xattr("d", "trusted.overlay.overlay.mine", b"escaped")
        .xattr("d", "user.overlay.opaque", b"y");
    l.layer(1).dir("d");
    let r = root(&l);
    let names: Vec<String> = r
        .xattrs(b"d")
        .expect("xattrs")
        .into_iter()
        .map(|(n, _)| String::from_utf8_lossy(&n).into_owned())
        .collect();
    assert_eq!(
        names,
        ["trusted.overlay.mine", "user.keep", "user.overlay.opaque"]
    );
    assert_eq!(
        r.xattr(b"d", c"trusted.overlay.mine")
            .expect("xattr")
            .as_deref(),
        Some(&b"escaped"[..])
    );
    assert_eq!(
        r.xattr(b"d", c"trusted.overlay.opaque").expect("xattr"),
        None
    );
}

#[test]
fn user_namespace_reads_only_user_overlay_xattrs() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let l = Layers::with_prefix(2, "user.overlay.");
    l.layer(0)
        .file("d/new", b"n")
        .opaque("d", b"y")
        .file("t/new", b"n")
        .xattr("t", "trusted.overlay.opaque", b"y");
    l.layer(1).file("d/old", b"o").file("t/old", b"o");
    let s = stack(&l).namespace(XattrNamespace::User);
    assert_eq!(names(&s.open_dir(b"d").expect("open").expect("d")), ["new"]);
    assert_eq!(
        names(&s.open_dir(b"t").expect("open").expect("t")),
        ["new", "old"],
        "a trusted.overlay.opaque is an ordinary xattr under userxattr"
    );
    let r = s.open_root().expect("root");
    let xattrs = r.xattrs(b"t").expect("xattrs");
    assert_eq!(xattrs.len(), 1, "{xattrs:?}");
}

#[test]
fn from_config_takes_namespace_and_switches_from_the_options() {
    let l = Layers::with_prefix(2, "user.overlay.");
    l.layer(0).dir("new").redirect("new", b"old");
    l.layer(1).file("old/x", b"x");
    let opts = [
        format!("lowerdir={}:{}", l.path(0).display(), l.path(1).display()),
        "userxattr".to_string(),
    ];
    let cfg = OverlayConfig::parse(&opts).expect("options");
    let s = LayerStack::from_config(&cfg, &KernelDefaults::default()).expect("stack");
    let err = s
        .open_root()
        .expect("root")
        .stat(b"new")
        .expect_err("must be refused");
    assert_eq!(
        err.kind(),
        std::io::ErrorKind::PermissionDenied,
        "userxattr implies nofollow"
    );
}

#[test]
fn dot_names_and_slashes_never_escape_the_merge() {
    let l = Layers::new(1);
    l.layer(0).file("a/b", b"b");
    let r = root(&l);
    for bad in [&b".."[..], b".", b"", b"a/b"] {
        assert!(r.stat(bad).expect("stat").is_none(), "{bad:?}");
        assert!(r.open_dir(bad).expect("open").is_none(), "{bad:?}");
    }
}

#[test]
fn tree_paths_walk_component_by_component() {
    let l = Layers::new(2);
    l.layer(0).file("a/b/c/top", b"t");
    l.layer(1).file("a/b/c/bottom", b"b").symlink("a/link", "b");
    let s = stack(&l);
    let c = s.open_dir(b"a/b/c").expect("open").expect("c");
    assert_eq!(c.path(), b"a/b/c");
    assert_eq!(names(&c), ["bottom", "top"]);
    assert!(
        s.open_dir(b"a/link").expect("open").is_none(),
        "symlinks are not followed"
    );
    let a = s.open_dir(b"a").expect("open").expect("a");
    assert_eq!(a.read_link(b"link").expect("readlink"), b"b");
    assert_eq!(
        a.stat(b"link").expect("stat").expect("link").file_type(),
        FileType::Symlink
    );
    assert_eq!(s.display_path(b"a/b"), l.path(0).join("a/b"));
}

#[test]
fn aufs_whiteouts_opaque_markers_and_metadata() {
    let l = Layers::new(3);
    l.layer(0)
        .file(".wh.gone", b"")
        .file("d/.wh..wh..opq", b"")
        .file("d/new", b"n")
        .dir(".wh..wh.plnk")
        .file(".wh..wh.aufs", b"");
    l.layer(1)
        .file("gone", b"old")
        .file("d/old", b"o")
        .file("kept", b"k")
        .file("e/.wh.x", b"")
        .file("e/x", b"same layer");
    l.layer(2).file("e/x", b"below").file("e/y", b"y");
    let s = stack(&l).format(WhiteoutFormat::Aufs);
    let r = s.open_root().expect("root");
    assert_eq!(names(&r), ["d", "e", "kept"]);
    assert!(r.stat(b".wh.gone").expect("stat").is_none());
    assert_eq!(names(&s.open_dir(b"d").expect("open").expect("d")), ["new"]);
    let e = s.open_dir(b"e").expect("open").expect("e");
    assert_eq!(names(&e), ["x", "y"]);
    assert_eq!(
        read(&e, "x"),
        b"same layer",
        "a whiteout hides lower layers only"
    );
}

#[test]
fn aufs_opaque_root_hides_lower_layers() {
    let l = Layers::new(2);
    l.layer(0).file(".wh..wh..opq", b"").file("a", b"a");
    l.layer(1).file("b", b"b");
    let r = stack(&l)
        .format(WhiteoutFormat::Aufs)
        .open_root()
        .expect("root");
    assert_eq!(names(&r), ["a"]);
}
