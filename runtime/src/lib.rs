//! Durable workflow executor: journaled steps, replay, retries, durable sleep, leases, cancellation.
//!
//! A workflow is ordinary async Rust ([`Workflow::run`]) that calls steps through a [`Ctx`].
//! [`Ctx::step`] is the one entry point: it returns the journaled output if the step already
//! succeeded in this run, and otherwise runs the activity under its [`RetryPolicy`] and journals
//! the result in the `hk8s-journal` SQLite file. Killing the process at any instant and calling
//! [`Runtime::execute`] again continues where it stopped.
//!
//! # Overview
//! - [`Runtime`] creates ([`Runtime::create`]) and executes or resumes ([`Runtime::execute`])
//!   runs; it holds the run's lease (heartbeat, takeover of dead holders, fencing) and maps the
//!   workflow's end to the run status (`succeeded`, `failed`, `interrupted`).
//! - [`Ctx`] runs steps ([`Ctx::step`]) and durable sleeps ([`Ctx::sleep`]); steps can run
//!   concurrently with `join!` / `try_join_all`.
//! - Activities return [`StepError`]s classified [`ErrorClass::Retryable`],
//!   [`ErrorClass::Permanent`] or [`ErrorClass::RateLimited`]; steps return [`WorkflowError`].
//! - [`Secret`] keeps secrets out of the journal (not `Serialize`); the [`Scrubber`] cuts
//!   registered secret values out of every message.
//! - [`Clock`] is the time seam ([`SystemClock`], [`SimClock`] for tests); [`shutdown_signal`]
//!   turns Ctrl-C / SIGTERM into a cancellation; [`Event`]s report progress.
//!
//! # Example
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use hk8s_journal::Journal;
//! use hk8s_runtime::{Ctx, RetryPolicy, Runtime, RuntimeOptions, StepError, Workflow, WorkflowError};
//! use serde::{Deserialize, Serialize};
//!
//! struct Provision;
//!
//! #[derive(Serialize, Deserialize)]
//! struct Input { nodes: Vec<String> }
//!
//! impl Workflow for Provision {
//!     const NAME: &'static str = "provision";
//!     const VERSION: u32 = 1;
//!     type Input = Input;
//!     type Output = Vec<u64>;
//!
//!     async fn run(&self, ctx: &Ctx, input: Input) -> Result<Vec<u64>, WorkflowError> {
//!         let policy = RetryPolicy::default();
//!         let network: u64 = ctx
//!             .step("network", &policy, &"10.0.0.0/16", |_attempt| async {
//!                 // look up by label, create if missing
//!                 Ok::<_, StepError>(7)
//!             })
//!             .await?;
//!         let servers = input.nodes.iter().map(|node| {
//!             let policy = &policy;
//!             async move {
//!                 ctx.step(&format!("server/{node}"), policy, &(node, network), |attempt| async move {
//!                     if attempt.number < 2 {
//!                         return Err(StepError::retryable("locked"));
//!                     }
//!                     Ok(42u64)
//!                 })
//!                 .await
//!             }
//!         });
//!         let ids = futures::future::try_join_all(servers).await?;
//!         ctx.sleep("pause/settle", Duration::from_secs(30)).await?;
//!         Ok(ids)
//!     }
//! }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let journal = Arc::new(Journal::open(std::path::Path::new("journal.db"))?);
//! let runtime = Runtime::new(journal, RuntimeOptions::default());
//! let input = Input { nodes: vec!["cp-1".into(), "cp-2".into()] };
//! let run_id = runtime.create(&Provision, "demo", &input)?;
//! println!("run {run_id}");
//! let outcome = runtime.execute(&Provision, &run_id, Default::default()).await?;
//! println!("{:?}: {:?}", outcome.status, outcome.output);
//! # Ok(())
//! # }
//! ```

mod clock;
mod ctx;
mod error;
mod event;
mod key;
mod lease;
mod policy;
mod runtime;
mod secret;
mod signal;

pub use clock::{Clock, SimClock, Sleep, SystemClock};
pub use ctx::{Attempt, Ctx};
pub use error::{ErrorClass, RuntimeError, StepError, WorkflowError};
pub use event::{Event, Observer};
pub use key::{input_hash, validate_key};
pub use lease::pid_alive;
pub use policy::RetryPolicy;
pub use runtime::{
    DEFAULT_INTENT_DELAY, INTERRUPTED_MESSAGE, ResumeOptions, RunOutcome, Runtime, RuntimeOptions,
    Workflow,
};
pub use secret::{REDACTED, Scrubber, Secret};
pub use signal::shutdown_signal;

/// Re-exported journal types that appear in this crate's API.
pub use hk8s_journal::{Journal, Owner, RunId, RunStatus};
/// Re-exported so callers need no direct tokio-util dependency.
pub use tokio_util::sync::CancellationToken;
