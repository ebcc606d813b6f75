//! Ctrl-C / SIGTERM handling.

/// Completes when the process receives Ctrl-C (SIGINT) or SIGTERM.
///
/// The CLI cancels the runtime's [`CancellationToken`](tokio_util::sync::CancellationToken) when
/// this completes: no new step starts, in-flight activities get the grace period, and the run is
/// marked `interrupted`. A second signal is the CLI's business (exit at once: every journal write
/// is one transaction, so an exit at any instant is safe).
///
/// ```no_run
/// # async fn demo() {
/// let cancel = tokio_util::sync::CancellationToken::new();
/// let token = cancel.clone();
/// tokio::spawn(async move {
///     hk8s_runtime::shutdown_signal().await;
///     token.cancel();
/// });
/// # }
/// ```
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
