//! systemd's readiness protocol (`sd_notify(3)`) for `Type=notify`: `READY=1` once the
//! service serves, `RELOADING=1` and `READY=1` around each reload, `STOPPING=1` on shutdown,
//! each one datagram written to the socket named by `$NOTIFY_SOCKET`.
//!
//! Without `$NOTIFY_SOCKET` (not started by systemd, or not as `Type=notify`) nothing is
//! sent. A notification that cannot be sent is a warning, never a reason to stop: systemd
//! times the start out, which tells the operator more than a crash would.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// One state change told to the service manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// Startup or a reload finished; `status` is the one-line text `systemctl status` shows.
    Ready {
        /// Free text for `STATUS=`.
        status: String,
    },
    /// A reload began at `monotonic_usec` (`CLOCK_MONOTONIC`, microseconds), which systemd
    /// 253's `Type=notify-reload` requires and older versions ignore.
    Reloading {
        /// `CLOCK_MONOTONIC` in microseconds when the reload began.
        monotonic_usec: u64,
    },
    /// Shutdown began.
    Stopping,
}

/// Why `$NOTIFY_SOCKET` cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The address is neither a path (`/...`) nor an abstract name (`@...`).
    #[error("unsupported NOTIFY_SOCKET address {0:?} (expected /path or @abstract-name)")]
    Unsupported(OsString),
    /// The socket could not be created or the address built.
    #[error("cannot use NOTIFY_SOCKET {address:?}")]
    Socket {
        /// The address from the environment.
        address: OsString,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Sends notifications to the service manager, or nowhere; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    target: Option<Arc<Target>>,
}

#[derive(Debug)]
struct Target {
    socket: UnixDatagram,
    address: SocketAddr,
    /// `$NOTIFY_SOCKET` as given, for log lines.
    name: OsString,
}

impl Notification {
    /// The datagram's text: newline-separated `NAME=value` assignments.
    pub fn message(&self) -> String {
        match self {
            // STATUS is one line; a newline would start a bogus assignment.
            Notification::Ready { status } => {
                format!("READY=1\nSTATUS={}\n", status.replace('\n', " "))
            }
            Notification::Reloading { monotonic_usec } => {
                format!("RELOADING=1\nMONOTONIC_USEC={monotonic_usec}\n")
            }
            Notification::Stopping => "STOPPING=1\n".to_owned(),
        }
    }
}

impl Notifier {
    /// A notifier that sends nothing (tests, and `certinel run` outside systemd).
    pub fn disabled() -> Notifier {
        Notifier::default()
    }

    /// The notifier `$NOTIFY_SOCKET` asks for: disabled when it is unset or empty; when it
    /// cannot be used, disabled with a warning naming it.
    pub fn from_env() -> Notifier {
        match std::env::var_os(NOTIFY_SOCKET) {
            None => Notifier::disabled(),
            Some(address) if address.is_empty() => Notifier::disabled(),
            Some(address) => Notifier::connect(&address).unwrap_or_else(|error| {
                tracing::warn!(error = %error, "systemd will not learn that certinel is ready");
                Notifier::disabled()
            }),
        }
    }

    /// A notifier writing to `address`: a file-system path, or `@name` for an abstract
    /// socket.
    pub fn connect(address: &OsStr) -> Result<Notifier, NotifyError> {
        let socket_error = |source| NotifyError::Socket {
            address: address.to_owned(),
            source,
        };
        let bytes = address.as_bytes();
        let socket_address = match bytes.first() {
            Some(b'/') => SocketAddr::from_pathname(address).map_err(socket_error)?,
            Some(b'@') => abstract_address(&bytes[1..]).map_err(socket_error)?,
            _ => return Err(NotifyError::Unsupported(address.to_owned())),
        };
        let socket = UnixDatagram::unbound().map_err(socket_error)?;
        Ok(Notifier {
            target: Some(Arc::new(Target {
                socket,
                address: socket_address,
                name: address.to_owned(),
            })),
        })
    }

    /// Whether notifications go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends `notification`; a failure is logged with the socket's name and otherwise
    /// ignored.
    pub fn notify(&self, notification: &Notification) {
        let Some(target) = &self.target else {
            return;
        };
        let message = notification.message();
        if let Err(error) = target
            .socket
            .send_to_addr(message.as_bytes(), &target.address)
        {
            tracing::warn!(
                NOTIFY_SOCKET = %target.name.to_string_lossy(),
                error = %error,
                "cannot notify systemd"
            );
        }
    }

    /// `READY=1` with `status`.
    pub fn ready(&self, status: impl Into<String>) {
        self.notify(&Notification::Ready {
            status: status.into(),
        });
    }

    /// `RELOADING=1`, stamped with the monotonic clock now.
    pub fn reloading(&self) {
        if self.is_enabled() {
            self.notify(&Notification::Reloading {
                monotonic_usec: monotonic_usec(),
            });
        }
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.notify(&Notification::Stopping);
    }
}

/// `CLOCK_MONOTONIC` in microseconds, the clock systemd compares `MONOTONIC_USEC` with.
fn monotonic_usec() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
    let micros = u64::try_from(now.tv_nsec / 1_000).unwrap_or(0);
    seconds.saturating_mul(1_000_000).saturating_add(micros)
}

/// The Linux abstract-namespace address `name` (without the leading `@`).
fn abstract_address(name: &[u8]) -> std::io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_newline_separated_assignments_and_status_stays_on_one_line() {
        let ready = Notification::Ready {
            status: "serving\non 127.0.0.1:9798".to_owned(),
        };
        assert_eq!(
            ready.message(),
            "READY=1\nSTATUS=serving on 127.0.0.1:9798\n"
        );
        let reloading = Notification::Reloading {
            monotonic_usec: 1_500_000,
        };
        assert_eq!(reloading.message(), "RELOADING=1\nMONOTONIC_USEC=1500000\n");
        assert_eq!(Notification::Stopping.message(), "STOPPING=1\n");
    }

    #[test]
    fn a_path_socket_receives_the_datagram() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify.sock");
        let receiver = UnixDatagram::bind(&path).expect("bind");
        let notifier = Notifier::connect(path.as_os_str()).expect("connect");
        notifier.ready("up");
        let mut buffer = [0; 64];
        let length = receiver.recv(&mut buffer).expect("receive");
        assert_eq!(&buffer[..length], b"READY=1\nSTATUS=up\n");
    }

    #[test]
    fn an_abstract_socket_named_with_an_at_sign_receives_the_datagram() {
        let name = format!("certinel-notify-test-{}", std::process::id());
        let receiver =
            UnixDatagram::bind_addr(&abstract_address(name.as_bytes()).expect("abstract address"))
                .expect("bind");
        let notifier = Notifier::connect(OsStr::new(&format!("@{name}"))).expect("connect");
        notifier.stopping();
        let mut buffer = [0; 64];
        let length = receiver.recv(&mut buffer).expect("receive");
        assert_eq!(&buffer[..length], b"STOPPING=1\n");
    }

    #[test]
    fn an_address_that_is_neither_a_path_nor_abstract_is_refused() {
        let error = Notifier::connect(OsStr::new("vsock:2:1234")).expect_err("refused");
        assert!(error.to_string().contains("vsock:2:1234"), "{error}");
    }

    #[test]
    fn the_monotonic_clock_is_read_in_microseconds() {
        let first = monotonic_usec();
        let second = monotonic_usec();
        assert!(first > 0 && second >= first, "{first} {second}");
    }
}
