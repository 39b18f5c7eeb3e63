//! The rules about a tenant migration's reach beyond its own schema:
//! search_path changes, `DROP SCHEMA`, `TRUNCATE`, names qualified with
//! another schema and changes to the shared schema.

use pg_query::protobuf::node::Node as N;
use pg_query::protobuf::{DropStmt, ObjectType, TruncateStmt, VariableSetKind, VariableSetStmt};

use super::Rule;
use super::linter::Linter;
use super::walk::{calls_set_config_search_path, object_name, qualified_names, rel_name};

impl Linter<'_> {
    /// The rules about a tenant migration's reach beyond its own schema.
    pub(super) fn tenant_reach(&mut self, node: &N, line: usize, shared_schema: &str) {
        match node {
            N::VariableSetStmt(v) => self.set_search_path(v, line),
            N::DropStmt(d) if d.remove_type() == ObjectType::ObjectSchema => {
                self.drop_schema(d, line)
            }
            N::TruncateStmt(t) => self.truncate(t, line),
            _ => {}
        }
        let Ok(tree) = serde_json::to_value(node) else {
            return;
        };
        if calls_set_config_search_path(&tree) {
            self.push(
                line,
                Rule::SearchPathChange,
                search_path_message("set_config('search_path', ...)"),
            );
        }
        self.qualified_reach(node, &tree, line, shared_schema);
    }

    /// `SET [LOCAL] search_path`, `RESET search_path` and `RESET ALL`.
    fn set_search_path(&mut self, v: &VariableSetStmt, line: usize) {
        if !(v.name.eq_ignore_ascii_case("search_path") || v.kind() == VariableSetKind::VarResetAll)
        {
            return;
        }
        let what = match v.kind() {
            VariableSetKind::VarReset => "RESET search_path".to_string(),
            VariableSetKind::VarResetAll => "RESET ALL".to_string(),
            _ if v.is_local => "SET LOCAL search_path".to_string(),
            _ => "SET search_path".to_string(),
        };
        self.push(line, Rule::SearchPathChange, search_path_message(&what));
    }

    fn drop_schema(&mut self, d: &DropStmt, line: usize) {
        let names = d.objects.iter().map(object_name).collect::<Vec<_>>();
        self.push(
            line,
            Rule::DropSchema,
            format!(
                "DROP SCHEMA {} in a tenant migration (it runs once per tenant: the first tenant drops a schema every tenant shares, or a tenant drops its own schema with everything in it)",
                names.join(", ")
            ),
        );
    }

    /// `TRUNCATE` of the tables the file did not create.
    fn truncate(&mut self, t: &TruncateStmt, line: usize) {
        let tables: Vec<String> = t
            .relations
            .iter()
            .filter_map(|r| match &r.node {
                Some(N::RangeVar(rv)) if !self.is_new(&rv.schemaname, &rv.relname) => {
                    Some(rel_name(Some(rv)))
                }
                _ => None,
            })
            .collect();
        if !tables.is_empty() {
            self.push(
                line,
                Rule::Truncate,
                format!(
                    "TRUNCATE {} in a tenant migration (empties the table in every tenant schema under an ACCESS EXCLUSIVE lock; the rows cannot be brought back)",
                    tables.join(", ")
                ),
            );
        }
    }

    /// Names qualified with another schema than the shared one and
    /// PostgreSQL's own, and changes to names of the shared schema: at most
    /// one finding of each rule per statement.
    fn qualified_reach(
        &mut self,
        node: &N,
        tree: &serde_json::Value,
        line: usize,
        shared_schema: &str,
    ) {
        let mut other = Vec::new();
        let mut shared = Vec::new();
        for q in qualified_names(node, tree) {
            let list = if q.schema == shared_schema {
                if !q.target {
                    continue;
                }
                &mut shared
            } else if is_system_schema(&q.schema) {
                continue;
            } else {
                &mut other
            };
            if !list.contains(&q.what) {
                list.push(q.what);
            }
        }
        if !other.is_empty() {
            self.push(
                line,
                Rule::OtherSchemaReference,
                format!(
                    "{} in a tenant migration (the same object for every tenant, reached once per tenant, not the tenant's own)",
                    other.join(", ")
                ),
            );
        }
        if !shared.is_empty() {
            self.push(
                line,
                Rule::SharedSchemaChange,
                format!(
                    "changes {} of the shared schema from a tenant migration (it runs once per tenant: the change is made as many times as there are tenants, and the second time fails or doubles it)",
                    shared.join(", ")
                ),
            );
        }
    }
}

fn search_path_message(what: &str) -> String {
    format!(
        "{what} in a tenant migration (tenantmig sets search_path to the tenant's schema, then the shared schema; after this, unqualified names may resolve, and new objects land, outside the tenant's schema)"
    )
}

/// PostgreSQL's own schemas, which a tenant migration may name.
fn is_system_schema(schema: &str) -> bool {
    matches!(schema, "pg_catalog" | "information_schema") || schema.starts_with("pg_temp")
}
