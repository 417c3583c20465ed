//! Expanding and checking properties at run time: the one path from a declaration's
//! untemplated property map to its typed properties (and, for tasks, to the runnable task).

use serde_json::{Map, Value};

use super::{Run, RunError};
use crate::schema::nodes::NodeSetProps;
use crate::schema::stores::StoreProps;
use crate::schema::tasks::TaskProps;
use crate::schema::{Problem, PropsError, PropsSection, without_nulls};
use crate::spec::{NodeSetSpec, StoreSpec, TaskSpec};
use crate::task::Task;
use crate::yaml::Mark;

impl Run<'_> {
    /// Expands `props` and deserialises them with `parse`; a problem names the declaration.
    async fn typed<T>(
        &self,
        props: &Map<String, Value>,
        from: &str,
        at: (Mark, PropsSection, &str),
        parse: impl FnOnce(&Value) -> Result<T, Problem>,
    ) -> Result<T, RunError> {
        let (mark, section, what) = at;
        let value = without_nulls(self.expand(&Value::Object(props.clone()), from).await?);
        parse(&value).map_err(|p| {
            RunError::Props(PropsError::from_problem(
                &self.pb.file,
                mark,
                section,
                what,
                &value,
                &p,
            ))
        })
    }

    /// The templated properties of a data store.
    pub(super) async fn store_props(&self, spec: &StoreSpec) -> Result<StoreProps, RunError> {
        let what = format!("data store {}", spec.name);
        self.typed(
            &spec.props,
            "pre.stores",
            (spec.mark, PropsSection::Store, &what),
            |v| StoreProps::parse(spec.kind, v),
        )
        .await
    }

    /// The templated properties of a node set.
    pub(super) async fn node_set_props(
        &self,
        spec: &NodeSetSpec,
    ) -> Result<NodeSetProps, RunError> {
        let what = format!("node set {}", spec.name);
        self.typed(
            &spec.props,
            &spec.name,
            (spec.mark, PropsSection::NodeSet, &what),
            |v| NodeSetProps::parse(spec.kind, v),
        )
        .await
    }

    /// Templates a task's properties for one attempt and builds the task.
    pub(super) async fn build_task(
        &self,
        spec: &TaskSpec,
        list: &str,
        from: &str,
    ) -> Result<Box<dyn Task>, RunError> {
        let what = format!("{list} {} task", spec.kind);
        let props = self
            .typed(
                &spec.props,
                from,
                (spec.mark, PropsSection::Task, &what),
                |v| TaskProps::parse(spec.kind, v),
            )
            .await?;
        crate::task::build(&props).map_err(|e| {
            RunError::Props(PropsError::new(
                &self.pb.file,
                spec.mark,
                PropsSection::Task,
                format!("{what}: {e}"),
            ))
        })
    }
}
