//! Background jobs: `Invoke-Command -AsJob` and Get-Job, Receive-Job, Wait-Job, Stop-Job, Remove-Job. A job is a run
//! of the remoting side the runspace reads whenever a job cmdlet looks at it; what it received waits in the job
//! until Receive-Job takes it (`-Keep` leaves it there).

use std::time::Duration;

use psgate_shared::api::{PipelineState, RecordKind, SessionId};
use psgate_shared::clixml::Value;

use super::cmdlets::Cmdlet;
use crate::bind::{Bound, Kind, Pipe, Signature, p};
use crate::error::{Category, ErrorSpec, Failure};
use crate::eval::{Ctx, Flow, R, Sink};
use crate::remote::{Invocation, RemoteEvent, Remoting as _, RunId};
use crate::values::{self, text};

/// Events a job keeps before it drops its oldest output.
pub const JOB_EVENTS: usize = 100_000;

/// A background job.
#[derive(Debug)]
pub(crate) struct Job {
    pub id: u32,
    pub name: String,
    pub command: String,
    pub location: String,
    run: RunId,
    /// Output and records not yet received (or kept).
    events: Vec<(RecordKindOrOutput, Value)>,
    /// How many of `events` Receive-Job has given (without `-Keep` they are removed instead).
    state: &'static str,
    done: bool,
    failed: bool,
    stopped: bool,
    /// Sessions made for it (`-ComputerName`), removed when it ends.
    temporary: Vec<SessionId>,
    dropped: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordKindOrOutput {
    Output,
    Record(RecordKind),
}

const STATE: Kind = Kind::Enum("System.Management.Automation.JobState", &["NotStarted", "Running", "Completed", "Failed", "Stopped", "Blocked", "Suspended", "Disconnected", "Suspending", "Stopping", "AtBreakpoint"]);

pub(crate) static CMDLETS: &[Cmdlet] = &[
    Cmdlet {
        sig: Signature {
            name: "Get-Job",
            class: "Microsoft.PowerShell.Commands.GetJobCommand",
            params: &[
                p("Id", Kind::Ints, "Jobs with these ids.").at(0).sets(&["SessionIdParameterSet"]).pipe(Pipe::ByPropertyName),
                p("Name", Kind::Strings, "Jobs with these names (wildcards allowed).").at(0).sets(&["NameParameterSet"]).mandatory(&["NameParameterSet"]).pipe(Pipe::ByPropertyName),
                p("State", STATE, "Jobs in this state.").sets(&["StateParameterSet"]).mandatory(&["StateParameterSet"]).pipe(Pipe::ByPropertyName),
            ],
            sets: &["SessionIdParameterSet", "NameParameterSet", "StateParameterSet"],
        },
        aliases: &["gjb"],
        synopsis: "Gets the background jobs of psgate's prompt.",
        run: get_job,
    },
    Cmdlet {
        sig: Signature {
            name: "Receive-Job",
            class: "Microsoft.PowerShell.Commands.ReceiveJobCommand",
            params: &[
                p("Job", Kind::Objects, "The jobs whose results to get.").at(0).sets(&["Location"]).mandatory(&["Location"]).pipe(Pipe::Both),
                p("Id", Kind::Ints, "Jobs with these ids.").at(0).sets(&["SessionIdParameterSet"]).mandatory(&["SessionIdParameterSet"]).pipe(Pipe::ByPropertyName),
                p("Name", Kind::Strings, "Jobs with these names.").at(0).sets(&["NameParameterSet"]).mandatory(&["NameParameterSet"]).pipe(Pipe::ByPropertyName),
                p("Keep", Kind::Switch, "Keep the results in the job to receive them again."),
                p("Wait", Kind::Switch, "Wait until the jobs end."),
                p("AutoRemoveJob", Kind::Switch, "Remove the jobs once received (with -Wait)."),
            ],
            sets: &["Location", "SessionIdParameterSet", "NameParameterSet"],
        },
        aliases: &["rcjb"],
        synopsis: "Gets the results of background jobs.",
        run: receive_job,
    },
    Cmdlet {
        sig: Signature {
            name: "Wait-Job",
            class: "Microsoft.PowerShell.Commands.WaitJobCommand",
            params: &[
                p("Job", Kind::Objects, "The jobs to wait for.").at(0).sets(&["JobParameterSet"]).mandatory(&["JobParameterSet"]).pipe(Pipe::ByValue),
                p("Id", Kind::Ints, "Jobs with these ids.").at(0).sets(&["SessionIdParameterSet"]).mandatory(&["SessionIdParameterSet"]).pipe(Pipe::ByPropertyName),
                p("Name", Kind::Strings, "Jobs with these names.").at(0).sets(&["NameParameterSet"]).mandatory(&["NameParameterSet"]).pipe(Pipe::ByPropertyName),
                p("Any", Kind::Switch, "Return when any job ends."),
                p("Timeout", Kind::Int, "Give up after this many seconds.").alias(&["TimeoutSec"]),
            ],
            sets: &["JobParameterSet", "SessionIdParameterSet", "NameParameterSet"],
        },
        aliases: &["wjb"],
        synopsis: "Waits until background jobs end.",
        run: wait_job,
    },
    Cmdlet {
        sig: Signature {
            name: "Stop-Job",
            class: "Microsoft.PowerShell.Commands.StopJobCommand",
            params: &[
                p("Job", Kind::Objects, "The jobs to stop.").at(0).sets(&["JobParameterSet"]).mandatory(&["JobParameterSet"]).pipe(Pipe::ByValue),
                p("Id", Kind::Ints, "Jobs with these ids.").at(0).sets(&["SessionIdParameterSet"]).mandatory(&["SessionIdParameterSet"]).pipe(Pipe::ByPropertyName),
                p("Name", Kind::Strings, "Jobs with these names.").at(0).sets(&["NameParameterSet"]).mandatory(&["NameParameterSet"]).pipe(Pipe::ByPropertyName),
            ],
            sets: &["JobParameterSet", "SessionIdParameterSet", "NameParameterSet"],
        },
        aliases: &["spjb"],
        synopsis: "Stops background jobs.",
        run: stop_job,
    },
    Cmdlet {
        sig: Signature {
            name: "Remove-Job",
            class: "Microsoft.PowerShell.Commands.RemoveJobCommand",
            params: &[
                p("Job", Kind::Objects, "The jobs to remove.").at(0).sets(&["JobParameterSet"]).mandatory(&["JobParameterSet"]).pipe(Pipe::ByValue),
                p("Id", Kind::Ints, "Jobs with these ids.").at(0).sets(&["SessionIdParameterSet"]).mandatory(&["SessionIdParameterSet"]).pipe(Pipe::ByPropertyName),
                p("Name", Kind::Strings, "Jobs with these names.").at(0).sets(&["NameParameterSet"]).mandatory(&["NameParameterSet"]).pipe(Pipe::ByPropertyName),
                p("Force", Kind::Switch, "Stop running jobs first."),
            ],
            sets: &["JobParameterSet", "SessionIdParameterSet", "NameParameterSet"],
        },
        aliases: &["rjb"],
        synopsis: "Removes background jobs.",
        run: remove_job,
    },
];

/// Starts `Invoke-Command -AsJob`: the job object is the output.
pub(crate) fn start(cx: &mut Ctx<'_>, invocation: Invocation, tag: bool, name: Option<String>, temporary: Vec<SessionId>, sink: &mut Sink<'_>) -> R<()> {
    let sessions = cx.remoting.list();
    let location: Vec<String> = invocation.sessions.iter().filter_map(|id| sessions.iter().find(|s| s.id == *id).map(|s| s.computer_name.clone())).collect();
    let command = invocation.text.clone();
    let run = cx.remoting.start(invocation, tag).map_err(|e| {
        Flow::Error(Failure::new(ErrorSpec {
            message: e.message,
            id: "InvokeCommandFailed".into(),
            category: Category::InvalidOperation,
            exception: "System.InvalidOperationException",
            target: None,
            activity: "Invoke-Command".into(),
            position: None,
        }))
    })?;
    cx.rs.next_job += 1;
    let id = cx.rs.next_job;
    let job = Job {
        id,
        name: name.unwrap_or_else(|| format!("Job{id}")),
        command,
        location: location.join(", "),
        run,
        events: Vec::new(),
        state: "Running",
        done: false,
        failed: false,
        stopped: false,
        temporary,
        dropped: 0,
    };
    let object = job_object(&job);
    cx.rs.jobs.push(job);
    cx.emit(sink, object);
    Ok(())
}

/// Reads what the jobs' runs have produced since last time (`wait`: at most this long for the first event).
fn pump(cx: &mut Ctx<'_>, wait: Duration) {
    let mut first = true;
    for i in 0..cx.rs.jobs.len() {
        if cx.rs.jobs[i].done {
            continue;
        }
        loop {
            let run = cx.rs.jobs[i].run;
            let event = cx.remoting.next_event(run, if first { wait } else { Duration::ZERO });
            first = false;
            let Some(event) = event else { break };
            let job = &mut cx.rs.jobs[i];
            match event {
                RemoteEvent::Output { value, .. } => job.events.push((RecordKindOrOutput::Output, value)),
                RemoteEvent::Record { kind, value, .. } => job.events.push((RecordKindOrOutput::Record(kind), value)),
                RemoteEvent::Finished { state, error, computer_name, .. } => {
                    match state {
                        PipelineState::Failed => {
                            job.failed = true;
                            let record = error.filter(|e| values::is_type(e, "System.Management.Automation.ErrorRecord")).unwrap_or_else(|| {
                                Failure::new(ErrorSpec {
                                    message: format!("[{computer_name}] the command failed"),
                                    id: "JobFailed".into(),
                                    category: Category::OperationStopped,
                                    exception: "System.Management.Automation.RemoteException",
                                    target: Some(computer_name.clone()),
                                    activity: String::new(),
                                    position: None,
                                })
                                .record
                            });
                            job.events.push((RecordKindOrOutput::Record(RecordKind::Error), record));
                        }
                        PipelineState::Stopped => job.stopped = true,
                        _ => {}
                    }
                }
                RemoteEvent::HostCall { session, pipeline, call_id, .. } => {
                    // Nobody is at a background job's console: the call is refused, as PowerShell's job host does.
                    let answer = psgate_shared::api::HostAnswer::Error { message: "a background job cannot prompt; run the command without -AsJob".into() };
                    let _ = cx.remoting.answer(session, pipeline, call_id, answer);
                }
                RemoteEvent::Started { .. } => {}
                RemoteEvent::Done => {
                    job.done = true;
                    job.state = if job.stopped {
                        "Stopped"
                    } else if job.failed {
                        "Failed"
                    } else {
                        "Completed"
                    };
                    let temporary = std::mem::take(&mut job.temporary);
                    cx.remoting.forget(run);
                    if !temporary.is_empty() {
                        let _ = cx.remoting.remove(&temporary);
                    }
                    break;
                }
            }
            let job = &mut cx.rs.jobs[i];
            if job.events.len() > JOB_EVENTS {
                let extra = job.events.len() - JOB_EVENTS;
                job.events.drain(..extra);
                job.dropped += extra as u64;
            }
        }
    }
}

fn job_object(job: &Job) -> Value {
    values::object(
        &["System.Management.Automation.PSRemotingJob", "System.Management.Automation.Job"],
        Some(job.name.clone()),
        vec![
            ("Id", Value::I32(job.id as i32)),
            ("Name", Value::string(job.name.as_str())),
            ("PSJobTypeName", Value::string("RemoteJob")),
            ("State", Value::string(job.state)),
            ("HasMoreData", Value::Bool(!job.events.is_empty())),
            ("Location", Value::string(job.location.as_str())),
            ("Command", Value::string(job.command.as_str())),
        ],
    )
}

/// The indexes of the jobs the Job/Id/Name/State parameters select; unknown ones are errors (written).
fn selected(cx: &mut Ctx<'_>, b: &Bound, cmdlet: &str) -> R<Vec<usize>> {
    let mut out: Vec<usize> = Vec::new();
    let add = |i: usize, out: &mut Vec<usize>| {
        if !out.contains(&i) {
            out.push(i);
        }
    };
    let mut wanted_ids: Vec<i64> = b.ints("Id");
    for v in b.items("Job") {
        if let Some(id) = values::property(&v, "Id").and_then(|i| values::integer(&i)) {
            wanted_ids.push(id);
        }
    }
    for id in wanted_ids {
        match cx.rs.jobs.iter().position(|j| i64::from(j.id) == id) {
            Some(i) => add(i, &mut out),
            None => cx.write_error(Failure::new(ErrorSpec {
                message: format!("The command cannot find a job with the job ID {id}. Verify the value of the Id parameter and then try the command again."),
                id: format!("JobWithSpecifiedSessionIdNotFound,Microsoft.PowerShell.Commands.{cmdlet}Command"),
                category: Category::ObjectNotFound,
                exception: "System.ArgumentException",
                target: Some(id.to_string()),
                activity: String::new(),
                position: None,
            }))?,
        }
    }
    for name in b.strings("Name") {
        let found: Vec<usize> = cx.rs.jobs.iter().enumerate().filter(|(_, j)| values::like(&j.name, &name, false)).map(|(i, _)| i).collect();
        if found.is_empty() && !values::has_wildcards(&name) {
            cx.write_error(Failure::new(ErrorSpec {
                message: format!("The command cannot find the job because the job name {name} was not found. Verify the value of the Name parameter, and then try the command again."),
                id: format!("JobWithSpecifiedNameNotFound,Microsoft.PowerShell.Commands.{cmdlet}Command"),
                category: Category::ObjectNotFound,
                exception: "System.ArgumentException",
                target: Some(name.clone()),
                activity: String::new(),
                position: None,
            }))?;
        }
        for i in found {
            add(i, &mut out);
        }
    }
    if let Some(state) = b.string("State") {
        for (i, j) in cx.rs.jobs.iter().enumerate() {
            if j.state.eq_ignore_ascii_case(&state) {
                add(i, &mut out);
            }
        }
    }
    Ok(out)
}

fn get_job(cx: &mut Ctx<'_>, b: &Bound, sink: &mut Sink<'_>) -> R<()> {
    pump(cx, Duration::ZERO);
    let chosen: Vec<usize> = if b.has("Id") || b.has("Name") || b.has("State") { selected(cx, b, "GetJob")? } else { (0..cx.rs.jobs.len()).collect() };
    for i in chosen {
        let v = job_object(&cx.rs.jobs[i]);
        cx.emit(sink, v);
    }
    Ok(())
}

fn receive_job(cx: &mut Ctx<'_>, b: &Bound, sink: &mut Sink<'_>) -> R<()> {
    let chosen = selected(cx, b, "ReceiveJob")?;
    if b.switch("Wait") {
        wait_for(cx, &chosen, false, None)?;
    } else {
        pump(cx, Duration::ZERO);
    }
    let keep = b.switch("Keep");
    for &i in &chosen {
        let events = if keep { cx.rs.jobs[i].events.clone() } else { std::mem::take(&mut cx.rs.jobs[i].events) };
        if cx.rs.jobs[i].dropped > 0 {
            let n = cx.rs.jobs[i].dropped;
            let record = values::object(&["System.Management.Automation.WarningRecord"], Some(format!("{n} older results of this job were not kept.")), vec![("Message", Value::string(format!("{n} older results of this job were not kept.")))]);
            cx.host.record(RecordKind::Warning, record);
        }
        for (kind, value) in events {
            match kind {
                RecordKindOrOutput::Output => cx.emit(sink, value),
                RecordKindOrOutput::Record(RecordKind::Error) => cx.write_error(Failure { record: value })?,
                RecordKindOrOutput::Record(kind) => cx.host.record(kind, value),
            }
        }
    }
    if b.switch("Wait") && b.switch("AutoRemoveJob") {
        let mut chosen = chosen;
        chosen.sort_unstable();
        for i in chosen.into_iter().rev() {
            cx.rs.jobs.remove(i);
        }
    }
    Ok(())
}

/// Waits until the jobs (or one of them, `any`) have ended, at most `timeout`.
fn wait_for(cx: &mut Ctx<'_>, chosen: &[usize], any: bool, timeout: Option<Duration>) -> R<bool> {
    let mut waited = Duration::ZERO;
    loop {
        pump(cx, crate::eval::POLL);
        let done: Vec<bool> = chosen.iter().map(|&i| cx.rs.jobs[i].done).collect();
        if (any && done.iter().any(|d| *d)) || done.iter().all(|d| *d) {
            return Ok(true);
        }
        cx.check_stop()?;
        waited += crate::eval::POLL;
        if timeout.is_some_and(|t| waited >= t) {
            return Ok(false);
        }
    }
}

fn wait_job(cx: &mut Ctx<'_>, b: &Bound, sink: &mut Sink<'_>) -> R<()> {
    let chosen = selected(cx, b, "WaitJob")?;
    let timeout = b.int("Timeout").filter(|t| *t >= 0).map(|t| Duration::from_secs(t as u64));
    wait_for(cx, &chosen, b.switch("Any"), timeout)?;
    for &i in &chosen {
        if cx.rs.jobs[i].done {
            let v = job_object(&cx.rs.jobs[i]);
            cx.emit(sink, v);
        }
    }
    Ok(())
}

fn stop_job(cx: &mut Ctx<'_>, b: &Bound, _sink: &mut Sink<'_>) -> R<()> {
    let chosen = selected(cx, b, "StopJob")?;
    for &i in &chosen {
        if !cx.rs.jobs[i].done {
            cx.rs.jobs[i].stopped = true;
            let run = cx.rs.jobs[i].run;
            cx.remoting.stop(run);
        }
    }
    wait_for(cx, &chosen, false, Some(Duration::from_secs(10)))?;
    Ok(())
}

fn remove_job(cx: &mut Ctx<'_>, b: &Bound, _sink: &mut Sink<'_>) -> R<()> {
    pump(cx, Duration::ZERO);
    let mut chosen = selected(cx, b, "RemoveJob")?;
    for &i in &chosen {
        if !cx.rs.jobs[i].done {
            if !b.switch("Force") {
                let j = &cx.rs.jobs[i];
                return Err(Flow::Error(Failure::new(ErrorSpec {
                    message: format!("The command cannot remove the job with the job ID {} because the job is not finished. To remove the job, first stop the job, or use the Force parameter.", j.id),
                    id: "JobObjectNotFinishedCannotBeRemoved,Microsoft.PowerShell.Commands.RemoveJobCommand".into(),
                    category: Category::InvalidOperation,
                    exception: "System.ArgumentException",
                    target: Some(text(&Value::I32(j.id as i32))),
                    activity: String::new(),
                    position: None,
                })));
            }
            let run = cx.rs.jobs[i].run;
            cx.remoting.stop(run);
            cx.remoting.forget(run);
            let temporary = std::mem::take(&mut cx.rs.jobs[i].temporary);
            if !temporary.is_empty() {
                let _ = cx.remoting.remove(&temporary);
            }
        }
    }
    chosen.sort_unstable();
    for i in chosen.into_iter().rev() {
        cx.rs.jobs.remove(i);
    }
    Ok(())
}
