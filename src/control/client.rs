//! A small HTTP/1.1 client for the control API, enough for rvsadm and the
//! tests: one request per connection, a JSON body, the reply read by
//! `Content-Length` (or to the end of the stream, or chunked).

use std::io::{self, Read, Write};

/// A reply: the status code and the body.
#[derive(Debug, PartialEq, Eq)]
pub struct HttpReply {
    pub status: u16,
    pub body: String,
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// Sends one request on `stream` and reads the reply. `headers` are extra
/// `(name, value)` pairs (e.g. `Authorization`).
pub fn request<S: Read + Write>(
    mut stream: S,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<HttpReply> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: rvsd\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;
    read_reply(stream)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn read_reply<S: Read>(mut stream: S) -> io::Result<HttpReply> {
    let mut data = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(end) = find(&data, b"\r\n\r\n") {
            break end;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(invalid(
                "connection closed before the reply's headers ended",
            ));
        }
        data.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&data[..header_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| invalid(format!("bad Content-Length {value:?}")))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    let mut body = data.split_off(header_end + 4);
    if chunked {
        stream.read_to_end(&mut body)?;
        body = dechunk(&body)?;
    } else if let Some(length) = content_length {
        while body.len() < length {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Err(invalid("connection closed in the middle of the reply"));
            }
            body.extend_from_slice(&chunk[..n]);
        }
        body.truncate(length);
    } else {
        stream.read_to_end(&mut body)?;
    }
    let body = String::from_utf8(body).map_err(|_| invalid("reply body is not UTF-8"))?;
    Ok(HttpReply { status, body })
}

fn dechunk(mut data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(data, b"\r\n").ok_or_else(|| invalid("truncated chunk size"))?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| invalid(format!("bad chunk size {size_text:?}")))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err(invalid("truncated chunk"));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A stream that replays `reply` and records what was written.
    struct Canned {
        reply: Cursor<Vec<u8>>,
        sent: Vec<u8>,
    }

    impl Read for Canned {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            // One byte at a time: the reader must cope with short reads.
            let n = buf.len().min(1);
            self.reply.read(&mut buf[..n])
        }
    }

    impl Write for Canned {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.sent.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn canned(reply: &str) -> Canned {
        Canned {
            reply: Cursor::new(reply.as_bytes().to_vec()),
            sent: Vec::new(),
        }
    }

    #[test]
    fn writes_the_request_and_reads_by_length() {
        let mut stream = canned("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}trailing");
        let reply = request(
            &mut stream,
            "POST",
            "/v1/x",
            &[("Authorization", "Bearer t")],
            b"[1]",
        )
        .unwrap();
        assert_eq!(
            reply,
            HttpReply {
                status: 200,
                body: "{}".into()
            }
        );
        let sent = String::from_utf8(stream.sent).unwrap();
        assert!(sent.starts_with("POST /v1/x HTTP/1.1\r\n"), "{sent}");
        assert!(sent.contains("Content-Length: 3\r\n"), "{sent}");
        assert!(sent.contains("Authorization: Bearer t\r\n"), "{sent}");
        assert!(sent.ends_with("\r\n\r\n[1]"), "{sent}");
    }

    #[test]
    fn chunked_and_unsized_bodies() {
        let reply = read_reply(canned(
            "HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        ))
        .unwrap();
        assert_eq!((reply.status, reply.body.as_str()), (401, "abcde"));
        let reply = read_reply(canned("HTTP/1.0 404 Not Found\r\n\r\nnope")).unwrap();
        assert_eq!((reply.status, reply.body.as_str()), (404, "nope"));
    }

    #[test]
    fn broken_replies_are_errors() {
        assert!(read_reply(canned("HTTP/1.1 200 OK\r\n")).is_err());
        assert!(read_reply(canned("garbage\r\n\r\n")).is_err());
        assert!(read_reply(canned("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab")).is_err());
        assert!(read_reply(canned(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
        ))
        .is_err());
    }
}
