//! `stele policy`, `stele hold` and `stele retention`: the policy engine
//! from the command line. Each command that opens a data directory is
//! authorized as the local operator (see [`crate::local`]) with the action
//! the server's admin API uses for the same operation, and goes through the
//! log's governance calls, which record every change as a system event.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use stele_event::time::Day;
use stele_event::time::timestamp_text;
use stele_log::governance::{Hold, HoldSpec};
use stele_log::purge::Tombstone;
use stele_log::{Log, LogError};
use stele_policy::{Action, Policy, PolicySource, Resource};
use stele_tlog::hash::hex;

use crate::local::{Operator, local_request, now, retention_grace};
use crate::{CliResult, DataArgs, Failure, open, print_out};

#[derive(Debug, clap::Subcommand)]
pub enum PolicyAction {
    /// Validate a policy file (and its Cedar side file); no data directory
    /// needed. Prints every problem as FILE:LINE:COL: MESSAGE.
    Check {
        /// The policy TOML file.
        file: PathBuf,
    },
    /// Decide one access request and say which policies decided it.
    /// Exit code 0 when allowed, 1 when denied.
    Explain(Box<ExplainArgs>),
    /// Apply a policy file to the log, as `local:<user>`, from now on.
    Apply {
        #[command(flatten)]
        data: DataArgs,
        /// The policy TOML file.
        file: PathBuf,
        /// Apply even if the new policy denies the local operator
        /// `policy.apply` (the CLI could then not change it again).
        #[arg(long)]
        allow_lockout: bool,
    },
    /// Show the active policy and every applied version.
    Show {
        #[command(flatten)]
        data: DataArgs,
        /// JSON, as `GET /v1/policy` answers.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// Policy file to ask (default: the data directory's active policy,
    /// else the shipped default).
    #[arg(long, value_name = "FILE", conflicts_with = "data")]
    policy: Option<PathBuf>,
    /// Data directory whose active policy to ask.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Passphrase file of a passphrase-protected log (with --data).
    #[arg(long, value_name = "FILE", requires = "data")]
    passphrase_file: Option<PathBuf>,
    /// Principal name, e.g. alice or local:root.
    #[arg(long, required_unless_present = "local", conflicts_with = "local")]
    principal: Option<String>,
    /// A role of the principal; repeat for several.
    #[arg(long = "role", value_name = "ROLE", conflicts_with = "local")]
    roles: Vec<String>,
    /// Ask as this CLI's own operator: `local:<user>` with the policy's
    /// local roles.
    #[arg(long)]
    local: bool,
    /// Principal kind: user, service, local or system (default: local for
    /// `local:` names, else user).
    #[arg(long, value_parser = ["user", "service", "local", "system"])]
    kind: Option<String>,
    /// context.auth_method: token, mtls, local or system (default from the kind).
    #[arg(long, value_parser = ["token", "mtls", "local", "system"])]
    auth_method: Option<String>,
    /// Cedar action id, e.g. read, append, hold.add, policy.apply.
    #[arg(long)]
    action: String,
    /// The stream acted on (default: the whole log).
    #[arg(long)]
    stream: Option<String>,
    /// One event of the stream.
    #[arg(long, requires = "stream")]
    index: Option<u64>,
    /// context.client_ip.
    #[arg(long, default_value = "127.0.0.1")]
    ip: IpAddr,
    /// context.tls: the request came over TLS.
    #[arg(long)]
    tls: bool,
    /// context.tls_identity (client certificate identity).
    #[arg(long)]
    tls_identity: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum HoldAction {
    /// Place a legal hold: no epoch it covers is purged while it is active.
    /// Prints the new hold's id.
    Add {
        #[command(flatten)]
        data: DataArgs,
        /// A stream to hold; repeat for several; none holds every stream.
        #[arg(long = "stream", value_name = "STREAM")]
        streams: Vec<String>,
        /// First UTC day held (YYYY-MM-DD; default: unbounded).
        #[arg(long, value_name = "DATE")]
        from: Option<String>,
        /// Last UTC day held, inclusive (YYYY-MM-DD; default: unbounded).
        #[arg(long, value_name = "DATE")]
        until: Option<String>,
        /// Why (case or matter reference); required.
        #[arg(long)]
        reason: String,
    },
    /// List every hold, released ones included.
    List {
        #[command(flatten)]
        data: DataArgs,
        /// JSON, as `GET /v1/holds` answers.
        #[arg(long)]
        json: bool,
    },
    /// Release an active hold.
    Release {
        #[command(flatten)]
        data: DataArgs,
        /// The hold id (from `stele hold add` or `stele hold list`).
        id: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum RetentionAction {
    /// Every stored epoch: when its retention ends, holds, whether it is due;
    /// and every purged epoch.
    Status {
        #[command(flatten)]
        data: DataArgs,
        /// JSON, as `GET /v1/retention` answers.
        #[arg(long)]
        json: bool,
    },
    /// Purge every epoch that is due now and was announced a grace period
    /// ago (`retention.due`); announce the others.
    Run {
        #[command(flatten)]
        data: DataArgs,
        /// Stay until the grace period of every announced epoch has
        /// passed, then purge it (still only if it is due).
        #[arg(long)]
        wait: bool,
    },
    /// Purge one epoch, only if it is due; otherwise refuse (exit 1), and
    /// the refusal is recorded in the log.
    Purge {
        #[command(flatten)]
        data: DataArgs,
        /// The stream whose epoch to purge.
        #[arg(long)]
        stream: String,
        /// The epoch: a UTC day, YYYY-MM-DD.
        #[arg(long, value_name = "DATE")]
        epoch: String,
    },
}

/// Reads and validates a policy file; problems are printed one per line on
/// standard output and fail with exit code 1.
fn load_policy(file: &Path) -> CliResult<Policy> {
    let source = PolicySource::load(file).map_err(|e| Failure::usage(e.to_string()))?;
    match Policy::from_source(&source) {
        Ok(policy) => Ok(policy),
        Err(errors) => {
            let mut out = String::new();
            for problem in &errors.problems {
                out.push_str(&format!("{problem}\n"));
            }
            print_out(&out)?;
            let count = errors.problems.len();
            Err(Failure::refused(format!(
                "{}: policy refused ({count} problem{})",
                file.display(),
                if count == 1 { "" } else { "s" }
            )))
        }
    }
}

pub fn policy(action: PolicyAction) -> CliResult<u8> {
    match action {
        PolicyAction::Check { file } => {
            let policy = load_policy(&file)?;
            print_out(&format!(
                "OK: policy {} ({} streams, {} routes)\n",
                hex(&policy.hash()),
                policy.streams().count(),
                policy.routes().len()
            ))?;
            Ok(0)
        }
        PolicyAction::Explain(args) => explain(*args),
        PolicyAction::Apply {
            data,
            file,
            allow_lockout,
        } => apply(&data, &file, allow_lockout),
        PolicyAction::Show { data, json } => show(&data, json),
    }
}

fn explain(args: ExplainArgs) -> CliResult<u8> {
    let at = now()?;
    let action = Action::parse(&args.action).ok_or_else(|| {
        let known: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
        Failure::usage(format!(
            "--action {:?} is not a Stele action; use one of {}",
            args.action,
            known.join(", ")
        ))
    })?;
    let resource = match (&args.stream, args.index) {
        (Some(stream), Some(index)) => Resource::Event { stream, index },
        (Some(stream), None) => Resource::Stream(stream),
        (None, _) => Resource::Log,
    };
    // The policy asked, and whether it is an applied version.
    let (policy, applied, from) = match (&args.policy, &args.data) {
        (Some(file), _) => (load_policy(file)?, true, file.display().to_string()),
        (None, Some(dir)) => {
            let data = DataArgs {
                data: dir.clone(),
                passphrase_file: args.passphrase_file.clone(),
                anchor: None,
            };
            let mut log = open(&data)?;
            let operator = Operator::of(&log);
            operator.authorize(&mut log, Action::PolicyRead, Resource::Log, at)?;
            let applied = !log.reader().policy_versions().is_empty();
            let policy = (*log.reader().active_policy()).clone();
            let from = match log.reader().policy_versions().last() {
                Some(v) => format!("the active policy of {} (version {})", dir.display(), v.seq),
                None => format!(
                    "the shipped default policy ({} has none applied)",
                    dir.display()
                ),
            };
            (policy, applied, from)
        }
        (None, None) => (
            Policy::shipped_default(),
            false,
            "the shipped default policy".to_owned(),
        ),
    };
    let (principal, roles, default_kind) = if args.local {
        let operator = Operator::under(&policy, applied);
        (operator.principal, operator.roles, "local")
    } else {
        let principal = args.principal.clone().unwrap_or_default();
        let kind = if principal.starts_with("local:") {
            "local"
        } else {
            "user"
        };
        (principal, args.roles.clone(), kind)
    };
    let kind = args.kind.as_deref().unwrap_or(default_kind);
    let method = args.auth_method.clone().unwrap_or_else(|| {
        match kind {
            "service" => "mtls",
            "local" => "local",
            "system" => "system",
            _ => "token",
        }
        .to_owned()
    });
    let mut request = local_request(&principal, kind, &roles, action, resource, at);
    request.context.client_ip = args.ip;
    request.context.tls = args.tls;
    request.context.tls_identity = args.tls_identity.clone();
    request.context.auth_method = method;
    let allowed = policy.authorize(&request).allowed;
    eprintln!("stele: asking {from}, policy {}", hex(&policy.hash()));
    print_out(&policy.explain(&request))?;
    Ok(if allowed { 0 } else { 1 })
}

fn apply(data: &DataArgs, file: &Path, allow_lockout: bool) -> CliResult<u8> {
    let policy = load_policy(file)?;
    let at = now()?;
    let mut log = open(data)?;
    let operator = Operator::of(&log);
    operator.authorize(&mut log, Action::PolicyApply, Resource::Log, at)?;
    // The operator after the change: would they still be allowed to change
    // the policy again? (The server asks the same before `PUT /v1/policy`.)
    let lockout = stele_log::operator::check_lockout(&policy, &operator.principal, at);
    if let Err(why) = &lockout
        && !allow_lockout
    {
        return Err(Failure::refused(format!(
            "policy not applied: {why}. Add `[operators] local_roles` that may policy.apply, \
             or pass --allow-lockout"
        )));
    }
    let outcome = match log
        .governance()
        .apply_policy(policy, &operator.principal, at)
    {
        Ok(outcome) => outcome,
        Err(LogError::Refused(message)) => {
            return Err(Failure::refused(format!("policy not applied: {message}")));
        }
        Err(e) => return Err(e.into()),
    };
    log.writer().publish()?;
    let mut out = String::new();
    match outcome.seq {
        Some(seq) => {
            out.push_str(&format!(
                "applied policy version {seq}: {} (event {})\n",
                outcome.hash,
                outcome
                    .event_index
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "pending".into())
            ));
            for change in &outcome.changes {
                out.push_str(&format!("  {change}\n"));
            }
            if lockout.is_err() {
                eprintln!(
                    "stele: WARNING: the local operator may no longer apply policies from the CLI"
                );
            }
        }
        None => out.push_str(&format!(
            "policy {} is already the active version; nothing applied\n",
            outcome.hash
        )),
    }
    print_out(&out)?;
    Ok(0)
}

fn versions_json(log: &Log) -> Vec<Value> {
    log.reader()
        .policy_versions()
        .iter()
        .map(|v| {
            json!({
                "seq": v.seq,
                "hash": v.hash,
                "activated_at": timestamp_text(v.activated_at),
                "applied_by": v.applied_by,
                "event_index": v.event_index,
            })
        })
        .collect()
}

fn show(data: &DataArgs, as_json: bool) -> CliResult<u8> {
    let at = now()?;
    let mut log = open(data)?;
    let operator = Operator::of(&log);
    operator.authorize(&mut log, Action::PolicyRead, Resource::Log, at)?;
    let policy = log.reader().active_policy();
    let hash = hex(&policy.hash());
    if as_json {
        let source = policy.source();
        let body = json!({
            "hash": hash,
            "toml": source.toml,
            "cedar": source.cedar,
            "versions": versions_json(&log),
        });
        print_out(&format!("{}\n", pretty(&body)?))?;
        return Ok(0);
    }
    let mut out = String::new();
    match log.reader().policy_versions().last() {
        Some(v) => out.push_str(&format!(
            "active policy: {hash} (version {}, applied {} by {})\n",
            v.seq,
            timestamp_text(v.activated_at),
            v.applied_by
        )),
        None => out.push_str(&format!(
            "active policy: {hash} (the shipped default; no policy has been applied)\n"
        )),
    }
    out.push_str(&format!(
        "default stream: {}; undeclared streams: {}\n",
        policy.default_stream(),
        policy.undeclared_streams().as_str()
    ));
    out.push_str("streams:\n");
    for (name, stream) in policy.streams() {
        out.push_str(&format!("  {name}: {}\n", stream.retention));
    }
    out.push_str(&format!("routes: {}\n", policy.routes().len()));
    out.push_str(&format!("{}\n", operator.roles_text()));
    let ids: Vec<&str> = policy.access_policy_ids().collect();
    out.push_str(&format!("access policies: {}\n", ids.join(", ")));
    out.push_str("versions:\n");
    if log.reader().policy_versions().is_empty() {
        out.push_str("  (none)\n");
    }
    for v in log.reader().policy_versions() {
        out.push_str(&format!(
            "  {}\t{}\tactivated {}\tby {}\tevent {}\n",
            v.seq,
            v.hash,
            timestamp_text(v.activated_at),
            v.applied_by,
            v.event_index
                .map(|i| i.to_string())
                .unwrap_or_else(|| "pending".into())
        ));
    }
    print_out(&out)?;
    Ok(0)
}

fn pretty(value: &Value) -> CliResult<String> {
    serde_json::to_string_pretty(value).map_err(|e| Failure::usage(e.to_string()))
}

fn hold_line(hold: &Hold) -> String {
    let streams = if hold.streams.is_empty() {
        "*".to_owned()
    } else {
        hold.streams.join(",")
    };
    let state = match (&hold.released_at, &hold.released_by) {
        (Some(at), Some(by)) => format!("released {at} by {by}"),
        (Some(at), None) => format!("released {at}"),
        _ => "active".to_owned(),
    };
    format!(
        "{}\t{streams}\t{}..{}\t{state}\tplaced {} by {}\t{}\n",
        hold.id,
        hold.from.map(|day| day.to_string()).unwrap_or_default(),
        hold.to.map(|day| day.to_string()).unwrap_or_default(),
        hold.placed_at,
        hold.placed_by,
        hold.reason
    )
}

pub fn hold(action: HoldAction) -> CliResult<u8> {
    let at = now()?;
    match action {
        HoldAction::Add {
            data,
            streams,
            from,
            until,
            reason,
        } => {
            let mut log = open(&data)?;
            let operator = Operator::of(&log);
            // As the server: named streams need the permission on each,
            // a hold on every stream needs it on the log.
            if streams.is_empty() {
                operator.authorize(&mut log, Action::HoldAdd, Resource::Log, at)?;
            }
            for stream in &streams {
                operator.authorize(&mut log, Action::HoldAdd, Resource::Stream(stream), at)?;
            }
            let hold = log.governance().add_hold(
                HoldSpec {
                    streams,
                    from,
                    to: until,
                    reason,
                },
                &operator.principal,
                at,
            )?;
            log.writer().publish()?;
            let bound = |day: Option<Day>| {
                day.map_or_else(|| "(unbounded)".to_owned(), |day| day.to_string())
            };
            let days = match (hold.from, hold.to) {
                (None, None) => "every day".to_owned(),
                (from, to) => format!("days {} to {}", bound(from), bound(to)),
            };
            eprintln!(
                "stele: placed hold on {}, {days}; recorded as event {}",
                if hold.streams.is_empty() {
                    "every stream".to_owned()
                } else {
                    format!("stream(s) {}", hold.streams.join(", "))
                },
                hold.placed_event
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "pending".into())
            );
            print_out(&format!("{}\n", hold.id))?;
            Ok(0)
        }
        HoldAction::List { data, json } => {
            let mut log = open(&data)?;
            let operator = Operator::of(&log);
            operator.authorize(&mut log, Action::HoldList, Resource::Log, at)?;
            let holds = log.reader().holds().to_vec();
            if json {
                print_out(&format!("{}\n", pretty(&json!({ "holds": holds }))?))?;
            } else {
                let text: String = holds.iter().map(hold_line).collect();
                print_out(&text)?;
            }
            Ok(0)
        }
        HoldAction::Release { data, id } => {
            let mut log = open(&data)?;
            let operator = Operator::of(&log);
            operator.authorize(&mut log, Action::HoldRelease, Resource::Log, at)?;
            let hold = log
                .governance()
                .release_hold(&id, &operator.principal, at)?;
            log.writer().publish()?;
            print_out(&format!(
                "released hold {} (event {})\n",
                hold.id,
                hold.released_event
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "pending".into())
            ))?;
            Ok(0)
        }
    }
}

fn purge_line(t: &Tombstone) -> String {
    format!(
        "purged stream {} epoch {}: {} entries ({}..={}), retention ended {}, decided {} by {}, event {}\n",
        t.stream,
        t.epoch,
        t.entries,
        t.first,
        t.last,
        timestamp_text(t.purge_after),
        timestamp_text(t.decided_at),
        t.requested_by,
        t.event_index
            .map(|i| i.to_string())
            .unwrap_or_else(|| "pending".into())
    )
}

pub fn retention(action: RetentionAction) -> CliResult<u8> {
    let at = now()?;
    match action {
        RetentionAction::Status { data, json } => {
            let mut log = open(&data)?;
            let operator = Operator::of(&log);
            // As `GET /v1/retention`.
            operator.authorize(&mut log, Action::PolicyRead, Resource::Log, at)?;
            let status = log.reader().retention_status(at);
            if json {
                print_out(&format!(
                    "{}\n",
                    pretty(&log.reader().retention_report(at))?
                ))?;
                return Ok(0);
            }
            let mut out = String::new();
            for s in &status {
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\n",
                    s.stream,
                    s.epoch_day,
                    s.purge_after
                        .map(|t| format!("purge after {}", timestamp_text(t)))
                        .unwrap_or_else(|| "kept forever".into()),
                    if s.held_by.is_empty() {
                        "no hold".to_owned()
                    } else {
                        format!("held by {}", s.held_by.join(","))
                    },
                    if s.due { "DUE" } else { "not due" }
                ));
            }
            for t in log.reader().purged().values() {
                out.push_str(&purge_line(t));
            }
            print_out(&out)?;
            Ok(0)
        }
        RetentionAction::Run { data, wait } => {
            let mut log = open(&data)?;
            log.governance().set_retention_grace(retention_grace()?);
            let operator = Operator::of(&log);
            operator.authorize(&mut log, Action::RetentionRun, Resource::Log, at)?;
            let mut run = log.governance().run_retention(&operator.principal, at)?;
            let mut purged = std::mem::take(&mut run.purged);
            while wait && !run.waiting.is_empty() {
                let left = run
                    .waiting
                    .iter()
                    .map(|(_, left)| *left)
                    .max()
                    .unwrap_or_default();
                eprintln!(
                    "stele: {} epoch(s) announced due; waiting {} s before purging",
                    run.waiting.len(),
                    left.as_secs()
                );
                log.writer().publish()?;
                std::thread::sleep(left);
                run = log
                    .governance()
                    .run_retention(&operator.principal, now()?)?;
                purged.append(&mut run.purged);
            }
            log.writer().publish()?;
            for (status, left) in &run.waiting {
                eprintln!(
                    "stele: stream {} epoch {} is due and announced (retention.due); it is purged after {} s more of grace by `stele serve`, or by `stele retention run --wait`",
                    status.stream,
                    status.epoch_day,
                    left.as_secs()
                );
            }
            if purged.is_empty() && run.waiting.is_empty() {
                eprintln!("stele: no epoch is due");
            }
            let text: String = purged.iter().map(purge_line).collect();
            print_out(&text)?;
            Ok(0)
        }
        RetentionAction::Purge {
            data,
            stream,
            epoch,
        } => {
            let day = epoch
                .parse::<Day>()
                .map_err(|e| Failure::usage(format!("--epoch: {e}")))?;
            let mut log = open(&data)?;
            log.governance().set_retention_grace(retention_grace()?);
            let operator = Operator::of(&log);
            operator.authorize(&mut log, Action::RetentionRun, Resource::Log, at)?;
            let result = log
                .governance()
                .purge_epoch(&stream, day, &operator.principal, at);
            // A refusal was recorded; make it part of a checkpoint.
            log.writer().publish()?;
            match result {
                Ok(tombstone) => {
                    print_out(&purge_line(&tombstone))?;
                    Ok(0)
                }
                Err(LogError::Refused(message)) => Err(Failure::refused(message)),
                Err(e) => Err(e.into()),
            }
        }
    }
}
