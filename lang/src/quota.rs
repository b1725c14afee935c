//! psgate's quota cmdlets at the local prompt. PowerShell shows a server's quotas as the WSMan provider's items
//! (`Get-Item WSMan:\localhost\Shell\MaxShellsPerUser`); the relay is a remoting server of its own whose quotas are in
//! its configuration, so these are psgate's own nouns:
//!
//! - `Get-PSGateQuota`: the relay's quotas that apply to the user, each with its limit and the user's use now (an
//!   admin's `-AllUsers`: every user's);
//! - `Get-PSGateSession` (admins): every user's sessions, with their owner and the time their quotas leave them;
//! - `Remove-PSGateSession -User <name> -Id <n>` (admins): closes anyone's session, recorded in the relay's audit.

use psgate_shared::api::SessionId;
use psgate_shared::clixml::{TimeSpan, Value};

use crate::bind::{Bound, Kind, Signature, p};
use crate::cmdlets::Cmdlet;
use crate::error::{Category, ErrorSpec, Failure};
use crate::eval::{Ctx, Flow, R, Sink};
use crate::remote::{RemoteError, Remoting as _};
use crate::values;

/// The type name of Get-PSGateQuota's objects.
pub const QUOTA_TYPE: &str = "psgate.Quota";
/// The type name of Get-PSGateSession's objects.
pub const USER_SESSION_TYPE: &str = "psgate.UserSession";

pub(crate) static CMDLETS: &[Cmdlet] = &[
    Cmdlet {
        sig: Signature {
            name: "Get-PSGateQuota",
            class: "psgate.GetPSGateQuotaCommand",
            params: &[
                p("Name", Kind::Strings, "Only these quotas (MaxShellsPerUser, IdleTimeout, …; wildcards allowed).").at(0),
                p("AllUsers", Kind::Switch, "Every user's use (relay admins only)."),
                p("ComputerName", Kind::Strings, "A WinRM computer's own quotas (WSMan:\\<computer>\\Shell, …\\Service, …\\Plugin\\<name>\\Quotas) against your shells there."),
            ],
            sets: &[],
        },
        aliases: &[],
        synopsis: "Gets the relay's session quotas for you (or a WinRM computer's): each limit, where it is set, and your use of it.",
        run: get_quota,
    },
    Cmdlet {
        sig: Signature {
            name: "Get-PSGateSession",
            class: "psgate.GetPSGateSessionCommand",
            params: &[p("User", Kind::Strings, "Only these users' sessions (wildcards allowed).").at(0)],
            sets: &[],
        },
        aliases: &[],
        synopsis: "Gets every user's sessions on the relay, with the time their quotas leave them (relay admins only).",
        run: get_user_sessions,
    },
    Cmdlet {
        sig: Signature {
            name: "Remove-PSGateSession",
            class: "psgate.RemovePSGateSessionCommand",
            params: &[
                p("User", Kind::String, "The session's owner.").at(0).mandatory(&["*"]),
                p("Id", Kind::Ints, "The session's Id (as its owner's Get-PSSession shows it).").at(1).mandatory(&["*"]),
            ],
            sets: &[],
        },
        aliases: &[],
        synopsis: "Closes any user's session, recorded in the relay's audit (relay admins only).",
        run: remove_user_session,
    },
];

/// A TimeSpan of whole seconds.
fn seconds(s: u64) -> Value {
    Value::TimeSpan(TimeSpan(i64::try_from(s).unwrap_or(i64::MAX / 10_000_000).saturating_mul(10_000_000)))
}

fn optional(v: Option<Value>) -> Value {
    v.unwrap_or(Value::Nil)
}

fn failure(e: RemoteError, id: &str, activity: &str) -> Failure {
    let category = match e.code {
        psgate_shared::api::ErrorCode::UnknownSession => Category::ObjectNotFound,
        psgate_shared::api::ErrorCode::NotSupported => Category::NotImplemented,
        _ => Category::PermissionDenied,
    };
    Failure::new(ErrorSpec {
        message: e.message,
        id: format!("{id},psgate.{}Command", activity.replace('-', "")),
        category,
        exception: "System.UnauthorizedAccessException",
        target: None,
        activity: activity.into(),
        position: None,
    })
}

fn get_quota(cx: &mut Ctx<'_>, b: &Bound, sink: &mut Sink<'_>) -> R<()> {
    let all = b.switch("AllUsers");
    let computers = b.strings("ComputerName");
    let quotas = if computers.is_empty() {
        cx.remoting.quotas(all).map_err(|e| Flow::Error(failure(e, "QuotaNotAvailable", "Get-PSGateQuota")))?
    } else {
        let mut out = Vec::new();
        for computer in &computers {
            match cx.remoting.target_quotas(computer) {
                Ok(q) => out.extend(q),
                Err(e) => cx.write_error(failure(e, "TargetQuotaNotAvailable", "Get-PSGateQuota"))?,
            }
        }
        out
    };
    let names = b.strings("Name");
    for q in quotas.into_iter().filter(|q| names.is_empty() || names.iter().any(|n| values::like(&q.quota, n, false))) {
        let limit = q.limit.map(|l| if q.seconds { seconds(l) } else { values::int(l as i64) });
        let used = q.used.map(|u| if q.seconds { seconds(u) } else { values::int(u as i64) });
        let mut props = vec![("Quota", Value::string(q.quota.as_str())), ("Limit", optional(limit)), ("Used", optional(used)), ("Scope", Value::string(q.scope.as_str()))];
        if all {
            props.insert(0, ("User", q.user.map_or(Value::Nil, Value::string)));
        }
        cx.emit(sink, values::object(&[QUOTA_TYPE], None, props));
    }
    Ok(())
}

fn get_user_sessions(cx: &mut Ctx<'_>, b: &Bound, sink: &mut Sink<'_>) -> R<()> {
    let sessions = cx.remoting.user_sessions().map_err(|e| Flow::Error(failure(e, "AccessDenied", "Get-PSGateSession")))?;
    let users = b.strings("User");
    for s in sessions.into_iter().filter(|s| users.is_empty() || users.iter().any(|u| values::like(&s.owner, u, false))) {
        let info = &s.info;
        let object = values::object(
            &[USER_SESSION_TYPE],
            None,
            vec![
                ("User", Value::string(s.owner.as_str())),
                ("Id", values::int(info.id.0 as i64)),
                ("Name", Value::string(info.name.as_str())),
                ("ComputerName", Value::string(info.computer_name.as_str())),
                ("Transport", Value::string(crate::session::transport_name(info.transport))),
                ("State", Value::string(crate::session::state_name(info.state))),
                ("IdleTimeLeft", optional(s.idle_left_secs.map(seconds))),
                ("RunTimeLeft", optional(s.run_left_secs.map(seconds))),
            ],
        );
        cx.emit(sink, object);
    }
    Ok(())
}

fn remove_user_session(cx: &mut Ctx<'_>, b: &Bound, _sink: &mut Sink<'_>) -> R<()> {
    let user = b.string("User").unwrap_or_default();
    for id in b.items("Id").iter().filter_map(values::integer) {
        let Ok(id) = u64::try_from(id) else { continue };
        if let Err(e) = cx.remoting.close_user_session(&user, SessionId(id)) {
            cx.write_error(failure(e, "RemovePSGateSessionFailed", "Remove-PSGateSession"))?;
        }
    }
    Ok(())
}

/// A PSSession object with the time its quotas leave it (`IdleTimeLeft`, `RunTimeLeft`), where a quota applies.
pub(crate) fn with_time_left(v: Value, (idle, run): (Option<u64>, Option<u64>)) -> Value {
    if idle.is_none() && run.is_none() {
        return v;
    }
    let Value::Object(o) = v else { return v };
    let mut o = std::sync::Arc::unwrap_or_clone(o);
    o.extended.retain(|p| !matches!(p.name.as_str(), "IdleTimeLeft" | "RunTimeLeft"));
    o.extended.push(psgate_shared::clixml::Property::new("IdleTimeLeft", optional(idle.map(seconds))));
    o.extended.push(psgate_shared::clixml::Property::new("RunTimeLeft", optional(run.map(seconds))));
    Value::object(o)
}
