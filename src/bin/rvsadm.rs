//! rvsadm: ipvsadm for rvs. Parses the command line itself (so `-h`, usage
//! errors and their exit codes need no daemon, exactly as ipvsadm's), then
//! sends it to rvsd's control API (docs/API.md) over its Unix socket and
//! prints what rvsd answered, with rvsd's exit code.
//!
//! One option of its own, anywhere on the line: `--socket PATH` (or
//! `--socket=PATH`), default `/run/rvs/rvsd.sock`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use rvs::adm::{self, Command};
use rvs::config::ControlConfig;
use rvs::control::api::IpvsadmReply;
use rvs::control::client;

/// Removes `--socket PATH` / `--socket=PATH` from `argv`; the path, if given.
fn take_socket_option(argv: &mut Vec<String>) -> Result<Option<PathBuf>, String> {
    let mut socket = None;
    let mut i = 0;
    while i < argv.len() {
        if argv[i] == "--socket" {
            if i + 1 >= argv.len() {
                return Err("--socket needs a path".into());
            }
            socket = Some(PathBuf::from(argv.remove(i + 1)));
            argv.remove(i);
        } else if let Some(path) = argv[i].strip_prefix("--socket=") {
            if path.is_empty() {
                return Err("--socket needs a path".into());
            }
            socket = Some(PathBuf::from(path));
            argv.remove(i);
        } else {
            i += 1;
        }
    }
    Ok(socket)
}

fn exit(code: i32) -> ExitCode {
    // ipvsadm's codes are exit statuses: 255 for -1.
    ExitCode::from((code & 0xff) as u8)
}

fn main() -> ExitCode {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    let socket = match take_socket_option(&mut argv) {
        Ok(path) => path.unwrap_or_else(|| PathBuf::from(ControlConfig::DEFAULT_SOCKET)),
        Err(message) => {
            eprintln!("rvsadm: {message}");
            return exit(adm::error::EXIT_USAGE);
        }
    };

    let command = match adm::args::parse(&argv) {
        Ok(command) => command,
        Err(err) => {
            eprintln!("{}", err.message);
            return exit(err.code);
        }
    };
    // What needs no table is answered here.
    if matches!(command, Command::Help | Command::Version) {
        let out = adm::execute(&command, &mut adm::Model::default());
        print!("{}", out.stdout);
        eprint!("{}", out.stderr);
        return exit(out.code);
    }
    let mut stdin = String::new();
    if command == Command::Restore {
        if let Err(e) = std::io::stdin().read_to_string(&mut stdin) {
            eprintln!("rvsadm: cannot read the rules from standard input: {e}");
            return exit(1);
        }
    }

    match send(&socket, &argv, &stdin) {
        Ok(reply) => {
            print!("{}", reply.stdout);
            eprint!("{}", reply.stderr);
            let _ = std::io::stdout().flush();
            exit(reply.code)
        }
        Err(message) => {
            eprintln!("rvsadm: {message}");
            exit(1)
        }
    }
}

fn send(socket: &std::path::Path, argv: &[String], stdin: &str) -> Result<IpvsadmReply, String> {
    let stream = UnixStream::connect(socket)
        .map_err(|e| format!("Can't connect to rvsd at {}: {e}", socket.display()))?;
    // A stuck daemon should not hang the shell forever.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let body = serde_json::json!({ "args": argv, "stdin": stdin }).to_string();
    let reply = client::request(stream, "POST", "/v1/ipvsadm", &[], body.as_bytes())
        .map_err(|e| format!("rvsd at {}: {e}", socket.display()))?;
    if reply.status != 200 {
        let error = serde_json::from_str::<serde_json::Value>(&reply.body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
            .unwrap_or(reply.body);
        return Err(format!("rvsd answered {}: {error}", reply.status));
    }
    serde_json::from_str(&reply.body)
        .map_err(|e| format!("rvsd's reply is not what rvsadm expects: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn socket_option_anywhere() {
        let mut a = argv(&["-L", "--socket", "/tmp/s", "-n"]);
        assert_eq!(
            take_socket_option(&mut a),
            Ok(Some(PathBuf::from("/tmp/s")))
        );
        assert_eq!(a, argv(&["-L", "-n"]));
        let mut a = argv(&["--socket=/x", "-S"]);
        assert_eq!(take_socket_option(&mut a), Ok(Some(PathBuf::from("/x"))));
        assert_eq!(a, argv(&["-S"]));
        let mut a = argv(&["-L"]);
        assert_eq!(take_socket_option(&mut a), Ok(None));
        assert!(take_socket_option(&mut argv(&["-L", "--socket"])).is_err());
        assert!(take_socket_option(&mut argv(&["--socket="])).is_err());
    }
}
