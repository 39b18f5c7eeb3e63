//! Walking the parse tree: the schema-qualified names of a statement, calls
//! to `set_config('search_path', ...)`, and names as the parser gives them.

use pg_query::protobuf::node::Node as N;
use pg_query::protobuf::{Node, ObjectType, RangeVar};

/// A schema-qualified name in a statement.
pub(super) struct Qualified {
    /// The schema.
    pub(super) schema: String,
    /// How to show it: `audit.events`, or `schema audit`.
    pub(super) what: String,
    /// True when the statement creates, changes, drops, grants on or writes
    /// to the object; false when it only reads or refers to it.
    pub(super) target: bool,
}

/// Keys of the parse tree whose value is a qualified name as a list of
/// strings (a function, type, operator class or collation name...).
const NAME_LISTS: [&str; 10] = [
    "funcname",
    "names",
    "objname",
    "defnames",
    "type_name",
    "domainname",
    "collname",
    "opclass",
    "collation",
    "typename",
];

/// Keys of a statement whose names are what the statement changes.
const TARGETS: [&str; 15] = [
    "relation",
    "relations",
    "view",
    "sequence",
    "typevar",
    "into",
    "objects",
    "table",
    "defnames",
    "domainname",
    "func",
    "type_name",
    "funcname",
    "collname",
    "object",
];

/// Every schema-qualified name of a statement (`tree` is the statement's
/// parse tree as JSON), found by walking the whole tree, so no kind of
/// statement or clause is missed: relations (`schemaname` of a range
/// variable), and functions, types, operator classes and collations (a
/// list of two or three strings). `CREATE SCHEMA x` and `SET SCHEMA x`
/// count as names in schema `x`.
pub(super) fn qualified_names(node: &N, tree: &serde_json::Value) -> Vec<Qualified> {
    use serde_json::Value;
    let mut out = Vec::new();
    let Some((kind, Value::Object(fields))) = tree.as_object().and_then(|o| o.iter().next()) else {
        return out;
    };
    // A dropped trigger, rule or policy is `[schema.]table.name`.
    let drop_parts = match node {
        N::DropStmt(d)
            if matches!(
                d.remove_type(),
                ObjectType::ObjectTrigger | ObjectType::ObjectRule | ObjectType::ObjectPolicy
            ) =>
        {
            3
        }
        _ => 2,
    };
    for (key, value) in fields {
        let target = match key.as_str() {
            // A trigger's function is referred to, not changed.
            "funcname" => kind == "CreateFunctionStmt",
            // A column's type is an object; a type's own name is a list.
            "type_name" => value.is_array(),
            k => TARGETS.contains(&k),
        };
        match (kind.as_str(), key.as_str(), value) {
            ("CreateSchemaStmt", "schemaname", Value::String(schema))
            | (_, "newschema", Value::String(schema))
                if !schema.is_empty() =>
            {
                out.push(Qualified {
                    schema: schema.clone(),
                    what: format!("schema {schema}"),
                    target: true,
                });
            }
            ("DropStmt", "objects", Value::Array(items)) => {
                for item in items {
                    match item.pointer("/node/List/items").and_then(string_list) {
                        Some(parts) if parts.len() >= drop_parts => out.push(Qualified {
                            schema: parts[parts.len() - drop_parts].clone(),
                            what: parts.join("."),
                            target: true,
                        }),
                        Some(_) => {}
                        None => walk_names(key, item, true, &mut out),
                    }
                }
            }
            // A comment's object list is ambiguous (`table.column` or
            // `schema.table`); its relation, if any, is enough.
            ("CommentStmt", "object", _) => {}
            _ => walk_names(key, value, target, &mut out),
        }
    }
    out
}

fn walk_names(key: &str, value: &serde_json::Value, target: bool, out: &mut Vec<Qualified>) {
    use serde_json::Value;
    match value {
        Value::Object(o) => {
            if let (Some(Value::String(schema)), Some(Value::String(rel))) =
                (o.get("schemaname"), o.get("relname"))
                && !schema.is_empty()
            {
                out.push(Qualified {
                    schema: schema.clone(),
                    what: format!("{schema}.{rel}"),
                    target,
                });
            }
            for (k, v) in o {
                walk_names(k, v, target, out);
            }
        }
        Value::Array(items) => {
            if NAME_LISTS.contains(&key)
                && let Some(parts) = string_list(value)
                && parts.len() >= 2
            {
                out.push(Qualified {
                    schema: parts[parts.len() - 2].clone(),
                    what: parts.join("."),
                    target,
                });
            }
            for v in items {
                walk_names(key, v, target, out);
            }
        }
        _ => {}
    }
}

/// The strings of a list of `String` nodes, or `None` for another list.
fn string_list(list: &serde_json::Value) -> Option<Vec<String>> {
    list.as_array()?
        .iter()
        .map(|n| {
            n.pointer("/node/String/sval")
                .and_then(|s| s.as_str())
                .map(str::to_string)
        })
        .collect()
}

/// True when the tree calls `set_config('search_path', ...)`.
pub(super) fn calls_set_config_search_path(tree: &serde_json::Value) -> bool {
    use serde_json::Value;
    match tree {
        Value::Object(o) => {
            if let Some(call) = o.get("FuncCall")
                && call
                    .get("funcname")
                    .and_then(string_list)
                    .is_some_and(|n| n.last().is_some_and(|f| f == "set_config"))
                && call
                    .pointer("/args/0")
                    .is_some_and(|a| a.to_string().to_lowercase().contains("\"search_path\""))
            {
                return true;
            }
            o.values().any(calls_set_config_search_path)
        }
        Value::Array(items) => items.iter().any(calls_set_config_search_path),
        _ => false,
    }
}

/// `schema.name` or `name`, as the parser gives them.
pub(super) fn rel_name(rel: Option<&RangeVar>) -> String {
    match rel {
        Some(r) if r.schemaname.is_empty() => r.relname.clone(),
        Some(r) => format!("{}.{}", r.schemaname, r.relname),
        None => String::new(),
    }
}

/// The parts of a qualified name given as a list of strings.
pub(super) fn name_parts(node: &Node) -> Vec<String> {
    match &node.node {
        Some(N::List(list)) => list
            .items
            .iter()
            .filter_map(|item| match &item.node {
                Some(N::String(s)) => Some(s.sval.clone()),
                _ => None,
            })
            .collect(),
        Some(N::String(s)) => vec![s.sval.clone()],
        _ => Vec::new(),
    }
}

/// A dropped object's name, dot-joined.
pub(super) fn object_name(node: &Node) -> String {
    name_parts(node).join(".")
}
