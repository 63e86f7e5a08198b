//! `certinel run` under `Type=notify`: the real binary tells a fake `$NOTIFY_SOCKET` it is
//! ready once it serves, brackets each SIGHUP reload with `RELOADING=1` and `READY=1`, and
//! says `STOPPING=1` on SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::service::{PATIENCE, get};

/// A `certinel run` child, killed when dropped so a failing test leaves no process behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The next datagram on `socket`, as text; panics after [`PATIENCE`].
fn next_message(socket: &UnixDatagram, waiting_for: &str) -> String {
    socket
        .set_read_timeout(Some(PATIENCE))
        .expect("set a read timeout");
    let mut buffer = vec![0; 4096];
    let length = socket.recv(&mut buffer).unwrap_or_else(|error| {
        panic!("no notification ({waiting_for}) within {PATIENCE:?}: {error}")
    });
    String::from_utf8(buffer[..length].to_vec()).expect("UTF-8 notification")
}

/// The `NAME=value` assignments of one notification, in order.
fn assignments(message: &str) -> Vec<(&str, &str)> {
    message
        .lines()
        .map(|line| line.split_once('=').unwrap_or((line, "")))
        .collect()
}

/// The value of the first `name=` assignment in a notify message's `fields`.
fn field<'a>(fields: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(field_name, _)| *field_name == name)
        .map(|(_, value)| *value)
}

/// Starts `certinel run --listen 127.0.0.1:0` with what `configure` adds, stdin and
/// stdout closed and stderr as given.
fn start_run(configure: impl FnOnce(&mut Command), stderr: Stdio) -> Running {
    let mut command = Command::new(env!("CARGO_BIN_EXE_certinel"));
    command.args(["run", "--listen", "127.0.0.1:0"]);
    configure(&mut command);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    Running(command.spawn().expect("spawn certinel"))
}

fn send_signal(child: &Child, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a child has a pid");
    rustix::process::kill_process(pid, signal).expect("signal certinel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_notifies_ready_once_serving_and_brackets_each_sighup_reload() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the fake notify socket");
    let config = dir.path().join("certinel.toml");
    std::fs::write(&config, "[scanner]\ntimeout = \"5s\"\n").expect("write config");

    let mut running = start_run(
        |command| {
            command.arg("--config").arg(&config);
            command
                .env("NOTIFY_SOCKET", &socket_path)
                .env("RUST_LOG", "info");
        },
        Stdio::inherit(),
    );

    let ready = tokio::task::block_in_place(|| next_message(&socket, "READY=1 after start"));
    let fields = assignments(&ready);
    assert_eq!(fields.first(), Some(&("READY", "1")), "{ready:?}");
    let status = field(&fields, "STATUS").unwrap_or_else(|| panic!("no STATUS in {ready:?}"));
    let listen = status
        .split_whitespace()
        .find_map(|word| word.trim_end_matches(',').parse().ok())
        .unwrap_or_else(|| panic!("no listen address in STATUS={status:?}"));
    // Ready means serving: the exporter answers at once, no retry.
    let health = get(listen, "/healthz", &[]).await;
    assert_eq!(health.status, 200, "{}", health.body);

    send_signal(&running.0, rustix::process::Signal::HUP);
    let reloading = tokio::task::block_in_place(|| next_message(&socket, "RELOADING=1"));
    let fields = assignments(&reloading);
    assert_eq!(fields.first(), Some(&("RELOADING", "1")), "{reloading:?}");
    let monotonic = field(&fields, "MONOTONIC_USEC")
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"));
    assert!(monotonic > 0);
    let reloaded = tokio::task::block_in_place(|| next_message(&socket, "READY=1 after reload"));
    assert_eq!(
        assignments(&reloaded).first(),
        Some(&("READY", "1")),
        "{reloaded:?}"
    );
    assert!(reloaded.contains("STATUS="), "{reloaded:?}");

    send_signal(&running.0, rustix::process::Signal::TERM);
    let stopping = tokio::task::block_in_place(|| next_message(&socket, "STOPPING=1"));
    assert_eq!(assignments(&stopping).first(), Some(&("STOPPING", "1")));
    let exited = tokio::task::block_in_place(|| {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = running.0.try_wait().expect("wait for certinel") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "certinel did not exit"
            );
            // Exit has no event to wait on from a std child; poll briefly.
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    assert!(exited.success(), "{exited}");
}

#[test]
fn without_notify_socket_run_says_nothing_and_a_bad_one_does_not_stop_it() {
    // A NOTIFY_SOCKET that names nothing must not keep certinel from starting: systemd
    // would time the start out, which says more than a crash would.
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.sock");
    let mut running = start_run(
        |command| {
            command.env("NOTIFY_SOCKET", &missing);
        },
        Stdio::piped(),
    );
    let stderr = running.0.stderr.take().expect("piped stderr");
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + PATIENCE;
    let warned = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no warning naming NOTIFY_SOCKET within {PATIENCE:?}"));
        if line.contains("NOTIFY_SOCKET") {
            break line;
        }
    };
    assert!(warned.contains("missing.sock"), "{warned}");
    assert!(
        running.0.try_wait().expect("poll certinel").is_none(),
        "certinel exited after failing to notify"
    );
}
