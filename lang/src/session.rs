//! PSSession objects: what New-PSSession and Get-PSSession output, built from the relay's [`SessionInfo`]. A
//! variable keeps the object; its `State` and `Availability` are read again from the live session whenever the
//! prompt looks at it (a PSSession in PowerShell is a live object too).

use psgate_shared::api::{Availability, SessionId, SessionInfo, SessionState, Transport};
use psgate_shared::clixml::Value;

use crate::values::{self, text};

/// The type name.
pub const PSSESSION: &str = "System.Management.Automation.Runspaces.PSSession";

/// Whether a value is a PSSession.
pub fn is_session(v: &Value) -> bool {
    // The most derived type: Format-Table's and Select-Object's objects made from a PSSession are not one.
    v.as_object().and_then(|o| o.type_names().next()).is_some_and(|t| t.strip_prefix("Deserialized.").unwrap_or(t) == PSSESSION)
}

/// `Transport` as PowerShell names it.
pub fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Ssh => "SSH",
        Transport::Winrm => "WSMan",
        Transport::Local => "Process",
    }
}

/// `State` as PowerShell names it (RunspaceState).
pub fn state_name(s: SessionState) -> &'static str {
    match s {
        SessionState::Opening => "Opening",
        SessionState::Opened => "Opened",
        SessionState::Disconnected => "Disconnected",
        SessionState::Broken => "Broken",
        SessionState::Closed => "Closed",
    }
}

/// `Availability` as PowerShell names it (RunspaceAvailability).
pub fn availability_name(a: Availability) -> &'static str {
    match a {
        Availability::Available => "Available",
        Availability::Busy => "Busy",
        Availability::None => "None",
    }
}

/// `ConfigurationName` as PowerShell shows it: the endpoint over WinRM, `DefaultShell` over SSH.
fn configuration(info: &SessionInfo) -> String {
    match info.transport {
        Transport::Winrm => info.configuration_name.clone().unwrap_or_else(|| "Microsoft.PowerShell".into()),
        Transport::Ssh => "DefaultShell".into(),
        Transport::Local => String::new(),
    }
}

/// The PSSession object of a session.
pub fn object(info: &SessionInfo) -> Value {
    let instance = info.instance_id.as_deref().and_then(|i| uuid::Uuid::parse_str(i).ok()).map_or(Value::Nil, Value::Guid);
    values::object(
        &[PSSESSION],
        Some(format!("[PSSession]{}", info.name)),
        vec![
            ("Id", values::int(info.id.0 as i64)),
            ("Name", Value::string(info.name.as_str())),
            ("Transport", Value::string(transport_name(info.transport))),
            ("ComputerName", Value::string(info.computer_name.as_str())),
            ("ComputerType", Value::string("RemoteMachine")),
            ("State", Value::string(state_name(info.state))),
            ("ConfigurationName", Value::string(configuration(info))),
            ("InstanceId", instance),
            ("Availability", Value::string(availability_name(info.availability))),
        ],
    )
}

/// A PSSession object for a session that is gone (removed): its last picture with `State` Closed.
pub fn closed(v: &Value) -> Value {
    let Some(o) = v.as_object() else { return v.clone() };
    let mut o = o.clone();
    for p in &mut o.extended {
        if p.name.eq_ignore_ascii_case("State") {
            p.value = Value::string("Closed");
        } else if p.name.eq_ignore_ascii_case("Availability") {
            p.value = Value::string("None");
        }
    }
    Value::object(o)
}

/// The relay's id of a PSSession object (`None` for a shell a target listed that is not a session here).
pub fn id_of(v: &Value) -> Option<SessionId> {
    let id = values::integer(&values::property(v, "Id")?)?;
    (id > 0).then_some(SessionId(id as u64))
}

/// The `InstanceId` of a PSSession object, as text.
pub fn instance_of(v: &Value) -> Option<String> {
    values::property(v, "InstanceId").filter(|i| !i.is_nil()).map(|i| text(&i))
}
