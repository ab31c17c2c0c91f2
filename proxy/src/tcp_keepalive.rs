//! TCP keepalive on every connection the sidecar holds, the client's and the backend's.
//!
//! A standing stream (a GET SSE stream, a `subscriptions/listen` stream) has no idle timeout:
//! silence is normal on it, and it lives as long as both ends do. So the sidecar must notice on
//! its own when a peer vanished without closing (a crashed host, a NAT or firewall that forgot
//! the flow, a pulled cable). Keepalive probes on an idle connection, and on Linux a bound on how
//! long sent data may stay unacknowledged (`TCP_USER_TIMEOUT`), make the kernel reset such a
//! connection; the next read or write then fails, which ends the stream on both legs (the
//! server leg reads the client's socket while it waits for the backend, and drops the backend
//! stream when the client is gone).

use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};

/// Idle time before the first probe. One minute: a quiet flow keeps its mapping in NAT gateways
/// and connection-tracking firewalls (whose idle limits are minutes: AWS NAT gateway 350 s,
/// Azure load balancer 4 min), and one small probe a minute per idle connection costs nothing.
/// The kernel's default (two hours) would leave a dead peer's stream open for hours.
pub const KEEPALIVE_TIME: Duration = Duration::from_secs(60);

/// Time between unanswered probes. Ten seconds, so a lost probe is retried soon and a dead peer
/// is found about a minute after the first silence is noticed.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// Unanswered probes before the connection is given up. Six (a minute of probing) rides out a
/// short network blip without dropping a live stream.
pub const KEEPALIVE_RETRIES: u32 = 6;

/// How long sent data may stay unacknowledged before the connection is given up (Linux
/// `TCP_USER_TIMEOUT`): the same budget as the probes, two minutes. Probes are only sent on a
/// connection with nothing in flight, and an SSE stream to a dead client always has something
/// in flight (its keepalive comments), so without this bound the kernel would retransmit for
/// about 15 minutes (`tcp_retries2`) before giving up.
pub const USER_TIMEOUT: Duration = Duration::from_secs(
    KEEPALIVE_TIME.as_secs() + KEEPALIVE_INTERVAL.as_secs() * KEEPALIVE_RETRIES as u64,
);

/// The probe settings.
fn keepalive() -> TcpKeepalive {
    TcpKeepalive::new()
        .with_time(KEEPALIVE_TIME)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES)
}

/// Enables keepalive (and on Linux the user timeout) on an accepted client connection.
pub fn enable(stream: &tokio::net::TcpStream) -> std::io::Result<()> {
    let socket = SockRef::from(stream);
    socket.set_tcp_keepalive(&keepalive())?;
    #[cfg(target_os = "linux")]
    socket.set_tcp_user_timeout(Some(USER_TIMEOUT))?;
    Ok(())
}

/// The same settings on the connector's backend connections.
pub fn configure(connector: &mut hyper_util::client::legacy::connect::HttpConnector) {
    connector.set_keepalive(Some(KEEPALIVE_TIME));
    connector.set_keepalive_interval(Some(KEEPALIVE_INTERVAL));
    connector.set_keepalive_retries(Some(KEEPALIVE_RETRIES));
    #[cfg(target_os = "linux")]
    connector.set_tcp_user_timeout(Some(USER_TIMEOUT));
}

#[cfg(test)]
mod tests {
    use tower::Service;

    use super::*;

    fn assert_probing(socket: SockRef<'_>) {
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.tcp_keepalive_time().unwrap(), KEEPALIVE_TIME);
        assert_eq!(socket.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
        assert_eq!(socket.tcp_keepalive_retries().unwrap(), KEEPALIVE_RETRIES);
        #[cfg(target_os = "linux")]
        assert_eq!(socket.tcp_user_timeout().unwrap(), Some(USER_TIMEOUT));
    }

    #[test]
    fn the_user_timeout_is_the_probe_budget() {
        assert_eq!(USER_TIMEOUT, Duration::from_secs(120));
    }

    #[tokio::test]
    async fn an_accepted_connection_probes_its_peer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(!SockRef::from(&accepted).keepalive().unwrap());
        enable(&accepted).unwrap();
        assert_probing(SockRef::from(&accepted));
    }

    #[tokio::test]
    async fn a_backend_connection_probes_its_peer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        configure(&mut connector);
        let uri: http::Uri = format!("http://{addr}/").parse().unwrap();
        let conn = connector.call(uri).await.unwrap();
        assert_probing(SockRef::from(conn.inner()));
    }
}
