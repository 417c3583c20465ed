//! The **execute** stage: Choria's run order and failure rules.
//!
//! Order: inputs → data stores → locks → saved inputs → uses → node sets → `pre_book` →
//! `tasks` (each with `pre_task`/`post_task`) → `on_success` or `on_fail` → `post_book`.
//! Task failures follow the hook rules; errors outside a task's execution (template errors,
//! property errors, store/lock/discovery errors) abort the run, skipping later hooks.
//! Locks are always released at the end (a deliberate change: Choria leaked them on aborts),
//! and are taken before inputs are saved (Choria saved first).
//!
//! SIGINT/SIGTERM ([`Interrupt`]): no further task starts, the running one is stopped,
//! `on_fail` and `post_book` run under [`CLEANUP_DEADLINE`], and the outcome is
//! "interrupted".

mod inputs;
mod interrupt;
mod props;
mod tasks;

pub use interrupt::{CLEANUP_DEADLINE, Interrupt, StopSignal, listen};

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::Utc;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::console::Console;
use crate::log::{Level, RunLog};
use crate::nodes::NodeSetError;
use crate::report::{InputsInfo, Metrics, Outcome, PlaybookInfo, Report, ReportHeader, TaskRecord};
use crate::schema::{PropsError, PropsSection};
use crate::spec::{HookList, InputType, Playbook};
use crate::store::{EnvOverlay, Lock, StoreError, Stores};
use crate::task::{HttpClients, TaskError};
use crate::template::{Expr, Renderer, TemplateError};

/// Default lock acquisition timeout in seconds.
const DEFAULT_LOCK_TIMEOUT: f64 = 120.0;

/// What the caller decided about the run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Values given on the command line, already converted to their input types.
    pub values: BTreeMap<String, Value>,
    /// Overrides the playbook's `loglevel`.
    pub loglevel: Option<Level>,
    /// Resolve everything and print what each task would do, without doing it.
    pub dry_run: bool,
    /// Human output goes to stderr (stdout is reserved for JSON).
    pub json: bool,
    /// Where the Choria broker is.
    pub broker: crate::choria::BrokerSettings,
    /// Where PuppetDB is (for `pql` node sets).
    pub puppetdb: crate::puppetdb::PuppetDbSettings,
    /// Triggered by SIGINT or SIGTERM (see [`listen`]).
    pub interrupt: Interrupt,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// Overall success.
    pub success: bool,
    /// The signal that interrupted the run, if one did.
    pub interrupted: Option<StopSignal>,
    /// The report.
    pub report: Report,
}

/// Errors that abort a run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A template could not be expanded.
    #[error("{0}")]
    Template(String),
    /// An input problem.
    #[error("{0}")]
    Input(String),
    /// A data store or lock problem.
    #[error("{context}: {source}")]
    Store {
        /// What the run was doing: `data store NAME (KIND) at FILE:LINE:COL`, `lock PATH`,
        /// `saving input NAME to PATH`.
        context: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// A node set problem.
    #[error(transparent)]
    Nodes(#[from] NodeSetError),
    /// A task property problem.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// Properties that are wrong after templating, with the declaration's position.
    #[error(transparent)]
    Props(#[from] PropsError),
    /// A signal stopped the run before its tasks started.
    #[error("interrupted by {0}")]
    Interrupted(StopSignal),
}

impl From<TemplateError> for RunError {
    fn from(e: TemplateError) -> Self {
        Self::Template(e.to_string())
    }
}

impl RunError {
    /// A store error with what the run was doing.
    pub(crate) fn store(context: impl Into<String>) -> impl FnOnce(StoreError) -> Self {
        let context = context.into();
        move |source| Self::Store { context, source }
    }

    fn class(&self) -> &'static str {
        match self {
            Self::Template(_) => "TemplateError",
            Self::Input(_) => "InputError",
            Self::Store { .. } => "DataStoreError",
            Self::Nodes(_) => "NodeSetError",
            Self::Task(_) => "TaskValidationError",
            Self::Props(e) => match e.section {
                PropsSection::Store => "DataStoreError",
                PropsSection::NodeSet => "NodeSetError",
                PropsSection::Task => "TaskValidationError",
            },
            Self::Interrupted(_) => "Interrupted",
        }
    }
}

/// The last task outcome, for `previous_task`.
#[derive(Debug, Clone)]
pub(crate) struct Previous {
    success: bool,
    msg: String,
    description: String,
    data: Vec<Value>,
    runtime: f64,
}

pub(crate) struct Run<'a> {
    pb: &'a Playbook,
    log: RunLog,
    opts: RunOptions,
    stores: Stores,
    env: EnvOverlay,
    nodes: BTreeMap<String, Vec<String>>,
    records: Vec<TaskRecord>,
    previous: Option<Previous>,
    started: Instant,
    renderer: Renderer,
    http: HttpClients,
    /// Held locks with their `store/key` paths.
    locks: Vec<(String, Box<dyn Lock>)>,
    broker: crate::choria::Broker,
    /// PuppetDB for `pql` node sets (connected on first query).
    puppetdb: crate::puppetdb::PuppetDb,
    /// The templated top-level `uses` (agent → version range).
    uses: BTreeMap<String, String>,
    /// Main tasks finished so far and in total (for the spinner).
    progress: (usize, usize),
    /// Cancelled when running tasks must stop: the interrupt's token, then after an
    /// interruption a cleanup token cancelled at [`CLEANUP_DEADLINE`].
    cancel: CancellationToken,
    /// Whether `on_fail` and `post_book` have started (they run at most once each).
    on_fail_started: bool,
    post_book_started: bool,
    /// Whether `on_fail`/`post_book` run after an interruption (under the cleanup deadline).
    cleaning_up: bool,
}

/// Runs a loaded playbook.
pub async fn execute(pb: &Playbook, opts: RunOptions) -> RunOutcome {
    let level = opts.loglevel.unwrap_or(pb.metadata.loglevel);
    let console = Console::new(opts.json);
    let log = RunLog::new(&pb.metadata.name, level, console);
    execute_with(pb, opts, log).await
}

pub(crate) async fn execute_with(pb: &Playbook, opts: RunOptions, log: RunLog) -> RunOutcome {
    let start_time = Utc::now();
    let broker = crate::choria::Broker::new(opts.broker.clone());
    let puppetdb = crate::puppetdb::PuppetDb::new(opts.puppetdb.clone());
    let cancel = opts.interrupt.token().clone();
    let mut run = Run {
        pb,
        log,
        opts,
        stores: Stores::default(),
        env: EnvOverlay::default(),
        nodes: BTreeMap::new(),
        records: Vec::new(),
        previous: None,
        started: Instant::now(),
        renderer: Renderer::default(),
        http: HttpClients::default(),
        locks: Vec::new(),
        broker,
        puppetdb,
        uses: BTreeMap::new(),
        progress: (0, pb.tasks.len()),
        cancel,
        on_fail_started: false,
        post_book_started: false,
        cleaning_up: false,
    };
    run.register_secrets();
    run.log.info(
        "running",
        format!(
            "Starting playbook {} at {}",
            pb.metadata.name,
            start_time.format("%Y-%m-%d %H:%M:%S UTC")
        ),
    );
    let result = run.run().await;
    run.release_locks().await;
    let interrupted = run.opts.interrupt.signal();
    let (success, playbook_error) = match result {
        Ok(success) => (success && interrupted.is_none(), None),
        Err(RunError::Interrupted(signal)) => (
            false,
            Some(format!(
                "Playbook {} interrupted by {signal} before its tasks started",
                pb.metadata.name
            )),
        ),
        Err(e) => {
            let text = format!(
                "Playbook {} failed: {}: {}",
                pb.metadata.name,
                e.class(),
                run.log.mask(&e.to_string())
            );
            run.log.error("running", &text);
            (false, Some(text))
        }
    };
    let elapsed = run.started.elapsed().as_secs_f64();
    run.log.info(
        "running",
        format!(
            "Done running playbook {} in {}",
            pb.metadata.name,
            human_time(elapsed)
        ),
    );
    run.log.console().finish();
    let end_time = Utc::now();
    let report = Report {
        report: ReportHeader {
            version: 1,
            timestamp: start_time,
            success,
            outcome: match (interrupted, success) {
                (Some(_), _) => Outcome::Interrupted,
                (None, true) => Outcome::Success,
                (None, false) => Outcome::Failed,
            },
            playbook_error,
        },
        playbook: PlaybookInfo {
            name: pb.metadata.name.clone(),
            version: pb.metadata.version.clone(),
        },
        inputs: run.inputs_info(),
        nodes: run.nodes.clone(),
        metrics: Metrics {
            start_time,
            end_time,
            run_time: round2(elapsed),
            task_count: run.records.len(),
            task_types: Report::task_types(&run.records),
        },
        tasks: std::mem::take(&mut run.records),
        logs: run.log.entries(),
    };
    RunOutcome {
        success,
        interrupted,
        report,
    }
}

/// `1 minutes 03 seconds` style durations, as Choria printed them.
fn human_time(seconds: f64) -> String {
    let whole = seconds.floor() as u64;
    if whole >= 60 {
        format!("{} minutes {:02} seconds", whole / 60, whole % 60)
    } else {
        format!("{seconds:.2} seconds")
    }
}

pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Run<'_> {
    async fn run(&mut self) -> Result<bool, RunError> {
        self.check_cli_inputs()?;
        let interrupt = self.opts.interrupt.clone();
        let stop = || async {
            interrupt.token().cancelled().await;
            RunError::Interrupted(interrupt.signal().unwrap_or(StopSignal::Interrupt))
        };
        // Everything before the first task stops at once on a signal; nothing has run yet,
        // so no hook runs either.
        tokio::select! {
            biased;
            e = stop() => return Err(e),
            r = self.prepare() => r?,
        }
        if self.opts.dry_run {
            return self.dry_run().await;
        }
        let success = self.run_book().await?;
        if let Some(signal) = self.opts.interrupt.signal() {
            self.cleanup_after(signal).await?;
            return Ok(false);
        }
        Ok(success)
    }

    /// Stores, locks, saved inputs, `uses` and node discovery.
    async fn prepare(&mut self) -> Result<(), RunError> {
        self.open_stores().await?;
        if !self.opts.dry_run {
            // Deliberate change from Choria (which saved inputs first): a run that cannot get
            // its locks writes nothing, so it cannot overwrite the inputs of the lock holder.
            self.obtain_locks().await?;
            self.save_inputs().await?;
        }
        self.check_uses().await?;
        self.discover_nodes().await
    }

    /// `pre_book`, the tasks, `on_success` or `on_fail`, and `post_book`; a signal stops the
    /// list that is running.
    async fn run_book(&mut self) -> Result<bool, RunError> {
        if !self.run_hooks(HookList::PreBook).await? {
            if self.opts.interrupt.signal().is_none() {
                self.log.error(
                    "running",
                    "Playbook pre_book hook failed to run, failing entire playbook",
                );
            }
            return Ok(false);
        }
        let mut success = self.run_main_tasks().await?;
        if self.opts.interrupt.signal().is_some() {
            return Ok(false);
        }
        if success {
            success = self.run_hooks(HookList::OnSuccess).await?;
        } else {
            self.on_fail_started = true;
            self.run_hooks(HookList::OnFail).await?;
        }
        if self.opts.interrupt.signal().is_some() {
            return Ok(false);
        }
        self.post_book_started = true;
        if !self.run_hooks(HookList::PostBook).await? {
            success = false;
        }
        Ok(success)
    }

    /// After a signal: `on_fail` and `post_book` (those not started yet), under a fresh token
    /// cancelled at [`CLEANUP_DEADLINE`].
    async fn cleanup_after(&mut self, signal: StopSignal) -> Result<(), RunError> {
        self.log.error(
            "running",
            format!(
                "Playbook interrupted by {signal}: no further task starts; running on_fail and post_book (at most {}s)",
                CLEANUP_DEADLINE.as_secs()
            ),
        );
        let cleanup = CancellationToken::new();
        self.cancel = cleanup.clone();
        self.cleaning_up = true;
        let deadline = {
            let cleanup = cleanup.clone();
            tokio::spawn(async move {
                tokio::time::sleep(CLEANUP_DEADLINE).await;
                cleanup.cancel();
            })
        };
        let result = async {
            if !self.on_fail_started {
                self.on_fail_started = true;
                self.run_hooks(HookList::OnFail).await?;
            }
            if !self.post_book_started {
                self.post_book_started = true;
                self.run_hooks(HookList::PostBook).await?;
            }
            Ok(())
        }
        .await;
        deadline.abort();
        if cleanup.is_cancelled() {
            self.log.error(
                "running",
                format!(
                    "on_fail and post_book did not finish within {}s after {signal}; stopped them",
                    CLEANUP_DEADLINE.as_secs()
                ),
            );
        }
        result
    }

    async fn open_stores(&mut self) -> Result<(), RunError> {
        for spec in &self.pb.data_stores {
            let props = self.store_props(spec).await?;
            let context = || {
                RunError::store(format!(
                    "data store {} ({}) at {}:{}",
                    spec.name,
                    spec.kind,
                    self.pb.file.display(),
                    spec.mark
                ))
            };
            let store = crate::store::open(&spec.name, &props, &self.env)
                .await
                .map_err(context())?;
            let timeout = props
                .common
                .timeout
                .map(|s| s.0)
                .filter(|_| spec.kind != crate::store::StoreKind::Shell)
                .unwrap_or(DEFAULT_LOCK_TIMEOUT);
            self.log.debug(
                "pre.stores",
                format!("Prepared {} data store {}", spec.kind, spec.name),
            );
            self.stores
                .insert(&spec.name, store, crate::seconds(timeout));
        }
        Ok(())
    }

    async fn obtain_locks(&mut self) -> Result<(), RunError> {
        for lock in &self.pb.locks {
            let path = if lock.contains('/') {
                lock.clone()
            } else {
                format!("{lock}/choria/locks/playbook/{}", self.pb.metadata.name)
            };
            self.log
                .info("pre.locks", format!("Obtaining playbook lock {path}"));
            let context = || RunError::store(format!("lock {path}"));
            let (store, key, timeout) = self.stores.resolve(&path).map_err(context())?;
            let held = store.lock(key, timeout).await.map_err(context())?;
            self.log
                .info("pre.locks", format!("Obtained playbook lock {path}"));
            self.locks.push((path, held));
        }
        Ok(())
    }

    /// Why a held lock was lost, if one was.
    pub(crate) fn lock_lost(&self) -> Option<String> {
        self.locks.iter().find_map(|(_, l)| l.lost())
    }

    async fn release_locks(&mut self) {
        while let Some((path, lock)) = self.locks.pop() {
            self.log
                .info("post", format!("Releasing playbook lock {path}"));
            if let Err(e) = lock.release().await {
                self.log
                    .warn("post", format!("Could not release lock {path}: {e}"));
            }
        }
    }

    async fn check_uses(&mut self) -> Result<(), RunError> {
        if self.pb.uses.is_empty() {
            return Ok(());
        }
        let value = Value::Object(
            self.pb
                .uses
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        );
        let value = self.expand(&value, "prep.uses").await?;
        if let Value::Object(m) = value {
            for (agent, range) in m {
                let range = crate::template::stringify(&range);
                if let Err(e) = crate::nodes::versions::Range::parse(&range) {
                    self.log
                        .warn("prep.uses", format!("Agent {agent} has an {e} in uses"));
                }
                self.uses.insert(agent, range);
            }
        }
        self.log.debug(
            "prep.uses",
            "No local DDLs in this build: agent versions are only checked on nodes of sets with uses",
        );
        Ok(())
    }

    async fn discover_nodes(&mut self) -> Result<(), RunError> {
        let mut to_test: Vec<String> = Vec::new();
        let mut to_check: Vec<(Vec<String>, Vec<String>)> = Vec::new();
        for spec in &self.pb.nodes {
            let props = self.node_set_props(spec).await?;
            let sources = crate::nodes::Sources {
                env: &self.env,
                broker: &self.broker,
                puppetdb: &self.puppetdb,
            };
            let nodes = crate::nodes::discover(&spec.name, &props, &sources).await?;
            self.log.info(
                &spec.name,
                format!(
                    "Discovered {} node(s) in node set {}",
                    nodes.len(),
                    spec.name
                ),
            );
            if crate::schema::values::flag(props.common.test, false) {
                for n in &nodes {
                    if !to_test.contains(n) {
                        to_test.push(n.clone());
                    }
                }
            }
            let required: Vec<String> = props.common.uses.map(|u| u.0).unwrap_or_default();
            if !required.is_empty() {
                to_check.push((nodes.clone(), required));
            }
            self.nodes.insert(spec.name.clone(), nodes);
        }
        if !to_test.is_empty() {
            self.log.info(
                "conn.test",
                format!("Testing connectivity to {} node(s)", to_test.len()),
            );
            crate::nodes::choria::ping_test(&self.broker, &to_test).await?;
        }
        for (nodes, required) in &to_check {
            self.log.info(
                "ddl.test",
                format!(
                    "Checking agent versions of {} on {} node(s)",
                    required.join(", "),
                    nodes.len()
                ),
            );
            crate::nodes::choria::check_agents(&self.broker, &self.uses, nodes, required).await?;
        }
        Ok(())
    }

    /// Expands the templates in `value`, resolving each expression once.
    async fn expand(&self, value: &Value, from: &str) -> Result<Value, RunError> {
        let mut exprs = Vec::new();
        crate::template::collect(value, &mut exprs)?;
        if exprs.is_empty() {
            return Ok(value.clone());
        }
        let mut resolved = BTreeMap::new();
        for e in exprs {
            let v = self.resolve(&e, from).await?;
            resolved.insert(e, v);
        }
        Ok(self.renderer.expand(value, &resolved)?)
    }

    async fn resolve(&self, expr: &Expr, from: &str) -> Result<Value, RunError> {
        match expr {
            Expr::Input(name) => self.input_value(name, from).await,
            Expr::Nodes(name) => self
                .nodes
                .get(name)
                .map(|n| Value::from(n.clone()))
                .ok_or_else(|| RunError::Template(format!("Unknown node set {name}"))),
            Expr::Metadata(item) => self
                .pb
                .metadata
                .get(item)
                .ok_or_else(|| RunError::Template(format!("Unknown playbook metadata {item}"))),
            Expr::PreviousTask(field) => self.previous_field(field),
            Expr::Date { utc, format } => {
                Ok(Value::String(crate::template::format_now(*utc, format)?))
            }
            Expr::ElapsedTime => Ok(serde_json::Number::from_f64(round2(
                self.started.elapsed().as_secs_f64(),
            ))
            .map(Value::Number)
            .unwrap_or(Value::Null)),
            Expr::Uuid => Ok(Value::String(uuid::Uuid::new_v4().to_string())),
        }
    }

    fn previous_field(&self, field: &str) -> Result<Value, RunError> {
        let Some(p) = &self.previous else {
            return match field {
                "success" => Ok(Value::Bool(false)),
                "msg" | "message" | "description" => Ok(Value::from("No previous task were found")),
                "data" => Ok(Value::Array(Vec::new())),
                "runtime" => Ok(Value::from(0)),
                _ => Err(RunError::Template(format!(
                    "Cannot retrieve {field} for the last task outcome"
                ))),
            };
        };
        match field {
            "success" => Ok(Value::Bool(p.success)),
            "msg" | "message" => Ok(Value::String(p.msg.clone())),
            "description" => Ok(Value::String(p.description.clone())),
            "data" => Ok(Value::Array(p.data.clone())),
            "runtime" => Ok(serde_json::Number::from_f64(round2(p.runtime))
                .map(Value::Number)
                .unwrap_or(Value::Null)),
            _ => Err(RunError::Template(format!(
                "Cannot retrieve {field} for the last task outcome"
            ))),
        }
    }

    fn inputs_info(&self) -> InputsInfo {
        let mut info = InputsInfo::default();
        for input in &self.pb.inputs {
            if self.is_dynamic(input) {
                info.dynamic.push(input.name.clone());
                continue;
            }
            let value = self
                .opts
                .values
                .get(&input.name)
                .cloned()
                .or_else(|| input.default.clone())
                .unwrap_or(match input.ty {
                    Some(InputType::Boolean) => Value::Bool(false),
                    Some(
                        InputType::String
                        | InputType::Integer
                        | InputType::Float
                        | InputType::Numeric
                        | InputType::Array,
                    )
                    | None => Value::Null,
                });
            let value = if input.sensitive && !value.is_null() {
                Value::from(crate::log::MASK)
            } else {
                value
            };
            info.static_values.insert(input.name.clone(), value);
        }
        info
    }
}
