//! Statements of a migration file: splitting SQL text at top-level
//! semicolons as psql does, and finding transaction control (`BEGIN`,
//! `COMMIT`, `ROLLBACK`, …) that a transactional file must not hold.

/// One SQL statement of a file, with the line it starts on (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The statement's text, without the trailing semicolon.
    pub sql: String,
    /// The line of the file where it starts.
    pub line: usize,
}

/// Splits SQL text into statements at top-level semicolons, honouring
/// quotes, quoted identifiers, dollar quoting, comments, parentheses (a
/// rule's `DO (...; ...)` actions) and the `BEGIN ATOMIC ... END` body of a
/// `CREATE FUNCTION` or `CREATE PROCEDURE`, as psql does. Statements made
/// only of comments and white space are dropped.
///
/// Used for `-- no-transaction` files, whose statements must each be sent on
/// their own (PostgreSQL runs a multi-statement string in one implicit
/// transaction, which `CREATE INDEX CONCURRENTLY` refuses), so that the
/// statement that failed can be named, and to find transaction control
/// statements ([`transaction_control`]).
pub fn split_statements(sql: &str) -> Vec<Statement> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0usize;
    let mut i = 0usize;
    let mut has_code = false;
    let mut code_start = 0usize;
    let mut parens = 0usize;
    let mut body = AtomicBody::default();
    let push = |out: &mut Vec<Statement>, from: usize, to: usize, has_code: bool| {
        if has_code {
            let text = sql[from..to].trim();
            if !text.is_empty() {
                let line = sql[..from].matches('\n').count() + 1;
                out.push(Statement {
                    sql: text.to_string(),
                    line,
                });
            }
        }
    };
    while i < bytes.len() {
        let b = bytes[i];
        if let Some(end) = comment_end(bytes, i) {
            i = end;
            continue;
        }
        if !b.is_ascii_whitespace() && !has_code {
            has_code = true;
            code_start = i;
        }
        match b {
            b';' if parens == 0 && body.depth == 0 => {
                push(&mut out, code_start.max(start), i, has_code);
                has_code = false;
                body = AtomicBody::default();
                i += 1;
                start = i;
                continue;
            }
            b'(' => parens += 1,
            b')' => parens = parens.saturating_sub(1),
            b'\'' => {
                let escapes = i > 0
                    && matches!(bytes[i - 1], b'e' | b'E')
                    && (i < 2 || !(bytes[i - 2].is_ascii_alphanumeric() || bytes[i - 2] == b'_'));
                i += 1;
                while i < bytes.len() {
                    if escapes && bytes[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if bytes[i] == b'\'' {
                        if bytes.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
            }
            b'"' => {
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == b'"' {
                        if bytes.get(i + 1) == Some(&b'"') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
            }
            b'$' => {
                // A dollar quote is $tag$ where tag is empty or an identifier
                // not starting with a digit; $1 is a parameter, not a quote.
                let prev_ident =
                    i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
                let mut j = i + 1;
                while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                    j += 1;
                }
                let tag_ok = !prev_ident
                    && j < bytes.len()
                    && bytes[j] == b'$'
                    && !bytes.get(i + 1).is_some_and(|c| c.is_ascii_digit());
                if tag_ok {
                    let tag = &sql[i..=j];
                    match sql[j + 1..].find(tag) {
                        Some(pos) => i = j + 1 + pos + tag.len() - 1,
                        None => i = bytes.len(),
                    }
                }
            }
            b if is_word_start(b) && (i == 0 || !is_word_byte(bytes[i - 1])) => {
                let end = word_end(bytes, i);
                body.word(&sql[i..end], parens);
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    push(&mut out, code_start.max(start), bytes.len(), has_code);
    out
}

/// Where the comment starting at `i` ends (`--` to the end of the line,
/// `/* */` nested), or `None` when no comment starts there.
fn comment_end(bytes: &[u8], i: usize) -> Option<usize> {
    match bytes[i] {
        b'-' if bytes.get(i + 1) == Some(&b'-') => {
            let mut j = i;
            while j < bytes.len() && bytes[j] != b'\n' {
                j += 1;
            }
            Some(j)
        }
        b'/' if bytes.get(i + 1) == Some(&b'*') => {
            let mut depth = 1;
            let mut j = i + 2;
            while j < bytes.len() && depth > 0 {
                if bytes[j] == b'/' && bytes.get(j + 1) == Some(&b'*') {
                    depth += 1;
                    j += 2;
                } else if bytes[j] == b'*' && bytes.get(j + 1) == Some(&b'/') {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            Some(j)
        }
        _ => None,
    }
}

/// A byte that starts an unquoted word (letters, `_`, any non-ASCII byte).
fn is_word_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

/// A byte inside an unquoted word (also digits and `$`).
fn is_word_byte(b: u8) -> bool {
    is_word_start(b) || b.is_ascii_digit() || b == b'$'
}

fn word_end(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && is_word_byte(bytes[i]) {
        i += 1;
    }
    i
}

/// psql's rule for the SQL-standard body of a function or procedure: in a
/// statement that starts `CREATE [OR REPLACE] FUNCTION|PROCEDURE`, a `BEGIN`
/// outside parentheses opens a body that its `END` closes (a `CASE` inside
/// it also ends with `END`), and semicolons inside it do not end the
/// statement.
#[derive(Default)]
struct AtomicBody {
    /// The first letters of the statement's first words, when they are
    /// `create`, `or`, `replace`, `function` or `procedure` (else 0).
    lead: [u8; 4],
    /// Words seen in the statement.
    words: usize,
    /// `BEGIN`s (and `CASE`s inside them) not yet closed by `END`.
    depth: usize,
}

impl AtomicBody {
    fn word(&mut self, word: &str, parens: usize) {
        let w = word.to_ascii_lowercase();
        if self.words < self.lead.len()
            && matches!(
                w.as_str(),
                "create" | "or" | "replace" | "function" | "procedure"
            )
        {
            self.lead[self.words] = w.as_bytes()[0];
        }
        self.words += 1;
        let routine = |c: u8| c == b'f' || c == b'p';
        let in_routine = self.lead[0] == b'c'
            && (routine(self.lead[1])
                || (self.lead[1] == b'o' && self.lead[2] == b'r' && routine(self.lead[3])));
        if !in_routine || parens > 0 {
            return;
        }
        match w.as_str() {
            "begin" => self.depth += 1,
            "case" if self.depth > 0 => self.depth += 1,
            "end" if self.depth > 0 => self.depth -= 1,
            _ => {}
        }
    }
}

/// A statement that ends, starts or prepares a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionControl {
    /// Its leading keywords as written, upper-cased (`COMMIT`, `START
    /// TRANSACTION`, `ROLLBACK AND CHAIN`...).
    pub keyword: String,
    /// The line of the file where it starts (1-based).
    pub line: usize,
}

/// The first top-level statement of `sql` that ends, starts or prepares a
/// transaction: `BEGIN`, `START TRANSACTION`, `COMMIT` (also `COMMIT AND
/// CHAIN`, `COMMIT PREPARED`), `END`, `ROLLBACK` (but not `ROLLBACK TO
/// SAVEPOINT`, which stays inside the transaction), `ABORT` or `PREPARE
/// TRANSACTION`. Words inside strings, comments, dollar-quoted bodies and
/// `BEGIN ATOMIC` bodies do not count (the statements are found by
/// [`split_statements`]).
///
/// Such a statement in a file that runs in a transaction ends or splits the
/// transaction tenantmig opened, so the file and its history row no longer
/// commit together.
pub fn transaction_control(sql: &str) -> Option<TransactionControl> {
    split_statements(sql).into_iter().find_map(|st| {
        let words = leading_words(&st.sql, 6);
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        match w.as_slice() {
            ["BEGIN" | "COMMIT" | "END" | "ABORT", ..]
            | ["START" | "PREPARE", "TRANSACTION", ..] => {}
            ["ROLLBACK", "TO", ..] | ["ROLLBACK", "WORK" | "TRANSACTION", "TO", ..] => return None,
            ["ROLLBACK", ..] => {}
            _ => return None,
        }
        // The keywords for the message: `COMMIT AND CHAIN`, not the rest.
        let shown = 1 + w[1..]
            .iter()
            .take_while(|x| {
                matches!(
                    **x,
                    "TRANSACTION" | "WORK" | "AND" | "NO" | "CHAIN" | "PREPARED"
                )
            })
            .count();
        Some(TransactionControl {
            keyword: w[..shown].join(" "),
            line: st.line,
        })
    })
}

/// Up to `n` leading words of a statement, upper-cased, comments skipped.
fn leading_words(sql: &str, n: usize) -> Vec<String> {
    let bytes = sql.as_bytes();
    let mut words = Vec::new();
    let mut i = 0;
    while i < bytes.len() && words.len() < n {
        if let Some(end) = comment_end(bytes, i) {
            i = end;
        } else if bytes[i].is_ascii_whitespace() {
            i += 1;
        } else if is_word_start(bytes[i]) {
            let end = word_end(bytes, i);
            words.push(sql[i..end].to_ascii_uppercase());
            i = end;
        } else {
            break;
        }
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqls(s: &str) -> Vec<String> {
        split_statements(s).into_iter().map(|s| s.sql).collect()
    }

    #[test]
    fn splitting_keeps_semicolons_inside_quotes_comments_and_dollar_bodies() {
        let sql = "-- no-transaction\nCREATE INDEX CONCURRENTLY a ON t (x);\n\
                   INSERT INTO t VALUES ('a;b', E'c\\';d', \"we;ird\");\n\
                   /* block; /* nested; */ still */ SELECT 1;\n\
                   CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;\n\
                   SELECT $1;\n-- trailing comment;\n";
        assert_eq!(
            sqls(sql),
            vec![
                "CREATE INDEX CONCURRENTLY a ON t (x)",
                "INSERT INTO t VALUES ('a;b', E'c\\';d', \"we;ird\")",
                "SELECT 1",
                "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql",
                "SELECT $1",
            ]
        );
        let lines: Vec<usize> = split_statements(sql).iter().map(|s| s.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6]);
    }

    #[test]
    fn splitting_keeps_begin_atomic_bodies_and_parenthesised_rule_actions_whole() {
        let sql = "CREATE OR REPLACE FUNCTION f(x int) RETURNS int LANGUAGE sql\n\
                   BEGIN ATOMIC\n  SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END;\n  SELECT 2;\nEND;\n\
                   CREATE PROCEDURE p() BEGIN ATOMIC INSERT INTO t VALUES (1); END;\n\
                   CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO u VALUES (1); INSERT INTO u VALUES (2));\n\
                   CREATE TABLE begin_end (begin int, \"end\" int);\nSELECT 3;";
        let got = sqls(sql);
        assert_eq!(got.len(), 5, "{got:#?}");
        assert!(got[0].ends_with("SELECT 2;\nEND"), "{}", got[0]);
        assert!(got[1].ends_with("VALUES (1); END"), "{}", got[1]);
        assert!(got[2].ends_with("VALUES (2))"), "{}", got[2]);
        assert_eq!(got[4], "SELECT 3");
    }

    #[test]
    fn transaction_control_statements_are_found_with_their_line() {
        for (sql, keyword, line) in [
            ("CREATE TABLE t (id int);\nCOMMIT;", "COMMIT", 2),
            ("BEGIN;\nCREATE TABLE t (id int);", "BEGIN", 1),
            (
                "begin transaction isolation level serializable;",
                "BEGIN TRANSACTION",
                1,
            ),
            ("SELECT 1;\n\n  start transaction;", "START TRANSACTION", 3),
            ("SELECT 1; COMMIT AND CHAIN;", "COMMIT AND CHAIN", 1),
            ("SELECT 1;\n/* done */ END;", "END", 2),
            ("SELECT 1;\nABORT;", "ABORT", 2),
            ("SELECT 1;\nROLLBACK;", "ROLLBACK", 2),
            (
                "SELECT 1;\nrollback work and no chain;",
                "ROLLBACK WORK AND NO CHAIN",
                2,
            ),
            ("PREPARE TRANSACTION 'x';", "PREPARE TRANSACTION", 1),
            ("COMMIT PREPARED 'x';", "COMMIT PREPARED", 1),
            ("-- a comment; BEGIN;\nCOMMIT /* why */ ;", "COMMIT", 2),
        ] {
            let tc = transaction_control(sql).unwrap_or_else(|| panic!("{sql}"));
            assert_eq!((tc.keyword.as_str(), tc.line), (keyword, line), "{sql}");
        }
    }

    #[test]
    fn transaction_words_in_strings_comments_bodies_and_savepoints_are_not_transaction_control() {
        for sql in [
            "INSERT INTO t VALUES ('COMMIT;'), (E'x\\';COMMIT;');",
            "-- COMMIT;\n/* BEGIN; /* nested */ ROLLBACK; */ SELECT 1;",
            "DO $$ BEGIN PERFORM 1; END $$;",
            "CREATE FUNCTION f() RETURNS trigger AS $body$\nBEGIN\n  RETURN NEW;\nEND;\n$body$ LANGUAGE plpgsql;",
            "CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;",
            "SAVEPOINT s; ROLLBACK TO SAVEPOINT s; ROLLBACK WORK TO s; RELEASE SAVEPOINT s;",
            "CREATE TABLE \"commit\" (begin_at date, \"end\" int); SELECT begin_at AS end_at FROM \"commit\";",
            "PREPARE q AS SELECT 1;",
        ] {
            assert_eq!(transaction_control(sql), None, "{sql}");
        }
    }

    #[test]
    fn a_file_of_only_comments_has_no_statement() {
        assert!(sqls("-- no-transaction\n-- nothing\n/* x; */\n;\n").is_empty());
    }
}
