//! Runs Debian's nginx in the foreground on a free loopback port, serving one certificate
//! chain and key from paths the test chooses; everything lives in a temporary directory
//! and the server dies with the handle.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::eventually::eventually;
use crate::common::pebble::free_port;
use crate::common::process::KilledOnDrop;

const NGINX: &str = "/usr/sbin/nginx";

/// A running nginx.
pub struct Nginx {
    /// The TLS port on 127.0.0.1.
    pub port: u16,
    child: KilledOnDrop,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx serving `fullchain` and `key` on a fresh loopback port and waits until
    /// it accepts connections. nginx reads the files (following symlinks) at start and on
    /// every reload, never in between.
    pub async fn start(fullchain: &Path, key: &Path) -> Nginx {
        assert!(
            Path::new(NGINX).exists(),
            "{NGINX} is missing: install Debian's nginx package (apt-get install nginx)"
        );
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = free_port();
        let root = dir.path();
        std::fs::create_dir_all(root.join("tmp")).expect("temp dir");
        // As root, workers would switch to `nobody`, whose group differs between systems.
        let user = if std::fs::metadata("/proc/self").map(|m| m.uid()).ok() == Some(0) {
            "user root;\n"
        } else {
            ""
        };
        let conf = format!(
            "{user}worker_processes 1;\ndaemon off;\npid {root}/nginx.pid;\n\
             error_log {root}/error.log notice;\nevents {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {root}/tmp/body;\n\
             proxy_temp_path {root}/tmp/proxy;\n  fastcgi_temp_path {root}/tmp/fastcgi;\n\
             uwsgi_temp_path {root}/tmp/uwsgi;\n  scgi_temp_path {root}/tmp/scgi;\n\
             server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {cert};\n\
             ssl_certificate_key {key};\n    return 200 \"ok\\n\";\n  }}\n}}\n",
            root = root.display(),
            cert = fullchain.display(),
            key = key.display(),
        );
        let conf_path = root.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(root)
            .arg("-e")
            .arg(root.join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let child = KilledOnDrop(child);
        let mut nginx = Nginx { port, dir, child };
        nginx.wait_until_listening().await;
        nginx
    }

    /// `127.0.0.1:PORT`, as a `verify` target.
    pub fn target(&self) -> String {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)).to_string()
    }

    /// A deploy command that makes nginx re-read its certificate (SIGHUP to the master).
    pub fn reload_command(&self) -> String {
        format!("kill -HUP {}", self.child.0.id())
    }

    /// nginx's error log so far, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    async fn wait_until_listening(&mut self) {
        eventually(Duration::from_secs(10), async || {
            if let Ok(Some(status)) = self.child.0.try_wait() {
                panic!("nginx exited with {status}:\n{}", self.log());
            }
            match tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await {
                Ok(_) => Ok(()),
                Err(error) => Err(format!("port {}: {error}\n{}", self.port, self.log())),
            }
        })
        .await;
    }
}
