//! The Debian package as an administrator meets it: `scripts/package` builds the .deb from
//! the test's own binary, `dpkg -i` installs it on this machine, the installed files are
//! checked with the real tools (certinel, systemd-analyze, man, bash, promtool), the
//! installed service starts as the `certinel` user, and `dpkg --purge` leaves nothing but
//! the documented system user.
//!
//! It needs root (CI runs as root) and fails, never skips, without it. It refuses to run on
//! a machine where certinel is already installed, so it cannot clobber a real setup.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::process::assert_succeeded;
use crate::common::service::get;
use crate::packaging::expected_pages;

/// The highest exposure `systemd-analyze security` may give the unit (issue #14: 2.0).
const MAX_EXPOSURE: f64 = 2.0;

/// Paths the package owns that must exist once installed (beside the man pages).
const INSTALLED_FILES: &[&str] = &[
    "/usr/bin/certinel",
    "/lib/systemd/system/certinel.service",
    "/etc/certinel/certinel.toml",
    "/etc/logrotate.d/certinel",
    "/usr/share/bash-completion/completions/certinel",
    "/usr/share/zsh/vendor-completions/_certinel",
    "/usr/share/fish/vendor_completions.d/certinel.fish",
    "/usr/share/certinel/prometheus/alerts.yml",
    "/usr/share/certinel/prometheus/alerts-renewal.yml",
    "/usr/share/certinel/prometheus/prometheus.yml",
    "/usr/share/certinel/prometheus/alerts-cluster.yml",
    "/usr/share/certinel/prometheus/prometheus-cluster.yml",
    "/usr/share/certinel/grafana/certinel.json",
    "/usr/share/certinel/grafana/provisioning/certinel.yaml",
    "/usr/share/doc/certinel/copyright",
    "/usr/share/doc/certinel/examples/certinel.toml",
    "/usr/share/doc/certinel/examples/certinel-reload-nginx.path",
    "/usr/share/doc/certinel/examples/certinel-reload-nginx.service",
    "/usr/share/doc/certinel/examples/README.deploy",
];

/// Runs `program` with `args`; panics naming the program when it cannot start.
fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("LC_ALL", "C.UTF-8")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run {program} ({error}); scripts/deps installs the tools this test uses")
        })
}

/// The standard output of a run that must succeed.
fn succeed(program: &str, args: &[&str]) -> String {
    let output = run(program, args);
    assert_succeeded(&output, &format!("{program} {args:?}"));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// dpkg's status of the certinel package, `None` when dpkg knows nothing of it.
fn package_status() -> Option<String> {
    let output = run("dpkg-query", &["-W", "-f=${Status}", "certinel"]);
    let status = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (output.status.success() && !status.is_empty() && status != "unknown ok not-installed")
        .then_some(status)
}

/// Panics unless this process may install packages and no certinel is installed.
fn require_root_and_no_installed_certinel() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the package test installs a .deb and must run as root (CI does); it does not skip"
    );
    if let Some(status) = package_status() {
        panic!(
            "certinel is already installed here (dpkg: {status}); this test installs and purges \
             the package, so it refuses to touch this machine"
        );
    }
    for path in ["/usr/bin/certinel", "/etc/certinel", "/var/lib/certinel"] {
        assert!(
            !Path::new(path).exists(),
            "{path} exists although no certinel package is installed; this test would remove \
             it, so it refuses to run"
        );
    }
}

/// Purges the package when dropped, so a failed assertion leaves the machine as it was.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        if package_status().is_some() {
            let _ = run("dpkg", &["--purge", "certinel"]);
        }
    }
}

/// Builds the .deb from the test's binary into `dir`; returns its path.
fn build_package(dir: &Path) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/package");
    let printed = succeed(
        script.to_str().expect("UTF-8 path"),
        &[
            "--binary",
            env!("CARGO_BIN_EXE_certinel"),
            "--out",
            dir.to_str().expect("UTF-8 path"),
            "--fast",
        ],
    );
    let deb = PathBuf::from(printed.trim());
    let arch = succeed("dpkg", &["--print-architecture"]);
    let expected = format!("certinel_{}_{}.deb", env!("CARGO_PKG_VERSION"), arch.trim());
    assert_eq!(
        deb.file_name().and_then(|name| name.to_str()),
        Some(expected.as_str())
    );
    assert!(deb.is_file(), "{} was not written", deb.display());
    deb
}

/// Every path in the package (directories included), absolute, from `dpkg-deb --contents`.
fn package_paths(deb: &Path) -> Vec<String> {
    succeed(
        "dpkg-deb",
        &["--contents", deb.to_str().expect("UTF-8 path")],
    )
    .lines()
    .filter_map(|line| line.split_whitespace().nth(5))
    .map(|path| {
        path.trim_start_matches('.')
            .trim_end_matches('/')
            .to_owned()
    })
    .filter(|path| !path.is_empty())
    .collect()
}

/// `(uid, gid, home, shell)` of the `certinel` user.
fn certinel_user() -> (u32, u32, String, String) {
    let entry = succeed("getent", &["passwd", "certinel"]);
    let fields: Vec<&str> = entry.trim().split(':').collect();
    assert_eq!(fields.len(), 7, "{entry}");
    let number = |field: &str| field.parse::<u32>().expect("numeric id");
    (
        number(fields[2]),
        number(fields[3]),
        fields[5].to_owned(),
        fields[6].to_owned(),
    )
}

#[test]
fn the_deb_installs_passes_systemd_man_and_bash_checks_starts_and_purges_clean() {
    require_root_and_no_installed_certinel();
    let dir = tempfile::tempdir().expect("temp dir");
    let deb = build_package(dir.path());
    let paths = package_paths(&deb);
    for file in INSTALLED_FILES {
        assert!(
            paths.iter().any(|path| path == file),
            "{file} not in the package"
        );
    }

    let installed = Installed;
    succeed("dpkg", &["-i", deb.to_str().expect("UTF-8 path")]);
    assert_eq!(package_status().as_deref(), Some("install ok installed"));
    for file in INSTALLED_FILES {
        assert!(
            Path::new(file).is_file(),
            "{file} not installed (a path-exclude in /etc/dpkg/dpkg.cfg.d/, as in minimal \
             container images, drops documentation and man pages)"
        );
    }
    let conffiles = succeed("dpkg-query", &["-W", "-f=${Conffiles}", "certinel"]);
    for conffile in ["/etc/certinel/certinel.toml ", "/etc/logrotate.d/certinel "] {
        assert!(
            conffiles.contains(conffile),
            "{conffile}not a conffile: {conffiles:?}"
        );
    }

    check_user_and_permissions();
    check_installed_binary();
    check_unit();
    check_man_pages_and_completions();
    check_monitoring_files();
    start_installed_service_as_certinel();
    rotate_the_audit_log();
    remove_then_purge(&paths);
    drop(installed);
}

fn check_user_and_permissions() {
    let (uid, gid, home, shell) = certinel_user();
    assert!(uid < 1000, "certinel is not a system user: uid {uid}");
    assert_eq!(home, "/var/lib/certinel");
    assert_eq!(shell, "/usr/sbin/nologin");
    let state = std::fs::metadata("/var/lib/certinel").expect("state directory");
    assert!(state.is_dir());
    assert_eq!(state.mode() & 0o7777, 0o700, "state directory mode");
    assert_eq!(
        (state.uid(), state.gid()),
        (uid, gid),
        "state directory owner"
    );
    let config = std::fs::metadata("/etc/certinel/certinel.toml").expect("configuration");
    assert_eq!(config.mode() & 0o7777, 0o640, "configuration mode");
    assert_eq!(
        (config.uid(), config.gid()),
        (0, gid),
        "configuration owner"
    );
}

fn check_installed_binary() {
    let version = succeed("/usr/bin/certinel", &["--version"]);
    assert!(
        version.starts_with(concat!("certinel ", env!("CARGO_PKG_VERSION"), " (")),
        "{version:?}"
    );
    assert!(version.contains(certinel::COMMIT), "{version:?}");
    succeed(
        "/usr/bin/certinel",
        &["config", "check", "/etc/certinel/certinel.toml"],
    );
    // The shipped reference configuration stays valid too.
    succeed(
        "/usr/bin/certinel",
        &[
            "config",
            "check",
            "/usr/share/doc/certinel/examples/certinel.toml",
        ],
    );
}

fn check_unit() {
    for unit in [
        "/lib/systemd/system/certinel.service",
        "/usr/share/doc/certinel/examples/certinel-reload-nginx.path",
        "/usr/share/doc/certinel/examples/certinel-reload-nginx.service",
    ] {
        let output = run("systemd-analyze", &["verify", unit]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stderr.trim().is_empty(),
            "systemd-analyze verify {unit}: {}\n{stderr}",
            output.status
        );
    }
    let report = succeed(
        "systemd-analyze",
        &[
            "security",
            "--offline=true",
            "--no-pager",
            "/lib/systemd/system/certinel.service",
        ],
    );
    let exposure: f64 = report
        .lines()
        .find_map(|line| {
            line.split_once("Overall exposure level for certinel.service: ")
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .and_then(|number| number.parse().ok())
        })
        .unwrap_or_else(|| panic!("no overall exposure level in:\n{report}"));
    assert!(
        exposure <= MAX_EXPOSURE,
        "exposure {exposure} above {MAX_EXPOSURE}:\n{report}"
    );
    let unit = std::fs::read_to_string("/lib/systemd/system/certinel.service").expect("unit");
    for setting in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "User=certinel",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/certinel",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
    ] {
        assert!(
            unit.lines().any(|line| line == setting),
            "{setting} missing"
        );
    }
}

fn check_man_pages_and_completions() {
    for page in expected_pages() {
        let path = format!("/usr/share/man/man1/{page}.gz");
        assert!(
            Path::new(&path).is_file(),
            "{path} not installed (is /usr/share/man path-excluded in /etc/dpkg/dpkg.cfg.d/?)"
        );
        let output = Command::new("man")
            .args(["-l", &path])
            .env("LC_ALL", "C.UTF-8")
            .env("MANWIDTH", "100")
            .env("MANPAGER", "cat")
            .output()
            .expect("run man (scripts/deps installs man-db)");
        let stderr = String::from_utf8_lossy(&output.stderr);
        // Justification stretches spaces; compare words.
        let rendered = String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let name = page.trim_end_matches(".1");
        assert!(
            output.status.success() && stderr.is_empty(),
            "man -l {path}: {}\n{stderr}",
            output.status
        );
        assert!(
            rendered.contains(&format!("{name} - ")),
            "{path} renders without its NAME line:\n{rendered}"
        );
    }
    let registered = succeed(
        "bash",
        &[
            "--noprofile",
            "--norc",
            "-c",
            "source /usr/share/bash-completion/completions/certinel && complete -p certinel",
        ],
    );
    assert!(
        registered.trim_end().ends_with(" certinel"),
        "{registered:?}"
    );
    let zsh = std::fs::read_to_string("/usr/share/zsh/vendor-completions/_certinel")
        .expect("zsh completions");
    assert!(zsh.starts_with("#compdef certinel"), "{zsh:.80}");
    let fish = std::fs::read_to_string("/usr/share/fish/vendor_completions.d/certinel.fish")
        .expect("fish completions");
    assert!(fish.contains("complete -c certinel"), "{fish:.80}");
}

fn check_monitoring_files() {
    succeed(
        "promtool",
        &[
            "check",
            "rules",
            "/usr/share/certinel/prometheus/alerts.yml",
            "/usr/share/certinel/prometheus/alerts-renewal.yml",
        ],
    );
    let installed = std::fs::read("/usr/share/certinel/grafana/certinel.json").expect("dashboard");
    let shipped =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/certinel.json"))
            .expect("dashboard in the repository");
    assert_eq!(installed, shipped, "the installed dashboard differs");
}

/// What the README's Install section does, without systemd as PID 1: the installed binary,
/// as the `certinel` user, with the installed configuration, reports ready and serves.
fn start_installed_service_as_certinel() {
    let socket_name = format!("certinel-package-test-{}", std::process::id());
    let socket = {
        use std::os::linux::net::SocketAddrExt;
        let address = std::os::unix::net::SocketAddr::from_abstract_name(socket_name.as_bytes())
            .expect("abstract address");
        std::os::unix::net::UnixDatagram::bind_addr(&address).expect("bind notify socket")
    };
    let child = Command::new("setpriv")
        .args([
            "--reuid=certinel",
            "--regid=certinel",
            "--init-groups",
            "/usr/bin/certinel",
            "run",
            "--config",
            "/etc/certinel/certinel.toml",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("NOTIFY_SOCKET", format!("@{socket_name}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run setpriv (util-linux)");
    let mut child = KillOnDrop(child);
    socket
        .set_read_timeout(Some(crate::common::service::PATIENCE))
        .expect("read timeout");
    let mut buffer = [0; 1024];
    let length = socket
        .recv(&mut buffer)
        .expect("READY=1 from the installed service");
    let ready = String::from_utf8_lossy(&buffer[..length]).into_owned();
    assert!(ready.starts_with("READY=1\n"), "{ready:?}");
    let listen = ready
        .split_whitespace()
        .find_map(|word| word.trim_end_matches(',').parse().ok())
        .unwrap_or_else(|| panic!("no listen address in {ready:?}"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let health = runtime.block_on(get(listen, "/healthz", &[]));
    assert_eq!(health.status, 200, "{}", health.body);
    let metrics = runtime.block_on(get(listen, "/metrics", &[]));
    assert!(
        metrics.body.contains("certinel_build_info"),
        "{}",
        metrics.body
    );
    let _ = child.0.kill();
    let _ = child.0.wait();
}

/// The installed logrotate configuration rotates the audit log as certinel and leaves the
/// next append to create a new one; a second rotation compresses the first.
fn rotate_the_audit_log() {
    let (uid, gid, _, _) = certinel_user();
    let log = Path::new("/var/lib/certinel/audit.jsonl");
    let write_as_certinel = |text: &str| {
        std::fs::write(log, text).expect("write the audit log");
        std::os::unix::fs::chown(log, Some(uid), Some(gid)).expect("chown the audit log");
        std::fs::set_permissions(log, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("logrotate.status");
    let rotate = || {
        succeed(
            "logrotate",
            &[
                "--force",
                "--state",
                state.to_str().expect("UTF-8 path"),
                "/etc/logrotate.d/certinel",
            ],
        )
    };

    write_as_certinel("{\"step\":\"first\"}\n");
    rotate();
    assert!(
        !log.exists(),
        "logrotate created a new audit log; certinel does"
    );
    let rotated = Path::new("/var/lib/certinel/audit.jsonl.1");
    let metadata = std::fs::metadata(rotated).expect("the rotated audit log");
    assert_eq!(metadata.mode() & 0o777, 0o600, "rotated audit log mode");
    assert_eq!((metadata.uid(), metadata.gid()), (uid, gid));
    assert_eq!(
        std::fs::read_to_string(rotated).expect("read"),
        "{\"step\":\"first\"}\n"
    );

    write_as_certinel("{\"step\":\"second\"}\n");
    rotate();
    assert!(Path::new("/var/lib/certinel/audit.jsonl.2.gz").is_file());
    assert_eq!(
        std::fs::read_to_string(rotated).expect("read"),
        "{\"step\":\"second\"}\n"
    );
}

/// A child process killed when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `dpkg -r` keeps the configuration and the state directory; `dpkg --purge` removes every
/// path of the package and both, and keeps only the `certinel` user (README, postrm).
fn remove_then_purge(paths: &[String]) {
    // What the README's `systemctl enable --now certinel` leaves (enable works offline).
    let wants = Path::new("/etc/systemd/system/multi-user.target.wants/certinel.service");
    succeed("systemctl", &["enable", "certinel.service"]);
    assert!(wants.is_symlink(), "systemctl enable made no link");
    std::fs::write("/var/lib/certinel/audit.jsonl", "{}\n").expect("a file of certinel's");
    succeed("dpkg", &["-r", "certinel"]);
    assert_eq!(
        package_status().as_deref(),
        Some("deinstall ok config-files")
    );
    assert!(!Path::new("/usr/bin/certinel").exists());
    assert!(Path::new("/etc/certinel/certinel.toml").is_file());
    assert!(Path::new("/var/lib/certinel/audit.jsonl").is_file());

    succeed("dpkg", &["--purge", "certinel"]);
    assert_eq!(package_status(), None);
    for path in paths.iter().filter(|path| path.contains("certinel")) {
        assert!(!Path::new(path).exists(), "{path} left after purge");
    }
    assert!(!wants.is_symlink(), "{} left after purge", wants.display());
    for path in ["/etc/certinel", "/var/lib/certinel"] {
        assert!(!Path::new(path).exists(), "{path} left after purge");
    }
    // Documented: the system user stays, as Debian keeps system users.
    certinel_user();
}
