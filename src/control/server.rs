//! The control API over HTTP (`tiny_http`): the Unix socket, always, and
//! the optional TCP listener, which needs the bearer token.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tiny_http::{Header, Request, Response, Server};

use crate::config::ControlConfig;

use super::api::{is_public, Control, Reply, MAX_BODY};
use super::auth::{bearer_ok, read_token};

/// The listening sockets.
pub struct Endpoints {
    unix: Server,
    socket_path: PathBuf,
    tcp: Option<(Server, String)>,
}

/// Creates the socket's directory, removes a stale socket, listens, and
/// makes the socket 0600 (only root talks to rvsd).
fn bind_unix(path: &Path) -> Result<Server, String> {
    let name = path.display();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            format!(
                "control.socket {name}: cannot create {}: {e}",
                dir.display()
            )
        })?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(format!(
                    "control.socket {name}: exists and is not a socket; not removing it"
                ));
            }
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(format!(
                    "control.socket {name}: another rvsd is listening there"
                ));
            }
            std::fs::remove_file(path).map_err(|e| {
                format!("control.socket {name}: cannot remove the stale socket: {e}")
            })?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("control.socket {name}: {e}")),
    }
    let server = Server::http_unix(path).map_err(|e| format!("control.socket {name}: {e}"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("control.socket {name}: chmod 0600: {e}"))?;
    Ok(server)
}

impl Endpoints {
    pub fn bind(config: &ControlConfig) -> Result<Endpoints, String> {
        let tcp = match (&config.listen, &config.token_file) {
            (Some(addr), Some(token_file)) => {
                let token = read_token(token_file)?;
                let server =
                    Server::http(addr).map_err(|e| format!("control.listen {addr}: {e}"))?;
                Some((server, token))
            }
            _ => None,
        };
        let unix = bind_unix(&config.socket)?;
        Ok(Endpoints {
            unix,
            socket_path: config.socket.clone(),
            tcp,
        })
    }

    /// Serves what arrives within about `wait`, then returns (so the
    /// caller can look at its signal flags).
    pub fn serve(&self, control: &mut Control, wait: Duration) {
        let wait = if self.tcp.is_some() { wait / 2 } else { wait };
        if let Ok(Some(request)) = self.unix.recv_timeout(wait) {
            answer(control, request, None);
        }
        while let Ok(Some(request)) = self.unix.try_recv() {
            answer(control, request, None);
        }
        if let Some((server, token)) = &self.tcp {
            if let Ok(Some(request)) = server.recv_timeout(wait) {
                answer(control, request, Some(token));
            }
            while let Ok(Some(request)) = server.try_recv() {
                answer(control, request, Some(token));
            }
        }
    }
}

impl Drop for Endpoints {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket_path);
    }
}

fn header(name: &str, value: &str) -> Header {
    // Both are ASCII constants here, which tiny_http always accepts.
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("ASCII header")
}

fn respond(request: Request, reply: Reply, extra: Option<Header>) {
    let mut response = Response::from_string(reply.body)
        .with_status_code(reply.status)
        .with_header(header("Content-Type", reply.content_type));
    if let Some(h) = extra {
        response.add_header(h);
    }
    // A client that went away is no concern of ours.
    let _ = request.respond(response);
}

/// Authenticates (TCP only), reads the body, and replies.
fn answer(control: &mut Control, mut request: Request, token: Option<&String>) {
    let public = is_public(request.url().split('?').next().unwrap_or(""));
    if let Some(token) = token.filter(|_| !public) {
        let authorization = request
            .headers()
            .iter()
            .find(|h| h.field.equiv("Authorization"))
            .map(|h| h.value.as_str());
        if !bearer_ok(authorization, token) {
            let reply = Reply::error(
                401,
                "missing or wrong bearer token (Authorization: Bearer TOKEN)",
            );
            respond(request, reply, Some(header("WWW-Authenticate", "Bearer")));
            return;
        }
    }
    if request.body_length().is_some_and(|n| n > MAX_BODY) {
        let reply = Reply::error(413, &format!("body larger than {MAX_BODY} bytes"));
        respond(request, reply, None);
        return;
    }
    let mut body = Vec::new();
    let read = request
        .as_reader()
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut body);
    let reply = match read {
        Err(e) => Reply::error(400, &format!("cannot read the body: {e}")),
        Ok(_) if body.len() > MAX_BODY => {
            Reply::error(413, &format!("body larger than {MAX_BODY} bytes"))
        }
        Ok(_) => {
            let method = request.method().as_str().to_string();
            let path = request.url().split('?').next().unwrap_or("").to_string();
            control.handle(&method, &path, &body)
        }
    };
    respond(request, reply, None);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::MacAddr;
    use crate::config::parse;
    use crate::control::client;
    use crate::snapshot::Snapshot;
    use crate::worker::Shared;
    use arc_swap::ArcSwap;
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::sync::atomic::{AtomicBool, AtomicU64};
    use std::sync::Arc;

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("rvs-control-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn control_config(socket: PathBuf) -> ControlConfig {
        ControlConfig {
            socket,
            ..ControlConfig::default()
        }
    }

    fn control() -> Control {
        let text =
            "[[port]]\nname = \"p\"\nvdev = \"net_null0\"\naddresses = [\"198.18.0.1/24\"]\n\
                    [[service]]\nprotocol = \"udp\"\naddress = \"198.18.0.100:53\"\n";
        let config = parse(text, "t.toml").unwrap();
        let macs = vec![MacAddr([2, 0, 0, 0, 0, 1])];
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(Snapshot::compile(&config, &macs, 1)),
            generation: AtomicU64::new(1),
            stop: AtomicBool::new(false),
        });
        Control::new(config, macs, shared)
    }

    #[test]
    fn unix_socket_serves_and_goes_away() {
        let scratch = Scratch::new("serve");
        // The directory does not exist yet: bind creates it.
        let socket = scratch.0.join("run/rvsd.sock");
        let endpoints = Endpoints::bind(&control_config(socket.clone())).unwrap();
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let mut control = control();
        let path = socket.clone();
        let asking = std::thread::spawn(move || {
            let body = br#"{"args": ["-S", "-n"]}"#;
            let reply = client::request(
                UnixStream::connect(&path).unwrap(),
                "POST",
                "/v1/ipvsadm",
                &[],
                body,
            )
            .unwrap();
            let missing =
                client::request(UnixStream::connect(&path).unwrap(), "GET", "/v2", &[], b"")
                    .unwrap();
            (reply, missing)
        });
        while !asking.is_finished() {
            endpoints.serve(&mut control, Duration::from_millis(20));
        }
        let (reply, missing) = asking.join().unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.body,
            r#"{"stdout":"-A -u 198.18.0.100:53 -s wlc\n","stderr":"","code":0}"#
        );
        assert_eq!(missing.status, 404);

        // A second rvsd on the same socket is refused.
        let err = Endpoints::bind(&control_config(socket.clone()))
            .err()
            .unwrap();
        assert!(err.contains("another rvsd is listening there"), "{err}");
        drop(endpoints);
        assert!(!socket.exists());
    }

    #[test]
    fn stale_socket_is_replaced_and_other_files_are_not() {
        let scratch = Scratch::new("stale");
        std::fs::create_dir_all(&scratch.0).unwrap();
        let socket = scratch.0.join("rvsd.sock");
        // A listener that is gone leaves its socket file behind.
        drop(UnixListener::bind(&socket).unwrap());
        assert!(socket.exists());
        let endpoints = Endpoints::bind(&control_config(socket.clone())).unwrap();
        assert!(UnixStream::connect(&socket).is_ok());
        drop(endpoints);

        let file = scratch.0.join("not-a-socket");
        std::fs::write(&file, "keep me").unwrap();
        let err = Endpoints::bind(&control_config(file.clone()))
            .err()
            .unwrap();
        assert!(err.contains("is not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    }
}
