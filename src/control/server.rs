//! The control API over HTTP (`tiny_http`): the Unix socket, always, and
//! the optional TCP listener, which needs the bearer token.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tiny_http::{Header, Request, Response, Server};

use crate::config::ControlConfig;

use super::api::{Control, Reply, MAX_BODY};
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
        .with_header(header("Content-Type", "application/json"));
    if let Some(h) = extra {
        response.add_header(h);
    }
    // A client that went away is no concern of ours.
    let _ = request.respond(response);
}

/// Authenticates (TCP only), reads the body, and replies.
fn answer(control: &mut Control, mut request: Request, token: Option<&String>) {
    if let Some(token) = token {
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
