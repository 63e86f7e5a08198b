//! http-01 (RFC 8555 section 8.3): the key authorization served at
//! `/.well-known/acme-challenge/TOKEN`, by our own listener or as a file in a webroot.

use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::get;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustix::fs::{AtFlags, Mode, OFlags, fchmod, mkdirat, openat, unlinkat};
use rustix::io::Errno;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::acme::AcmeError;
use crate::acme::solvers::shared::{Answers, Guard, Registry};

/// Every built-in http-01 listener of the process, by address: token -> key authorization.
static LISTENERS: Registry<String> = Registry::new("http-01");

/// The built-in http-01 listener: this order's share of the one on its address.
pub(crate) struct Standalone {
    guard: Guard<String>,
}

impl Standalone {
    /// Joins the listener on `addr`, binding it when no other order is using it.
    pub(crate) async fn start(addr: SocketAddr) -> Result<Self, AcmeError> {
        let guard = LISTENERS
            .join(addr, |listener, answers, stop| {
                Ok(serve(listener, answers, stop))
            })
            .await?;
        Ok(Self { guard })
    }

    /// The address the listener is bound to.
    #[cfg(test)]
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.guard.local_addr()
    }

    /// Serves `key_authorization` for `token` until this order's responder shuts down.
    pub(crate) fn add(&mut self, token: &str, key_authorization: &str) -> Result<(), AcmeError> {
        self.guard.publish(
            token,
            key_authorization.as_bytes(),
            key_authorization.to_owned(),
        )
    }

    /// Withdraws this order's tokens; the last order on the address closes the listener.
    pub(crate) async fn shutdown(self) {
        self.guard.leave().await;
    }
}

/// How long a client may take to send a request's head. The validator sends it at once;
/// anyone slower is holding a socket on a port that is often public (`:80`).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once by one listener; more wait to be accepted until one ends.
const MAX_CONNECTIONS: usize = 64;
/// How long the accept loop waits after a failed accept.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves the answers until `stop`, then drops every connection still open: once this
/// order's validation is over nothing on them is needed, and a slow client must not keep a
/// task and a descriptor alive.
async fn serve(listener: TcpListener, answers: Arc<Answers<String>>, stop: CancellationToken) {
    let router = Router::new()
        .route("/.well-known/acme-challenge/{token}", get(answer))
        .with_state(answers);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(false);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let connections = TaskTracker::new();
    loop {
        // A slot is taken before accepting: beyond the limit, connections wait in the
        // kernel's accept queue until one ends. Closing them instead would fail every
        // validation past the limit when many orders share the listener.
        let slot = tokio::select! {
            () = stop.cancelled() => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                // Only a closed semaphore fails to give a slot, and this one is never closed.
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of descriptors (EMFILE) fails again at once: pause instead of
                    // spinning a core for the whole validation.
                    tracing::debug!(%error, "http-01 responder: accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let connection = builder.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        );
        let stop = stop.clone();
        connections.spawn(async move {
            tokio::select! {
                _ = connection => {}
                () = stop.cancelled() => {}
            }
            drop(slot);
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

async fn answer(
    State(answers): State<Arc<Answers<String>>>,
    UrlPath(token): UrlPath<String>,
) -> (StatusCode, String) {
    match answers.get(&token) {
        Some(key_authorization) => (StatusCode::OK, key_authorization),
        None => (StatusCode::NOT_FOUND, String::new()),
    }
}

/// http-01 files under `WEBROOT/.well-known/acme-challenge/`, removed when dropped.
///
/// Everything below the webroot is opened relative to a directory descriptor and without
/// following symbolic links, and token files are created new (a leftover at the token's
/// name is unlinked first): a web application that can write into its own document root
/// must not be able to redirect certinel's writes (or removals) elsewhere by planting a
/// link at `.well-known`, `acme-challenge` or a token.
pub(crate) struct Webroot {
    webroot: PathBuf,
    /// Opened on the first token.
    challenge_dir: Option<ChallengeDir>,
    /// Token files we created, by name inside the challenge directory.
    written: Vec<String>,
}

/// The open `.well-known/acme-challenge` directory and the directories we had to create.
struct ChallengeDir {
    /// `WEBROOT`, `WEBROOT/.well-known`, `WEBROOT/.well-known/acme-challenge`.
    levels: [OwnedFd; 3],
    /// Whether we created `.well-known` and `acme-challenge` (in that order).
    created: [bool; 2],
}

const WELL_KNOWN: &str = ".well-known";
const ACME_CHALLENGE: &str = "acme-challenge";

impl Webroot {
    pub(crate) fn new(webroot: &Path) -> Self {
        Self {
            webroot: webroot.to_owned(),
            challenge_dir: None,
            written: Vec::new(),
        }
    }

    /// Writes `token` (already checked to be base64url, so a single file name).
    pub(crate) fn add(&mut self, token: &str, key_authorization: &str) -> Result<(), AcmeError> {
        let challenge_path = self.webroot.join(WELL_KNOWN).join(ACME_CHALLENGE);
        let path = challenge_path.join(token);
        let error = |path: &Path| {
            let location = path.display().to_string();
            move |source: std::io::Error| AcmeError::Responder {
                kind: "http-01 webroot",
                location,
                source,
            }
        };
        if self.challenge_dir.is_none() {
            let opened = ChallengeDir::open(&self.webroot).map_err(error(&challenge_path))?;
            self.challenge_dir = Some(opened);
        }
        let Some(dir) = &self.challenge_dir else {
            unreachable!("opened just above");
        };
        let fd = create_token_file(&dir.levels[2], token).map_err(error(&path))?;
        self.written.push(token.to_owned());
        std::fs::File::from(fd)
            .write_all(key_authorization.as_bytes())
            .map_err(error(&path))?;
        Ok(())
    }
}

/// Creates the token file new in the challenge directory, world-readable whatever the umask.
///
/// A file already at that name is a leftover: tokens are random and chosen by the CA, and
/// the only writer that reuses one is certinel resuming an order after it was killed before
/// it could clean up. It is unlinked (`unlinkat` removes a link itself, never its target)
/// and the file created again, still exclusively and without following links, so a link
/// planted between the two steps makes the write fail instead of being followed.
fn create_token_file(challenge_dir: &OwnedFd, token: &str) -> std::io::Result<OwnedFd> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match openat(challenge_dir, token, flags, file_mode(0o644)) {
        Ok(fd) => fd,
        Err(Errno::EXIST) => {
            tracing::info!(
                token,
                "replacing a leftover http-01 file from an earlier run"
            );
            unlinkat(challenge_dir, token, AtFlags::empty())?;
            openat(challenge_dir, token, flags, file_mode(0o644))?
        }
        Err(errno) => return Err(errno.into()),
    };
    // The web server usually runs as another user: the answer must be world-readable even
    // when the service runs with a restrictive umask (systemd `UMask=0077`).
    fchmod(&fd, file_mode(0o644))?;
    Ok(fd)
}

impl ChallengeDir {
    /// Opens (creating when missing) `.well-known/acme-challenge` under `webroot`, refusing
    /// symbolic links at either level.
    fn open(webroot: &Path) -> std::io::Result<ChallengeDir> {
        let directory = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        // The webroot itself comes from the configuration and may be a link.
        let root = rustix::fs::open(webroot, directory, Mode::empty())?;
        let (well_known, created_well_known) = open_or_create_dir(&root, WELL_KNOWN)?;
        let (challenge, created_challenge) = open_or_create_dir(&well_known, ACME_CHALLENGE)?;
        Ok(ChallengeDir {
            levels: [root, well_known, challenge],
            created: [created_well_known, created_challenge],
        })
    }
}

/// Opens directory `name` in `parent` without following a link, creating it when missing;
/// says whether it was created.
fn open_or_create_dir(parent: &OwnedFd, name: &str) -> std::io::Result<(OwnedFd, bool)> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let created = match mkdirat(parent, name, file_mode(0o755)) {
        Ok(()) => true,
        Err(Errno::EXIST) => false,
        Err(errno) => return Err(errno.into()),
    };
    // A link here fails with ELOOP (or ENOTDIR) instead of being followed.
    let fd = openat(parent, name, flags, Mode::empty())?;
    if created {
        // The umask narrowed the mode; the web server must be able to traverse it.
        fchmod(&fd, file_mode(0o755))?;
    }
    Ok((fd, created))
}

fn file_mode(bits: u32) -> Mode {
    Mode::from_bits_truncate(bits)
}

impl Drop for Webroot {
    fn drop(&mut self) {
        let Some(dir) = &self.challenge_dir else {
            return;
        };
        let [root, well_known, challenge] = &dir.levels;
        for token in &self.written {
            if let Err(error) = unlinkat(challenge, token.as_str(), AtFlags::empty()) {
                let path = self
                    .webroot
                    .join(WELL_KNOWN)
                    .join(ACME_CHALLENGE)
                    .join(token);
                tracing::warn!(path = %path.display(), %error, "cannot remove http-01 file");
            }
        }
        // Only directories we created, deepest first, and only if nothing else is in them.
        if dir.created[1] {
            let _ = unlinkat(well_known, ACME_CHALLENGE, AtFlags::REMOVEDIR);
        }
        if dir.created[0] {
            let _ = unlinkat(root, WELL_KNOWN, AtFlags::REMOVEDIR);
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Connects to `responder` and sends half a request head.
    /// A responder on a free loopback port and a client that sent half a request head.
    async fn responder_with_a_half_request() -> (Standalone, tokio::net::TcpStream) {
        let responder = Standalone::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let client = half_request(&responder).await;
        (responder, client)
    }

    async fn half_request(responder: &Standalone) -> tokio::net::TcpStream {
        let mut client = tokio::net::TcpStream::connect(responder.local_addr())
            .await
            .unwrap();
        client
            .write_all(b"GET /.well-known/acme-challenge/t HTTP/1.1\r\nHost: a")
            .await
            .unwrap();
        client
    }

    /// Reads until the server closes the connection.
    async fn until_closed(client: &mut tokio::net::TcpStream) {
        let mut buffer = [0u8; 512];
        while client.read(&mut buffer).await.is_ok_and(|read| read > 0) {}
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_finishes_its_request_head_is_dropped_after_the_timeout() {
        let (responder, mut client) = responder_with_a_half_request().await;
        let started = tokio::time::Instant::now();
        until_closed(&mut client).await;
        let waited = started.elapsed();
        assert!(
            (HEADER_READ_TIMEOUT..HEADER_READ_TIMEOUT + Duration::from_secs(1)).contains(&waited),
            "closed after {waited:?}"
        );
        responder.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn leaving_drops_slow_connections_at_once() {
        let (responder, mut client) = responder_with_a_half_request().await;
        let started = tokio::time::Instant::now();
        responder.shutdown().await;
        until_closed(&mut client).await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    /// `GET /.well-known/acme-challenge/TOKEN`; the whole response, or the read's error.
    async fn full_request(addr: SocketAddr, token: &str) -> Result<String, std::io::Error> {
        let mut client = tokio::net::TcpStream::connect(addr).await?;
        let request = format!("GET /.well-known/acme-challenge/{token} HTTP/1.0\r\n\r\n");
        client.write_all(request.as_bytes()).await?;
        let mut response = String::new();
        client.read_to_string(&mut response).await?;
        Ok(response)
    }

    #[tokio::test(start_paused = true)]
    async fn a_validation_beyond_the_connection_limit_waits_for_a_slot_instead_of_being_reset() {
        // A thousand orders share one listener: the CA's validations of all of them arrive
        // together, and one closed at accept fails its order.
        let mut responder = Standalone::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        responder.add("tok", "tok.thumb").unwrap();
        let mut holders = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            holders.push(half_request(&responder).await);
        }
        let validation = full_request(responder.local_addr(), "tok");
        tokio::pin!(validation);
        // Every slot is held: the validation waits (it is not closed) ...
        tokio::select! {
            response = &mut validation => panic!("answered with every slot held: {response:?}"),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        // ... until a slot frees.
        drop(holders.pop());
        let response = validation.await.expect("the validation was answered");
        assert!(response.starts_with("HTTP/1.0 200"), "{response}");
        assert!(response.ends_with("tok.thumb"), "{response}");
        responder.shutdown().await;
    }

    #[test]
    fn webroot_files_are_written_and_removed_with_the_directories_we_made() {
        let temp = tempfile::tempdir().unwrap();
        let mut webroot = Webroot::new(temp.path());
        webroot.add("tok1", "tok1.thumb").unwrap();
        webroot.add("tok2", "tok2.thumb").unwrap();
        let file = temp.path().join(".well-known/acme-challenge/tok1");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "tok1.thumb");
        drop(webroot);
        assert!(!file.exists());
        assert!(!temp.path().join(".well-known").exists());
    }

    #[test]
    fn webroot_keeps_directories_that_existed_before() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join(".well-known/acme-challenge");
        std::fs::create_dir_all(&dir).unwrap();
        let mut webroot = Webroot::new(temp.path());
        webroot.add("tok", "tok.thumb").unwrap();
        drop(webroot);
        assert!(dir.is_dir());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }

    #[test]
    fn a_link_planted_at_the_token_path_is_replaced_not_followed() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join(".well-known/acme-challenge");
        std::fs::create_dir_all(&dir).unwrap();
        let victim = temp.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("tok")).unwrap();
        let mut webroot = Webroot::new(temp.path());
        webroot.add("tok", "tok.thumb").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("tok")).unwrap(),
            "tok.thumb"
        );
        assert!(!dir.join("tok").symlink_metadata().unwrap().is_symlink());
        drop(webroot);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    }

    #[test]
    fn a_link_planted_at_either_directory_is_not_followed() {
        for link_at in [".well-known", ".well-known/acme-challenge"] {
            let temp = tempfile::tempdir().unwrap();
            let webroot_dir = temp.path().join("www");
            let elsewhere = temp.path().join("elsewhere");
            std::fs::create_dir_all(webroot_dir.join(".well-known")).unwrap();
            std::fs::create_dir(&elsewhere).unwrap();
            let link = webroot_dir.join(link_at);
            let _ = std::fs::remove_dir(&link);
            std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
            let mut webroot = Webroot::new(&webroot_dir);
            webroot.add("tok", "tok.thumb").unwrap_err();
            drop(webroot);
            assert_eq!(
                std::fs::read_dir(&elsewhere).unwrap().count(),
                0,
                "{link_at}"
            );
        }
    }

    #[test]
    fn a_leftover_token_file_from_a_crashed_run_is_replaced_so_the_resumed_order_can_answer() {
        let temp = tempfile::tempdir().unwrap();
        // A run killed with SIGKILL leaves its token file and directories behind.
        let mut crashed = Webroot::new(temp.path());
        crashed.add("tok", "tok.stale").unwrap();
        std::mem::forget(crashed);
        let dir = temp.path().join(".well-known/acme-challenge");
        assert!(dir.join("tok").exists());

        let mut resumed = Webroot::new(temp.path());
        resumed.add("tok", "tok.thumb").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("tok")).unwrap(),
            "tok.thumb"
        );
        drop(resumed);
        assert!(!dir.join("tok").exists());
    }

    /// Set in the child process that runs the umask test alone: the umask is process-wide
    /// and must not narrow files that tests on other threads create.
    const UMASK_CHILD: &str = "CERTINEL_TEST_HTTP01_UMASK_CHILD";

    #[test]
    fn webroot_files_and_directories_are_readable_by_the_web_server_under_umask_0077() {
        use std::os::unix::fs::PermissionsExt;
        if std::env::var_os(UMASK_CHILD).is_none() {
            let status = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "acme::solvers::http01::tests::webroot_files_and_directories_are_readable_by_the_web_server_under_umask_0077",
                    "--exact",
                    "--test-threads=1",
                ])
                .env(UMASK_CHILD, "1")
                .output()
                .unwrap();
            assert!(
                status.status.success(),
                "the umask test failed in its child process:\n{}{}",
                String::from_utf8_lossy(&status.stdout),
                String::from_utf8_lossy(&status.stderr)
            );
            return;
        }
        rustix::process::umask(Mode::from_bits_truncate(0o077));
        let temp = tempfile::tempdir().unwrap();
        let mut webroot = Webroot::new(temp.path());
        webroot.add("tok", "tok.thumb").unwrap();
        let mode = |path: PathBuf| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(temp.path().join(".well-known")), 0o755);
        assert_eq!(mode(temp.path().join(".well-known/acme-challenge")), 0o755);
        assert_eq!(
            mode(temp.path().join(".well-known/acme-challenge/tok")),
            0o644
        );
    }
}
