//! Checks across the whole file that types alone cannot express: names, references, cycles.

use std::collections::{BTreeMap, HashMap};

use super::diag::{Diagnostic, nearest};
use super::model::{GateSpec, Header, Stage, StageSpec, When};
use super::source::Span;
use super::tree::Node;

/// Which stages each stage waits for: its `needs`, or else the normal stage before it.
/// Cleanup stages (`when: on_failure | always`) are scheduled after all others and are left out.
pub fn dependencies(stages: &[Stage]) -> Vec<Vec<usize>> {
    let index: HashMap<&str, usize> = stages.iter().enumerate().map(|(i, s)| (s.name(), i)).collect();
    let mut previous = None;
    stages
        .iter()
        .enumerate()
        .map(|(i, stage)| {
            if stage.common.when != When::OnSuccess {
                return Vec::new();
            }
            let deps = match &stage.common.needs {
                Some(needs) => needs.iter().filter_map(|n| index.get(n.as_str()).copied()).collect(),
                None => previous.into_iter().collect(),
            };
            previous = Some(i);
            deps
        })
        .collect()
}

/// Every cross-reference problem in the file. `root` is the tree the header and stages were read from.
pub fn check(header: &Header, stages: &[Stage], root: &Node) -> Vec<Diagnostic> {
    let stages_node = root.get("stages");
    let nodes: Vec<&Node> = stages_node.and_then(Node::as_seq).map(|s| s.iter().collect()).unwrap_or_default();
    let at = |i: usize, key: &str| nodes.get(i).and_then(|n| n.get(key)).map(|n| n.span).unwrap_or(stages[i].span);
    let mut errors = Vec::new();
    let mut first_seen: HashMap<&str, usize> = HashMap::new();
    for (i, stage) in stages.iter().enumerate() {
        if let Some(&first) = first_seen.get(stage.name()) {
            errors.push(
                Diagnostic::new(format!("duplicate stage name `{}`", stage.name()))
                    .at(at(i, "name"))
                    .note(format!("first used at line {}", at(first, "name").line))
                    .help("stage names must be unique: `needs`, `--only` and reports refer to them"),
            );
        } else {
            first_seen.insert(stage.name(), i);
        }
    }
    let names: Vec<&str> = stages.iter().map(Stage::name).collect();
    for (i, stage) in stages.iter().enumerate() {
        for (j, need) in stage.common.needs.iter().flatten().enumerate() {
            let span = nodes[i].get("needs").and_then(Node::as_seq).and_then(|s| s.get(j)).map(|n| n.span);
            let span = span.unwrap_or(stage.span);
            if need == stage.name() {
                errors.push(Diagnostic::new(format!("stage `{need}` needs itself")).at(span));
            } else if !names.contains(&need.as_str()) {
                errors.push(
                    Diagnostic::new(format!("`needs` names no stage: `{need}`"))
                        .at(span)
                        .expected("the name of another stage")
                        .suggest(need, names.iter().copied()),
                );
            }
        }
        check_environments(header, stage, &nodes, i, &mut errors);
        if let StageSpec::Bench(bench) = &stage.spec {
            for t in &bench.thresholds {
                for id in t.checklist.iter().filter(|id| !header.checklist.iter().any(|c| &c.id == *id)) {
                    let ids: Vec<&str> = header.checklist.iter().map(|c| c.id.as_str()).collect();
                    errors.push(unknown_item(id, &ids).at(at(i, "thresholds")));
                }
            }
            if bench.thresholds.is_empty() {
                errors.push(
                    Diagnostic::new("this `bench` stage has no thresholds, so it could never fail")
                        .at(at(i, "kind"))
                        .expected("`thresholds:` such as `p95 < 100ms`"),
                );
            }
        }
        if let StageSpec::Drill(drill) = &stage.spec {
            check_drill(header, drill, at(i, "drill"), &mut errors);
        }
        let ids: Vec<&str> = header.checklist.iter().map(|c| c.id.as_str()).collect();
        for (c, id) in stage.common.checklist.iter().enumerate() {
            if !ids.contains(&id.as_str()) {
                let span = nodes[i].get("checklist").and_then(Node::as_seq).and_then(|s| s.get(c)).map(|n| n.span);
                errors.push(unknown_item(id, &ids).at(span.unwrap_or(stage.span)));
            }
        }
        check_gates(header, stage, nodes.get(i).copied(), &mut errors);
    }
    if errors.is_empty()
        && let Some(cycle) = find_cycle(&dependencies(stages))
    {
        let path: Vec<&str> = cycle.iter().map(|&i| names[i]).collect();
        let first = cycle[0];
        errors.push(
            Diagnostic::new(format!("stages depend on each other in a cycle: {}", path.join(" → ")))
                .at(at(first, "needs"))
                .help("a stage without `needs` follows the stage before it; break the cycle by changing one `needs`"),
        );
    }
    check_signoffs(header, root.get("signoffs"), &mut errors);
    errors
}

/// A drill's checklist ids exist, and its gates judge the stack, not a command's output.
fn check_drill(header: &Header, drill: &super::drills::DrillSpec, at: Span, errors: &mut Vec<Diagnostic>) {
    let ids: Vec<&str> = header.checklist.iter().map(|c| c.id.as_str()).collect();
    for id in drill.checklist().into_iter().filter(|id| !ids.contains(&id.as_str())) {
        errors.push(unknown_item(id, &ids).at(at));
    }
    for gate in drill.gates().into_iter().filter(|g| matches!(g.spec, GateSpec::ExitCode(_) | GateSpec::Output(_))) {
        errors.push(
            Diagnostic::new(format!("gates of kind `{}` only work in a `command` stage", gate.kind())).at(gate.span),
        );
    }
}

fn check_environments(header: &Header, stage: &Stage, nodes: &[&Node], i: usize, errors: &mut Vec<Diagnostic>) {
    let known: Vec<&str> = known_environments(&header.environments);
    for (j, env) in stage.common.environments.iter().flatten().enumerate() {
        if !known.contains(&env.as_str()) {
            let span = nodes[i].get("environments").and_then(Node::as_seq).and_then(|s| s.get(j)).map(|n| n.span);
            errors.push(
                Diagnostic::new(format!("unknown environment `{env}`"))
                    .at(span.unwrap_or(stage.span))
                    .expected(format!(
                        "one of {}",
                        known.iter().map(|e| format!("`{e}`")).collect::<Vec<_>>().join(", ")
                    ))
                    .suggest(env, known.iter().copied()),
            );
        }
    }
}

pub fn known_environments<T>(declared: &BTreeMap<String, T>) -> Vec<&str> {
    let mut known: Vec<&str> = declared.keys().map(String::as_str).collect();
    if !known.contains(&super::model::DEFAULT_ENV) {
        known.insert(0, super::model::DEFAULT_ENV);
    }
    known
}

fn check_gates(header: &Header, stage: &Stage, node: Option<&Node>, errors: &mut Vec<Diagnostic>) {
    let gate_nodes: Vec<&Node> =
        node.and_then(|n| n.get("gates")).and_then(Node::as_seq).map(|s| s.iter().collect()).unwrap_or_default();
    let ids: Vec<&str> = header.checklist.iter().map(|c| c.id.as_str()).collect();
    let mut seen: Vec<String> = Vec::new();
    for gate in &stage.gates {
        // Matched by position in the file: an implicit gate has no node of its own.
        let gate_node = gate_nodes.iter().copied().find(|n| n.span == gate.span);
        let span_of = |key: &str| gate_node.and_then(|n| n.get(key)).map(|n| n.span).unwrap_or(gate.span);
        let name = gate.name();
        if seen.contains(&name) {
            errors.push(
                Diagnostic::new(format!("two gates in stage `{}` are named `{name}`", stage.name()))
                    .at(span_of("name"))
                    .help("give each gate a `name:` so the report can tell them apart"),
            );
        }
        seen.push(name);
        let command_only = matches!(gate.spec, GateSpec::ExitCode(_) | GateSpec::Output(_));
        if command_only && !matches!(stage.spec, StageSpec::Command(_) | StageSpec::Migrate(_)) {
            errors.push(
                Diagnostic::new(format!("gates of kind `{}` only work in a `command` or `migrate` stage", gate.kind()))
                    .at(span_of("kind"))
                    .found(format!("stage `{}` of kind `{}`", stage.name(), stage.common.kind)),
            );
        }
        if let GateSpec::Output(o) = &gate.spec
            && o.contains.is_empty()
            && o.not_contains.is_empty()
        {
            errors.push(
                Diagnostic::new("this `output` gate checks nothing, so it could never fail")
                    .at(span_of("kind"))
                    .expected("`contains:` or `not_contains:`"),
            );
        }
        if let Some((key, problem)) = gate.spec.problem() {
            errors.push(Diagnostic::new(problem).at(span_of(key)));
        }
        for (c, id) in gate.common.checklist.iter().enumerate() {
            if !ids.contains(&id.as_str()) {
                let span = gate_node
                    .and_then(|n| n.get("checklist"))
                    .and_then(Node::as_seq)
                    .and_then(|s| s.get(c))
                    .map(|n| n.span);
                errors.push(unknown_item(id, &ids).at(span.unwrap_or(gate.span)));
            }
        }
    }
}

fn check_signoffs(header: &Header, signoffs: Option<&Node>, errors: &mut Vec<Diagnostic>) {
    let ids: Vec<&str> = header.checklist.iter().map(|c| c.id.as_str()).collect();
    let nodes = signoffs.and_then(Node::as_seq).unwrap_or_default();
    for (i, signoff) in header.signoffs.iter().enumerate() {
        if !ids.contains(&signoff.checklist.as_str()) {
            let node = nodes.get(i);
            let span = node.and_then(|n| n.get("checklist")).or(node).or(signoffs).map(|n| n.span);
            let d = unknown_item(&signoff.checklist, &ids);
            errors.push(match span {
                Some(span) => d.at(span),
                None => d,
            });
        }
    }
}

fn unknown_item(id: &str, ids: &[&str]) -> Diagnostic {
    let d = Diagnostic::new(format!("unknown checklist item `{id}`")).expected("an `id` from `checklist:`");
    match nearest(id, ids.iter().copied()) {
        Some(near) => d.help(format!("did you mean `{near}`?")),
        None => d,
    }
}

/// The first cycle found, as a path that starts and ends at the same stage.
fn find_cycle(deps: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut marks = vec![Mark::New; deps.len()];
    for root in 0..deps.len() {
        if marks[root] != Mark::New {
            continue;
        }
        // Iterative DFS: (node, next edge index), so deep chains cannot overflow the stack.
        let mut stack = vec![(root, 0usize)];
        marks[root] = Mark::Open;
        while let Some(&mut (node, ref mut edge)) = stack.last_mut() {
            if let Some(&next) = deps[node].get(*edge) {
                *edge += 1;
                match marks[next] {
                    Mark::New => {
                        marks[next] = Mark::Open;
                        stack.push((next, 0));
                    }
                    Mark::Open => {
                        let start = stack.iter().position(|&(n, _)| n == next).expect("open nodes are on the stack");
                        // The path of "needs" edges, closed by returning to where it began.
                        let mut cycle: Vec<usize> = stack[start..].iter().map(|&(n, _)| n).collect();
                        cycle.push(next);
                        return Some(cycle);
                    }
                    Mark::Done => {}
                }
            } else {
                marks[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_cycle_with_its_whole_path() {
        // 0 needs 1, 1 needs 2, 2 needs 0
        let cycle = find_cycle(&[vec![1], vec![2], vec![0]]).unwrap();
        assert_eq!(cycle.len(), 4);
        assert_eq!(cycle.first(), cycle.last());
    }

    #[test]
    fn no_cycle_in_a_chain() {
        assert_eq!(find_cycle(&[vec![], vec![0], vec![1]]), None);
    }
}
