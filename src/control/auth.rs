//! The TCP listener's bearer token.

use std::path::Path;

/// Reads the token: the file's first line, surrounding whitespace removed.
/// An empty token would let anyone in, so it is an error.
pub fn read_token(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("control.token_file {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        return Err(format!(
            "control.token_file {}: the token is empty",
            path.display()
        ));
    }
    Ok(token)
}

/// Compares in time that depends only on the lengths, so a wrong guess
/// does not tell how much of it was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        difference |= usize::from(x ^ y);
    }
    difference == 0
}

/// Whether an `Authorization` header value carries `token`.
pub fn bearer_ok(header: Option<&str>, token: &str) -> bool {
    let Some(value) = header else {
        return false;
    };
    let value = value.trim();
    let Some((scheme, credentials)) = value.split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && constant_time_eq(credentials.trim().as_bytes(), token.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equality() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"secret", b""));
    }

    #[test]
    fn bearer_header() {
        assert!(bearer_ok(Some("Bearer s3cret"), "s3cret"));
        assert!(bearer_ok(Some("bearer  s3cret "), "s3cret"));
        assert!(!bearer_ok(None, "s3cret"));
        assert!(!bearer_ok(Some("Bearer"), "s3cret"));
        assert!(!bearer_ok(Some("Bearer wrong"), "s3cret"));
        assert!(!bearer_ok(Some("Basic s3cret"), "s3cret"));
    }

    #[test]
    fn token_file() {
        let dir = std::env::temp_dir().join(format!("rvs-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "  abc123 \nignored\n").unwrap();
        assert_eq!(read_token(&path).unwrap(), "abc123");
        std::fs::write(&path, "\n").unwrap();
        assert!(read_token(&path).unwrap_err().contains("empty"));
        let missing = dir.join("missing");
        let err = read_token(&missing).unwrap_err();
        assert!(err.starts_with("control.token_file "), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
