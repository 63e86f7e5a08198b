//! http-01 (RFC 8555 section 8.3): the key authorization served at
//! `/.well-known/acme-challenge/TOKEN`, by our own listener or as a file in a webroot.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::acme::AcmeError;

type Tokens = Arc<RwLock<HashMap<String, String>>>;

/// The built-in http-01 listener.
pub(crate) struct Standalone {
    tokens: Tokens,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Standalone {
    pub(crate) async fn start(addr: SocketAddr) -> Result<Self, AcmeError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| AcmeError::Responder {
                kind: "http-01",
                location: addr.to_string(),
                source,
            })?;
        let tokens = Tokens::default();
        let router = Router::new()
            .route("/.well-known/acme-challenge/{token}", get(answer))
            .with_state(Arc::clone(&tokens));
        let cancel = CancellationToken::new();
        let stop = cancel.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::warn!(%error, "http-01 responder stopped");
            }
        });
        Ok(Self {
            tokens,
            cancel,
            task,
        })
    }

    pub(crate) fn add(&mut self, token: &str, key_authorization: &str) {
        self.tokens
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(token.to_owned(), key_authorization.to_owned());
    }

    pub(crate) async fn shutdown(mut self) {
        self.cancel.cancel();
        // A validator holding a connection open must not keep the order waiting.
        if tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn answer(
    State(tokens): State<Tokens>,
    UrlPath(token): UrlPath<String>,
) -> (StatusCode, String) {
    let tokens = tokens
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match tokens.get(&token) {
        Some(key_authorization) => (StatusCode::OK, key_authorization.clone()),
        None => (StatusCode::NOT_FOUND, String::new()),
    }
}

/// http-01 files under `WEBROOT/.well-known/acme-challenge/`, removed when dropped.
pub(crate) struct Webroot {
    webroot: PathBuf,
    written: Vec<PathBuf>,
    created_dirs: Vec<PathBuf>,
}

impl Webroot {
    pub(crate) fn new(webroot: &Path) -> Self {
        Self {
            webroot: webroot.to_owned(),
            written: Vec::new(),
            created_dirs: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, token: &str, key_authorization: &str) -> Result<(), AcmeError> {
        let error = |path: &Path| {
            let location = path.display().to_string();
            move |source| AcmeError::Responder {
                kind: "http-01 webroot",
                location,
                source,
            }
        };
        let well_known = self.webroot.join(".well-known");
        let challenge_dir = well_known.join("acme-challenge");
        for dir in [&well_known, &challenge_dir] {
            if !dir.is_dir() {
                std::fs::create_dir(dir).map_err(error(dir))?;
                self.created_dirs.push(dir.clone());
            }
        }
        let path = challenge_dir.join(token);
        // The web server usually runs as another user: the answer must be world-readable.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&path)
            .map_err(error(&path))?;
        self.written.push(path.clone());
        file.write_all(key_authorization.as_bytes())
            .map_err(error(&path))?;
        Ok(())
    }
}

impl Drop for Webroot {
    fn drop(&mut self) {
        for path in &self.written {
            if let Err(error) = std::fs::remove_file(path) {
                tracing::warn!(path = %path.display(), %error, "cannot remove http-01 file");
            }
        }
        // Only directories we created, deepest first, and only if nothing else is in them.
        for dir in self.created_dirs.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
