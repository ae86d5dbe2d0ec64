//! What the plugin hands back to containerd, and how it lives next to it: unsupported media
//! types fall through to the walking differ, a killed plugin's stale socket is replaced by its
//! restart, SIGTERM exits cleanly, namespaces keep blobs apart, a `ref` may be reused, diffs
//! run concurrently, a blob outlives a garbage collection before its caller references it,
//! and no ingest is ever left behind.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{diff_call, request, sh, start_plugin, Harness, GZIP, NS, TAR, ZSTD};
use ovdiff_containerd::proto::types::Mount;

const L1: &str =
    "mkdir -p etc d && echo one > etc/a && echo x > d/x && head -c 300000 /dev/urandom > big";
const A2: &str = "echo two > etc/a && rm d/x && echo n > new";

/// A committed layer, an active snapshot over it, and the parent's view.
fn layers(h: &Harness) -> (Vec<Mount>, Vec<Mount>) {
    let m = h.snapshot_mounts("overlayfs", "prepare", "l1-active", None);
    h.with_mounted(&m, |d| sh(d, L1));
    h.commit("overlayfs", "l1", "l1-active");
    let a2 = h.snapshot_mounts("overlayfs", "prepare", "a2", Some("l1"));
    h.with_mounted(&a2, |d| sh(d, A2));
    (
        h.snapshot_mounts("overlayfs", "view", "v-l1", Some("l1")),
        a2,
    )
}

fn no_active_ingests(h: &Harness, ns: &str) {
    let out = h.ctr(ns, &["content", "active"]);
    let text = String::from_utf8_lossy(&out);
    let rows: Vec<&str> = text
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(rows.is_empty(), "leftover ingests in {ns}: {rows:?}");
}

#[test]
fn unsupported_media_type_falls_through_to_walking() {
    let Some(h) = Harness::start("unsupported_media_type_falls_through_to_walking") else {
        return;
    };
    let (left, right) = layers(&h);
    let media = "application/vnd.oci.image.layer.v1.tar+bzip2";
    let none = HashMap::new();
    let w = h.diff(&h.w.socket, NS, &left, &right, media, None, "", &none);
    let p = h.diff(&h.p.socket, NS, &left, &right, media, None, "", &none);
    match (&w, &p) {
        (Ok(w), Ok(p)) => assert_eq!(w.digest, p.digest),
        (Err(w), Err(p)) => {
            assert_eq!(w.code(), p.code(), "walking: {w}; through the plugin: {p}");
            assert_eq!(
                w.message(),
                p.message(),
                "containerd's walking differ answered"
            );
        }
        _ => panic!("walking {w:?} but through the plugin {p:?}"),
    }
    let lines = h.plugin().diff_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("differ=containerd "), "{}", lines[0]);
    assert!(lines[0].contains("bzip2"), "{}", lines[0]);
    no_active_ingests(&h, NS);
}

#[test]
fn killed_plugin_restarts_on_its_stale_socket_and_sigterm_exits_cleanly() {
    let Some(mut h) =
        Harness::start("killed_plugin_restarts_on_its_stale_socket_and_sigterm_exits_cleanly")
    else {
        return;
    };
    let (left, right) = layers(&h);
    let none = HashMap::new();
    h.diff(&h.p.socket, NS, &left, &right, TAR, None, "", &none)
        .expect("served before the kill");
    let mut plugin = h.plugin.take().expect("plugin");
    let socket = plugin.socket.clone();
    plugin.signal_and_wait("KILL");
    assert!(socket.exists(), "SIGKILL leaves the socket file");
    // While the plugin is down, containerd does not fall through: the diff fails.
    let down = h.diff(&h.p.socket, NS, &left, &right, TAR, None, "", &none);
    assert!(down.is_err(), "a diff while the plugin is down: {down:?}");

    h.plugin = Some(start_plugin(h.dir.path(), &socket, &h.p.socket, &[]));
    // containerd reconnects by itself about 1.5 s after the socket is back.
    let deadline = Instant::now() + Duration::from_secs(20);
    let desc = loop {
        match h.diff(&h.p.socket, NS, &left, &right, GZIP, None, "", &none) {
            Ok(d) => break d,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(e) => panic!("the restarted plugin never served: {e}"),
        }
    };
    assert_eq!(desc.media_type, GZIP);
    let lines = h.plugin().diff_lines();
    assert_eq!(lines.len(), 1, "the restarted plugin served it: {lines:?}");
    assert!(lines[0].contains("differ=overlay "), "{}", lines[0]);
    no_active_ingests(&h, NS);

    let mut plugin = h.plugin.take().expect("plugin");
    let status = plugin.signal_and_wait("TERM").expect("exit status");
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    assert!(!socket.exists(), "the socket is removed on SIGTERM");
}

#[test]
fn namespaces_refs_concurrency_and_garbage_collection() {
    let Some(h) = Harness::start("namespaces_refs_concurrency_and_garbage_collection") else {
        return;
    };
    let (left, right) = layers(&h);
    let none = HashMap::new();

    // Two namespaces keep their blobs apart.
    let a = h
        .diff(&h.p.socket, "ns-a", &left, &right, ZSTD, None, "", &none)
        .expect("diff in ns-a");
    assert!(h.labels(&h.p.socket, "ns-a", &a.digest).is_ok());
    let in_b = h.labels(&h.p.socket, "ns-b", &a.digest);
    assert_eq!(in_b.expect_err("not in ns-b").code(), tonic::Code::NotFound);
    assert!(h.plugin().diff_lines()[0].contains("ns=ns-a "));

    // The same ref twice.
    for _ in 0..2 {
        h.diff(
            &h.p.socket,
            NS,
            &left,
            &right,
            GZIP,
            None,
            "same-ref",
            &none,
        )
        .expect("the same ref again");
    }

    // A blob found already stored gets the uncompressed label back when it lacks it, as
    // walking does.
    let g = h
        .diff(&h.p.socket, NS, &left, &right, GZIP, None, "", &none)
        .expect("gzip diff");
    let diff_id =
        h.labels(&h.p.socket, NS, &g.digest).expect("info")["containerd.io/uncompressed"].clone();
    h.ctr(
        NS,
        &["content", "label", &g.digest, "containerd.io/uncompressed="],
    );
    let stripped = h.labels(&h.p.socket, NS, &g.digest).expect("info");
    assert!(
        !stripped.contains_key("containerd.io/uncompressed"),
        "{stripped:?}"
    );
    let again = h
        .diff(&h.p.socket, NS, &left, &right, GZIP, None, "", &none)
        .expect("the same diff again");
    assert_eq!(again.digest, g.digest);
    let labels = h.labels(&h.p.socket, NS, &g.digest).expect("info");
    assert_eq!(labels.get("containerd.io/uncompressed"), Some(&diff_id));
    assert!(h
        .plugin()
        .diff_lines()
        .last()
        .is_some_and(|l| l.contains("already in the content store")));

    // Concurrent diffs.
    let results = h.block_on(async {
        let mut tasks = Vec::new();
        for (i, media) in [TAR, GZIP, ZSTD, GZIP, TAR, ZSTD].into_iter().enumerate() {
            let req = request(
                &left,
                &right,
                media,
                Some(1_500_000_000 + i as i64),
                "",
                &HashMap::new(),
            );
            let lease = Some(format!("concurrent-{i}"));
            tasks.push(tokio::spawn(diff_call(
                h.p.socket.clone(),
                NS.to_string(),
                lease,
                req,
            )));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("task"));
        }
        out
    });
    for r in results {
        r.expect("a concurrent diff");
    }

    // A blob survives a garbage collection between Diff and its use. The caller holds no
    // lease here; the walking differ's unleased blob is the control that GC ran.
    let p = h
        .block_on(diff_call(
            h.p.socket.clone(),
            NS.to_string(),
            None,
            request(&left, &right, ZSTD, Some(7), "", &none),
        ))
        .expect("unleased diff through the plugin");
    let w = h
        .block_on(diff_call(
            h.w.socket.clone(),
            NS.to_string(),
            None,
            request(&left, &right, ZSTD, Some(7), "", &none),
        ))
        .expect("unleased walking diff");
    for socket in [&h.p.socket, &h.w.socket] {
        let out = h.ctr_on(socket, NS, &["leases", "create", "--id", "gc-trigger"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = h.ctr_on(socket, NS, &["leases", "delete", "--sync", "gc-trigger"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        h.labels(&h.w.socket, NS, &w.digest)
            .expect_err("control: GC removed it")
            .code(),
        tonic::Code::NotFound
    );
    let labels = h
        .labels(&h.p.socket, NS, &p.digest)
        .expect("the plugin's blob survived GC");
    assert!(labels.contains_key("containerd.io/uncompressed"));
    assert!(
        !labels.contains_key("containerd.io/gc.root"),
        "no gc.root the request did not ask for"
    );
    // The plugin's lease expires; no unexpiring lease was added.
    let leases = String::from_utf8_lossy(&h.ctr(NS, &["leases", "ls"])).to_string();
    let ours: Vec<&str> = leases
        .lines()
        .filter(|l| l.starts_with("ovdiff-containerd."))
        .collect();
    assert!(
        !ours.is_empty(),
        "the plugin holds its blobs under its own leases: {leases}"
    );
    for row in ours {
        assert!(row.contains("containerd.io/gc.expire="), "{row}");
    }
    no_active_ingests(&h, NS);
    no_active_ingests(&h, "ns-a");
}

#[test]
fn sigterm_lets_an_in_flight_diff_finish() {
    let Some(mut h) = Harness::start("sigterm_lets_an_in_flight_diff_finish") else {
        return;
    };
    let m = h.snapshot_mounts("overlayfs", "prepare", "l1-active", None);
    h.with_mounted(&m, |d| sh(d, L1));
    h.commit("overlayfs", "l1", "l1-active");
    let a2 = h.snapshot_mounts("overlayfs", "prepare", "a2", Some("l1"));
    // Enough data that gzip is still running when the signal arrives.
    h.with_mounted(&a2, |d| sh(d, "head -c 16777216 /dev/urandom > big2"));
    let left = h.snapshot_mounts("overlayfs", "view", "v-l1", Some("l1"));
    let req = request(&left, &a2, GZIP, None, "in-flight", &HashMap::new());
    let call = h.rt.spawn(diff_call(
        h.p.socket.clone(),
        NS.to_string(),
        Some("in-flight-lease".to_string()),
        req,
    ));
    std::thread::sleep(Duration::from_millis(300));
    let mut plugin = h.plugin.take().expect("plugin");
    let socket = plugin.socket.clone();
    let log = plugin.log.clone();
    let status = plugin.signal_and_wait("TERM").expect("exit status");
    let result = h.block_on(call).expect("task");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "SIGTERM exits 0: {status:?}\n{text}");
    assert!(!socket.exists(), "the socket is removed on SIGTERM");
    let desc = result.unwrap_or_else(|e| panic!("the in-flight diff finished: {e}\n{text}"));
    assert!(desc.size > 16 << 20, "{desc:?}");
    assert!(text.contains("SIGTERM"), "{text}");
    no_active_ingests(&h, NS);
}
