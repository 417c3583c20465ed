//! Running task lists: attempts, retries, `fail_ok`, `pre_task`/`post_task` hooks and
//! `previous_task` bookkeeping.

use std::time::Instant;

use chrono::Utc;
use serde_json::Value;

use super::interrupt::TASK_GRACE;
use super::{Previous, Run, RunError, round2};
use crate::report::TaskRecord;
use crate::spec::{HookList, TaskSpec};
use crate::task::{TaskContext, TaskOutcome};

impl Run<'_> {
    /// Runs a hook list; stops at the first failure. Returns whether all passed.
    pub(super) async fn run_hooks(&mut self, list: HookList) -> Result<bool, RunError> {
        let tasks = self.pb.hooks.get(list);
        if tasks.is_empty() {
            return Ok(true);
        }
        let name = list.name();
        self.log.info(
            name,
            format!("About to run task set {name} with {} task(s)", tasks.len()),
        );
        for spec in tasks {
            if self.stopping(name) || !self.run_single(spec, name, None).await? {
                self.log.info(
                    name,
                    format!(
                        "Done running task set {name} with {} task(s): success: false",
                        tasks.len()
                    ),
                );
                return Ok(false);
            }
        }
        self.log.info(
            name,
            format!(
                "Done running task set {name} with {} task(s): success: true",
                tasks.len()
            ),
        );
        Ok(true)
    }

    /// Runs the main task list with `pre_task`/`post_task` hooks around each task.
    pub(super) async fn run_main_tasks(&mut self) -> Result<bool, RunError> {
        let tasks = &self.pb.tasks;
        self.log.info(
            "tasks",
            format!("About to run task set tasks with {} task(s)", tasks.len()),
        );
        for (index, spec) in tasks.iter().enumerate() {
            if self.stopping("tasks") {
                return Ok(false);
            }
            self.progress.0 = index + 1;
            let mut ok = self.run_main_task(spec).await?;
            if let Some(why) = self.lock_lost() {
                self.log.error(
                    "tasks",
                    format!("Playbook lock lost during the run, failing the playbook: {why}"),
                );
                ok = false;
            }
            if !ok {
                self.log.info(
                    "tasks",
                    format!(
                        "Done running task set tasks with {} task(s): success: false",
                        tasks.len()
                    ),
                );
                return Ok(false);
            }
        }
        self.log.info(
            "tasks",
            format!(
                "Done running task set tasks with {} task(s): success: true",
                tasks.len()
            ),
        );
        Ok(true)
    }

    /// Whether running tasks must stop; logs that the list stops.
    fn stopping(&self, list: &str) -> bool {
        if !self.cancel.is_cancelled() {
            return false;
        }
        self.log.warn(
            list,
            format!(
                "Interrupted by {}: starting no further task in {list}",
                self.stop_reason()
            ),
        );
        true
    }

    /// What is stopping the running tasks: the signal, or the cleanup deadline after it.
    fn stop_reason(&self) -> String {
        match (self.cleaning_up, self.opts.interrupt.signal()) {
            (true, _) => format!(
                "the {}s cleanup deadline",
                super::CLEANUP_DEADLINE.as_secs()
            ),
            (false, Some(s)) => s.name().to_string(),
            (false, None) => "a stop request".to_string(),
        }
    }

    /// Sleeps unless the run is being stopped; returns whether it slept the whole time.
    async fn sleep(&self, secs: f64) -> bool {
        tokio::select! {
            () = tokio::time::sleep(crate::seconds(secs)) => true,
            () = self.cancel.cancelled() => false,
        }
    }

    async fn run_main_task(&mut self, spec: &TaskSpec) -> Result<bool, RunError> {
        // As in Choria, the description is templated before the pre_task hooks run.
        let description = self.description(spec, "tasks").await?;
        if !self.run_hooks(HookList::PreTask).await? {
            self.log.error(
                "tasks",
                "Failing task because a critical pre_task hook failed",
            );
            return Ok(false);
        }
        let mut success = self.run_single(spec, "tasks", Some(description)).await?;
        if !self.run_hooks(HookList::PostTask).await? {
            self.log.error(
                "tasks",
                "Failing task because a critical post_task hook failed",
            );
            success = false;
        }
        Ok(success)
    }

    async fn description(&self, spec: &TaskSpec, list: &str) -> Result<String, RunError> {
        let from = format!("{list}.{}", spec.kind);
        Ok(
            match self
                .expand(&Value::String(spec.raw_description()), &from)
                .await?
            {
                Value::String(s) => s,
                other => crate::template::stringify(&other),
            },
        )
    }

    /// Runs one task with its retries. Returns whether it (finally) succeeded.
    async fn run_single(
        &mut self,
        spec: &TaskSpec,
        list: &str,
        description: Option<String>,
    ) -> Result<bool, RunError> {
        let from = format!("{list}.{}", spec.kind);
        let description = match description {
            Some(d) => d,
            None => self.description(spec, list).await?,
        };
        self.log
            .info(&from, format!("About to run task: {description}"));
        if list == "tasks" {
            self.log
                .console()
                .task_started(self.progress.0, self.progress.1, &description);
        }
        if spec.pre_sleep > 0.0 && !self.sleep(spec.pre_sleep).await {
            return Ok(false);
        }
        let mut outcome = TaskOutcome::failed("Task did not run", Vec::new());
        let mut runtime = 0.0;
        for attempt in 1..=spec.tries {
            let task = self.build_task(spec, list, &from).await?;
            let start_time = Utc::now();
            let started = Instant::now();
            let cancel = self.cancel.clone();
            outcome = {
                let ctx = TaskContext {
                    playbook: &self.pb.metadata.name,
                    run_as: &self.pb.metadata.run_as,
                    description: &description,
                    from: &from,
                    log: &self.log,
                    stores: &self.stores,
                    env: &self.env,
                    http: &self.http,
                    broker: &self.broker,
                    cancel: &cancel,
                };
                let attempt = task.run(&ctx);
                tokio::pin!(attempt);
                tokio::select! {
                    biased;
                    outcome = &mut attempt => outcome,
                    () = cancel.cancelled() => {
                        // The task sees the same token; give it a moment to stop on its own.
                        match tokio::time::timeout(TASK_GRACE, &mut attempt).await {
                            Ok(outcome) => outcome,
                            Err(_) => TaskOutcome::failed("Task stopped", Vec::new()),
                        }
                    }
                }
            };
            runtime = started.elapsed().as_secs_f64();
            let stopped = cancel.is_cancelled();
            if stopped && !outcome.success {
                outcome.msg = format!("Interrupted by {}: {}", self.stop_reason(), outcome.msg);
            }
            if spec.fail_ok && spec.tries == 1 && !outcome.success && !stopped {
                self.log.warn(
                    &from,
                    format!(
                        "Task failed but fail_ok is true, treating as success: {}",
                        outcome.msg
                    ),
                );
                outcome.success = true;
            }
            self.record(spec, list, &description, start_time, runtime, &outcome);
            if outcome.success || stopped {
                break;
            }
            if attempt < spec.tries {
                self.log.warn(
                    &from,
                    format!(
                        "Task failed on try {attempt}/{}, sleeping {}s: {}",
                        spec.tries, spec.try_sleep, outcome.msg
                    ),
                );
                if !self.sleep(spec.try_sleep).await {
                    break;
                }
            }
        }
        let level_msg = format!(
            "{}: {}",
            if outcome.success { "success" } else { "failed" },
            outcome.msg
        );
        if outcome.success {
            self.log.info(&from, level_msg);
        } else {
            self.log.error(&from, level_msg);
        }
        self.log.console().task_finished(
            list,
            spec.kind.name(),
            &self.log.mask(&description),
            outcome.success,
            round2(runtime),
        );
        Ok(outcome.success)
    }

    fn record(
        &mut self,
        spec: &TaskSpec,
        list: &str,
        description: &str,
        start_time: chrono::DateTime<Utc>,
        runtime: f64,
        outcome: &TaskOutcome,
    ) {
        let end_time = Utc::now();
        self.records.push(TaskRecord {
            kind: spec.kind.name().to_string(),
            set: list.to_string(),
            description: self.log.mask(description),
            start_time,
            end_time,
            run_time: round2(runtime),
            ran: true,
            msg: self.log.mask(&outcome.msg),
            success: outcome.success,
        });
        self.previous = Some(Previous {
            success: outcome.success,
            msg: outcome.msg.clone(),
            description: description.to_string(),
            data: outcome.data.clone(),
            runtime,
        });
    }

    /// `--dry-run`: prints what each task of each list would do.
    pub(super) async fn dry_run(&mut self) -> Result<bool, RunError> {
        let console = self.log.console();
        for (name, nodes) in &self.nodes {
            console.say(&format!("node set {name}: {}", nodes.join(", ")));
        }
        let lists: Vec<(&str, &[TaskSpec])> = vec![
            ("pre_book", self.pb.hooks.get(HookList::PreBook)),
            ("pre_task", self.pb.hooks.get(HookList::PreTask)),
            ("tasks", self.pb.tasks.as_slice()),
            ("post_task", self.pb.hooks.get(HookList::PostTask)),
            ("on_success", self.pb.hooks.get(HookList::OnSuccess)),
            ("on_fail", self.pb.hooks.get(HookList::OnFail)),
            ("post_book", self.pb.hooks.get(HookList::PostBook)),
        ];
        for (list, tasks) in lists {
            for (i, spec) in tasks.iter().enumerate() {
                let from = format!("{list}.{}", spec.kind);
                let description = self
                    .expand(&Value::String(spec.raw_description()), &from)
                    .await?;
                let task = self.build_task(spec, list, &from).await?;
                let line = format!(
                    "would run {list}[{}] {}: {}",
                    i + 1,
                    crate::template::stringify(&description),
                    task.describe()
                );
                self.log.console().say(&self.log.mask(&line));
            }
        }
        Ok(true)
    }
}
