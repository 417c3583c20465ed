//! Input values at run time: command-line values, data-store bindings and defaults.

use serde_json::Value;

use super::{Run, RunError};
use crate::spec::InputSpec;

/// Ruby truthiness: everything except `nil` and `false`.
fn truthy(v: &Value) -> bool {
    !matches!(v, Value::Null | Value::Bool(false))
}

impl Run<'_> {
    /// Dynamic inputs are read from their store on every reference.
    pub(super) fn is_dynamic(&self, input: &InputSpec) -> bool {
        input.dynamic || (input.data.is_some() && !self.opts.values.contains_key(&input.name))
    }

    /// Masks sensitive command-line values and defaults from the start.
    pub(super) fn register_secrets(&self) {
        for input in self.pb.inputs.iter().filter(|i| i.sensitive) {
            let given = self.opts.values.get(&input.name);
            for v in given.into_iter().chain(input.default.as_ref()) {
                self.add_secret_value(v);
            }
        }
    }

    fn add_secret_value(&self, v: &Value) {
        match v {
            Value::Array(items) => {
                for i in items {
                    self.add_secret_value(i);
                }
            }
            Value::Null | Value::Bool(_) => {}
            other => self.log.add_secret(&crate::template::stringify(other)),
        }
    }

    /// Validates command-line values and checks required inputs.
    pub(super) fn check_cli_inputs(&self) -> Result<(), RunError> {
        for (name, value) in &self.opts.values {
            let Some(input) = self.pb.input(name) else {
                return Err(RunError::Input(format!("Unknown input {name}")));
            };
            if input.dynamic {
                self.log.warn(
                    "prep.inputs",
                    format!(
                        "Input {name} is dynamic, ignoring the value given on the command line"
                    ),
                );
                continue;
            }
            if let Some(validator) = &input.validation {
                let items: Vec<&Value> = match value {
                    Value::Array(items) => items.iter().collect(),
                    other => vec![other],
                };
                for item in items {
                    validator.check(item).map_err(|e| {
                        RunError::Input(format!("Failed to validate value for input {name}: {e}"))
                    })?;
                }
            }
        }
        let missing: Vec<&str> = self
            .pb
            .inputs
            .iter()
            .filter(|i| crate::spec::show::must_be_given(i))
            .filter(|i| !self.opts.values.get(&i.name).is_some_and(truthy))
            .map(|i| i.name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(RunError::Input(format!(
                "Values were required but not given for inputs: {}",
                missing.join(", ")
            )));
        }
        Ok(())
    }

    /// Writes `save: true` inputs given on the command line to their data stores.
    pub(super) async fn save_inputs(&self) -> Result<(), RunError> {
        for input in &self.pb.inputs {
            let (true, false, Some(path)) = (input.save, input.dynamic, &input.data) else {
                continue;
            };
            let Some(value) = self.opts.values.get(&input.name).filter(|v| truthy(v)) else {
                continue;
            };
            let context = || RunError::store(format!("saving input {} to {path}", input.name));
            let (store, key, _) = self.stores.resolve(path).map_err(context())?;
            store.write(key, value).await.map_err(context())?;
            self.log.debug(
                "prep.inputs",
                format!("Saved input {} to {path}", input.name),
            );
        }
        Ok(())
    }

    /// The value of an input for a template reference.
    pub(super) async fn input_value(&self, name: &str, from: &str) -> Result<Value, RunError> {
        let Some(input) = self.pb.input(name) else {
            return Err(RunError::Template(format!("Unknown input {name}")));
        };
        if !self.is_dynamic(input) {
            // An absent Boolean flag means false (a deliberate change from Choria).
            let absent_flag =
                (input.ty == Some(crate::spec::InputType::Boolean)).then_some(Value::Bool(false));
            return self
                .opts
                .values
                .get(name)
                .cloned()
                .or_else(|| input.default.clone())
                .or(absent_flag)
                .ok_or_else(|| {
                    RunError::Input(format!("Input {name} has no value, data source or default"))
                });
        }
        let Some(path) = &input.data else {
            return input.default.clone().ok_or_else(|| {
                RunError::Input(format!("Input {name} has no value, data source or default"))
            });
        };
        let read = async {
            // The caller's message names the path and the input.
            let plain = |e: crate::store::StoreError| RunError::Input(e.to_string());
            let (store, key, _) = self.stores.resolve(path).map_err(plain)?;
            let value = store.read(key).await.map_err(plain)?;
            if let Some(v) = &input.validation {
                v.check(&value).map_err(|e| {
                    RunError::Input(format!("Failed to validate value for input {name}: {e}"))
                })?;
            }
            Ok::<Value, RunError>(value)
        };
        match read.await {
            Ok(value) => {
                if input.sensitive {
                    self.add_secret_value(&value);
                }
                Ok(value)
            }
            Err(e) => match &input.default {
                Some(d) => {
                    self.log.warn(
                        from,
                        format!("Could not find {path}, returning default value: {e}"),
                    );
                    Ok(d.clone())
                }
                None => Err(RunError::Input(format!(
                    "Could not resolve {path} for input {name}: {e}"
                ))),
            },
        }
    }
}
