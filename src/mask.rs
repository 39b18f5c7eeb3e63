//! Masking secrets in text before it is printed, logged or stored.
//!
//! A connection string reaches output in many ways: a configuration error
//! quotes it, the ledger stores the command line it came on, `runs show`
//! prints that command line, and log lines may quote any of these. Each of
//! these goes through [`mask_secrets`] (or [`mask_args`] for a command line),
//! which hides every password it can recognise:
//!
//! - the password of a URL's user information,
//!   `postgres://user:secret@host/db` → `postgres://user:***@host/db`;
//! - a `password` or `sslpassword` parameter of a URL's query,
//!   `?password=secret&sslmode=require` → `?password=***&sslmode=require`;
//! - the same keys in a key-value connection string (libpq's `conninfo`),
//!   `host=h password=secret` → `host=h password=***`, and
//!   `password='a b'` → `password='***'`.
//!
//! The rest of the text is left exactly as it was (no URL normalisation), so
//! the masked form still says which host, port, database and user were used.

/// The text shown in place of a password.
pub const MASK: &str = "***";

/// Keys whose values are secrets, in URL queries and key-value strings.
const SECRET_KEYS: [&str; 2] = ["password", "sslpassword"];

/// `url` (or any text holding one or more connection strings) with every
/// password replaced by `***`. Text without a password comes back as it was.
pub fn mask_url(url: &str) -> String {
    mask_secrets(url)
}

/// `text` with every password it holds replaced by `***`: a URL's user
/// password, and the values of `password=` / `sslpassword=` in a URL's query
/// or a key-value connection string (quoted or not).
pub fn mask_secrets(text: &str) -> String {
    let mut spans = url_password_spans(text);
    spans.extend(key_value_spans(text));
    if spans.is_empty() {
        return text.to_string();
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in spans {
        // Overlapping spans (a URL whose query also has a password): the
        // first one already covered the start.
        let start = start.max(at);
        if end <= start {
            continue;
        }
        out.push_str(&text[at..start]);
        out.push_str(MASK);
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

/// A command line with the password of every connection string in it
/// masked (see [`mask_secrets`]), for the ledger and `runs show`.
pub fn mask_args(args: &[String]) -> Vec<String> {
    args.iter().map(|a| mask_secrets(a)).collect()
}

/// A command line as stored in the ledger (a JSON array of strings, or
/// anything else an older tenantmig wrote), with every string masked.
pub fn mask_json(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(mask_secrets(s)),
        Value::Array(items) => Value::Array(items.iter().map(mask_json).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), mask_json(v))).collect())
        }
        other => other.clone(),
    }
}

/// Byte ranges of URL user passwords: after `scheme://user:` up to the `@`
/// that ends the user information.
fn url_password_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(pos) = text[from..].find("://") {
        let start = from + pos + 3;
        from = start;
        // The URL ends at white space or a quote around it.
        let end = text[start..]
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'')
            .map_or(text.len(), |i| start + i);
        let url = &text[start..end];
        // The user information ends at the last '@' of the authority; in a
        // malformed URL (a raw '/' or '?' in the password) at the last '@'
        // of the whole URL, which hides too much rather than too little.
        let authority_end = url.find(['/', '?', '#']).unwrap_or(url.len());
        let at = url[..authority_end].rfind('@').or_else(|| url.rfind('@'));
        let Some(at) = at else {
            continue;
        };
        if let Some(colon) = url[..at].find(':') {
            spans.push((start + colon + 1, start + at));
        }
    }
    spans
}

/// Byte ranges of the values of secret keys (`password=...`), in a URL's
/// query or a key-value connection string. A value in single quotes keeps
/// its quotes (`password='***'`); an unquoted one ends at white space or `&`.
fn key_value_spans(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let lower = text.to_ascii_lowercase();
    let mut spans = Vec::new();
    for key in SECRET_KEYS {
        let mut from = 0;
        while let Some(pos) = lower[from..].find(key) {
            let key_start = from + pos;
            let key_end = key_start + key.len();
            from = key_end;
            let word_before = key_start > 0
                && (bytes[key_start - 1].is_ascii_alphanumeric() || bytes[key_start - 1] == b'_');
            if word_before {
                continue;
            }
            let mut i = key_end;
            while i < bytes.len() && bytes[i] == b' ' {
                i += 1;
            }
            if bytes.get(i) != Some(&b'=') {
                continue;
            }
            i += 1;
            while i < bytes.len() && bytes[i] == b' ' {
                i += 1;
            }
            if bytes.get(i) == Some(&b'\'') {
                // libpq: a quoted value ends at the next quote not escaped
                // with a backslash.
                let value_start = i + 1;
                let mut j = value_start;
                while j < bytes.len() && bytes[j] != b'\'' {
                    j += if bytes[j] == b'\\' { 2 } else { 1 };
                }
                spans.push((value_start, j.min(bytes.len())));
            } else {
                let value_start = i;
                let mut j = value_start;
                while j < bytes.len() && !bytes[j].is_ascii_whitespace() && bytes[j] != b'&' {
                    j += 1;
                }
                if j > value_start {
                    spans.push((value_start, j));
                }
            }
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_password_is_masked_and_the_rest_kept_as_written() {
        assert_eq!(
            mask_url("postgres://u:secret@h:5432/d"),
            "postgres://u:***@h:5432/d"
        );
        assert_eq!(mask_url("postgres://u@h/d"), "postgres://u@h/d");
        assert_eq!(mask_url("postgres://h/d"), "postgres://h/d");
        assert_eq!(
            mask_url("postgresql://u:p%40ss@h,h2:5433/d?sslmode=require"),
            "postgresql://u:***@h,h2:5433/d?sslmode=require"
        );
    }

    #[test]
    fn a_malformed_url_hides_everything_up_to_its_last_at_sign() {
        assert_eq!(mask_url("postgres://u:pa/ss@h/d"), "postgres://u:***@h/d");
    }

    #[test]
    fn a_password_in_a_url_query_is_masked() {
        assert_eq!(
            mask_url("postgres://h/d?user=u&password=secret&sslmode=require"),
            "postgres://h/d?user=u&password=***&sslmode=require"
        );
        assert_eq!(
            mask_url("postgres://u:a@h/d?sslpassword=b"),
            "postgres://u:***@h/d?sslpassword=***"
        );
    }

    #[test]
    fn a_key_value_connection_string_has_its_password_masked_quoted_or_not() {
        assert_eq!(
            mask_url("host=h password=secret dbname=d"),
            "host=h password=*** dbname=d"
        );
        assert_eq!(
            mask_url("host=h password = 'a b\\' c' dbname=d"),
            "host=h password = '***' dbname=d"
        );
        assert_eq!(mask_url("PASSWORD=x"), "PASSWORD=***");
        assert_eq!(mask_url("user=u sslpassword=k"), "user=u sslpassword=***");
    }

    #[test]
    fn words_that_only_contain_password_are_left_alone() {
        for text in [
            "mypassword=x",
            "password_file=/p",
            "the password is wrong",
            "password authentication failed for user \"u\"",
        ] {
            assert_eq!(mask_secrets(text), text);
        }
    }

    #[test]
    fn every_connection_string_of_a_message_or_command_line_is_masked() {
        assert_eq!(
            mask_secrets("database URL host=h password=s3 is not usable; also postgres://a:b@c/d"),
            "database URL host=h password=*** is not usable; also postgres://a:***@c/d"
        );
        let args: Vec<String> = [
            "--database-url",
            "postgres://u:secret@h/d",
            "--database-url=host=h password=x",
            "migrate",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            mask_args(&args),
            [
                "--database-url",
                "postgres://u:***@h/d",
                "--database-url=host=h password=***",
                "migrate"
            ]
        );
        assert_eq!(
            mask_json(&serde_json::json!(["migrate", "postgres://u:secret@h/d"])),
            serde_json::json!(["migrate", "postgres://u:***@h/d"])
        );
    }
}
