//! Implicit remoting: Import-PSSession makes a module of proxies (`New-remADUser`) for a session's commands, found
//! with the PSRP GET_COMMAND_METADATA message (no script text: it works on JEA endpoints); calling a proxy runs the
//! real command in the session as a Command object, with the arguments as typed and the pipeline's objects as its
//! input, and the server binds them, as PowerShell's proxies do. Get-Module lists the modules, Remove-Module and
//! removing the session drop them; a proxy whose session broke or was disconnected connects it again or opens a
//! new one like it (over SSH too) before it runs.

use psgate_shared::api::{PipelineState, RecordKind, SessionId, SessionInfo, SessionState};
use psgate_shared::clixml::Value;
use psgate_shared::psrp::messages::{Command, CommandMetadata, PipelineSpec, metadata_count};

use crate::bind::{Arg, Bound, Kind, Pipe, Signature, p};
use crate::cmdlets::Cmdlet;
use crate::error::{Category, ErrorSpec, Failure};
use crate::eval::{Ctx, Flow, R, Sink};
use crate::remote::{Invocation, Remoting as _, SaveError};
use crate::values::{self, text};

/// A module Import-PSSession made.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Module {
    /// `tmp_…`, as PowerShell names an implicit remoting module.
    pub name: String,
    /// The session its proxies run in.
    pub session: SessionId,
    /// That session's computer.
    pub computer_name: String,
    /// The remote modules imported (`-Module`).
    pub modules: Vec<String>,
    /// `-Prefix`
    pub prefix: String,
    /// The proxies, by local name.
    pub proxies: Vec<Proxy>,
    /// The views of the format data imported with them (`-FormatTypeName`, else their commands' output types).
    pub formats: Vec<crate::format_data::FormatView>,
}

/// One proxy: a local name for a remote command.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Proxy {
    /// `New-remADUser`
    pub name: String,
    /// What the server said of the command (`New-ADUser`).
    pub meta: CommandMetadata,
    /// What `Get-Command -ShowCommandInfo` adds, where the endpoint answers it: parameter sets, mandatory
    /// parameters, positions, pipeline input, enum values (PowerShell's own proxies lose all of this).
    pub sets: Vec<ParameterSet>,
}

/// A parameter set of a command, as `Get-Command -ShowCommandInfo` describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ParameterSet {
    /// `Name`
    pub name: String,
    /// `IsDefault`
    pub is_default: bool,
    /// `Parameters`
    pub parameters: Vec<SetParameter>,
}

/// A parameter in a [`ParameterSet`].
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SetParameter {
    /// `Name`
    pub name: String,
    /// `IsMandatory`
    pub mandatory: bool,
    /// `Position` (`None`: named only).
    pub position: Option<i64>,
    /// `ValueFromPipeline`
    pub from_pipeline: bool,
    /// `ParameterType.FullName`
    pub type_name: String,
    /// The values it takes: an enum's names, or its `ValidateSet`.
    pub values: Vec<String>,
}

/// Reads `Get-Command -ShowCommandInfo`'s objects: the command's name and its parameter sets.
pub fn show_command_info(v: &Value) -> Option<(String, Vec<ParameterSet>)> {
    let name = values::property(v, "Name").map(|n| text(&n))?;
    let bool_of = |v: &Value, n: &str| values::property(v, n).is_some_and(|b| values::truthy(&b));
    let texts = |v: Option<Value>| -> Vec<String> { v.map(values::enumerate).unwrap_or_default().iter().map(text).filter(|t| !t.is_empty()).collect() };
    let sets = values::enumerate(values::property(v, "ParameterSets")?)
        .iter()
        .map(|set| ParameterSet {
            name: values::property(set, "Name").map(|n| text(&n)).unwrap_or_default(),
            is_default: bool_of(set, "IsDefault"),
            parameters: values::enumerate(values::property(set, "Parameters").unwrap_or(Value::Nil))
                .iter()
                .map(|p| {
                    let ty = values::property(p, "ParameterType").unwrap_or(Value::Nil);
                    let mut allowed = if bool_of(p, "HasParameterSet") { texts(values::property(p, "ValidParamSetValues")) } else { Vec::new() };
                    if allowed.is_empty() && bool_of(&ty, "IsEnum") {
                        allowed = texts(values::property(&ty, "EnumValues"));
                    }
                    SetParameter {
                        name: values::property(p, "Name").map(|n| text(&n)).unwrap_or_default(),
                        mandatory: bool_of(p, "IsMandatory"),
                        position: values::property(p, "Position").and_then(|x| values::integer(&x)).filter(|x| *x >= 0),
                        from_pipeline: bool_of(p, "ValueFromPipeline"),
                        type_name: values::property(&ty, "FullName").map(|n| text(&n)).unwrap_or_default(),
                        values: allowed,
                    }
                })
                .collect(),
        })
        .collect();
    Some((name, sets))
}

/// `Get-Command -ShowCommandInfo` in the session for these commands, as a Command object (a JEA endpoint's
/// Get-Command takes it); nothing where the endpoint refuses or lacks it.
fn richer(cx: &mut Ctx<'_>, session: SessionId, names: &[String], modules: &[String]) -> R<Vec<(String, Vec<ParameterSet>)>> {
    let list = |items: &[String]| values::array(items.iter().map(|s| Value::string(s.as_str())).collect());
    let mut get_command = Command::named("Get-Command").param("Name", list(names)).param("ShowCommandInfo", Value::Bool(true));
    if !modules.is_empty() {
        get_command = get_command.param("Module", list(modules));
    }
    let pipeline = PipelineSpec { commands: vec![get_command], no_input: true, add_to_history: false, is_nested: false };
    let invocation = Invocation { sessions: vec![session], pipeline, throttle_limit: 1, text: "Get-Command -ShowCommandInfo".into(), input: None };
    let Ok(run) = cx.remoting.start(invocation, false) else { return Ok(Vec::new()) };
    Ok(fetch_quietly(cx, run)?.iter().filter_map(show_command_info).collect())
}

/// The commands Import-PSSession does not proxy unless asked for by name, when the server declares none: the ones
/// implicit remoting and 1:1 remoting use themselves (PowerShell's default skip list).
const SKIPPED: &[&str] = &["Get-Command", "Get-FormatData", "Get-Help", "Select-Object", "Measure-Object", "Exit-PSSession", "Out-Default"];

/// The server's `$PSSenderInfo.ApplicationPrivateData` (APPLICATION_PRIVATE_DATA's `ApplicationPrivateData`).
fn private_data(cx: &mut Ctx<'_>, session: SessionId) -> Option<Value> {
    values::property(&cx.remoting.application_private_data(session)?, "ApplicationPrivateData")
}

/// The commands not to proxy: the list the server declares in its application private data
/// (`ImplicitRemoting.CommandsToSkip`, even an empty one), else PowerShell's default.
fn skip_list(cx: &mut Ctx<'_>, session: SessionId) -> Vec<String> {
    let declared = private_data(cx, session)
        .and_then(|d| values::property(&d, "ImplicitRemoting"))
        .filter(|d| d.as_object().is_some_and(|o| matches!(o.content, psgate_shared::clixml::Content::Dict(_))))
        .and_then(|d| values::property(&d, "CommandsToSkip"));
    match declared {
        Some(list) => values::enumerate(list).iter().map(text).filter(|t| !t.is_empty()).collect(),
        None => SKIPPED.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// The command types Import-PSSession imports when not told (all but applications and scripts).
const DEFAULT_TYPES: &[&str] = &["Alias", "Function", "Filter", "Cmdlet", "Configuration"];

/// Common parameters a proxy keeps for itself (they act on the local call, not the remote command); the
/// preference ones (`-ErrorAction`, …) go to both.
const CLIENT_SIDE: &[&str] = &["Verbose", "Debug", "ErrorVariable", "WarningVariable", "OutVariable", "OutBuffer", "PipelineVariable", "InformationVariable"];

/// The command types Import-PSSession asks for by default.
const COMMAND_TYPES: Kind = Kind::Enum("System.Management.Automation.CommandTypes", &["Alias", "Function", "Filter", "Cmdlet", "ExternalScript", "Application", "Script", "Configuration", "All"]);

pub(crate) static CMDLETS: &[Cmdlet] = &[
    Cmdlet {
        sig: Signature {
            name: "Import-PSSession",
            class: "Microsoft.PowerShell.Commands.ImportPSSessionCommand",
            params: &[
                p("Session", Kind::Session, "The session whose commands are imported.").at(0).mandatory(&["*"]),
                p("CommandName", Kind::Strings, "Only the commands with these names (wildcards allowed).").alias(&["Name"]).at(2),
                p("FormatTypeName", Kind::Strings, "The types whose format data (Get-FormatData) is imported; without it, the commands' output types.").at(3),
                p("Prefix", Kind::String, "Added to each proxy's noun: New-ADUser becomes New-<Prefix>ADUser."),
                p("DisableNameChecking", Kind::Switch, "No warning for unapproved verbs."),
                p("AllowClobber", Kind::Switch, "Proxies may hide commands of psgate's prompt or of other imported modules."),
                p("ArgumentList", Kind::Objects, "Arguments for the imported aliases' commands (accepted).").alias(&["Args"]),
                p("CommandType", COMMAND_TYPES, "Only commands of these types (Alias, Function, Filter, Cmdlet).").alias(&["Type"]),
                p("Module", Kind::Strings, "Only the commands of these modules (snap-ins) in the session.").alias(&["PSSnapin"]),
            ],
            sets: &[],
        },
        aliases: &["ipsn"],
        synopsis: "Imports commands from another session into psgate's prompt.",
        run: import_pssession,
    },
    Cmdlet {
        sig: Signature {
            name: "Export-PSSession",
            class: "Microsoft.PowerShell.Commands.ExportPSSessionCommand",
            params: &[
                p("Session", Kind::Session, "The session whose commands are exported.").at(0).mandatory(&["*"]),
                p("OutputModule", Kind::String, "The module's folder (psgate shell: a path on this machine).").alias(&["PSPath", "ModuleName"]).at(1).mandatory(&["*"]),
                p("CommandName", Kind::Strings, "Only the commands with these names (wildcards allowed).").alias(&["Name"]).at(2),
                p("FormatTypeName", Kind::Strings, "The types whose format data goes into the module's format file; without it, the commands' output types.").at(3),
                p("Force", Kind::Switch, "Overwrite the module's files."),
                p("Encoding", Kind::String, "Accepted: the files are UTF-8."),
                p("AllowClobber", Kind::Switch, "Export commands that would hide psgate's own."),
                p("ArgumentList", Kind::Objects, "Arguments for the exported aliases' commands (accepted).").alias(&["Args"]),
                p("CommandType", COMMAND_TYPES, "Only commands of these types (Alias, Function, Filter, Cmdlet).").alias(&["Type"]),
                p("Module", Kind::Strings, "Only the commands of these modules (snap-ins) in the session.").alias(&["PSSnapin"]),
            ],
            sets: &[],
        },
        aliases: &["epsn"],
        synopsis: "Saves commands from another session as a PowerShell module for ordinary remoting.",
        run: export_pssession,
    },
    Cmdlet {
        sig: Signature {
            name: "Get-Module",
            class: "Microsoft.PowerShell.Commands.GetModuleCommand",
            params: &[
                p("Name", Kind::Strings, "Modules with these names (wildcards allowed).").at(0).pipe(Pipe::ByValue),
                p("All", Kind::Switch, "Accepted for compatibility."),
                p("ListAvailable", Kind::Switch, "Accepted: psgate's modules are the ones Import-PSSession made."),
            ],
            sets: &[],
        },
        aliases: &["gmo"],
        synopsis: "Gets the modules Import-PSSession imported into psgate's prompt.",
        run: get_module,
    },
    Cmdlet {
        sig: Signature {
            name: "Remove-Module",
            class: "Microsoft.PowerShell.Commands.RemoveModuleCommand",
            params: &[
                p("Name", Kind::Strings, "The modules to remove (wildcards allowed).").at(0).sets(&["name"]).mandatory(&["name"]),
                p("ModuleInfo", Kind::Objects, "The modules to remove (Get-Module's objects).").at(0).sets(&["ModuleInfo"]).mandatory(&["ModuleInfo"]).pipe(Pipe::ByValue),
                p("Force", Kind::Switch, "Accepted for compatibility."),
            ],
            sets: &["name", "ModuleInfo"],
        },
        aliases: &["rmo"],
        synopsis: "Removes modules Import-PSSession imported, and their commands.",
        run: remove_module,
    },
];

/// A proxy by its local name (the newest module first, as the last import wins).
pub(crate) fn find<'a>(modules: &'a [Module], name: &str) -> Option<(usize, &'a Proxy)> {
    let name = name.rsplit('\\').next().unwrap_or(name);
    modules.iter().enumerate().rev().find_map(|(i, m)| m.proxies.iter().find(|p| p.name.eq_ignore_ascii_case(name)).map(|p| (i, p)))
}

/// `Verb-PrefixNoun`, as Import-Module -Prefix names a command (`PrefixName` without a verb).
pub fn prefixed(name: &str, prefix: &str) -> String {
    match name.split_once('-') {
        Some((verb, noun)) if !prefix.is_empty() => format!("{verb}-{prefix}{noun}"),
        _ => format!("{prefix}{name}"),
    }
}

/// PowerShell's safe name for a proxy: letters, digits and `-_.:\` only, at most 100 characters (anything else
/// could inject script into the proxy PowerShell generates).
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty() && name.chars().count() <= 100 && name.chars().all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '\\'))
}

/// A command type's precedence when two commands share a name (an alias hides a function, which hides a cmdlet).
fn precedence(command_type: &str) -> u8 {
    match command_type {
        "Alias" => 10,
        "Function" | "Filter" | "Script" => 20,
        "Cmdlet" => 30,
        "Application" | "ExternalScript" => 40,
        _ => 50,
    }
}

fn module_error(id: &str, message: String, category: Category, target: Option<String>, activity: &str) -> Failure {
    Failure::new(ErrorSpec { message, id: id.into(), category, exception: "System.InvalidOperationException", target, activity: activity.into(), position: None })
}

fn warn(cx: &mut Ctx<'_>, message: &str) {
    cx.host.record(RecordKind::Warning, crate::error::informational("Warning", message));
}

/// The session a PSSession value names, as the user's sessions list has it now.
fn session_info(cx: &mut Ctx<'_>, v: &Value) -> Option<SessionInfo> {
    let id = crate::session::id_of(v)?;
    cx.remoting.list().iter().find(|s| s.id == id).cloned()
}

/// Runs GET_COMMAND_METADATA in `session` and reads the answers.
fn discover(cx: &mut Ctx<'_>, session: SessionId, names: &[String], modules: &[String]) -> R<Vec<CommandMetadata>> {
    let run = cx.remoting.command_metadata(session, names, modules).map_err(|e| Flow::Error(module_error("ImportPSSessionFailed", e.message, Category::InvalidOperation, None, "Import-PSSession")))?;
    let mut out = Vec::new();
    cx.follow(run, &mut Sink::Collect(&mut out))?;
    Ok(out.iter().filter(|v| metadata_count(v).is_none()).filter_map(CommandMetadata::from_value).collect())
}

/// The local command a proxy named `name` would hide: one of psgate's own, or a proxy of another module.
fn shadowed(cx: &Ctx<'_>, name: &str) -> bool {
    crate::cmdlets::find(name).is_some() || find(&cx.rs.modules, name).is_some()
}

fn import_pssession(cx: &mut Ctx<'_>, b: &Bound, sink: &mut Sink<'_>) -> R<()> {
    let Some((info, mut proxies, formats)) = proxies_of(cx, b, "Import-PSSession")? else { return Ok(()) };
    let modules = b.strings("Module");
    if !proxies.is_empty() {
        let mut names: Vec<String> = proxies.iter().map(|p| p.meta.name.clone()).collect();
        names.sort_unstable_by_key(|n| n.to_lowercase());
        names.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        for (name, sets) in richer(cx, info.id, &names, &modules)? {
            for p in proxies.iter_mut().filter(|p| p.meta.name.eq_ignore_ascii_case(&name)) {
                p.sets = sets.clone();
            }
        }
    }
    let prefix = b.string("Prefix").unwrap_or_default();
    if !b.switch("DisableNameChecking") && proxies.iter().any(|p| p.meta.command_type != "Alias" && !approved(&p.meta.name)) {
        let module = next_name(cx);
        warn(
            cx,
            &format!(
                "The names of some imported commands from the module '{module}' include unapproved verbs that might make them less discoverable. To find the commands with unapproved verbs, run the Import-Module command again with the Verbose parameter. For a list of approved verbs, type Get-Verb."
            ),
        );
    }
    let name = take_name(cx);
    let module = Module { name, session: info.id, computer_name: info.computer_name.clone(), modules, prefix, proxies, formats };
    // The last import wins: a proxy of an earlier module with the same name is hidden by this one (AllowClobber).
    let object = module_object(&module);
    cx.rs.modules.push(module);
    cx.emit(sink, object);
    Ok(())
}

/// What a discovery found: the session, the proxies, the format data's views.
type Discovered = (SessionInfo, Vec<Proxy>, Vec<crate::format_data::FormatView>);

/// Import-PSSession's and Export-PSSession's discovery: the session, and the proxies its commands make after
/// PowerShell's filters (`None`: no session given).
fn proxies_of(cx: &mut Ctx<'_>, b: &Bound, activity: &str) -> R<Option<Discovered>> {
    let Some(given) = b.items("Session").into_iter().next() else { return Ok(None) };
    let Some(info) = session_info(cx, &given).filter(|s| s.state == SessionState::Opened) else {
        let name = values::property(&given, "Name").map(|n| text(&n)).unwrap_or_default();
        return Err(Flow::Error(module_error(
            "ImplicitRemotingSessionNotOpen",
            format!("The session {name} is not open: {activity} needs an open session. Connect it (Connect-PSSession) or open a new one (New-PSSession)."),
            Category::InvalidOperation,
            Some(name),
            activity,
        )));
    };
    let class = format!("Microsoft.PowerShell.Commands.{}Command", activity.replace('-', ""));
    let names = match b.strings("CommandName") {
        n if n.is_empty() => vec!["*".to_owned()],
        n => n,
    };
    let modules = b.strings("Module");
    let types = b.strings("CommandType");
    let prefix = b.string("Prefix").unwrap_or_default();
    let asked = b.has("CommandName") || b.has("Module") || b.has("CommandType") || b.has("ArgumentList");
    let found = discover(cx, info.id, &names, &modules)?;
    if found.is_empty() && asked {
        return Err(Flow::Error(module_error(
            &format!("ErrorNoResultsFromRemoteEnd,{class}"),
            "Running the Get-Command command in a remote session returned no results.".into(),
            Category::InvalidResult,
            None,
            activity,
        )));
    }
    let skipped = skip_list(cx, info.id);
    let mut chosen: Vec<(String, CommandMetadata)> = Vec::new();
    for mut meta in found {
        let wanted_type = if types.is_empty() {
            DEFAULT_TYPES.iter().any(|t| t.eq_ignore_ascii_case(&meta.command_type))
        } else {
            types.iter().any(|t| t.eq_ignore_ascii_case("All") || t.eq_ignore_ascii_case(&meta.command_type))
        };
        if !wanted_type {
            continue;
        }
        if !is_safe_name(&meta.name) {
            cx.write_error(module_error(
                &format!("ErrorSkippedUnsafeCommandName,{class}"),
                format!("Proxy creation has been skipped for the '{}' command, because PowerShell could not verify the safety of the command name.", meta.name),
                Category::InvalidData,
                Some(meta.name.clone()),
                activity,
            ))?;
            continue;
        }
        // Skipped unless asked for by its very name.
        if skipped.iter().any(|s| s.eq_ignore_ascii_case(&meta.name)) && !names.iter().any(|n| n.eq_ignore_ascii_case(&meta.name)) {
            continue;
        }
        // An alias: its proxy runs the command it names, under the alias's own name.
        let shown = meta.name.clone();
        if meta.command_type == "Alias"
            && let Some(resolved) = meta.resolved_command_name.clone().filter(|r| !r.is_empty())
        {
            meta.name = resolved;
        }
        match chosen.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(&shown)) {
            Some((_, c)) if precedence(&c.command_type) < precedence(&meta.command_type) => {}
            Some(slot) => *slot = (shown, meta),
            None => chosen.push((shown, meta)),
        }
    }
    let mut proxies = Vec::new();
    let mut clobbered = Vec::new();
    for (shown, meta) in chosen {
        let name = prefixed(&shown, &prefix);
        if shadowed(cx, &name) && !b.switch("AllowClobber") {
            clobbered.push(name);
            continue;
        }
        proxies.push(Proxy { name, meta, sets: Vec::new() });
    }
    if !clobbered.is_empty() {
        warn(
            cx,
            &format!(
                "Proxy creation has been skipped for the following command: '{}', because it would shadow an existing local command.  Use the AllowClobber parameter if you want to shadow existing local commands.",
                clobbered.join(", ")
            ),
        );
        if proxies.is_empty() {
            return Err(Flow::Error(module_error(
                "ErrorNoCommandsImportedBecauseOfSkipping",
                "No command proxies have been created, because all of the requested remote commands would shadow existing local commands.  Use the AllowClobber parameter if you want to shadow existing local commands.".into(),
                Category::InvalidResult,
                None,
                activity,
            )));
        }
    }
    let formats = format_data(cx, b, info.id, &proxies, activity)?;
    Ok(Some((info, proxies, formats)))
}

/// The format data Import-PSSession and Export-PSSession bring: `Get-FormatData` in the session, as a Command
/// object, for the types `-FormatTypeName` names; without it, for the output types the commands declare
/// (PowerShell asks for every type, `*`, which `-FormatTypeName *` still does); none when only `-CommandName`
/// was given, as in PowerShell. Types asked for by name that the server has no views for are an error, as there.
fn format_data(cx: &mut Ctx<'_>, b: &Bound, session: SessionId, proxies: &[Proxy], activity: &str) -> R<Vec<crate::format_data::FormatView>> {
    let given = b.has("FormatTypeName");
    let mut types = b.strings("FormatTypeName");
    if !given {
        if b.has("CommandName") {
            return Ok(Vec::new());
        }
        for t in proxies.iter().flat_map(|p| p.meta.output_type.iter()) {
            let t = t.strip_prefix("Deserialized.").unwrap_or(t);
            if !t.is_empty() && !types.iter().any(|x| x.eq_ignore_ascii_case(t)) {
                types.push(t.to_owned());
            }
        }
    }
    if types.is_empty() {
        return Ok(Vec::new());
    }
    let list = values::array(types.iter().map(|s| Value::string(s.as_str())).collect());
    let mut command = Command::named("Get-FormatData").param("TypeName", list);
    // PowerShell 5.1 and later shape their answer for the client's version: psgate reads 5.1's views.
    let version = private_data(cx, session).and_then(|d| values::property(&d, "PSVersionTable")).and_then(|t| values::property(&t, "PSVersion"));
    if let Some(Value::Version(v)) = version.as_ref().map(values::primitive)
        && (v.major, v.minor) >= (5, 1)
    {
        command = command.param("PowerShellVersion", Value::Version(psgate_shared::clixml::Version::new(5, 1)));
    }
    let pipeline = PipelineSpec { commands: vec![command], no_input: true, add_to_history: false, is_nested: false };
    let invocation = Invocation { sessions: vec![session], pipeline, throttle_limit: 1, text: "Get-FormatData".into(), input: None };
    let class = format!("Microsoft.PowerShell.Commands.{}Command", activity.replace('-', ""));
    let found = match cx.remoting.start(invocation, false) {
        Ok(run) => fetch(cx, run)?,
        Err(_) => None,
    };
    match found {
        Some(found) if !found.is_empty() || !given => Ok(crate::format_data::read(&found)),
        None if !given => Ok(Vec::new()),
        _ => Err(Flow::Error(module_error(
            &format!("ErrorNoResultsFromRemoteEnd,{class}"),
            "Running the Get-FormatData command in a remote session returned no results.".into(),
            Category::InvalidResult,
            None,
            activity,
        ))),
    }
}

/// Export-PSSession: the session's commands as a PowerShell module (`.psm1`, `.psd1`, `.format.ps1xml`) that makes
/// its own session with ordinary remoting (WinRM or SSH) on the user's machine. `psgate shell` writes the files;
/// where the console cannot (the browser), each file is output with its text.
fn export_pssession(cx: &mut Ctx<'_>, b: &Bound, sink: &mut Sink<'_>) -> R<()> {
    let Some((info, proxies, formats)) = proxies_of(cx, b, "Export-PSSession")? else { return Ok(()) };
    let folder = b.string("OutputModule").unwrap_or_default();
    let leaf = folder.trim_end_matches(['/', '\\']).rsplit(['/', '\\']).next().unwrap_or_default().to_owned();
    if leaf.is_empty() || !is_safe_name(&leaf) {
        return Err(Flow::Error(module_error(
            "ExportProxyCommand_CannotCreateOutputDirectory,Microsoft.PowerShell.Commands.ExportPSSessionCommand",
            format!("Cannot create the module {folder} due to the following: its name is not a module name. Use a different argument for the -OutputModule parameter and retry."),
            Category::ResourceUnavailable,
            Some(folder),
            "Export-PSSession",
        )));
    }
    let target = cx.remoting.target_of(info.id);
    let target = match target {
        Some(t) if t.transport == psgate_shared::api::Transport::Ssh => crate::export::ExportTarget::Ssh {
            host_name: t.computer_name.clone(),
            port: t.port.unwrap_or(22),
            user_name: t.user.clone().unwrap_or_default(),
            subsystem: t.subsystem.clone().filter(|s| s != "powershell"),
        },
        Some(t) => crate::export::ExportTarget::WinRm {
            computer_name: t.computer_name.clone(),
            port: t.port,
            use_ssl: t.use_ssl,
            configuration_name: t.configuration_name.clone(),
            // PowerShell's AuthenticationMechanism has no NTLM-only value: Negotiate does NTLM.
            authentication: t.authentication.map(|a| match a {
                psgate_shared::api::WinrmAuth::Negotiate | psgate_shared::api::WinrmAuth::Ntlm => "Negotiate".to_owned(),
                psgate_shared::api::WinrmAuth::Kerberos => "Kerberos".to_owned(),
                psgate_shared::api::WinrmAuth::Basic => "Basic".to_owned(),
            }),
            user: t.user.clone(),
        },
        None => crate::export::ExportTarget::WinRm { computer_name: info.computer_name.clone(), port: None, use_ssl: false, configuration_name: info.configuration_name.clone(), authentication: None, user: None },
    };
    let module = Module { name: leaf.clone(), session: info.id, computer_name: info.computer_name.clone(), modules: b.strings("Module"), prefix: String::new(), proxies, formats };
    let line = format!("Export-PSSession -Session <{}> -OutputModule {folder}", info.name);
    let files = crate::export::module_files(&module, &leaf, &target, &line);
    let mut unsaved = false;
    for (name, content) in files {
        let path = format!("{}/{name}", folder.trim_end_matches(['/', '\\']));
        let saved = cx.host.save(&path, &content, b.switch("Force"));
        let (path, why) = match saved {
            Ok(p) => (p, None),
            Err(SaveError::Unsupported) => {
                unsaved = true;
                (path, None)
            }
            Err(SaveError::Failed(why)) => (path, Some(why)),
        };
        if let Some(why) = why {
            return Err(Flow::Error(module_error(
                "ExportProxyCommand_CannotCreateOutputDirectory,Microsoft.PowerShell.Commands.ExportPSSessionCommand",
                format!("Cannot create the module {folder} due to the following: {why}. Use a different argument for the -OutputModule parameter and retry."),
                Category::ResourceUnavailable,
                Some(folder.clone()),
                "Export-PSSession",
            )));
        }
        let mut props = vec![("Name", Value::string(name.as_str())), ("FullName", Value::string(path.as_str())), ("Length", values::int(content.len() as i64))];
        if unsaved {
            props.push(("Content", Value::string(content)));
        }
        cx.emit(sink, values::object(&["System.IO.FileInfo", "System.IO.FileSystemInfo"], Some(path), props));
    }
    if unsaved {
        warn(cx, "This console cannot write files on your machine: each file's text is in its Content property (the browser offers each as a download). psgate shell writes them (Export-PSSession there).");
    }
    Ok(())
}

/// The name the next module will get (`tmp_` and a number, unique in the runspace).
fn next_name(cx: &Ctx<'_>) -> String {
    format!("tmp_{:08x}.psgate", 0x5e55_0000u32.wrapping_add(cx.rs.next_module + 1))
}

fn take_name(cx: &mut Ctx<'_>) -> String {
    let name = next_name(cx);
    cx.rs.next_module += 1;
    name
}

/// PowerShell's approved verbs (Get-Verb).
const VERBS: &[&str] = &[
    "Add", "Approve", "Assert", "Backup", "Block", "Build", "Checkpoint", "Clear", "Close", "Compare", "Complete", "Compress", "Confirm", "Connect", "Convert", "ConvertFrom", "ConvertTo", "Copy", "Debug", "Deny",
    "Deploy", "Disable", "Disconnect", "Dismount", "Edit", "Enable", "Enter", "Exit", "Expand", "Export", "Find", "Format", "Get", "Grant", "Group", "Hide", "Import", "Initialize", "Install", "Invoke", "Join",
    "Limit", "Lock", "Measure", "Merge", "Mount", "Move", "New", "Open", "Optimize", "Out", "Ping", "Pop", "Protect", "Publish", "Push", "Read", "Receive", "Redo", "Register", "Remove", "Rename", "Repair",
    "Request", "Reset", "Resize", "Resolve", "Restart", "Restore", "Resume", "Revoke", "Save", "Search", "Select", "Send", "Set", "Show", "Skip", "Split", "Start", "Step", "Stop", "Submit", "Suspend",
    "Switch", "Sync", "Test", "Trace", "Unblock", "Undo", "Uninstall", "Unlock", "Unprotect", "Unpublish", "Unregister", "Update", "Use", "Wait", "Watch", "Write",
];

/// Whether a command's verb is one of PowerShell's approved verbs (a name without a verb is not checked;
/// Sort-Object and Tee-Object are exempt).
pub fn approved(name: &str) -> bool {
    match name.split_once('-') {
        Some((verb, _)) => VERBS.iter().any(|v| v.eq_ignore_ascii_case(verb)) || ["Sort-Object", "Tee-Object"].iter().any(|n| n.eq_ignore_ascii_case(name)),
        None => true,
    }
}

/// A module as Get-Module and Import-PSSession output it (`PSModuleInfo`).
pub(crate) fn module_object(m: &Module) -> Value {
    let commands: Vec<Value> = m.proxies.iter().map(|p| Value::string(p.name.as_str())).collect();
    let description = format!("Implicit remoting for {}", m.computer_name);
    values::object(
        &["System.Management.Automation.PSModuleInfo"],
        Some(m.name.clone()),
        vec![
            ("ModuleType", Value::string("Script")),
            ("Version", Value::string("1.0")),
            ("PreRelease", Value::Nil),
            ("Name", Value::string(m.name.as_str())),
            ("ExportedCommands", values::array(commands)),
            ("Description", Value::string(description)),
            ("Path", Value::string(format!("psgate:\\{}\\{}.psm1", m.name, m.name))),
            ("PrivateData", values::object(&["System.Collections.Hashtable"], None, vec![("ImplicitRemoting", Value::Bool(true))])),
            ("PSSessionId", values::int(m.session.0 as i64)),
            ("ComputerName", Value::string(m.computer_name.as_str())),
            ("SourceModules", values::array(m.modules.iter().map(|s| Value::string(s.as_str())).collect())),
        ],
    )
}

fn get_module(cx: &mut Ctx<'_>, b: &Bound, sink: &mut Sink<'_>) -> R<()> {
    let names = b.strings("Name");
    let found: Vec<Value> = cx.rs.modules.iter().filter(|m| names.is_empty() || names.iter().any(|n| values::like(&m.name, n, false))).map(module_object).collect();
    for v in found {
        cx.emit(sink, v);
    }
    Ok(())
}

fn remove_module(cx: &mut Ctx<'_>, b: &Bound, _sink: &mut Sink<'_>) -> R<()> {
    let mut names = b.strings("Name");
    names.extend(b.items("ModuleInfo").iter().filter_map(|v| values::property(v, "Name").map(|n| text(&n))));
    let before = cx.rs.modules.len();
    cx.rs.modules.retain(|m| !names.iter().any(|n| values::like(&m.name, n, false)));
    if cx.rs.modules.len() == before {
        return Err(Flow::Error(module_error(
            "Modules_NoModulesRemoved,Microsoft.PowerShell.Commands.RemoveModuleCommand",
            "No modules were removed. Verify that the specification of modules to remove is correct and those modules exist in the runspace.".into(),
            Category::ResourceUnavailable,
            None,
            "Remove-Module",
        )));
    }
    Ok(())
}

/// Drops the modules whose session is gone (removed by Remove-PSSession, the sessions panel or another tab), and
/// says so.
pub(crate) fn prune(cx: &mut Ctx<'_>) {
    if cx.rs.modules.is_empty() {
        return;
    }
    let live = cx.remoting.list();
    let (kept, gone): (Vec<Module>, Vec<Module>) = std::mem::take(&mut cx.rs.modules).into_iter().partition(|m| live.iter().any(|s| s.id == m.session));
    cx.rs.modules = kept;
    for m in gone {
        let names: Vec<&str> = m.proxies.iter().map(|p| p.name.as_str()).collect();
        warn(cx, &format!("The module {} was removed with its commands ({}): its session to {} was removed.", m.name, names.join(", "), m.computer_name));
    }
}

/// A Command object's parameters: `(Some(name), value)`, or `(None, value)` by position.
type Parameters = Vec<(Option<String>, Value)>;

/// A proxy call: the real command runs in the module's session as a Command object with the arguments as typed
/// (names completed from the command's metadata), the pipeline's objects as its input.
pub(crate) fn call(cx: &mut Ctx<'_>, module: usize, proxy: &Proxy, args: Vec<Arg>, input: Option<Vec<Value>>, line: &str, sink: &mut Sink<'_>) -> R<()> {
    let (mut parameters, as_job) = parameters(proxy, args)?;
    ask_missing(cx, proxy, &mut parameters, input.is_some())?;
    let session = ready(cx, module, &proxy.name)?;
    let pipeline = PipelineSpec { commands: vec![Command { parameters, ..Command::named(proxy.meta.name.as_str()) }], no_input: input.is_none(), add_to_history: false, is_nested: false };
    let invocation = Invocation { sessions: vec![session], pipeline, throttle_limit: 1, text: line.to_owned(), input };
    if as_job {
        return crate::jobs::start(cx, invocation, false, None, Vec::new(), sink);
    }
    let run = cx.remoting.start(invocation, false).map_err(|e| Flow::Error(module_error("ImplicitRemotingRunFailed", e.message, Category::InvalidOperation, Some(proxy.name.clone()), &proxy.name)))?;
    cx.follow(run, sink).map(drop)
}

/// The parameter set a call is in: the one every named parameter belongs to, the default one first.
pub fn chosen_set<'a>(proxy: &'a Proxy, named: &[&str]) -> Option<&'a ParameterSet> {
    let fits = |s: &&ParameterSet| named.iter().all(|n| s.parameters.iter().any(|p| p.name.eq_ignore_ascii_case(n)));
    proxy.sets.iter().filter(|s| s.is_default).find(fits).or_else(|| proxy.sets.iter().find(fits))
}

/// A mandatory parameter the call does not give (by name, by position, from the pipeline) is asked for here, as
/// PowerShell asks for a local command's (its own proxies cannot: they do not know what is mandatory). Where
/// nobody can answer, the server's binder says what is missing.
fn ask_missing(cx: &mut Ctx<'_>, proxy: &Proxy, parameters: &mut Parameters, piped: bool) -> R<()> {
    if !cx.host.interactive() {
        return Ok(());
    }
    let named: Vec<&str> = parameters.iter().filter_map(|(n, _)| n.as_deref()).collect();
    let Some(set) = chosen_set(proxy, &named) else { return Ok(()) };
    let positional = parameters.iter().filter(|(n, _)| n.is_none()).count() as i64;
    let mut by_position: Vec<&SetParameter> = set.parameters.iter().filter(|p| p.position.is_some() && !named.iter().any(|n| n.eq_ignore_ascii_case(&p.name))).collect();
    by_position.sort_by_key(|p| p.position);
    let taken: Vec<&str> = by_position.iter().take(positional.max(0) as usize).map(|p| p.name.as_str()).collect();
    let missing: Vec<&SetParameter> = set
        .parameters
        .iter()
        .filter(|p| {
            let given = named.iter().any(|n| n.eq_ignore_ascii_case(&p.name)) || taken.contains(&p.name.as_str()) || (piped && p.from_pipeline);
            p.mandatory && !given
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let fields = missing.iter().map(|p| crate::host::field(&p.name, if p.type_name.ends_with("[]") { Kind::Strings } else { Kind::String }, "")).collect();
    let caption = format!("cmdlet {} at command pipeline position {}", proxy.name, cx.pipeline_position.max(1));
    let answer = cx.host.call(psgate_shared::psrp::host::HostMethod::Prompt, vec![Value::string(caption), Value::string("Supply values for the following parameters:"), values::array(fields)]);
    let Some(psgate_shared::api::HostAnswer::Fields { fields }) = answer else { return Err(Flow::Stopped) };
    for p in missing {
        let Some(given) = fields.iter().find(|f| f.name.eq_ignore_ascii_case(&p.name)).map(|f| f.text.clone()).filter(|t| !t.trim().is_empty()) else {
            return Err(Flow::Error(Failure::new(ErrorSpec {
                message: format!("Cannot bind argument to parameter '{}' because it is an empty string.", p.name),
                id: format!("ParameterArgumentValidationErrorEmptyStringNotAllowed,{}", proxy.name),
                category: Category::InvalidData,
                exception: "System.Management.Automation.ParameterBindingValidationException",
                target: None,
                activity: proxy.name.clone(),
                position: None,
            })));
        };
        let value = if p.type_name.ends_with("[]") { values::array(given.split(',').map(|s| Value::string(s.trim())).collect()) } else { Value::string(given) };
        parameters.push((Some(p.name.clone()), value));
    }
    Ok(())
}

/// The Command object's parameters from the arguments as typed: `-Sam` completed to `-SamAccountName` (or an
/// alias to its parameter) where the metadata says so, a non-switch name paired with the value after it, values
/// by position as positional arguments. `-AsJob`, which PowerShell's proxies add, says to run it as a job.
fn parameters(proxy: &Proxy, args: Vec<Arg>) -> R<(Parameters, bool)> {
    let mut out = Vec::new();
    let mut as_job = false;
    let mut args = args.into_iter().peekable();
    while let Some(a) = args.next() {
        match a {
            Arg::Value { value, .. } => out.push((None, value)),
            Arg::Named { name, value, .. } => {
                if name.eq_ignore_ascii_case("AsJob") && !proxy.meta.parameters.iter().any(|p| p.name.eq_ignore_ascii_case("AsJob")) {
                    as_job = value.as_ref().is_none_or(values::truthy);
                    continue;
                }
                let (name, switch) = resolve(proxy, &name)?;
                let client_side = proxy.meta.command_type == "Cmdlet" && CLIENT_SIDE.iter().any(|c| c.eq_ignore_ascii_case(&name));
                let value = match value {
                    Some(v) => v,
                    None if switch => Value::Bool(true),
                    None => match args.next_if(|a| matches!(a, Arg::Value { .. })) {
                        Some(Arg::Value { value, .. }) => value,
                        _ => {
                            let ty = proxy.meta.parameters.iter().find(|p| p.name == name).map(|p| p.type_name.clone()).unwrap_or_default();
                            return Err(Flow::Error(Failure::new(ErrorSpec {
                                message: format!("Missing an argument for parameter '{name}'. Specify a parameter of type '{ty}' and try again."),
                                id: format!("MissingArgument,{}", proxy.name),
                                category: Category::InvalidArgument,
                                exception: "System.Management.Automation.ParameterBindingException",
                                target: None,
                                activity: proxy.name.clone(),
                                position: None,
                            })));
                        }
                    },
                };
                if !client_side {
                    out.push((Some(name), value));
                }
            }
        }
    }
    Ok((out, as_job))
}

/// A typed parameter name as the command's metadata names it: exactly, by alias, or by an unambiguous prefix.
/// Without metadata parameters the name goes as typed (the server binds it).
fn resolve(proxy: &Proxy, typed: &str) -> R<(String, bool)> {
    let params = &proxy.meta.parameters;
    if params.is_empty() {
        return Ok((typed.to_owned(), false));
    }
    let exact = params.iter().find(|p| p.name.eq_ignore_ascii_case(typed) || p.aliases.iter().any(|a| a.eq_ignore_ascii_case(typed)));
    if let Some(p) = exact {
        return Ok((p.name.clone(), p.switch));
    }
    let lower = typed.to_lowercase();
    let matches: Vec<_> = params.iter().filter(|p| p.name.to_lowercase().starts_with(&lower)).collect();
    match matches.as_slice() {
        [p] => Ok((p.name.clone(), p.switch)),
        [] => Err(Flow::Error(Failure::new(ErrorSpec {
            message: format!("A parameter cannot be found that matches parameter name '{typed}'."),
            id: format!("NamedParameterNotFound,{}", proxy.name),
            category: Category::InvalidArgument,
            exception: "System.Management.Automation.ParameterBindingException",
            target: None,
            activity: proxy.name.clone(),
            position: None,
        }))),
        many => Err(Flow::Error(Failure::new(ErrorSpec {
            message: format!(
                "Parameter cannot be processed because the parameter name '{typed}' is ambiguous. Possible matches include: {}.",
                many.iter().map(|p| format!("-{}", p.name)).collect::<Vec<_>>().join(" ")
            ),
            id: format!("AmbiguousParameter,{}", proxy.name),
            category: Category::InvalidArgument,
            exception: "System.Management.Automation.ParameterBindingException",
            target: None,
            activity: proxy.name.clone(),
            position: None,
        }))),
    }
}

/// The module's session, ready to run (or about to be): a disconnected one connected again, a broken or closed one replaced by a
/// new session like it (the remote modules imported there again), with PowerShell's warning.
fn ready(cx: &mut Ctx<'_>, module: usize, command: &str) -> R<SessionId> {
    let (session, computer) = (cx.rs.modules[module].session, cx.rs.modules[module].computer_name.clone());
    let info = cx.remoting.list().iter().find(|s| s.id == session).cloned();
    match info.as_ref().map(|i| i.state) {
        // Opening: the command waits for it (a session a relay is taking over opens again with its Connect).
        Some(SessionState::Opened | SessionState::Opening) => return Ok(session),
        Some(SessionState::Disconnected) => {
            if let Some(Ok(i)) = cx.remoting.connect(&[session]).into_iter().next()
                && i.state == SessionState::Opened
            {
                return Ok(session);
            }
        }
        _ => {}
    }
    let names: Vec<String> = cx.rs.modules[module].proxies.iter().map(|p| p.name.clone()).collect();
    // PowerShell's proxy module says it with Write-Host.
    let message = format!("Creating a new session for implicit remoting of \"{command}\" command...");
    cx.host.record(RecordKind::Information, crate::error::host_text(&message));
    let failed = |why: String| {
        Flow::Error(module_error(
            "ImplicitRemotingSessionBroken",
            format!("The session for implicit remoting of the module {} to {computer} could not be opened again: {why}", cx_name(&names)),
            Category::OpenError,
            Some(computer.clone()),
            "Import-PSSession",
        ))
    };
    let Some(target) = cx.remoting.target_of(session) else { return Err(failed("psgate no longer knows how the session was opened.".into())) };
    let opened = match cx.remoting.open(vec![target]).into_iter().next() {
        Some(Ok(i)) => i,
        Some(Err(e)) => return Err(failed(e.message)),
        None => return Err(failed("nothing was opened".into())),
    };
    // Every module of the old session follows it to the new one.
    for m in cx.rs.modules.iter_mut().filter(|m| m.session == session) {
        m.session = opened.id;
    }
    let remote_modules = cx.rs.modules[module].modules.clone();
    if !remote_modules.is_empty() {
        let import = Command::named("Import-Module").param("Name", values::array(remote_modules.iter().map(|m| Value::string(m.as_str())).collect()));
        let pipeline = PipelineSpec { commands: vec![import], no_input: true, add_to_history: false, is_nested: false };
        let invocation = Invocation { sessions: vec![opened.id], pipeline, throttle_limit: 1, text: format!("Import-Module {}", remote_modules.join(", ")), input: None };
        if let Ok(run) = cx.remoting.start(invocation, false) {
            let mut ignored = Vec::new();
            cx.follow(run, &mut Sink::Collect(&mut ignored))?;
        }
    }
    Ok(opened.id)
}

fn cx_name(names: &[String]) -> String {
    names.join(", ")
}

/// Get-Help of a proxy: the command's help from the session (`Get-Help -Name New-ADUser` as a Command object),
/// under the proxy's name; where the session has none (a restricted endpoint), the syntax from the metadata and
/// the online help's address.
pub(crate) fn help(cx: &mut Ctx<'_>, module: usize, proxy: &Proxy, b: &Bound, sink: &mut Sink<'_>) -> R<()> {
    let mut get_help = Command::named("Get-Help").param("Name", Value::string(proxy.meta.name.as_str()));
    if let Some(category) = match proxy.meta.command_type.as_str() {
        "Cmdlet" | "Function" | "Filter" | "Alias" => Some(proxy.meta.command_type.clone()),
        _ => None,
    } {
        get_help = get_help.param("Category", Value::string(category));
    }
    // The help object is the whole help: -Full, -Examples and -Parameter are views of it, made here.
    let parameters = b.strings("Parameter");
    let remote = match ready(cx, module, &proxy.name) {
        Ok(session) => {
            let pipeline = PipelineSpec { commands: vec![get_help], no_input: true, add_to_history: false, is_nested: false };
            let invocation = Invocation { sessions: vec![session], pipeline, throttle_limit: 1, text: format!("Get-Help {}", proxy.meta.name), input: None };
            match cx.remoting.start(invocation, false) {
                Ok(run) => fetch_quietly(cx, run)?,
                Err(_) => Vec::new(),
            }
        }
        Err(Flow::Error(_)) => Vec::new(),
        Err(other) => return Err(other),
    };
    let full = b.switch("Full") || b.switch("Detailed");
    if remote.is_empty() {
        cx.emit(sink, Value::string(metadata_help(proxy, &cx.rs.modules[module].computer_name)));
    } else {
        for v in remote {
            let shown = match v.as_object() {
                Some(_) if values::property(&v, "Name").is_some() || values::property(&v, "details").is_some() => Value::string(crate::help::maml_text(&v, &proxy.name, &proxy.meta.name, full, b.switch("Examples"), &parameters)),
                _ => v,
            };
            cx.emit(sink, shown);
        }
    }
    Ok(())
}

/// A remote command's objects, or none when it failed (not there, not allowed): Get-Help, Get-Command.
fn fetch_quietly(cx: &mut Ctx<'_>, run: crate::remote::RunId) -> R<Vec<Value>> {
    Ok(fetch(cx, run)?.unwrap_or_default())
}

/// A run's output (`None`: it failed or wrote errors), its records not shown.
fn fetch(cx: &mut Ctx<'_>, run: crate::remote::RunId) -> R<Option<Vec<Value>>> {
    let mut out = Vec::new();
    let mut failed = false;
    loop {
        if cx.host.stopping() {
            cx.remoting.stop(run);
            cx.remoting.forget(run);
            return Err(Flow::Stopped);
        }
        let Some(event) = cx.remoting.next_event(run, crate::eval::POLL) else { continue };
        match event {
            crate::remote::RemoteEvent::Output { value, .. } => out.push(value),
            crate::remote::RemoteEvent::Record { kind: RecordKind::Error, .. } => failed = true,
            crate::remote::RemoteEvent::Finished { state, .. } if state != PipelineState::Completed => failed = true,
            crate::remote::RemoteEvent::Done => {
                cx.remoting.forget(run);
                break;
            }
            _ => {}
        }
    }
    Ok((!failed).then_some(out))
}

/// Help made from the metadata alone: the syntax and the online help's address.
pub fn metadata_help(proxy: &Proxy, computer: &str) -> String {
    let mut syntax = vec![proxy.name.clone()];
    for p in proxy.meta.parameters.iter().filter(|p| !crate::bind::COMMON.iter().any(|c| c.name.eq_ignore_ascii_case(&p.name)) && !is_risk_parameter(&p.name)) {
        if p.switch {
            syntax.push(format!("[-{}]", p.name));
        } else {
            syntax.push(format!("[-{} <{}>]", p.name, short_type(&p.type_name)));
        }
    }
    syntax.push("[<CommonParameters>]".into());
    let mut out = format!("\nNAME\n    {}\n\nSYNTAX\n    {}\n\n", proxy.name, syntax.join(" "));
    out.push_str(&format!("ALIASES\n    None\n\nREMARKS\n    {} runs {} on {computer} (implicit remoting). {computer} gave no help for it.\n", proxy.name, proxy.meta.name));
    if !proxy.meta.help_uri.is_empty() {
        out.push_str(&format!("    Online help: {}\n", proxy.meta.help_uri));
    }
    out
}

fn is_risk_parameter(name: &str) -> bool {
    name.eq_ignore_ascii_case("WhatIf") || name.eq_ignore_ascii_case("Confirm")
}

/// `System.String[]` as Get-Help shows it: `string[]`.
pub fn short_type(type_name: &str) -> String {
    let base = type_name.split(',').next().unwrap_or(type_name);
    let base = base.rsplit('.').next().unwrap_or(base);
    match base {
        "String" => "string".into(),
        "String[]" => "string[]".into(),
        "Int32" => "int".into(),
        "Boolean" => "bool".into(),
        "Object" => "Object".into(),
        other => other.replace("Nullable`1[[", "").trim_end_matches(']').to_owned(),
    }
}

/// Completion: the proxies' names.
pub fn names(modules: &[Module]) -> Vec<String> {
    modules.iter().flat_map(|m| m.proxies.iter().map(|p| p.name.clone())).collect()
}

/// What Get-Command says of a proxy: a `FunctionInfo` from the module.
pub(crate) fn command_info(module: &Module, proxy: &Proxy) -> Value {
    values::object(
        &["System.Management.Automation.FunctionInfo", "System.Management.Automation.CommandInfo"],
        Some(proxy.name.clone()),
        vec![
            ("CommandType", Value::string("Function")),
            ("Name", Value::string(proxy.name.as_str())),
            ("Version", Value::string("1.0")),
            ("Source", Value::string(module.name.as_str())),
            ("Definition", Value::string(format!("{} on {} (implicit remoting)", proxy.meta.name, module.computer_name))),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_go_before_the_noun() {
        assert_eq!(prefixed("New-ADUser", "rem"), "New-remADUser");
        assert_eq!(prefixed("New-ADUser", ""), "New-ADUser");
        assert_eq!(prefixed("gsv", "rem"), "remgsv");
    }

    #[test]
    fn unsafe_names_are_refused() {
        assert!(is_safe_name("Get-ADUser"));
        assert!(is_safe_name("ActiveDirectory\\Get-ADUser"));
        assert!(!is_safe_name("Get-X; Remove-Item"));
        assert!(!is_safe_name("Get-X$(evil)"));
        assert!(!is_safe_name(&"a".repeat(101)));
        assert!(!is_safe_name(""));
    }

    #[test]
    fn approved_verbs() {
        assert!(approved("New-ADUser"));
        assert!(!approved("Frob-Thing"));
        assert!(approved("gsv"));
    }
}
