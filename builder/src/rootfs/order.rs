//! A dependency order of the packages being installed, for the steps dpkg
//! would run in that order (preinst scripts).
//!
//! Depth-first over Pre-Depends, then Depends, each package after what it
//! needs; an or-group counts through its first alternative present in the
//! set (by name or Provides). Cycles (libc6 and libgcc-s1 depend on each
//! other) are cut where the walk meets them. Roots and edges are visited in
//! name order, so the result depends on the set only, never on input order.

use std::collections::HashMap;

use crate::source::Interner;
use crate::source::control::Paragraph;
use crate::source::relation::parse_relations;

/// Indices into `packages`, each after its dependencies.
pub fn dependency_order(packages: &[&Paragraph]) -> Vec<usize> {
    let name_of = |i: usize| packages[i].get("Package").unwrap_or("");
    let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
    for i in 0..packages.len() {
        by_name.entry(name_of(i)).or_default().push(i);
    }
    let mut names = Interner::new();
    let mut providers: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, p) in packages.iter().enumerate() {
        if let Some(text) = p.get("Provides")
            && let Ok(rel) = parse_relations("Provides", text, &mut names)
        {
            for dep in rel.atoms() {
                providers
                    .entry(names.resolve(dep.name).to_owned())
                    .or_default()
                    .push(i);
            }
        }
    }
    let edges: Vec<Vec<usize>> = (0..packages.len())
        .map(|i| {
            let mut out = Vec::new();
            for field in ["Pre-Depends", "Depends"] {
                let Some(text) = packages[i].get(field) else {
                    continue;
                };
                let Ok(rel) = parse_relations(field, text, &mut names) else {
                    continue;
                };
                let mut group_targets = Vec::new();
                for group in rel.groups() {
                    let target = group.iter().find_map(|dep| {
                        let name = names.resolve(dep.name);
                        by_name
                            .get(name)
                            .or_else(|| providers.get(name))
                            .and_then(|c| c.iter().copied().min_by_key(|&c| name_of(c)))
                    });
                    group_targets.extend(target.filter(|&t| t != i));
                }
                group_targets.sort_by_key(|&t| name_of(t));
                out.extend(group_targets);
            }
            out
        })
        .collect();
    let mut roots: Vec<usize> = (0..packages.len()).collect();
    roots.sort_by_key(|&i| (name_of(i), packages[i].get("Architecture").unwrap_or("")));
    let mut state = vec![Visit::New; packages.len()];
    let mut order = Vec::with_capacity(packages.len());
    for root in roots {
        visit(root, &edges, &mut state, &mut order);
    }
    order
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visit {
    New,
    Open,
    Done,
}

/// Iterative post-order DFS (no recursion limit on long chains).
fn visit(root: usize, edges: &[Vec<usize>], state: &mut [Visit], order: &mut Vec<usize>) {
    if state[root] != Visit::New {
        return;
    }
    let mut stack = vec![(root, 0usize)];
    state[root] = Visit::Open;
    while let Some((node, next)) = stack.last_mut() {
        if let Some(&dep) = edges[*node].get(*next) {
            *next += 1;
            if state[dep] == Visit::New {
                state[dep] = Visit::Open;
                stack.push((dep, 0));
            }
        } else {
            state[*node] = Visit::Done;
            order.push(*node);
            stack.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::control::parse_single;

    fn order(controls: &[&str]) -> Vec<String> {
        let paragraphs: Vec<Paragraph> = controls
            .iter()
            .map(|c| parse_single(c, "test").unwrap())
            .collect();
        let refs: Vec<&Paragraph> = paragraphs.iter().collect();
        dependency_order(&refs)
            .into_iter()
            .map(|i| paragraphs[i].get("Package").unwrap().to_owned())
            .collect()
    }

    #[test]
    fn dependencies_come_first_whatever_the_input_order() {
        let set = [
            "Package: app\nDepends: libfoo | libbar, awk\n",
            "Package: libfoo\nPre-Depends: libc\n",
            "Package: libc\nDepends: libgcc\n",
            "Package: libgcc\nDepends: libc\n",
            "Package: mawk\nProvides: awk\n",
        ];
        let forward = order(&set);
        let mut reversed = set;
        reversed.reverse();
        assert_eq!(forward, order(&reversed));
        let pos = |n: &str| forward.iter().position(|p| p == n).unwrap();
        assert!(pos("libfoo") < pos("app"));
        assert!(pos("mawk") < pos("app"));
        assert!(pos("libc") < pos("libfoo"));
        assert_eq!(forward.len(), 5);
    }
}
