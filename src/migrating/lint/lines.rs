//! Lines of findings: where a statement starts, past white space and
//! comments, and the best line for a parse error.

/// A byte offset from the parser (never negative for statements).
pub(super) fn offset(location: i32) -> usize {
    usize::try_from(location).unwrap_or(0)
}

/// The 1-based line of the first character at or after `from` that is
/// neither white space nor inside a `--` or `/* */` comment.
pub(super) fn statement_line(sql: &str, from: usize) -> usize {
    let bytes = sql.as_bytes();
    let mut i = from.min(bytes.len());
    while i < bytes.len() {
        match bytes[i] {
            b if b.is_ascii_whitespace() => i += 1,
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                // PostgreSQL's block comments nest.
                let mut depth = 0usize;
                while i < bytes.len() {
                    if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            _ => break,
        }
    }
    line_at(sql, i)
}

/// The 1-based line of byte offset `at`.
fn line_at(sql: &str, at: usize) -> usize {
    let end = at.min(sql.len());
    sql.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The best line for a parse error. pg_query reports the message but not
/// the cursor position, so the failing statement is found by splitting the
/// file with PostgreSQL's scanner and parsing the pieces one by one; within
/// it, the token the message quotes (`at or near "..."`) is used when it
/// occurs exactly once.
pub(super) fn parse_error_line(sql: &str, message: &str) -> usize {
    let failing = pg_query::split_with_scanner(sql).ok().and_then(|pieces| {
        pieces
            .into_iter()
            .find(|piece| pg_query::parse(piece).is_err())
            .map(|piece| (piece.as_ptr() as usize - sql.as_ptr() as usize, piece))
    });
    let (start, region) = failing.unwrap_or((0, sql));
    let near = message.split_once("at or near \"").and_then(|(_, rest)| {
        let token = rest.strip_suffix('"')?;
        (!token.is_empty()).then_some(token)
    });
    if let Some(token) = near {
        let mut hits = region.match_indices(token);
        if let (Some((at, _)), None) = (hits.next(), hits.next()) {
            return line_at(sql, start + at);
        }
    }
    if failing.is_some() {
        statement_line(sql, start)
    } else {
        1
    }
}
