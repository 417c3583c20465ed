//! `playbook show`: a readable summary of a loaded playbook.

use std::fmt::Write as _;

use super::{HookList, InputSpec, InputType, Playbook, TaskSpec};
use crate::template::stringify;

/// Whether `playbook run` fails unless the input is given on the command line: `required`
/// inputs that are neither data-bound nor dynamic (those are exempt, as in Choria). A
/// Boolean input without a default is required too, so its flag must be given.
pub(crate) fn must_be_given(input: &InputSpec) -> bool {
    input.required && input.data.is_none() && !input.dynamic
}

/// Renders the summary printed by `playbook show`.
pub fn render(pb: &Playbook) -> String {
    let mut out = String::new();
    let m = &pb.metadata;
    let _ = writeln!(out, "Playbook: {} version {}", m.name, m.version);
    let _ = writeln!(out, "  file:        {}", pb.file.display());
    let _ = writeln!(out, "  author:      {}", m.author);
    let _ = writeln!(out, "  description: {}", m.description);
    let _ = writeln!(out, "  run_as:      {}", m.run_as);
    let _ = writeln!(out, "  loglevel:    {}", m.loglevel);
    if !m.tags.is_empty() {
        let _ = writeln!(out, "  tags:        {}", m.tags.join(", "));
    }
    if !pb.uses.is_empty() {
        let _ = writeln!(out, "\nUses:");
        for (agent, range) in &pb.uses {
            let _ = writeln!(out, "  {agent} {}", stringify(range));
        }
    }
    if !pb.inputs.is_empty() {
        let _ = writeln!(out, "\nInputs:");
        for i in &pb.inputs {
            let flag = match (i.dynamic, i.ty) {
                (true, _) | (false, None) => "(dynamic, no flag)".to_string(),
                (false, Some(InputType::Boolean)) => format!("--{}", i.name.to_ascii_lowercase()),
                (false, Some(InputType::Array)) => format!(
                    "--{} {} (repeatable)",
                    i.name.to_ascii_lowercase(),
                    i.name.to_ascii_uppercase()
                ),
                (false, Some(_)) => format!(
                    "--{} {}",
                    i.name.to_ascii_lowercase(),
                    i.name.to_ascii_uppercase()
                ),
            };
            let mut notes = Vec::new();
            if let Some(t) = i.ty {
                notes.push(t.name().to_string());
            }
            if must_be_given(i) {
                notes.push(match i.ty {
                    Some(InputType::Boolean) => "required: the flag must be given".into(),
                    Some(
                        InputType::String
                        | InputType::Integer
                        | InputType::Float
                        | InputType::Numeric
                        | InputType::Array,
                    )
                    | None => "required".into(),
                });
            } else if i.data.is_some() || i.dynamic {
                notes.push("optional (data-bound)".into());
            }
            if let Some(d) = &i.default {
                if i.sensitive {
                    notes.push(format!("default: {}", crate::log::MASK));
                } else {
                    notes.push(format!("default: {}", stringify(d)));
                }
            }
            if let Some(d) = &i.data {
                notes.push(format!("data: {d}"));
            }
            if i.save {
                notes.push("saved".into());
            }
            if i.sensitive {
                notes.push("sensitive".into());
            }
            let _ = writeln!(out, "  {flag}  {} [{}]", i.description, notes.join(", "));
        }
    }
    if !pb.data_stores.is_empty() {
        let _ = writeln!(out, "\nData stores:");
        for s in &pb.data_stores {
            let _ = writeln!(out, "  {} ({})", s.name, s.kind);
        }
    }
    if !pb.locks.is_empty() {
        let _ = writeln!(out, "\nLocks: {}", pb.locks.join(", "));
    }
    if !pb.nodes.is_empty() {
        let _ = writeln!(out, "\nNode sets:");
        for n in &pb.nodes {
            let _ = writeln!(out, "  {} ({})", n.name, n.kind);
        }
    }
    let _ = writeln!(out, "\nTasks:");
    write_tasks(&mut out, &pb.tasks);
    for list in HookList::ALL {
        let tasks = pb.hooks.get(list);
        if !tasks.is_empty() {
            let _ = writeln!(out, "\nHook {}:", list.name());
            write_tasks(&mut out, tasks);
        }
    }
    out
}

fn write_tasks(out: &mut String, tasks: &[TaskSpec]) {
    if tasks.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for (i, t) in tasks.iter().enumerate() {
        let mut extra = Vec::new();
        if t.tries > 1 {
            extra.push(format!("tries {} every {}s", t.tries, t.try_sleep));
        }
        if t.fail_ok {
            extra.push("fail_ok".into());
        }
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!(" [{}]", extra.join(", "))
        };
        let _ = writeln!(
            out,
            "  {:>3}. {:<14} {}{extra}",
            i + 1,
            t.kind.name(),
            t.raw_description()
        );
    }
}
