//! Property tables for data stores, node sets and tasks, checked in the **spec** stage.
//!
//! Each kind lists its properties with a [`Shape`]. A string containing a template (`{{`) is
//! accepted for any shape because its real type is only known after expansion.

use crate::diagnostic::{Diagnostics, did_you_mean};
use crate::yaml::{Kind, Node};

/// The expected YAML shape of a property value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Any scalar (numbers and booleans are read as their text).
    Str,
    /// An integer.
    Int,
    /// An integer or a float.
    Number,
    /// A boolean.
    Bool,
    /// A list of anything.
    List,
    /// A list of scalars, or a single string.
    StrList,
    /// A mapping.
    Map,
    /// Anything at all.
    Any,
}

/// One property of a kind.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prop {
    pub(crate) name: &'static str,
    pub(crate) shape: Shape,
    pub(crate) required: bool,
}

/// An optional property.
pub(crate) const fn opt(name: &'static str, shape: Shape) -> Prop {
    Prop {
        name,
        shape,
        required: false,
    }
}

/// A required property.
pub(crate) const fn req(name: &'static str, shape: Shape) -> Prop {
    Prop {
        name,
        shape,
        required: true,
    }
}

fn is_template(node: &Node) -> bool {
    node.as_str().is_some_and(|s| s.contains("{{"))
}

fn is_scalar(node: &Node) -> bool {
    matches!(
        node.kind,
        Kind::Str { .. } | Kind::Int(_) | Kind::Float(_) | Kind::Bool(_)
    )
}

/// Whether `node` has the expected shape.
pub(crate) fn fits(node: &Node, shape: Shape) -> bool {
    if is_template(node) {
        return true;
    }
    match shape {
        Shape::Str => is_scalar(node),
        Shape::Int => matches!(node.kind, Kind::Int(_)),
        Shape::Number => matches!(node.kind, Kind::Int(_) | Kind::Float(_)),
        Shape::Bool => matches!(node.kind, Kind::Bool(_)),
        Shape::List => matches!(node.kind, Kind::Seq(_)),
        Shape::StrList => match &node.kind {
            Kind::Seq(items) => items.iter().all(is_scalar),
            Kind::Str { .. } => true,
            Kind::Null | Kind::Bool(_) | Kind::Int(_) | Kind::Float(_) | Kind::Map(_) => false,
        },
        Shape::Map => matches!(node.kind, Kind::Map(_)),
        Shape::Any => true,
    }
}

/// Human name of a shape for messages.
pub(crate) fn shape_name(shape: Shape) -> &'static str {
    match shape {
        Shape::Str => "a string",
        Shape::Int => "an integer",
        Shape::Number => "a number",
        Shape::Bool => "a boolean",
        Shape::List => "a list",
        Shape::StrList => "a list of strings",
        Shape::Map => "a hash",
        Shape::Any => "anything",
    }
}

/// Checks a mapping against property tables: unknown keys warn (with a suggestion), missing
/// required keys and wrong shapes are errors.
pub(crate) fn check_props(diags: &mut Diagnostics, map: &Node, tables: &[&[Prop]], what: &str) {
    let Some(pairs) = map.as_map() else {
        diags.error(
            map.mark,
            format!("{what} should be a hash, got {}", map.type_name()),
        );
        return;
    };
    let all = || tables.iter().flat_map(|t| t.iter());
    for (key, value) in pairs {
        let name = key.key_text();
        match all().find(|p| p.name == name) {
            Some(prop) => {
                if !fits(value, prop.shape) {
                    diags.error(
                        value.mark,
                        format!(
                            "{what} property {name} should be {}, got {}",
                            shape_name(prop.shape),
                            value.type_name()
                        ),
                    );
                }
            }
            None => diags.warning(
                key.mark,
                format!(
                    "unknown property {name} in {what}, it will be ignored{}",
                    did_you_mean(&name, all().map(|p| p.name))
                ),
            ),
        }
    }
    for prop in all().filter(|p| p.required) {
        let present = pairs
            .iter()
            .any(|(k, v)| k.key_text() == prop.name && !matches!(v.kind, Kind::Null));
        if !present {
            diags.error(map.mark, format!("{what} needs the property {}", prop.name));
        }
    }
}
