//! Binary upgrade: a new process takes the listening sockets over from the running one,
//! started by hand (`-u`, then SIGQUIT) or by the running one itself (SIGUSR2); and `-d`.

mod common;

use common::{free_port, line_with, upstream, Backend, ChildGuard, Proxy};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A proxy with its pid file and upgrade socket in `dir`.
fn upgradable_proxy(backend: &Backend, dir: &Path) -> Proxy {
    Proxy::start_with(
        &format!(
            "  upgrade_sock: {}\n  pid_file: {}",
            dir.join("upgrade.sock").display(),
            dir.join("edgeproxy.pid").display()
        ),
        &format!(
            "{}routes:\n  - {{ path: /, upstream: app }}\n",
            upstream(&[backend], &[1])
        ),
    )
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Runs `upgrade` while four clients send requests on a new connection each (so a refused
/// connection would show), until the old proxy has exited; asserts that none failed and that
/// something still answers on the port.
async fn upgrade_under_load(mut old: Proxy, upgrade: impl FnOnce(&Proxy)) {
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
                    // A steady stream of connections, not a flood that would crowd out the
                    // processes being tested.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    // The load is under way before the upgrade starts.
    wait_answered(&ok, 20, &failed).await;

    upgrade(&old);
    // The old process keeps accepting during Pingora's 5 s hand-over window, then drains.
    let status = old
        .child
        .wait_exit(Duration::from_secs(15))
        .expect("the old process exits");
    assert!(status.success(), "{status}");
    // And the load goes on, on the new process alone, for a while.
    let by_then = ok.load(Ordering::Relaxed);
    wait_answered(&ok, by_then + 100, &failed).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let ok = ok.load(Ordering::Relaxed);
    let failed = std::mem::take(&mut *failed.lock().unwrap());
    assert!(failed.is_empty(), "{ok} ok, failed: {failed:?}");
    assert!(ok > 100, "only {ok} requests went through");
    let resp = common::client().get(old.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "answered by the new process");
}

/// Waits until the load has had `n` answers in all, failing the test after 10 s with what
/// failed.
async fn wait_answered(ok: &AtomicUsize, n: usize, failed: &Mutex<Vec<String>>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while ok.load(Ordering::Relaxed) < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} requests answered; failed: {:?}",
            ok.load(Ordering::Relaxed),
            failed.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `path` exists, failing if `child` exits first.
fn wait_for_file(path: &Path, child: &mut ChildGuard) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "the new process exited"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_upgrade_refuses_no_connection() {
    let backend = Backend::start("1");
    let dir = tempfile::tempdir().unwrap();
    let old = upgradable_proxy(&backend, dir.path());
    let mut new = None;
    upgrade_under_load(old, |old| {
        let child = Command::new(env!("CARGO_BIN_EXE_edgeproxy"))
            .args(["-u", "-c", old.config_path().to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut child = ChildGuard(child);
        wait_for_file(&dir.path().join("upgrade.sock"), &mut child);
        old.child.signal("QUIT");
        new = Some(child);
    })
    .await;
    let mut new = new.expect("started");
    assert!(
        new.0.try_wait().unwrap().is_none(),
        "the new process serves on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_process_keeps_accepting_for_the_hand_over_window() {
    let backend = Backend::start("1");
    let dir = tempfile::tempdir().unwrap();
    let mut old = upgradable_proxy(&backend, dir.path());
    let mut new = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_edgeproxy"))
            .args(["-u", "-c", old.config_path().to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_file(&dir.path().join("upgrade.sock"), &mut new);
    // No request before the hand-over, so every line the old process logs is one it accepted
    // after it.
    old.child.signal("QUIT");
    let handed_over = Instant::now();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut answered = 0;
    while handed_over.elapsed() < Duration::from_secs(4) {
        if let Ok(resp) = http.get(old.url("/")).send().await {
            answered += usize::from(resp.status() == 200);
        }
        // Paced: a steady stream of new connections through the window.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = old
        .child
        .wait_exit(Duration::from_secs(15))
        .expect("the old process exits");
    let lived = handed_over.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        lived >= Duration::from_millis(4900),
        "the old process exited {lived:?} after the hand-over"
    );
    let by_old = old
        .stdout()
        .lines()
        .filter(|l| l.contains("\"GET / "))
        .count();
    assert!(
        by_old > 0 && by_old < answered,
        "the old process served {by_old} of {answered} requests sent in the window"
    );
    assert!(
        new.0.try_wait().unwrap().is_none(),
        "the new process serves on"
    );
}

/// Kills the process named in a pid file when dropped: a successor is not our child.
struct PidFileGuard(PathBuf);

impl Drop for PidFileGuard {
    fn drop(&mut self) {
        if let Some(pid) = read_pid(&self.0) {
            // SAFETY: kill(2) takes plain integers.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr2_starts_the_installed_binary_and_hands_over() {
    let backend = Backend::start("1");
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("edgeproxy.pid");
    let old = upgradable_proxy(&backend, dir.path());
    let old_pid = old.child.pid();
    assert_eq!(read_pid(&pid_file), Some(old_pid));
    let _successor = PidFileGuard(pid_file.clone());
    upgrade_under_load(old, |old| old.child.signal("USR2")).await;
    let new_pid = read_pid(&pid_file).expect("the successor wrote its pid");
    assert_ne!(new_pid, old_pid);
    assert!(alive(new_pid), "the successor serves on");
}

#[tokio::test]
async fn a_successor_that_fails_to_start_leaves_the_running_process_serving() {
    let backend = Backend::start("1");
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("edgeproxy.pid");
    let old = upgradable_proxy(&backend, dir.path());
    let old_pid = old.child.pid();
    // The new process reads the file the running one started with: now broken.
    std::fs::write(old.config_path(), "upstreams: [\n").unwrap();
    old.child.signal("USR2");
    let abandoned = line_with(|| old.log(), "upgrade abandoned, this process serves on").await;
    assert!(abandoned.contains("exited"), "{abandoned}");
    assert_eq!(read_pid(&pid_file), Some(old_pid));
    // Still listening and serving, on new connections too.
    for _ in 0..3 {
        let resp = common::client().get(old.url("/")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert!(alive(old_pid));
}

#[tokio::test]
async fn daemon_mode_returns_once_the_server_has_started() {
    let backend = Backend::start("1");
    let dir = tempfile::tempdir().unwrap();
    let (port, pid_file) = (free_port(), dir.path().join("edgeproxy.pid"));
    let config = dir.path().join("edgeproxy.yaml");
    std::fs::write(
        &config,
        format!(
            "server:\n  listen: [\"127.0.0.1:{port}\"]\n  pid_file: {}\n{}routes:\n  - {{ path: /, upstream: app }}\n",
            pid_file.display(),
            upstream(&[&backend], &[1])
        ),
    )
    .unwrap();
    let _daemon = PidFileGuard(pid_file.clone());
    // Files, not pipes: the background process keeps its standard output and error, and a
    // pipe would stay open as long as it runs.
    let stdout = dir.path().join("stdout.log");
    let status = Command::new(env!("CARGO_BIN_EXE_edgeproxy"))
        .args(["-d", "-c", config.to_str().unwrap()])
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
        .status()
        .unwrap();
    assert!(status.success(), "{status}");
    let pid = read_pid(&pid_file).expect("a pid");
    let printed = std::fs::read_to_string(&stdout).unwrap();
    assert!(printed.contains(&format!("process {pid}")), "{printed}");
    assert!(alive(pid));
    let deadline = Instant::now() + Duration::from_secs(10);
    let url = format!("http://127.0.0.1:{port}/");
    loop {
        if let Ok(resp) = common::client().get(&url).send().await {
            assert_eq!(resp.status(), 200);
            break;
        }
        assert!(Instant::now() < deadline, "the daemon never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Without a pid file there is no way to find the process: refused.
    let no_pid = config.with_file_name("no-pid.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.contains("pid_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&no_pid, text).unwrap();
    let out = common::edgeproxy(&["-d", "-c", no_pid.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("-d needs server.pid_file"));
}
