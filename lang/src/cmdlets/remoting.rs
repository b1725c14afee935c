//! The remoting cmdlets: New-, Get-, Remove-, Enter-, Exit-, Disconnect-, Connect-, Receive-PSSession and
//! Invoke-Command, on the user's sessions through [`crate::remote::Remoting`].

use psgate_shared::api::{ErrorCode, HostAnswer, OutputBufferingMode, PipelineState, SessionId, SessionInfo, SessionState, Target, Transport, WinrmAuth};
use psgate_shared::clixml::Value;
use psgate_shared::psrp::host::HostMethod;

use super::Cmdlet;
use crate::bind::{Bound, Kind, Param, Pipe, Signature, p};
use crate::error::{Category, ErrorSpec, Failure};
use crate::eval::{Ctx, Entered, Flow, R, Sink};
use crate::remote::{Invocation, RemoteError, Remoting as _};
use crate::session;
use crate::values::{self, text};

const AUTH: Kind = Kind::Enum("System.Management.Automation.Runspaces.AuthenticationMechanism", &["Default", "Basic", "Negotiate", "NegotiateWithImplicitCredential", "Credssp", "Digest", "Kerberos"]);
const STATE: Kind = Kind::Enum("Microsoft.PowerShell.Commands.SessionFilterState", &["All", "Opened", "Disconnected", "Closed", "Broken"]);
const BUFFERING: Kind = Kind::Enum("System.Management.Automation.Runspaces.OutputBufferingMode", &["None", "Drop", "Block"]);

// The WinRM connection parameters shared by the ComputerName sets.
const CREDENTIAL: Param = p("Credential", Kind::Credential, "A user account that has permission to perform this action (PSCredential, or a user name to be asked the password of).");
const PORT: Param = p("Port", Kind::Int, "The port on the remote computer (WinRM 5985, HTTPS 5986, SSH 22 by default).");
const USE_SSL: Param = p("UseSSL", Kind::Switch, "Use HTTPS (WinRM over TLS, port 5986).");
const AUTHENTICATION: Param = p("Authentication", AUTH, "How the credentials are checked: Default or Negotiate (Kerberos, else NTLM), Kerberos, Basic.");
const CONFIGURATION: Param = p("ConfigurationName", Kind::String, "The session configuration (endpoint) on the remote computer, e.g. a JEA endpoint.");

pub(crate) static CMDLETS: &[Cmdlet] = &[
    Cmdlet {
        sig: Signature {
            name: "New-PSSession",
            class: "Microsoft.PowerShell.Commands.NewPSSessionCommand",
            params: &[
                p("ComputerName", Kind::Strings, "The computers to connect to over WinRM (WS-Management).").alias(&["Cn"]).at(0).sets(&["ComputerName"]).pipe(Pipe::Both),
                p("Session", Kind::Sessions, "Sessions to open again with the same settings.").at(0).sets(&["Session"]).pipe(Pipe::ByValue),
                p("HostName", Kind::Strings, "The computers to connect to over SSH (user@host:port allowed).").at(0).sets(&["SSHHost"]).mandatory(&["SSHHost"]),
                p("UserName", Kind::String, "The user to log in as over SSH.").sets(&["SSHHost"]),
                p("KeyFilePath", Kind::String, "A private key file on the relay's machine for SSH.").alias(&["IdentityFilePath"]).sets(&["SSHHost"]),
                p("Subsystem", Kind::String, "The SSH subsystem (default powershell).").sets(&["SSHHost"]),
                p("SSHTransport", Kind::Switch, "Use SSH (implied by -HostName).").sets(&["SSHHost"]),
                CREDENTIAL.sets(&["ComputerName"]),
                PORT.sets(&["ComputerName", "SSHHost"]),
                USE_SSL.sets(&["ComputerName"]),
                AUTHENTICATION.sets(&["ComputerName"]),
                CONFIGURATION.sets(&["ComputerName"]),
                p("Name", Kind::Strings, "Friendly names for the sessions, in the order of the computers."),
                p("ThrottleLimit", Kind::Int, "How many sessions are opened at once (accepted; psgate opens them all at once)."),
                p("EnableNetworkAccess", Kind::Switch, "Accepted for compatibility.").sets(&["ComputerName", "Session"]),
            ],
            sets: &["ComputerName", "Session", "SSHHost"],
        },
        aliases: &["nsn"],
        synopsis: "Creates persistent connections to local and remote computers.",
        run: new_pssession,
    },
    Cmdlet {
        sig: Signature {
            name: "Get-PSSession",
            class: "Microsoft.PowerShell.Commands.GetPSSessionCommand",
            params: &[
                p("Name", Kind::Strings, "Sessions with these friendly names (wildcards allowed).").sets(&["Name", "ComputerName"]).pipe(Pipe::ByPropertyName),
                p("Id", Kind::Ints, "Sessions with these ids.").at(0).sets(&["Id"]).mandatory(&["Id"]).pipe(Pipe::ByPropertyName),
                p("InstanceId", Kind::Guids, "Sessions with these instance ids.").sets(&["InstanceId", "ComputerInstanceId"]).mandatory(&["InstanceId"]).pipe(Pipe::ByPropertyName),
                p("ComputerName", Kind::Strings, "Sessions connected to these computers (wildcards allowed); with -Credential, also the WinRM shells the computers keep for you.")
                    .alias(&["Cn"])
                    .at(0)
                    .sets(&["ComputerName", "ComputerInstanceId"])
                    .mandatory(&["ComputerName", "ComputerInstanceId"])
                    .pipe(Pipe::ByPropertyName),
                p("State", STATE, "Only sessions in this state."),
                CREDENTIAL.sets(&["ComputerName", "ComputerInstanceId"]),
                PORT.sets(&["ComputerName", "ComputerInstanceId"]),
                USE_SSL.sets(&["ComputerName", "ComputerInstanceId"]),
                AUTHENTICATION.sets(&["ComputerName", "ComputerInstanceId"]),
                CONFIGURATION.sets(&["ComputerName", "ComputerInstanceId"]),
                p("ThrottleLimit", Kind::Int, "Accepted for compatibility.").sets(&["ComputerName", "ComputerInstanceId"]),
            ],
            sets: &["Name", "Id", "InstanceId", "ComputerName", "ComputerInstanceId"],
        },
        aliases: &["gsn"],
        synopsis: "Gets the PowerShell sessions (PSSessions) psgate holds for you.",
        run: get_pssession,
    },
    Cmdlet {
        sig: Signature {
            name: "Remove-PSSession",
            class: "Microsoft.PowerShell.Commands.RemovePSSessionCommand",
            params: &[
                p("Session", Kind::Sessions, "The sessions to close.").at(0).sets(&["Session"]).mandatory(&["Session"]).pipe(Pipe::Both),
                p("Id", Kind::Ints, "Sessions with these ids.").at(0).sets(&["Id"]).mandatory(&["Id"]).pipe(Pipe::ByPropertyName),
                p("Name", Kind::Strings, "Sessions with these names.").sets(&["Name"]).mandatory(&["Name"]).pipe(Pipe::ByPropertyName),
                p("InstanceId", Kind::Guids, "Sessions with these instance ids.").sets(&["InstanceId"]).mandatory(&["InstanceId"]).pipe(Pipe::ByPropertyName),
                p("ComputerName", Kind::Strings, "Sessions connected to these computers.").alias(&["Cn"]).at(0).sets(&["ComputerName"]).mandatory(&["ComputerName"]).pipe(Pipe::ByPropertyName),
            ],
            sets: &["Id", "Session", "Name", "InstanceId", "ComputerName"],
        },
        aliases: &["rsn"],
        synopsis: "Closes one or more PowerShell sessions (PSSessions).",
        run: remove_pssession,
    },
    Cmdlet {
        sig: Signature {
            name: "Enter-PSSession",
            class: "Microsoft.PowerShell.Commands.EnterPSSessionCommand",
            params: &[
                p("ComputerName", Kind::String, "A computer to connect to over WinRM with a temporary session.").alias(&["Cn"]).at(0).sets(&["ComputerName"]).mandatory(&["ComputerName"]).pipe(Pipe::Both),
                p("Session", Kind::Session, "The session to enter.").at(0).sets(&["Session"]).pipe(Pipe::Both),
                p("Id", Kind::Int, "The id of the session to enter.").at(0).sets(&["Id"]).pipe(Pipe::ByPropertyName),
                p("Name", Kind::String, "The name of the session to enter.").sets(&["Name"]).pipe(Pipe::ByPropertyName),
                p("InstanceId", Kind::Guids, "The instance id of the session to enter.").sets(&["InstanceId"]).pipe(Pipe::ByPropertyName),
                p("HostName", Kind::String, "A computer to connect to over SSH with a temporary session.").at(0).sets(&["SSHHost"]).mandatory(&["SSHHost"]).pipe(Pipe::ByValue),
                p("UserName", Kind::String, "The user to log in as over SSH.").sets(&["SSHHost"]),
                p("KeyFilePath", Kind::String, "A private key file on the relay's machine for SSH.").alias(&["IdentityFilePath"]).sets(&["SSHHost"]),
                p("Subsystem", Kind::String, "The SSH subsystem.").sets(&["SSHHost"]),
                p("SSHTransport", Kind::Switch, "Use SSH.").sets(&["SSHHost"]),
                CREDENTIAL.sets(&["ComputerName"]),
                PORT.sets(&["ComputerName", "SSHHost"]),
                USE_SSL.sets(&["ComputerName"]),
                AUTHENTICATION.sets(&["ComputerName"]),
                CONFIGURATION.sets(&["ComputerName"]),
            ],
            sets: &["ComputerName", "Session", "Id", "Name", "InstanceId", "SSHHost"],
        },
        aliases: &["etsn"],
        synopsis: "Starts an interactive session with a remote computer.",
        run: enter_pssession,
    },
    Cmdlet {
        sig: Signature { name: "Exit-PSSession", class: "Microsoft.PowerShell.Commands.ExitPSSessionCommand", params: &[], sets: &[] },
        aliases: &["exsn"],
        synopsis: "Ends an interactive session with a remote computer.",
        run: exit_pssession,
    },
    Cmdlet {
        sig: Signature {
            name: "Invoke-Command",
            class: "Microsoft.PowerShell.Commands.InvokeCommandCommand",
            params: &[
                p("Session", Kind::Sessions, "The sessions to run the command in.").at(0).sets(&["Session"]),
                p("ComputerName", Kind::Strings, "Computers to run the command on over WinRM, each in a temporary session.").alias(&["Cn"]).at(0).sets(&["ComputerName"]).pipe(Pipe::ByPropertyName),
                p("HostName", Kind::Strings, "Computers to run the command on over SSH, each in a temporary session.").at(0).sets(&["SSHHost"]).mandatory(&["SSHHost"]),
                p("ScriptBlock", Kind::ScriptBlock, "The commands to run.").alias(&["Command"]).at(1).sets(&["Session", "ComputerName", "SSHHost"]).mandatory(&["*"]),
                p("ScriptBlock", Kind::ScriptBlock, "The commands to run.").alias(&["Command"]).at(0).sets(&["InProcess"]).mandatory(&["*"]),
                p("ArgumentList", Kind::Objects, "Values for the script block's parameters ($args, param()).").alias(&["Args"]),
                p("InputObject", Kind::Object, "Input to the command ($input).").pipe(Pipe::ByValue),
                p("ThrottleLimit", Kind::Int, "How many sessions run the command at once (default 32).").sets(&["Session", "ComputerName", "SSHHost"]),
                p("HideComputerName", Kind::Switch, "Leave PSComputerName out of the output.").alias(&["HCN"]).sets(&["Session", "ComputerName", "SSHHost"]),
                p("AsJob", Kind::Switch, "Run as a background job (Get-Job, Receive-Job).").sets(&["Session", "ComputerName", "SSHHost"]),
                p("JobName", Kind::String, "The job's name.").sets(&["Session", "ComputerName", "SSHHost"]),
                p("UserName", Kind::String, "The user to log in as over SSH.").sets(&["SSHHost"]),
                p("KeyFilePath", Kind::String, "A private key file on the relay's machine for SSH.").alias(&["IdentityFilePath"]).sets(&["SSHHost"]),
                p("Subsystem", Kind::String, "The SSH subsystem.").sets(&["SSHHost"]),
                p("SSHTransport", Kind::Switch, "Use SSH.").sets(&["SSHHost"]),
                CREDENTIAL.sets(&["ComputerName"]),
                PORT.sets(&["ComputerName", "SSHHost"]),
                USE_SSL.sets(&["ComputerName"]),
                AUTHENTICATION.sets(&["ComputerName"]),
                CONFIGURATION.sets(&["ComputerName", "Session"]),
                p("NoNewScope", Kind::Switch, "Accepted for compatibility.").sets(&["InProcess"]),
            ],
            sets: &["InProcess", "Session", "ComputerName", "SSHHost"],
        },
        aliases: &["icm"],
        synopsis: "Runs commands on local and remote computers.",
        run: invoke_command,
    },
    Cmdlet {
        sig: Signature {
            name: "Disconnect-PSSession",
            class: "Microsoft.PowerShell.Commands.DisconnectPSSessionCommand",
            params: &[
                p("Session", Kind::Sessions, "The sessions to disconnect.").at(0).sets(&["Session"]).mandatory(&["Session"]).pipe(Pipe::Both),
                p("Id", Kind::Ints, "Sessions with these ids.").at(0).sets(&["Id"]).mandatory(&["Id"]).pipe(Pipe::ByPropertyName),
                p("Name", Kind::Strings, "Sessions with these names.").sets(&["Name"]).mandatory(&["Name"]).pipe(Pipe::ByPropertyName),
                p("InstanceId", Kind::Guids, "Sessions with these instance ids.").sets(&["InstanceId"]).mandatory(&["InstanceId"]).pipe(Pipe::ByPropertyName),
                p("IdleTimeoutSec", Kind::Int, "How long the target keeps the disconnected session (seconds)."),
                p("OutputBufferingMode", BUFFERING, "What the target does when output fills its buffer: Block waits, Drop discards the oldest."),
                p("ThrottleLimit", Kind::Int, "Accepted for compatibility."),
            ],
            sets: &["Session", "Id", "Name", "InstanceId"],
        },
        aliases: &["dnsn"],
        synopsis: "Disconnects from a session; it runs on at the target.",
        run: disconnect_pssession,
    },
    Cmdlet {
        sig: Signature {
            name: "Connect-PSSession",
            class: "Microsoft.PowerShell.Commands.ConnectPSSessionCommand",
            params: &[
                p("Session", Kind::Sessions, "The disconnected sessions to connect.").at(0).sets(&["Session"]).mandatory(&["Session"]).pipe(Pipe::ByValue),
                p("Id", Kind::Ints, "Sessions with these ids.").at(0).sets(&["Id"]).mandatory(&["Id"]).pipe(Pipe::ByPropertyName),
                p("Name", Kind::Strings, "Sessions with these names.").sets(&["Name"]).mandatory(&["Name"]).pipe(Pipe::ByPropertyName),
                p("InstanceId", Kind::Guids, "Sessions with these instance ids.").sets(&["InstanceId"]).mandatory(&["InstanceId"]).pipe(Pipe::ByPropertyName),
                p("ThrottleLimit", Kind::Int, "Accepted for compatibility."),
            ],
            sets: &["Session", "Id", "Name", "InstanceId"],
        },
        aliases: &["cnsn"],
        synopsis: "Reconnects to disconnected sessions.",
        run: connect_pssession,
    },
    Cmdlet {
        sig: Signature {
            name: "Receive-PSSession",
            class: "Microsoft.PowerShell.Commands.ReceivePSSessionCommand",
            params: &[
                p("Session", Kind::Session, "The session whose command's output to get.").at(0).sets(&["Session"]).mandatory(&["Session"]).pipe(Pipe::Both),
                p("Id", Kind::Int, "The session's id.").at(0).sets(&["Id"]).mandatory(&["Id"]).pipe(Pipe::ByPropertyName),
                p("Name", Kind::String, "The session's name.").sets(&["Name"]).mandatory(&["Name"]).pipe(Pipe::ByPropertyName),
                p("InstanceId", Kind::Guids, "The session's instance id.").sets(&["InstanceId"]).mandatory(&["InstanceId"]).pipe(Pipe::ByPropertyName),
            ],
            sets: &["Session", "Id", "Name", "InstanceId"],
        },
        aliases: &["rcsn"],
        synopsis: "Gets the output of a command that ran in a disconnected session.",
        run: receive_pssession,
    },
];

/// A remoting failure as PowerShell reports a session that could not open.
pub(crate) fn open_failure(computer: &str, e: &RemoteError) -> Failure {
    let (reason, category) = match e.code {
        ErrorCode::TargetNotAllowed => ("TargetNotAllowed", Category::PermissionDenied),
        ErrorCode::AuthenticationFailed => ("AccessDenied", Category::AuthenticationError),
        ErrorCode::QuotaExceeded => ("QuotaExceeded", Category::QuotaExceeded),
        ErrorCode::InvalidTarget => ("InvalidTarget", Category::InvalidArgument),
        ErrorCode::NotSupported => ("NotSupported", Category::NotImplemented),
        _ => ("CannotConnect", Category::OpenError),
    };
    let message = if e.code == ErrorCode::TargetNotAllowed || e.code == ErrorCode::InvalidTarget {
        format!("[{computer}] {}", e.message)
    } else {
        format!("[{computer}] Connecting to remote server {computer} failed with the following error message : {} For more information, see the about_Remote_Troubleshooting Help topic.", e.message)
    };
    Failure::new(ErrorSpec {
        message,
        id: format!("{reason},PSSessionOpenFailed"),
        category,
        exception: "System.Management.Automation.Remoting.PSRemotingTransportException",
        target: Some(computer.to_owned()),
        activity: String::new(),
        position: None,
    })
}

fn session_error(id: &str, message: String, category: Category, target: Option<String>) -> Failure {
    Failure::new(ErrorSpec { message, id: id.to_owned(), category, exception: "System.ArgumentException", target, activity: String::new(), position: None })
}

/// The user and password of `-Credential`, asked for when it is a user name or absent (`needed`).
fn credential(cx: &mut Ctx<'_>, b: &Bound, computer: &str, needed: bool) -> R<Option<(String, String)>> {
    let given = b.get("Credential").cloned();
    if let Some(v) = &given
        && let Some(pair) = cx.rs.secrets.user_password(v)
    {
        return Ok(Some(pair));
    }
    let user = given.as_ref().map(text).filter(|u| !u.is_empty());
    if user.is_none() && !needed {
        return Ok(None);
    }
    ask_credential(cx, "PowerShell credential request", &format!("Enter your credentials for {computer}."), user.as_deref().unwrap_or_default()).map(Some)
}

/// Get-Credential's dialog.
pub(crate) fn ask_credential(cx: &mut Ctx<'_>, caption: &str, message: &str, user: &str) -> R<(String, String)> {
    if !cx.host.interactive() {
        return Err(Flow::Error(Failure::new(ErrorSpec {
            message: format!("{message} Nobody can answer here: give -Credential (Get-Credential in an interactive prompt) instead."),
            id: "CouldNotPromptForCredential,Microsoft.PowerShell.Commands.GetCredentialCommand".into(),
            category: Category::InvalidOperation,
            exception: "System.Management.Automation.Host.HostException",
            target: None,
            activity: "Get-Credential".into(),
            position: None,
        })));
    }
    let args = vec![Value::string(caption), Value::string(message), Value::string(user), Value::string("")];
    match cx.host.call(HostMethod::PromptForCredential1, args) {
        Some(HostAnswer::Credential { user, password }) => Ok((user, password)),
        _ => Err(Flow::Stopped),
    }
}

fn auth(b: &Bound) -> R<Option<WinrmAuth>> {
    Ok(match b.string("Authentication").as_deref() {
        None | Some("Default") | Some("Negotiate") => None,
        Some("Basic") => Some(WinrmAuth::Basic),
        Some("Kerberos") => Some(WinrmAuth::Kerberos),
        Some(other) => {
            return Err(Flow::Error(session_error(
                "AuthenticationNotSupported",
                format!("The {other} authentication mechanism is not supported by psgate; use Default, Negotiate, Kerberos or Basic."),
                Category::InvalidArgument,
                None,
            )));
        }
    })
}

fn port(b: &Bound) -> R<Option<u16>> {
    match b.int("Port") {
        None => Ok(None),
        Some(n) => u16::try_from(n).ok().filter(|n| *n > 0).map(Some).ok_or_else(|| {
            Flow::Error(session_error("PortOutOfRange", format!("The port {n} is not valid: give a number from 1 to 65535."), Category::InvalidArgument, None))
        }),
    }
}

/// The targets the ComputerName or SSHHost parameters of a New-PSSession-like cmdlet name.
pub(crate) fn targets(cx: &mut Ctx<'_>, b: &Bound) -> R<Vec<Target>> {
    let names = b.strings("Name");
    let mut out = Vec::new();
    if b.has("HostName") {
        let mut password: Option<String> = None;
        for host in b.strings("HostName") {
            let (user, rest) = match host.rsplit_once('@') {
                Some((u, h)) => (Some(u.to_owned()), h.to_owned()),
                None => (b.string("UserName"), host.clone()),
            };
            let (computer, port_in_name) = match rest.rsplit_once(':') {
                Some((h, p)) if p.parse::<u16>().is_ok() && !h.is_empty() => (h.to_owned(), p.parse::<u16>().ok()),
                _ => (rest.clone(), None),
            };
            let mut t = Target::new(computer.clone(), Transport::Ssh);
            t.port = port_in_name.or(port(b)?);
            t.user = user.or_else(|| b.string("UserName"));
            t.key_file = b.string("KeyFilePath");
            t.subsystem = b.string("Subsystem");
            if t.key_file.is_none() {
                // As ssh does: one password prompt, reused for the other hosts of the same command.
                if password.is_none() {
                    let who = format!("{}@{computer}", t.user.clone().unwrap_or_default());
                    password = Some(ask_secret(cx, &format!("{who}'s password"))?);
                }
                t.password = password.clone();
            }
            out.push(t);
        }
    } else {
        let computers = b.strings("ComputerName");
        if computers.is_empty() {
            // `New-PSSession` alone: the local computer, over psgate's local transport.
            out.push(Target::new("localhost", Transport::Local));
        }
        let mut cred: Option<(String, String)> = None;
        // Only a plain -ComputerName may mean the relay's own machine (any WinRM setting asks for WinRM).
        let plain = !["Credential", "Port", "UseSSL", "Authentication", "ConfigurationName"].iter().any(|p| b.has(p));
        for computer in computers {
            if plain && cx.remoting.local_computer(&computer) {
                out.push(Target::new(computer, Transport::Local));
                continue;
            }
            if cred.is_none() {
                cred = credential(cx, b, &computer, true)?;
            }
            let mut t = Target::new(computer, Transport::Winrm);
            t.port = port(b)?;
            t.use_ssl = b.switch("UseSSL");
            t.authentication = auth(b)?;
            t.configuration_name = b.string("ConfigurationName");
            if let Some((user, password)) = &cred {
                t.user = Some(user.clone());
                t.password = Some(password.clone());
            }
            out.push(t);
        }
    }
    for (t, name) in out.iter_mut().zip(names) {
        t.name = Some(name);
    }
    Ok(out)
}

/// A masked prompt (`Read-Host -AsSecureString`'s): the text typed.
fn ask_secret(cx: &mut Ctx<'_>, prompt: &str) -> R<String> {
    if !cx.host.interactive() {
        return Err(Flow::Error(session_error(
            "PasswordRequired",
            format!("{prompt} is needed and nobody can answer here: give -KeyFilePath."),
            Category::InvalidOperation,
            None,
        )));
    }
    match cx.host.call(HostMethod::ReadLineAsSecureString, vec![Value::string(format!("{prompt}: "))]) {
        Some(HostAnswer::Secure { text }) => Ok(text),
        _ => Err(Flow::Stopped),
    }
}

fn new_pssession(cx: &mut Ctx<'_>, b: &Bound, sink: &mut Sink<'_>) -> R<()> {
    let targets = if b.set == "Session" {
        // New sessions like these (their computer, transport, port, credentials…), as PowerShell reopens them.
        let mut out = Vec::new();
        for v in b.items("Session") {
            match session::id_of(&v).and_then(|id| cx.remoting.target_of(id)) {
                Some(t) => out.push(t),
                None => cx.write_error(session_error(
                    "RemoteRunspaceNotAvailable,Microsoft.PowerShell.Commands.NewPSSessionCommand",
                    format!("The session {} is not available to open again: it was removed or closed.", values::property(&v, "Name").map(|n| text(&n)).unwrap_or_default()),
                    Category::InvalidArgument,
                    None,
                ))?,
            }
        }
        for (t, name) in out.iter_mut().zip(b.strings("Name")) {
            t.name = Some(name);
        }
        out
    } else {
        targets(cx, b)?
    };
    cx.check_stop()?;
    let names: Vec<String> = targets.iter().map(|t| t.computer_name.clone()).collect();
    for (computer, result) in names.iter().zip(cx.remoting.open(targets)) {
        match result {
            Ok(info) => cx.emit(sink, session::object(&info)),
            Err(e) => cx.write_error(open_failure(computer, &e))?,
        }
    }
    Ok(())
}

/// The sessions a Session/Id/Name/InstanceId/ComputerName parameter set names; errors for names that match
/// nothing (written, not terminating, as PowerShell does).
pub(crate) fn selected(cx: &mut Ctx<'_>, b: &Bound, verb: &str) -> R<Vec<SessionInfo>> {
    let all = cx.remoting.list();
    let mut out: Vec<SessionInfo> = Vec::new();
    let add = |s: &SessionInfo, out: &mut Vec<SessionInfo>| {
        if !out.iter().any(|o| o.id == s.id) {
            out.push(s.clone());
        }
    };
    if b.has("Session") {
        for v in b.items("Session") {
            match session::id_of(&v).and_then(|id| all.iter().find(|s| s.id == id)) {
                Some(s) => add(s, &mut out),
                None => {
                    let name = values::property(&v, "Name").map(|n| text(&n)).unwrap_or_default();
                    cx.write_error(session_error(
                        &format!("RemoteRunspaceNotAvailable,Microsoft.PowerShell.Commands.{verb}PSSessionCommand"),
                        format!("The session {name} is not available: it was removed or closed."),
                        Category::InvalidArgument,
                        Some(name),
                    ))?;
                }
            }
        }
    }
    for id in b.ints("Id") {
        match all.iter().find(|s| s.id.0 as i64 == id) {
            Some(s) => add(s, &mut out),
            None => cx.write_error(session_error(
                &format!("RemoteRunspaceNotAvailableForSpecifiedSessionId,Microsoft.PowerShell.Commands.{verb}PSSessionCommand"),
                format!("The remote session with the session ID {id} is not available."),
                Category::InvalidArgument,
                Some(id.to_string()),
            ))?,
        }
    }
    for name in b.strings("Name") {
        let found: Vec<&SessionInfo> = all.iter().filter(|s| values::like(&s.name, &name, false)).collect();
        if found.is_empty() && !values::has_wildcards(&name) {
            cx.write_error(session_error(
                &format!("RemoteRunspaceNotAvailableForSpecifiedName,Microsoft.PowerShell.Commands.{verb}PSSessionCommand"),
                format!("The remote session with the name {name} is not available."),
                Category::InvalidArgument,
                Some(name.clone()),
            ))?;
        }
        for s in found {
            add(s, &mut out);
        }
    }
    for g in b.items("InstanceId") {
        let want = text(&g);
        match all.iter().find(|s| s.instance_id.as_deref().is_some_and(|i| i.eq_ignore_ascii_case(&want))) {
            Some(s) => add(s, &mut out),
            None => cx.write_error(session_error(
                &format!("RemoteRunspaceNotAvailableForSpecifiedRunspaceId,Microsoft.PowerShell.Commands.{verb}PSSessionCommand"),
                format!("The remote session with the instance ID {want} is not available."),
                Category::InvalidArgument,
                Some(want.clone()),
            ))?,
        }
    }
    if b.set == "ComputerName" || (b.has("ComputerName") && verb != "Get") {
        for computer in b.strings("ComputerName") {
            for s in all.iter().filter(|s| values::like(&s.computer_name, &computer, false)) {
                add(s, &mut out);
            }
        }
    }
    Ok(out)
}

fn get_pssession(cx: &mut Ctx<'_>, b: &Bound, sink: &mut Sink<'_>) -> R<()> {
    let state = b.string("State").unwrap_or_else(|| "All".into());
    let keep = |s: &SessionInfo| state == "All" || session::state_name(s.state) == state;
    let sessions: Vec<SessionInfo> = if matches!(b.set, "Name" | "ComputerName") && !b.has("Name") && !b.has("ComputerName") {
        cx.remoting.list().as_ref().clone()
    } else if b.set == "ComputerName" || b.set == "ComputerInstanceId" {
        let all = cx.remoting.list().as_ref().clone();
        let computers = b.strings("ComputerName");
        let names = b.strings("Name");
        all.into_iter()
            .filter(|s| computers.iter().any(|c| values::like(&s.computer_name, c, false)))
            .filter(|s| names.is_empty() || names.iter().any(|n| values::like(&s.name, n, false)))
            .collect()
    } else {
        selected(cx, b, "Get")?
    };
    let mut shown: Vec<String> = Vec::new();
    for s in sessions.iter().filter(|s| keep(s)) {
        if let Some(i) = &s.instance_id {
            shown.push(i.to_uppercase());
        }
        let object = cx.remoting.object_of(s.id).unwrap_or_else(|| session::object(s));
        cx.emit(sink, object);
    }
    // With credentials, the shells a WinRM computer keeps for them that are not sessions here (another client's,
    // or one this relay forgot): listed Disconnected, connected with Connect-PSSession.
    if (b.set == "ComputerName" || b.set == "ComputerInstanceId") && b.has("Credential") {
        for computer in b.strings("ComputerName") {
            if values::has_wildcards(&computer) {
                continue;
            }
            let Some((user, password)) = credential(cx, b, &computer, true)? else { continue };
            let mut target = Target::new(computer.clone(), Transport::Winrm);
            target.port = port(b)?;
            target.use_ssl = b.switch("UseSSL");
            target.authentication = auth(b)?;
            target.configuration_name = b.string("ConfigurationName");
            target.user = Some(user);
            target.password = Some(password);
            match cx.remoting.remote_shells(&target) {
                Ok(shells) => {
                    for shell in shells {
                        let id = shell.shell_id.to_uppercase();
                        if shown.contains(&id) || (state != "All" && !shell.state.eq_ignore_ascii_case(&state)) {
                            continue;
                        }
                        let info = SessionInfo {
                            id: SessionId(0),
                            name: shell.name.clone(),
                            computer_name: computer.clone(),
                            transport: Transport::Winrm,
                            state: if shell.state.eq_ignore_ascii_case("Disconnected") { SessionState::Disconnected } else { SessionState::Opened },
                            availability: psgate_shared::api::Availability::None,
                            reason: None,
                            prompt: None,
                            configuration_name: Some(shell.configuration_name.clone()),
                            instance_id: Some(id.clone()),
                            can_disconnect: true,
                            idle_left_secs: None,
                            run_left_secs: None,
                        };
                        let mut keep_target = target.clone();
                        keep_target.shell_id = Some(id.clone());
                        keep_target.name = Some(shell.name.clone());
                        cx.rs.known_shells.insert(id, keep_target);
                        cx.emit(sink, session::object(&info));
                    }
                }
                Err(e) => cx.write_error(open_failure(&computer, &e))?,
            }
        }
    }
    Ok(())
}

fn remove_pssession(cx: &mut Ctx<'_>, b: &Bound, _sink: &mut Sink<'_>) -> R<()> {
    let sessions = selected(cx, b, "Remove")?;
    if sessions.is_empty() {
        return Ok(());
    }
    let ids: Vec<SessionId> = sessions.iter().map(|s| s.id).collect();
    if let Some(e) = cx.rs.entered.as_ref()
        && ids.contains(&e.session)
    {
        cx.rs.entered = None;
    }
    cx.remoting.remove(&ids).map_err(|e| Flow::Error(session_error("RemoveSessionFailed", e.message, Category::InvalidOperation, None)))
}

fn enter_error(id: &str, message: String, category: Category, target: Option<String>) -> Flow {
    Flow::Error(session_error(&format!("{id},Microsoft.PowerShell.Commands.EnterPSSessionCommand"), message, category, target))
}

fn enter_pssession(cx: &mut Ctx<'_>, b: &Bound, _sink: &mut Sink<'_>) -> R<()> {
    if let Some(e) = &cx.rs.entered {
        return Err(enter_error("HostInNestedPrompt", format!("You cannot run Enter-PSSession from a nested prompt: you are in session {} ({}). Type exit first.", e.session.0, e.computer_name), Category::InvalidOperation, None));
    }
    let (info, temporary) = if b.has("ComputerName") || b.has("HostName") {
        let targets = targets(cx, b)?;
        let computer = targets.first().map(|t| t.computer_name.clone()).unwrap_or_default();
        match cx.remoting.open(targets).into_iter().next() {
            Some(Ok(info)) => (info, true),
            Some(Err(e)) => {
                let mut failure = open_failure(&computer, &e);
                if let Some(o) = failure.record.as_object() {
                    let mut o = o.clone();
                    for p in &mut o.extended {
                        if p.name == "FullyQualifiedErrorId" {
                            p.value = Value::string("CreateRemoteRunspaceFailed,Microsoft.PowerShell.Commands.EnterPSSessionCommand");
                        }
                    }
                    failure.record = Value::object(o);
                }
                return Err(Flow::Error(failure));
            }
            None => return Ok(()),
        }
    } else {
        let found = selected(cx, b, "Enter")?;
        match found.into_iter().next() {
            Some(s) => (s, false),
            None => return Ok(()),
        }
    };
    let info = if info.state == SessionState::Disconnected {
        // Enter-PSSession connects a disconnected session first, as PowerShell does.
        match cx.remoting.connect(&[info.id]).into_iter().next() {
            Some(Ok(i)) => i,
            _ => return Err(enter_error("EnterPSSessionConnectSessionFailed", "A failure occurred while attempting to connect the PSSession.".into(), Category::InvalidOperation, Some(info.name.clone()))),
        }
    } else {
        info
    };
    if info.state != SessionState::Opened {
        let message = if b.set == "Session" {
            format!(
                "Cannot enter session {} because it is not in the disconnected state or is not available for connection. Retrieve the remote session using Get-PSSession -ComputerName {} -InstanceId {}.",
                info.name,
                info.computer_name,
                info.instance_id.clone().unwrap_or_default()
            )
        } else {
            "Session must be open.".to_owned()
        };
        return Err(enter_error("PushedRunspaceMustBeOpen", message, Category::InvalidArgument, Some(info.name.clone())));
    }
    if info.availability == psgate_shared::api::Availability::Busy {
        let text = "The session is busy. You will be connected to the session as soon as it is available. To cancel the Enter-PSSession command, press Ctrl-C.";
        cx.host.record(psgate_shared::api::RecordKind::Warning, crate::error::informational("Warning", text));
    }
    cx.rs.entered = Some(Entered { session: info.id, computer_name: info.computer_name.clone(), temporary });
    Ok(())
}

fn exit_pssession(cx: &mut Ctx<'_>, _b: &Bound, _sink: &mut Sink<'_>) -> R<()> {
    cx.exit_session().map(drop)
}

/// The remote pipeline of Invoke-Command: Command objects when the block is a simple pipeline, else its text with
/// the arguments.
fn remote_pipeline(b: &Bound) -> psgate_shared::psrp::messages::PipelineSpec {
    let block = b.string("ScriptBlock").unwrap_or_default();
    let args = b.items("ArgumentList");
    crate::jea::block_pipeline(&block, &args)
}

fn invoke_command(cx: &mut Ctx<'_>, b: &Bound, sink: &mut Sink<'_>) -> R<()> {
    if b.set == "InProcess" {
        let block = b.string("ScriptBlock").unwrap_or_default();
        let saved = cx.rs.variable("args").cloned();
        cx.rs.set_variable("args", values::array(b.items("ArgumentList")));
        let out = cx.invoke_block(&block, None);
        cx.rs.set_variable("args", saved.unwrap_or(Value::Nil));
        for v in out? {
            cx.emit(sink, v);
        }
        return Ok(());
    }
    let mut temporary: Vec<SessionId> = Vec::new();
    let sessions: Vec<SessionId> = if b.set == "Session" {
        let all = cx.remoting.list();
        let mut ids = Vec::new();
        for v in b.items("Session") {
            match session::id_of(&v).filter(|id| all.iter().any(|s| s.id == *id)) {
                Some(id) => ids.push(id),
                None => cx.write_error(session_error(
                    "InvokeCommandSessionNotAvailable",
                    format!("The session {} is not available: it was removed or closed.", values::property(&v, "Name").map(|n| text(&n)).unwrap_or_default()),
                    Category::InvalidArgument,
                    None,
                ))?,
            }
        }
        ids
    } else {
        let targets = targets(cx, b)?;
        let computers: Vec<String> = targets.iter().map(|t| t.computer_name.clone()).collect();
        for (computer, r) in computers.iter().zip(cx.remoting.open(targets)) {
            match r {
                Ok(info) => temporary.push(info.id),
                Err(e) => cx.write_error(open_failure(computer, &e))?,
            }
        }
        temporary.clone()
    };
    if sessions.is_empty() {
        return Ok(());
    }
    let throttle = b.int("ThrottleLimit").filter(|t| *t > 0).map_or(psgate_shared::api::DEFAULT_THROTTLE_LIMIT, |t| t.min(1024) as u32);
    let invocation = Invocation { sessions, pipeline: remote_pipeline(b), throttle_limit: throttle, text: b.string("ScriptBlock").unwrap_or_default().trim().to_owned(), input: None };
    let tag = !b.switch("HideComputerName");
    if b.switch("AsJob") {
        let name = b.string("JobName");
        return crate::jobs::start(cx, invocation, tag, name, temporary, sink);
    }
    let run = match cx.remoting.start(invocation, tag) {
        Ok(run) => run,
        Err(e) => {
            let _ = cx.remoting.remove(&temporary);
            return Err(Flow::Error(session_error("InvokeCommandFailed", e.message, Category::InvalidOperation, None)));
        }
    };
    let result = cx.follow(run, sink);
    if !temporary.is_empty() {
        let _ = cx.remoting.remove(&temporary);
    }
    result.map(drop)
}

/// A host's pipeline that failed: its terminating error (as the target gave it), written for that host.
pub(crate) fn report_host_end(cx: &mut Ctx<'_>, computer: &str, state: PipelineState, error: Option<Value>) -> R<()> {
    match (state, error) {
        (PipelineState::Failed, Some(record)) if values::is_type(&record, "System.Management.Automation.ErrorRecord") => cx.write_error(Failure { record }),
        (PipelineState::Failed, other) => {
            let why = other.map(|v| text(&v)).filter(|t| !t.is_empty()).unwrap_or_else(|| "the command failed".into());
            cx.write_error(session_error("InvokeCommandFailed", format!("[{computer}] {why}"), Category::OperationStopped, Some(computer.to_owned())))
        }
        _ => Ok(()),
    }
}

fn disconnect_pssession(cx: &mut Ctx<'_>, b: &Bound, sink: &mut Sink<'_>) -> R<()> {
    let sessions = selected(cx, b, "Disconnect")?;
    let ids: Vec<SessionId> = sessions.iter().map(|s| s.id).collect();
    if ids.is_empty() {
        return Ok(());
    }
    let idle = b.int("IdleTimeoutSec").map(|s| s.clamp(0, i64::from(u32::MAX)) as u32);
    let mode = match b.string("OutputBufferingMode").as_deref() {
        Some("Block") => Some(OutputBufferingMode::Block),
        Some("Drop") => Some(OutputBufferingMode::Drop),
        _ => None,
    };
    if let Some(e) = cx.rs.entered.as_ref()
        && ids.contains(&e.session)
    {
        cx.rs.entered = None;
    }
    for (s, r) in sessions.iter().zip(cx.remoting.disconnect(&ids, idle, mode)) {
        match r {
            Ok(info) => cx.emit(sink, session::object(&info)),
            Err(e) => cx.write_error(session_error(
                "PSSessionDisconnectFailed,Microsoft.PowerShell.Commands.DisconnectPSSessionCommand",
                format!("Disconnect-PSSession: session {} ({}) cannot be disconnected: {}", s.id.0, s.computer_name, e.message),
                Category::InvalidOperation,
                Some(s.name.clone()),
            ))?,
        }
    }
    Ok(())
}

fn connect_pssession(cx: &mut Ctx<'_>, b: &Bound, sink: &mut Sink<'_>) -> R<()> {
    // Shells Get-PSSession -ComputerName listed that are not sessions here: opened as new sessions attached to them.
    let mut targets: Vec<Target> = Vec::new();
    for v in b.items("Session") {
        if session::id_of(&v).is_none()
            && let Some(t) = session::instance_of(&v).and_then(|i| cx.rs.known_shells.get(&i.to_uppercase()).cloned())
        {
            targets.push(t);
        }
    }
    if !targets.is_empty() {
        let computers: Vec<String> = targets.iter().map(|t| t.computer_name.clone()).collect();
        for (computer, r) in computers.iter().zip(cx.remoting.open(targets)) {
            match r {
                Ok(info) => cx.emit(sink, session::object(&info)),
                Err(e) => cx.write_error(open_failure(computer, &e))?,
            }
        }
    }
    let sessions = selected(cx, b, "Connect")?;
    let ids: Vec<SessionId> = sessions.iter().map(|s| s.id).collect();
    if ids.is_empty() {
        return Ok(());
    }
    for (s, r) in sessions.iter().zip(cx.remoting.connect(&ids)) {
        match r {
            Ok(info) => cx.emit(sink, session::object(&info)),
            Err(e) => cx.write_error(session_error(
                "PSSessionConnectFailed,Microsoft.PowerShell.Commands.ConnectPSSessionCommand",
                format!("Connect-PSSession: session {} ({}) cannot be connected: {}", s.id.0, s.computer_name, e.message),
                Category::InvalidOperation,
                Some(s.name.clone()),
            ))?,
        }
    }
    Ok(())
}

fn receive_pssession(cx: &mut Ctx<'_>, b: &Bound, sink: &mut Sink<'_>) -> R<()> {
    let Some(s) = selected(cx, b, "Receive")?.into_iter().next() else { return Ok(()) };
    let s = if s.state == SessionState::Disconnected {
        match cx.remoting.connect(&[s.id]).into_iter().next() {
            Some(Ok(i)) => i,
            Some(Err(e)) => return Err(Flow::Error(open_failure(&s.computer_name, &e))),
            None => s,
        }
    } else {
        s
    };
    let run = cx.remoting.receive(s.id).map_err(|e| Flow::Error(session_error("ReceivePSSessionFailed", e.message, Category::InvalidOperation, Some(s.name.clone()))))?;
    cx.follow(run, sink).map(drop)
}
