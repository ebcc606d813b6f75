//! The `upgrade` and `stageUpgrade` sequences a node runs after an accepted Upgrade RPC (Talos
//! v1.11 `v1alpha1_sequencer.go`): events for every phase and task with the actor ID, cordon
//! and drain through [`ClusterHooks`] (PDB refusals retried every 5 s for at most 5 minutes,
//! then the pods are killed with the node, as Talos does), services stopped (etcd goes down,
//! its member stays listed), the installer with its pre-flight check, and how the node reboots.
//! Runs inside the node's lifecycle task while its API keeps listening.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::fleet::TalosFleet;
use crate::hooks::{Cordon, Eviction, UpgradeFaultKind, preflight};
use crate::node_state::{NodeEvent, NodeShared, UpgradeRecord, UpgradeRun};
use crate::proto::{self, error_code, machine_stage, reboot_mode, sequence_action, step_action};

/// Talos `DrainTimeout`.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);
/// Retry interval of an eviction a PodDisruptionBudget refused.
const EVICTION_RETRY: Duration = Duration::from_secs(5);
/// Delay between a fatal sequence error and the reboot into the old version.
const FATAL_REBOOT_DELAY: Duration = Duration::from_secs(10);
/// `LINUX_REBOOT_CMD_KEXEC` and `LINUX_REBOOT_CMD_RESTART`.
const CMD_KEXEC: i64 = 0x4558_4543;
const CMD_RESTART: i64 = 0x0123_4567;

/// What the next boot runs.
pub(crate) struct Installed {
    pub(crate) version: String,
    pub(crate) schematic: String,
    pub(crate) platform: String,
}

/// How the node leaves the sequence.
pub(crate) enum AfterSequence {
    /// Reboots into `next` after `extra` (a staged install at boot); `None`: the old version.
    Reboot {
        next: Option<Installed>,
        extra: Duration,
    },
    /// Reboots into the new version, which fails to boot: two reboots, then the old version.
    Rollback,
    /// Reboots and never comes back until the server is power cycled (then `next` boots).
    Hang(Installed),
    /// The server was powered off; `next` is what the disk boots (installer done or not).
    PowerOff(Option<Installed>),
    /// The server was deleted.
    Delete,
}

enum Stop {
    PowerOff,
    Delete,
}

/// Sleeps, returning early on PowerOff/Delete; other events are dropped (a Reboot or a
/// second Upgrade cannot take over an upgrade; the API already answered them).
async fn pause(
    node: &NodeShared,
    d: Duration,
    events: &mut mpsc::UnboundedReceiver<NodeEvent>,
) -> Result<(), Stop> {
    pause_exact(node.scaled(d), events).await
}

/// [`pause`] for a duration already divided by the speed factor.
async fn pause_exact(
    d: Duration,
    events: &mut mpsc::UnboundedReceiver<NodeEvent>,
) -> Result<(), Stop> {
    let sleep = tokio::time::sleep(d);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = &mut sleep => return Ok(()),
            event = events.recv() => match event {
                Some(NodeEvent::PowerOff) => return Err(Stop::PowerOff),
                Some(NodeEvent::Delete) | None => return Err(Stop::Delete),
                Some(_) => {}
            },
        }
    }
}

struct Seq<'a> {
    fleet: &'a TalosFleet,
    node: &'a Arc<NodeShared>,
    run: UpgradeRun,
    record: UpgradeRecord,
    name: &'static str,
}

impl Seq<'_> {
    fn publish(&self, name: &str, msg: &impl prost::Message) {
        self.node.lock().publish(&self.run.actor_id, name, msg);
    }

    fn phase(&self, phase: &str, action: i32) {
        if action == step_action::START
            && let Some(u) = self.node.lock().upgrade.as_mut()
        {
            u.phase = phase.to_string();
        }
        self.publish(
            "PhaseEvent",
            &proto::PhaseEvent {
                phase: phase.to_string(),
                action,
            },
        );
    }

    fn task(&self, task: &str, action: i32) {
        self.publish(
            "TaskEvent",
            &proto::TaskEvent {
                task: task.to_string(),
                action,
            },
        );
    }

    fn stop_services(&self) {
        self.node.lock().services_up = false;
        self.fleet.observe_etcd();
        self.fleet.notify();
    }

    fn installed(&self) -> Installed {
        Installed {
            version: self.run.target_version.clone(),
            schematic: self.run.target_schematic.clone(),
            platform: self.run.target_platform.clone(),
        }
    }

    fn finish(&mut self, outcome: &str, error: Option<String>) {
        self.record.outcome = outcome.to_string();
        self.record.error = error;
        let mut s = self.node.lock();
        s.last_upgrade = Some(self.record.clone());
    }

    /// Cordon and drain (Talos `CordonAndDrainNode`). `Err` is the sequence error.
    async fn cordon_and_drain(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<NodeEvent>,
    ) -> Result<Result<(), String>, Stop> {
        let Some(hooks) = self.fleet.cluster_hooks() else {
            self.record.cordon = "no_node".into();
            return Ok(Ok(()));
        };
        let Some(config) = self.node.config() else {
            return Ok(Ok(()));
        };
        let cluster = config.cluster_name.clone();
        let host = self.node.hostname();
        match hooks.cordon(&cluster, &host) {
            Ok(Cordon::NoNode) => {
                self.record.cordon = "no_node".into();
                return Ok(Ok(()));
            }
            Ok(c) => {
                self.record.cordon = match c {
                    Cordon::Cordoned => "cordoned",
                    _ => "already_unschedulable",
                }
                .into()
            }
            Err(e) => return Ok(Err(format!("error cordoning node: {e}"))),
        }
        let deadline = Instant::now() + self.node.scaled(DRAIN_TIMEOUT);
        loop {
            let pods = match hooks.drainable_pods(&cluster, &host) {
                Ok(p) => p,
                Err(e) => return Ok(Err(format!("error draining node: {e}"))),
            };
            if pods.is_empty() {
                return Ok(Ok(()));
            }
            if Instant::now() >= deadline {
                // Talos logs every eviction error and gives up; stopAllPods kills the rest.
                self.record.drain_gave_up = true;
                tracing::warn!(node = %host, pods = pods.len(), "talos twin: drain timed out; the remaining pods are killed");
                return Ok(Ok(()));
            }
            for (ns, pod) in &pods {
                match hooks.evict(&cluster, ns, pod) {
                    Eviction::Evicted => self.record.evicted += 1,
                    Eviction::Blocked(m) => {
                        self.record.eviction_refusals += 1;
                        tracing::debug!(node = %host, %ns, %pod, message = %m, "talos twin: eviction refused, retrying");
                    }
                    Eviction::Failed(m) => {
                        tracing::warn!(node = %host, %ns, %pod, error = %m, "talos twin: eviction failed")
                    }
                }
            }
            if hooks
                .drainable_pods(&cluster, &host)
                .is_ok_and(|p| p.is_empty())
            {
                return Ok(Ok(()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = self.node.scaled(EVICTION_RETRY).min(left);
            pause_exact(wait, events).await?;
        }
    }
}

/// The phases of the `upgrade` sequence and their tasks (one task each).
const UPGRADE_PHASES: [(&str, &str); 13] = [
    ("drain", "cordonAndDrainNode"),
    ("cleanup", "stopAllPods"),
    ("dbus", "stopDBus"),
    ("stopServices", "stopServicesForUpgrade"),
    ("unmount", "unmountPodMounts"),
    ("unmountBind", "unmountSystemDiskBindMounts"),
    ("unmountSystem", "unmountSystemDisks"),
    ("volumeFinalize", "volumeFinalize"),
    ("upgrade", "upgrade"),
    ("meta", "flushMeta"),
    ("kexec", "kexecPrepare"),
    ("stopEverything", "stopAllServices"),
    ("reboot", "reboot"),
];

/// The phases of the `stageUpgrade` sequence (no drain).
const STAGE_PHASES: [(&str, &str); 3] = [
    ("cleanup", "stopAllPods"),
    ("stopEverything", "stopAllServices"),
    ("reboot", "reboot"),
];

/// Runs the sequence for `run` (already recorded as the node's running upgrade).
pub(crate) async fn run(
    fleet: &TalosFleet,
    node: &Arc<NodeShared>,
    run: UpgradeRun,
    events: &mut mpsc::UnboundedReceiver<NodeEvent>,
) -> AfterSequence {
    let from_version = node.lock().version.clone();
    let record = UpgradeRecord {
        actor_id: run.actor_id.clone(),
        from_version: from_version.clone(),
        target_version: run.target_version.clone(),
        outcome: "running".into(),
        error: None,
        cordon: "skipped".into(),
        evicted: 0,
        eviction_refusals: 0,
        drain_gave_up: false,
    };
    let name = if run.stage { "stageUpgrade" } else { "upgrade" };
    let mut seq = Seq {
        fleet,
        node,
        run,
        record,
        name,
    };
    node.lock().upgrades_started += 1;
    seq.publish(
        "SequenceEvent",
        &proto::SequenceEvent {
            sequence: name.into(),
            action: sequence_action::START,
            error: None,
        },
    );
    node.lock()
        .publish_stage(machine_stage::UPGRADING, false, &[]);
    // The stage turning UPGRADING cordons the node (NodeApplyController), also when staged.
    if seq.run.stage
        && let (Some(hooks), Some(config)) = (fleet.cluster_hooks(), node.config())
    {
        seq.record.cordon = match hooks.cordon(&config.cluster_name, &node.hostname()) {
            Ok(Cordon::Cordoned) => "cordoned",
            Ok(Cordon::AlreadyUnschedulable) => "already_unschedulable",
            Ok(Cordon::NoNode) | Err(_) => "no_node",
        }
        .into();
    }
    let phases: &[(&str, &str)] = if seq.run.stage {
        &STAGE_PHASES
    } else {
        &UPGRADE_PHASES
    };
    let kexec = seq.run.reboot_mode == reboot_mode::DEFAULT;
    let mut installed = false;
    for (index, (phase, task)) in phases.iter().enumerate() {
        if *phase == "kexec" && !kexec {
            continue;
        }
        seq.phase(phase, step_action::START);
        if *phase == "kexec" || (*phase == "reboot" && !kexec) {
            node.lock()
                .publish_stage(machine_stage::REBOOTING, false, &[]);
        }
        seq.task(task, step_action::START);
        let step: Result<Result<(), String>, Stop> = match *phase {
            "drain" => seq.cordon_and_drain(events).await,
            "upgrade" => match pause(node, node.opts.installer_delay, events).await {
                Err(s) => Err(s),
                Ok(()) => {
                    let kubernetes = node.config().and_then(|c| {
                        crate::config::kubernetes_images(&c.raw.0)
                            .into_iter()
                            .find(|(f, _)| *f == "machine.kubelet.image")
                            .and_then(|(_, i)| crate::config::image_tag(&i).map(str::to_string))
                    });
                    let check = if seq.run.fault == Some(UpgradeFaultKind::InstallerRefuses) {
                        Err(format!(
                            "upgrades to version {} are not supported",
                            seq.run.target_version.trim_start_matches('v')
                        ))
                    } else {
                        preflight(
                            &from_version,
                            &seq.run.target_version,
                            kubernetes.as_deref(),
                        )
                    };
                    if check.is_ok() {
                        installed = true;
                    }
                    Ok(check)
                }
            },
            _ => pause(node, node.opts.phase_delay, events).await.map(Ok),
        };
        match step {
            Err(Stop::PowerOff) => {
                seq.finish("failed", Some("powered off during the upgrade".into()));
                return AfterSequence::PowerOff(installed.then(|| seq.installed()));
            }
            Err(Stop::Delete) => return AfterSequence::Delete,
            Ok(Err(message)) => {
                let message = format!(
                    "sequence failed: error running phase {} in {} sequence: task 1/1: failed, {message}",
                    index + 1,
                    seq.name
                );
                seq.publish(
                    "SequenceEvent",
                    &proto::SequenceEvent {
                        sequence: seq.name.into(),
                        action: sequence_action::NOOP,
                        error: Some(proto::CommonError {
                            code: error_code::FATAL,
                            message: message.clone(),
                        }),
                    },
                );
                node.lock()
                    .publish_stage(machine_stage::REBOOTING, false, &[]);
                seq.stop_services();
                seq.finish("failed", Some(message));
                if let Err(stop) = pause(node, FATAL_REBOOT_DELAY, events).await {
                    return match stop {
                        Stop::PowerOff => AfterSequence::PowerOff(None),
                        Stop::Delete => AfterSequence::Delete,
                    };
                }
                return AfterSequence::Reboot {
                    next: None,
                    extra: Duration::ZERO,
                };
            }
            Ok(Ok(())) => {}
        }
        if *phase == "stopServices" || *phase == "stopEverything" {
            seq.stop_services();
        }
        if *phase == "reboot" {
            // The machine restarts inside the task: nothing after this event.
            seq.publish(
                "RestartEvent",
                &proto::RestartEvent {
                    cmd: if kexec { CMD_KEXEC } else { CMD_RESTART },
                },
            );
            break;
        }
        seq.task(task, step_action::STOP);
        seq.phase(phase, step_action::STOP);
    }
    if seq.run.stage {
        seq.finish("staged", None);
        return AfterSequence::Reboot {
            next: Some(seq.installed()),
            extra: node.opts.installer_delay,
        };
    }
    // talos#12402: the arm64 kernels of v1.11.4 and v1.11.5 hang in kexec (v1.11.6 skips kexec
    // on arm64); such a node never comes back unless it power cycles.
    let kexec_hang = kexec
        && node.opts.arch == "arm64"
        && crate::hooks::semver(&from_version)
            .is_some_and(|v| ((1, 11, 4)..(1, 11, 6)).contains(&v));
    let fault = if kexec_hang {
        Some(UpgradeFaultKind::NeverReturns)
    } else {
        seq.run.fault
    };
    match fault {
        Some(UpgradeFaultKind::NeverReturns) => {
            seq.finish("never_returned", None);
            AfterSequence::Hang(seq.installed())
        }
        Some(UpgradeFaultKind::BootRollback) => {
            seq.finish("rolled_back", None);
            AfterSequence::Rollback
        }
        _ => {
            seq.finish("upgraded", None);
            AfterSequence::Reboot {
                next: Some(seq.installed()),
                extra: Duration::ZERO,
            }
        }
    }
}
