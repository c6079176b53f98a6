//! `imgraph graph`: the DAG as Graphviz dot or JSON.

use serde_json::json;

use super::Graph;

/// Graphviz dot, one node per step named by its step id, edges from a step to
/// what depends on it (dot lays it out well enough without clusters).
pub fn to_dot(g: &Graph) -> String {
    let mut out = String::from(
        "digraph imgraph {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
    );
    for n in g.dag.node_indices() {
        out.push_str(&format!("  {};\n", dot_id(g.step(n).id.as_str())));
    }
    for e in g.dag.edge_indices() {
        if let Some((a, b)) = g.dag.edge_endpoints(e) {
            out.push_str(&format!(
                "  {} -> {};\n",
                dot_id(g.step(a).id.as_str()),
                dot_id(g.step(b).id.as_str())
            ));
        }
    }
    out.push_str("}\n");
    out
}

/// A step id as a dot ID: a double-quoted string (ids hold `:`, `/` and `@`,
/// which a bare dot ID cannot), with `"` and `\` escaped as dot reads them.
fn dot_id(id: &str) -> String {
    let mut quoted = String::with_capacity(id.len() + 2);
    quoted.push('"');
    for c in id.chars() {
        if matches!(c, '"' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// `{"steps":[{"id","kind","image","dist","arch","registry","deps"}]}`.
pub fn to_json(g: &Graph) -> serde_json::Value {
    let steps: Vec<_> = g
        .order()
        .into_iter()
        .map(|n| {
            let s = g.step(n);
            json!({
                "id": s.id,
                "kind": s.id.kind,
                "image": s.id.image,
                "dist": s.id.dist,
                "arch": s.id.arch.map(|a| a.name),
                "registry": s.id.registry,
                "deps": g.deps(n).into_iter().map(|d| g.step(d).id.clone()).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "steps": steps })
}

#[cfg(test)]
mod tests {
    use super::dot_id;

    #[test]
    fn dot_ids_are_quoted_and_escaped() {
        assert_eq!(dot_id("layer:a/b:one/amd64"), "\"layer:a/b:one/amd64\"");
        assert_eq!(dot_id(r#"x"y\z"#), r#""x\"y\\z""#);
    }
}
