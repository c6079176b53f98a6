//! `imgraph graph`: the DAG as Graphviz dot or JSON.

use serde_json::json;

use super::Graph;

/// Graphviz dot, one node per step, clustered by nothing (dot lays it out well enough).
pub fn to_dot(g: &Graph) -> String {
    let mut out = String::from(
        "digraph imgraph {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
    );
    for n in g.dag.node_indices() {
        out.push_str(&format!("  {:?};\n", g.step(n).id));
    }
    for e in g.dag.edge_indices() {
        if let Some((a, b)) = g.dag.edge_endpoints(e) {
            out.push_str(&format!("  {:?} -> {:?};\n", g.step(a).id, g.step(b).id));
        }
    }
    out.push_str("}\n");
    out
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
