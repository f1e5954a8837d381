//! Binary upgrade: a new process takes the listening sockets over from the running one.

mod common;

use common::{upstream, Backend, ChildGuard, Proxy};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_upgrade_refuses_no_connection() {
    let backend = Backend::start("1");
    let sock_dir = tempfile::tempdir().unwrap();
    let sock = sock_dir.path().join("upgrade.sock");
    let mut old = Proxy::start_with(
        &format!("  upgrade_sock: {}", sock.display()),
        &format!(
            "{}routes:\n  - {{ path: /, upstream: app }}\n",
            upstream(&[&backend], &[1])
        ),
    );

    // Clients that open a new connection for every request, so a refused one would show.
    let (ok, failed, stop) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(Mutex::new(Vec::<String>::new())),
        Arc::new(AtomicBool::new(false)),
    );
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (ok, failed, stop, url) = (ok.clone(), failed.clone(), stop.clone(), old.url("/"));
            tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .pool_max_idle_per_host(0)
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                while !stop.load(Ordering::Relaxed) {
                    match http.get(&url).send().await {
                        Ok(resp) if resp.status() == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(resp) => failed.lock().unwrap().push(resp.status().to_string()),
                        Err(e) => failed.lock().unwrap().push(format!("{e:?}")),
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let new = Command::new(env!("CARGO_BIN_EXE_edgeproxy"))
        .args(["-u", "-c", old.config_path().to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut new = ChildGuard(new);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(
            Instant::now() < deadline,
            "the new process never waited for the sockets"
        );
        assert!(
            new.0.try_wait().unwrap().is_none(),
            "the new process exited"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    old.child.signal("QUIT");
    // The old process keeps accepting during Pingora's 5 s hand-over window, then drains.
    let status = old
        .child
        .wait_exit(Duration::from_secs(15))
        .expect("the old process exits");
    assert!(status.success(), "{status}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let ok = ok.load(Ordering::Relaxed);
    let failed = std::mem::take(&mut *failed.lock().unwrap());
    assert!(failed.is_empty(), "{ok} ok, failed: {failed:?}");
    assert!(ok > 100, "only {ok} requests went through");
    assert!(
        new.0.try_wait().unwrap().is_none(),
        "the new process serves on"
    );
    let resp = common::client().get(old.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "answered by the new process");
}
