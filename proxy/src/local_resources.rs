//! Local resource exhaustion: errors that say the sidecar's own process or host ran out of
//! something (file descriptors, socket buffers, ephemeral ports, memory), not that a backend
//! failed.
//!
//! A connect that fails with `EMFILE` says nothing about the backend: counting it as a backend
//! failure opened the circuit against a healthy backend once 1,000 SSE streams filled a
//! 1,024-descriptor table, so every client got 503 until the breaker's backoff ran out. These
//! errors are answered `503 local_resources` with `Retry-After` (descriptors come back as soon
//! as streams end), never feed a circuit breaker, a retry or the backend's error counters, are
//! counted in `mcp_sidecar_local_resource_errors_total{kind,op}` and logged at most once per
//! interval per kind.

use std::time::Duration;

/// `Retry-After` of a `local_resources` answer: descriptors and ports come back as soon as
/// other requests and streams end, so a prompt retry usually succeeds; one second spreads the
/// retries of many clients without idling them long (as `limits.shed_retry_after`'s default).
pub const LOCAL_RESOURCES_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Which local resource ran out (the errno the system call failed with).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LocalResource {
    /// `EMFILE`: the process's descriptor limit (`RLIMIT_NOFILE`).
    Emfile,
    /// `ENFILE`: the system-wide file table (`fs.file-max`).
    Enfile,
    /// `ENOBUFS`: no kernel buffer space for another socket.
    Enobufs,
    /// `ENOMEM`: the kernel could not allocate the socket.
    Enomem,
    /// `EADDRNOTAVAIL` on connect: no free ephemeral port towards the backend.
    Eaddrnotavail,
}

impl LocalResource {
    /// Every kind, in label order (the metrics are created for each at start).
    pub const ALL: [Self; 5] = [
        Self::Emfile,
        Self::Enfile,
        Self::Enobufs,
        Self::Enomem,
        Self::Eaddrnotavail,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Emfile => "emfile",
            Self::Enfile => "enfile",
            Self::Enobufs => "enobufs",
            Self::Enomem => "enomem",
            Self::Eaddrnotavail => "eaddrnotavail",
        }
    }

    /// What ran out, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Emfile => "the process's file descriptor limit is reached (EMFILE)",
            Self::Enfile => "the system's file table is full (ENFILE)",
            Self::Enobufs => "no socket buffer space is left (ENOBUFS)",
            Self::Enomem => "the kernel is out of memory for sockets (ENOMEM)",
            Self::Eaddrnotavail => "no local port is free towards the backend (EADDRNOTAVAIL)",
        }
    }

    /// The index of this kind in [`Self::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The kind of an I/O error, if it is a local resource error.
    #[cfg(unix)]
    pub fn of_io(err: &std::io::Error) -> Option<Self> {
        use rustix::io::Errno;
        match Errno::from_io_error(err)? {
            Errno::MFILE => Some(Self::Emfile),
            Errno::NFILE => Some(Self::Enfile),
            Errno::NOBUFS => Some(Self::Enobufs),
            Errno::NOMEM => Some(Self::Enomem),
            Errno::ADDRNOTAVAIL => Some(Self::Eaddrnotavail),
            _ => None,
        }
    }

    /// The kind of an I/O error, if it is a local resource error (only memory is told apart
    /// off Unix).
    #[cfg(not(unix))]
    pub fn of_io(err: &std::io::Error) -> Option<Self> {
        (err.kind() == std::io::ErrorKind::OutOfMemory).then_some(Self::Enomem)
    }

    /// The kind of the first local resource error in `err`'s chain of causes (connectors wrap
    /// the `io::Error` of `socket()` or `connect()` in errors of their own).
    pub fn find(err: &(dyn std::error::Error + 'static)) -> Option<Self> {
        let mut source = Some(err);
        while let Some(e) = source {
            if let Some(kind) = e.downcast_ref::<std::io::Error>().and_then(Self::of_io) {
                return Some(kind);
            }
            source = e.source();
        }
        None
    }

    /// An I/O error of this kind, as the system call returns it (for tests and seams).
    #[cfg(unix)]
    pub fn to_io_error(self) -> std::io::Error {
        use rustix::io::Errno;
        let errno = match self {
            Self::Emfile => Errno::MFILE,
            Self::Enfile => Errno::NFILE,
            Self::Enobufs => Errno::NOBUFS,
            Self::Enomem => Errno::NOMEM,
            Self::Eaddrnotavail => Errno::ADDRNOTAVAIL,
        };
        std::io::Error::from_raw_os_error(errno.raw_os_error())
    }
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_recognised_from_its_raw_os_error() {
        for kind in LocalResource::ALL {
            assert_eq!(LocalResource::of_io(&kind.to_io_error()), Some(kind));
            assert_eq!(LocalResource::ALL[kind.index()], kind);
        }
    }

    #[test]
    fn backend_errors_are_not_local() {
        for kind in [
            std::io::ErrorKind::ConnectionRefused,
            std::io::ErrorKind::TimedOut,
            std::io::ErrorKind::ConnectionReset,
        ] {
            assert_eq!(LocalResource::of_io(&std::io::Error::from(kind)), None);
        }
        // ECONNREFUSED, EHOSTUNREACH, ENETUNREACH as the kernel reports them.
        for errno in [
            rustix::io::Errno::CONNREFUSED,
            rustix::io::Errno::HOSTUNREACH,
            rustix::io::Errno::NETUNREACH,
        ] {
            let err = std::io::Error::from_raw_os_error(errno.raw_os_error());
            assert_eq!(LocalResource::of_io(&err), None);
        }
    }

    #[test]
    fn a_wrapped_error_is_found_in_the_chain() {
        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("tcp open error")
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let boxed: Box<dyn std::error::Error + Send + Sync> =
            Box::new(Wrapper(LocalResource::Enobufs.to_io_error()));
        assert_eq!(LocalResource::find(&*boxed), Some(LocalResource::Enobufs));
    }
}
