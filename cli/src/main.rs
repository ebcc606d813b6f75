//! `hk8s`: the command line. Clap definitions plus glue: it is the only crate that prints,
//! reads the environment, sets exit codes or installs tracing.

mod args;
mod debug;
mod exit;
mod files;
mod history;
mod lock;
mod preflight;
mod progress;
mod run;
mod runner;
mod sandbox;
mod state;
mod worker;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::exit::Failure;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help and version to stdout with success, usage errors to stderr.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(exit::USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_tracing(cli.log_format);
    // One crypto provider for every rustls user (reqwest, tonic, kube); an error only means
    // one was installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode, Failure> {
    match cli.command {
        Command::Run { workflow } => {
            run::run(
                &cli.journal,
                cli.output,
                cli.log_format,
                cli.api_timeout,
                workflow,
            )
            .await
        }
        Command::Resume { id, force } => {
            run::resume(
                &cli.journal,
                cli.output,
                cli.log_format,
                cli.api_timeout,
                &id,
                force,
                None,
            )
            .await
        }
        Command::Kubeconfig { cluster } => files::write_out(
            &cli.journal,
            &cluster,
            hk8s_workflows::talos::KUBECONFIG_FILE,
        ),
        Command::Talosconfig { cluster } => files::write_out(
            &cli.journal,
            &cluster,
            hk8s_workflows::talos::TALOSCONFIG_FILE,
        ),
        Command::Worker(args) => {
            worker::work(
                &cli.journal,
                cli.output,
                cli.log_format,
                cli.api_timeout,
                &args,
            )
            .await
        }
        Command::History(args) => history::history(&cli.journal, cli.output, &args),
        Command::Sandbox { listen, speed } => sandbox::serve(listen, speed).await,
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(shell, &mut Cli::command(), "hk8s", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn init_tracing(log_format: Option<args::LogFormat>) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("HK8S_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // With `--log-format json` every stderr line is a JSON object, log events included.
    let _ = if log_format == Some(args::LogFormat::Json) {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
