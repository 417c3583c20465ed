//! Checks the `inputs:` section.

use serde_json::Value;

use super::{InputSpec, InputType};
use crate::diagnostic::{Diagnostics, did_you_mean};
use crate::validator::Validator;
use crate::yaml::{Kind, Node};

const INPUT_PROPS: &[&str] = &[
    "description",
    "type",
    "required",
    "default",
    "validation",
    "data",
    "dynamic",
    "save",
    "sensitive",
];

/// Names of fixed flags that inputs may not shadow.
pub(crate) const RESERVED_FLAGS: &[&str] = &[
    "report", "loglevel", "json", "dry-run", "dry_run", "help", "version",
];

/// Type spellings accepted (the first ones are Choria's; the rest are harmless leniency).
fn parse_type(text: &str) -> Option<InputType> {
    match text {
        "String" | ":string" | "string" => Some(InputType::String),
        "Integer" | "Fixnum" | ":fixnum" | ":integer" | "integer" => Some(InputType::Integer),
        "Float" | ":float" | "float" => Some(InputType::Float),
        "Numeric" | ":numeric" | "numeric" => Some(InputType::Numeric),
        "Array" | ":array" | "array" => Some(InputType::Array),
        "Boolean" | ":bool" | ":boolean" | "boolean" | "bool" => Some(InputType::Boolean),
        _ => None,
    }
}

const TYPE_NAMES: &[&str] = &["String", "Integer", "Float", "Numeric", "Array", "Boolean"];

fn is_flag_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn bool_prop(diags: &mut Diagnostics, node: &Node, what: &str) -> bool {
    match &node.kind {
        Kind::Bool(b) => *b,
        Kind::Str { text, .. } if text == "true" || text == "false" => text == "true",
        _ => {
            diags.error(
                node.mark,
                format!("{what} should be a boolean, got {}", node.type_name()),
            );
            false
        }
    }
}

/// Checks one input declaration.
pub(crate) fn check_input(
    diags: &mut Diagnostics,
    key: &Node,
    body: &Node,
    stores: Option<&[String]>,
) -> Option<InputSpec> {
    let name = key.key_text();
    if !is_flag_name(&name) {
        diags.error(
            key.mark,
            format!("Input name {name} is not valid: use letters, digits, _ and -"),
        );
    }
    if RESERVED_FLAGS.contains(&name.to_ascii_lowercase().as_str()) {
        diags.error(
            key.mark,
            format!("Input {name} clashes with the built-in --{name} flag"),
        );
    }
    let Some(pairs) = body.as_map() else {
        diags.error(
            body.mark,
            format!("input {name} should be a hash, got {}", body.type_name()),
        );
        return None;
    };
    for (k, _) in pairs {
        let prop = k.key_text();
        if !INPUT_PROPS.contains(&prop.as_str()) {
            diags.warning(
                k.mark,
                format!(
                    "unknown property {prop} in input {name}, it will be ignored{}",
                    did_you_mean(&prop, INPUT_PROPS.iter().copied())
                ),
            );
        }
    }
    let get = |p: &str| body.get(p).filter(|n| !matches!(n.kind, Kind::Null));
    let dynamic = get("dynamic").is_some_and(|n| bool_prop(diags, n, "dynamic"));
    let save = get("save").is_some_and(|n| bool_prop(diags, n, "save"));
    let sensitive = get("sensitive").is_some_and(|n| bool_prop(diags, n, "sensitive"));
    let description = get("description").map(Node::key_text).unwrap_or_default();

    let ty = match get("type") {
        Some(node) => {
            let text = node.key_text();
            match parse_type(&text) {
                Some(t) => Some(t),
                None => {
                    diags.error(
                        node.mark,
                        format!(
                            "Invalid input type {text} given for input {name}{}",
                            did_you_mean(&text, TYPE_NAMES.iter().copied())
                        ),
                    );
                    None
                }
            }
        }
        None if dynamic => None,
        None => {
            diags.error(
                body.mark,
                format!("Invalid input type  given for input {name}: a type is needed"),
            );
            None
        }
    };

    let data = match get("data") {
        Some(node) => match node.as_str() {
            Some(path) => {
                check_data_path(diags, node, path, stores);
                Some(path.to_string())
            }
            None => {
                diags.error(
                    node.mark,
                    format!("data of input {name} should be a string"),
                );
                None
            }
        },
        None => None,
    };
    if dynamic && data.is_none() {
        diags.error(
            body.mark,
            format!("Input {name} is dynamic but has no data source"),
        );
    }
    if save && data.is_none() {
        diags.warning(
            body.mark,
            format!("Input {name} has save: true but no data source to save to"),
        );
    }

    let validation = match get("validation") {
        Some(node) => match &node.kind {
            Kind::Seq(items) => Some(Validator::OneOf(items.iter().map(Node::to_value).collect())),
            Kind::Str { text, .. } => match Validator::from_spec(text) {
                Ok(v) => Some(v),
                Err(e) => {
                    diags.error(node.mark, format!("input {name}: {e}"));
                    None
                }
            },
            Kind::Int(_) | Kind::Float(_) | Kind::Bool(_) => {
                match Validator::from_spec(&node.key_text()) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        diags.error(node.mark, format!("input {name}: {e}"));
                        None
                    }
                }
            }
            Kind::Null | Kind::Map(_) => {
                diags.error(
                    node.mark,
                    format!("validation of input {name} should be a string or a list"),
                );
                None
            }
        },
        None => None,
    };

    let default = get("default").map(Node::to_value);
    if let (Some(InputType::Array), Some(d)) = (ty, &default)
        && !matches!(d, Value::Array(_))
    {
        diags.warning(
            body.mark,
            format!("default of Array input {name} is not a list"),
        );
    }
    // Deliberate change: an input with a default is optional unless `required: true` is written.
    let required = match get("required") {
        Some(node) => bool_prop(diags, node, "required"),
        None => default.is_none(),
    };

    Some(InputSpec {
        name,
        description,
        ty,
        required,
        default,
        validation,
        data,
        dynamic,
        save,
        sensitive,
        mark: key.mark,
    })
}

/// Checks a `store/key` path against the declared stores (when known).
pub(crate) fn check_data_path(
    diags: &mut Diagnostics,
    node: &Node,
    path: &str,
    stores: Option<&[String]>,
) {
    match crate::store::split_path(path) {
        Ok((store, _)) => {
            if let Some(known) = stores
                && !known.iter().any(|s| s == store)
            {
                diags.error(
                    node.mark,
                    format!(
                        "Unknown data store {store}{}",
                        did_you_mean(store, known.iter().map(String::as_str))
                    ),
                );
            }
        }
        Err(e) => diags.error(node.mark, e.to_string()),
    }
}
