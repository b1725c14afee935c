//! Implicit remoting at the prompt against the fake: Import-PSSession's discovery and filters, the proxies'
//! Command objects (named, positional, pipeline input), help, modules' lifetime and repair.

mod common;

use common::{Event, World, command_metadata, same, show_command_info};
use psgate_shared::api::SessionState;

const STRING: &str = "System.String";
const SWITCH: &str = "System.Management.Automation.SwitchParameter";

fn ad_world() -> World {
    let mut w = World::new().with_credential();
    w.fake.commands = vec![
        command_metadata("Get-ADUser", "ActiveDirectory", "Cmdlet", None, &[("Filter", STRING, false), ("Identity", "Microsoft.ActiveDirectory.Management.ADUser", false), ("Verbose", SWITCH, true)]),
        command_metadata(
            "New-ADUser",
            "ActiveDirectory",
            "Cmdlet",
            None,
            &[("Name", STRING, false), ("SamAccountName", STRING, false), ("SearchBase", STRING, false), ("PassThru", SWITCH, true), ("Verbose", SWITCH, true)],
        ),
        command_metadata("Set-ADUser", "ActiveDirectory", "Cmdlet", None, &[("Identity", "Microsoft.ActiveDirectory.Management.ADUser", false), ("Department", STRING, false)]),
        command_metadata("Get-Help", "Microsoft.PowerShell.Core", "Cmdlet", None, &[("Name", STRING, false)]),
        command_metadata("Get-Process", "Microsoft.PowerShell.Management", "Cmdlet", None, &[("Name", STRING, false)]),
        command_metadata("Frob-Thing", "Odd", "Function", None, &[]),
        command_metadata("Get-X;Remove-Item", "Odd", "Function", None, &[]),
        command_metadata("gadu", "ActiveDirectory", "Alias", Some("Get-ADUser"), &[]),
    ];
    w.run("$session = New-PSSession -ComputerName srv02 -Credential $cred");
    w
}


#[test]
fn import_pssession_asks_the_module_and_makes_prefixed_proxies() {
    let mut w = ad_world();
    let shown = w.run("Import-PSSession -Session $session -Module ActiveDirectory -Prefix rem");
    let asked: Vec<&str> = w.fake.log.iter().rev().take(2).map(String::as_str).collect();
    assert_eq!(asked, ["start [1] throttle=1 Get-Command NameGet-ADUser New-ADUser Set-ADUser ShowCommandInfoTrue ModuleActiveDirectory", "metadata 1 names=* modules=ActiveDirectory"]);
    assert!(shown.contains("ModuleType Version"), "{shown}");
    assert!(shown.contains("{Get-remADUser, New-remADUser, Set-remADUser, remgadu}"), "{shown}");
    same(
        &w.run("Get-Command -Name *-rem* | select Name, CommandType"),
        "
Name          CommandType
----          -----------
Get-remADUser Function
New-remADUser Function
Set-remADUser Function",
    );
    // Named (prefix completed), positional and switch arguments go as a Command object; the server binds them.
    w.run("New-remADUser ada -Sam ada -PassThru");
    assert_eq!(w.fake.log.last().map(String::as_str), Some("start [1] throttle=1 New-ADUser [ada] SamAccountNameada PassThruTrue"));
    // The alias runs the command it names.
    w.run("remgadu -Filter *");
    assert_eq!(w.fake.log.last().map(String::as_str), Some("start [1] throttle=1 Get-ADUser Filter*"));
    // The pipeline's objects are the remote command's input.
    w.run("'ada', 'bob' | Set-remADUser -Department Ops");
    assert_eq!(w.fake.log.last().map(String::as_str), Some("start [1] throttle=1 Set-ADUser DepartmentOps input[ada, bob]"));
    // Client-side common parameters stay here; -AsJob makes a job.
    w.run("Get-remADUser -Filter * -Verbose");
    assert_eq!(w.fake.log.last().map(String::as_str), Some("start [1] throttle=1 Get-ADUser Filter*"));
    let shown = w.run("Get-remADUser -Filter * -AsJob | select Name, State");
    assert!(shown.contains("Job"), "{shown}");
}

#[test]
fn the_filters_of_import_pssession() {
    let mut w = ad_world();
    // Get-Help is skipped (the prompt keeps its own), unsafe names are refused with PowerShell's error.
    let shown = w.run("Import-PSSession $session -DisableNameChecking");
    assert!(shown.contains("Proxy creation has been skipped for the 'Get-X;Remove-Item' command, because PowerShell could not verify the safety of the command name."), "{shown}");
    let names = w.run("(Get-Module).ExportedCommands");
    assert!(!names.contains("Get-Help") && names.contains("Get-Process") && names.contains("Frob-Thing"), "{names}");
    // The names the prompt has already would be hidden: skipped with PowerShell's warning.
    let mut w = ad_world();
    w.run("Import-PSSession $session -CommandName Get-ADUser, New-ADUser");
    w.run("Import-PSSession $session -CommandName Get-ADUser, Set-ADUser");
    assert_eq!(
        w.warnings(),
        ["Proxy creation has been skipped for the following command: 'Get-ADUser', because it would shadow an existing local command.  Use the AllowClobber parameter if you want to shadow existing local commands."]
    );
    same(&w.run("(Get-Module).Count"), "2");
    let shown = w.run("Import-PSSession $session -CommandName Get-ADUser");
    assert!(shown.contains("No command proxies have been created, because all of the requested remote commands would shadow existing local commands."), "{shown}");
    w.run("Import-PSSession $session -CommandName Get-ADUser -AllowClobber");
    same(&w.run("(Get-Module).Count"), "3");
    // An unapproved verb warns, unless -DisableNameChecking.
    let mut w = ad_world();
    w.run("Import-PSSession $session -Module Odd");
    assert!(w.warnings().iter().any(|m| m.contains("include unapproved verbs")), "{:?}", w.warnings());
    // Nothing there: PowerShell's error.
    let shown = w.run("Import-PSSession $session -Module Nothing");
    assert!(shown.contains("Running the Get-Command command in a remote session returned no results."), "{shown}");
    // A local cmdlet's name is refused too (the proxy would hide Get-Help … no: Get-Process is not local; Get-PSSession is).
    w.fake.commands.push(command_metadata("Get-PSSession", "Microsoft.PowerShell.Core", "Cmdlet", None, &[]));
    let shown = w.run("Import-PSSession $session -CommandName Get-PSSession");
    assert!(shown.contains("No command proxies have been created"), "{shown}");
}

#[test]
fn proxies_check_their_parameters_like_powershell() {
    let mut w = ad_world();
    w.run("Import-PSSession $session -Module ActiveDirectory -Prefix rem");
    let shown = w.run("New-remADUser -S x");
    assert!(shown.contains("Parameter cannot be processed because the parameter name 'S' is ambiguous. Possible matches include: -SamAccountName -SearchBase."), "{shown}");
    let shown = w.run("New-remADUser -Nope x");
    assert!(shown.contains("A parameter cannot be found that matches parameter name 'Nope'."), "{shown}");
    let shown = w.run("New-remADUser -Name");
    assert!(shown.contains("Missing an argument for parameter 'Name'. Specify a parameter of type 'System.String' and try again."), "{shown}");
}

#[test]
fn modules_go_with_their_session_and_a_broken_session_is_opened_again() {
    let mut w = ad_world();
    w.run("Import-PSSession $session -Module ActiveDirectory -Prefix rem");
    // The session breaks: the next call opens a new one like it, imports the module there, says so and runs.
    w.fake.sessions[0].state = SessionState::Broken;
    let shown = w.run("Get-remADUser -Filter *");
    assert!(shown.contains("Creating a new session for implicit remoting of \"Get-remADUser\" command..."), "{shown}");
    let log: Vec<&str> = w.fake.log.iter().rev().take(3).map(String::as_str).collect();
    assert_eq!(log, ["start [2] throttle=1 Get-ADUser Filter*", "start [2] throttle=1 Import-Module NameActiveDirectory", "open winrm srv02 user=contoso\\ada password"]);
    // A disconnected session is connected again instead.
    w.fake.sessions[1].state = SessionState::Disconnected;
    w.run("Get-remADUser -Filter *");
    assert!(w.fake.log.iter().any(|l| l == "connect [2]"), "{:?}", w.fake.log);
    // Removing the session removes the module and its proxies, and says so.
    let shown = w.run("Get-PSSession | Remove-PSSession");
    assert!(shown.contains("was removed with its commands (Get-remADUser, New-remADUser, Set-remADUser, remgadu)"), "{shown}");
    let shown = w.run("Get-remADUser");
    assert!(shown.contains("The term 'Get-remADUser' is not recognized"), "{shown}");
}

#[test]
fn get_module_and_remove_module() {
    let mut w = ad_world();
    w.run("Import-PSSession $session -Module ActiveDirectory -Prefix rem");
    let name = w.run("(Get-Module).Name");
    assert!(name.starts_with("tmp_"), "{name}");
    w.run("Get-Module | Remove-Module");
    same(&w.run("Get-Module"), "");
    assert!(w.run("Get-remADUser").contains("is not recognized"));
    let shown = w.run("Remove-Module tmp_nothing");
    assert!(shown.contains("No modules were removed."), "{shown}");
}

#[test]
fn help_comes_from_the_session_under_the_proxys_name() {
    let mut w = ad_world();
    w.run("Import-PSSession $session -Module ActiveDirectory -Prefix rem");
    // A restricted endpoint has no Get-Help: the syntax from the metadata, and the online help.
    let shown = w.run("Get-Help New-remADUser");
    assert!(shown.contains("New-remADUser [-Name <string>] [-SamAccountName <string>] [-SearchBase <string>] [-PassThru] [<CommonParameters>]"), "{shown}");
    assert!(shown.contains("https://go.microsoft.com/fwlink/?LinkId=301409"), "{shown}");
    // The session's help object, shown as PowerShell shows it, under the proxy's name.
    let v = psgate_lang::values::object;
    let t = |s: &str| psgate_shared::clixml::Value::string(s);
    let text = |s: &str| psgate_lang::values::array(vec![v(&["MamlParaTextItem"], None, vec![("Text", t(s))])]);
    let parameter = v(&["MamlCommandHelpInfo#parameter"], None, vec![("name", t("Name")), ("required", t("true")), ("position", t("0")), ("description", text("The user's name.")), ("parameterValue", t("String"))]);
    w.fake.help = Some(v(
        &["MamlCommandHelpInfo#FullView", "MamlCommandHelpInfo"],
        None,
        vec![
            ("Name", t("New-ADUser")),
            ("Synopsis", t("Creates an Active Directory user.")),
            ("description", text("The New-ADUser cmdlet creates a user.")),
            ("syntax", v(&["MamlCommandHelpInfo#syntax"], None, vec![("syntaxItem", v(&["MamlCommandHelpInfo#syntaxItem"], None, vec![("name", t("New-ADUser")), ("parameter", parameter.clone())]))])),
            ("parameters", v(&["MamlCommandHelpInfo#parameters"], None, vec![("parameter", parameter)])),
            ("examples", v(&["MamlCommandHelpInfo#examples"], None, vec![("example", v(&["MamlCommandHelpInfo#example"], None, vec![("title", t("Example 1")), ("code", t("New-ADUser -Name ada")), ("remarks", text("Makes ada."))]))])),
        ],
    ));
    let shown = w.run("Get-Help New-remADUser");
    assert_eq!(w.fake.log.last().map(String::as_str), Some("start [1] throttle=1 Get-Help NameNew-ADUser CategoryCmdlet"));
    assert!(shown.contains("NAME\n    New-remADUser") && shown.contains("Creates an Active Directory user.") && shown.contains("New-remADUser [-Name] <String>"), "{shown}");
    let shown = w.run("Get-Help New-remADUser -Examples");
    assert!(shown.contains("New-remADUser -Name ada") && shown.contains("Makes ada."), "{shown}");
    let shown = w.run("Get-Help New-remADUser -Full");
    assert!(shown.contains("PARAMETERS") && shown.contains("The user's name.") && shown.contains("Required?                    true"), "{shown}");
}

#[test]
fn completion_offers_proxies_and_their_parameters() {
    let mut w = ad_world();
    w.run("Import-PSSession $session -Module ActiveDirectory -Prefix rem");
    let c = psgate_lang::complete(&w.rs, &w.fake.sessions, "New-remAD", 9);
    assert_eq!(c.matches.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["New-remADUser"]);
    let c = psgate_lang::complete(&w.rs, &w.fake.sessions, "New-remADUser -Sam", 18);
    assert_eq!(c.matches.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["-SamAccountName"]);
}

#[test]
fn export_pssession_where_the_console_cannot_write_files() {
    let mut w = ad_world();
    let shown = w.run("Export-PSSession -Session $session -Module ActiveDirectory -OutputModule ADRemote | % Name");
    assert!(shown.contains("ADRemote.psm1\nADRemote.psd1\nADRemote.format.ps1xml"), "{shown}");
    assert!(w.warnings().iter().any(|m| m.contains("in its Content property")), "{:?}", w.warnings());
    let psd1 = w.run("(Export-PSSession -Session $session -Module ActiveDirectory -OutputModule ADRemote)[1].Content");
    assert!(psd1.contains("RootModule = 'ADRemote.psm1'") && psd1.contains("'Get-ADUser'"), "{psd1}");
    // The module does not name psgate's session: it makes its own with the user's credential, asked for there.
    let psm1 = w.run("(Export-PSSession -Session $session -Module ActiveDirectory -OutputModule ADRemote)[0].Content");
    assert!(psm1.contains("PromptForCredential") && !psm1.contains("Pa$$w0rd"), "{psm1}");
    // The session's authentication goes in PowerShell's words.
    w.run("$kerberos = New-PSSession -ComputerName srv03 -Credential $cred -Authentication Kerberos");
    let psm1 = w.run("(Export-PSSession -Session $kerberos -Module ActiveDirectory -OutputModule ADRemote)[0].Content");
    assert!(psm1.contains("-ComputerName 'srv03'") && psm1.contains("-Authentication 'Kerberos'"), "{psm1}");
    let shown = w.run("Export-PSSession -Session $session -OutputModule 'bad name;x'");
    assert!(shown.contains("Cannot create the module"), "{shown}");
}

#[test]
fn get_command_show_command_info_makes_proxies_ask_and_complete_like_local_commands() {
    let mut w = ad_world();
    w.fake.show = vec![
        show_command_info("New-ADUser", &[("Name", true, Some(0), &[]), ("SamAccountName", false, None, &[])]),
        show_command_info("Get-ADUser", &[("Filter", false, None, &[]), ("SearchScope", false, None, &["Base", "OneLevel", "Subtree"])]),
    ];
    w.run("Import-PSSession -Session $session -Module ActiveDirectory -Prefix rem");
    // A missing mandatory parameter is asked for here, with PowerShell's words, and goes with the command.
    w.console.answers.push_back(psgate_shared::api::HostAnswer::Fields { fields: vec![psgate_shared::api::FieldAnswer { name: "Name".into(), text: "ada".into(), secure: false }] });
    w.run("New-remADUser -SamAccountName ada");
    let asked = w.console.events.iter().find_map(|e| match e {
        Event::Call(psgate_shared::psrp::host::HostMethod::Prompt, args) => Some(psgate_lang::values::text(&args[0])),
        _ => None,
    });
    assert_eq!(asked.as_deref(), Some("cmdlet New-remADUser at command pipeline position 1"));
    assert_eq!(w.fake.log.last().map(String::as_str), Some("start [1] throttle=1 New-ADUser SamAccountNameada Nameada"));
    // Given by position: nothing is asked.
    w.console.events.clear();
    w.run("New-remADUser bob");
    assert!(!w.console.events.iter().any(|e| matches!(e, Event::Call(..))));
    // An enum's values complete.
    let c = psgate_lang::complete(&w.rs, &w.fake.sessions, "Get-remADUser -SearchScope S", 28);
    assert_eq!(c.matches.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["Subtree"]);
}

/// The server's APPLICATION_PRIVATE_DATA: its `PSVersionTable.PSVersion`, and a skip list if it declares one.
fn private_data(version: (u32, u32), skip: Option<&[&str]>) -> psgate_shared::clixml::Value {
    use psgate_shared::clixml::{Content, Object, Value, Version};
    let dict = |entries: Vec<(&str, Value)>| Value::object(Object { content: Content::Dict(entries.into_iter().map(|(k, v)| (Value::string(k), v)).collect()), ..Object::default() });
    let mut entries = vec![("PSVersionTable", dict(vec![("PSVersion", Value::Version(Version::new(version.0, version.1)))]))];
    if let Some(skip) = skip {
        let names = psgate_lang::values::array(skip.iter().map(|s| Value::string(*s)).collect());
        entries.push(("ImplicitRemoting", dict(vec![("CommandsToSkip", names)])));
    }
    psgate_lang::values::object(&[], None, vec![("ApplicationPrivateData", dict(entries))])
}

#[test]
fn the_skip_list_the_server_declares_replaces_powershells() {
    // Declared: Get-Process is skipped, Get-Help (on PowerShell's default list) is not.
    let mut w = ad_world();
    w.fake.private_data = Some(private_data((5, 1), Some(&["get-process"])));
    w.run("Import-PSSession $session -DisableNameChecking -Prefix x");
    let names = w.run("(Get-Module).ExportedCommands");
    assert!(names.contains("Get-xHelp") && !names.contains("Get-xProcess") && names.contains("Get-xADUser"), "{names}");
    // Asked for by its very name, a skipped command is imported.
    w.run("Import-PSSession $session -CommandName Get-Process -Prefix y");
    assert!(w.run("(Get-Module)[1].ExportedCommands").contains("Get-yProcess"));
    // An empty declared list skips nothing; no declaration: PowerShell's default list.
    let mut w = ad_world();
    w.fake.private_data = Some(private_data((5, 1), Some(&[])));
    w.run("Import-PSSession $session -DisableNameChecking -Prefix x");
    assert!(w.run("(Get-Module).ExportedCommands").contains("Get-xHelp"));
    let mut w = ad_world();
    w.fake.private_data = Some(private_data((5, 1), None));
    w.run("Import-PSSession $session -DisableNameChecking -Prefix x");
    let names = w.run("(Get-Module).ExportedCommands");
    assert!(!names.contains("Get-xHelp") && names.contains("Get-xProcess"), "{names}");
}

/// `Get-FormatData`'s answer for `type_name`: one table view of `(label, property or script, is script, width)`.
fn table_view(type_name: &str, columns: &[(&str, &str, bool, i32)]) -> psgate_shared::clixml::Value {
    use psgate_lang::values::{array, object};
    use psgate_shared::clixml::Value;
    let sma = |t: &str| format!("Deserialized.System.Management.Automation.{t}");
    let headers = columns.iter().map(|(label, _, _, width)| object(&[&sma("TableControlColumnHeader")], None, vec![("Label", Value::string(*label)), ("Width", Value::I32(*width))])).collect();
    let cells = columns
        .iter()
        .map(|(_, value, script, _)| {
            let kind = object(&[&sma("DisplayEntryValueType")], Some(if *script { "ScriptBlock" } else { "Property" }.into()), vec![]);
            let entry = object(&[&sma("DisplayEntry")], None, vec![("ValueType", kind), ("Value", Value::string(*value))]);
            object(&[&sma("TableControlColumn")], None, vec![("DisplayEntry", entry)])
        })
        .collect();
    let row = object(&[&sma("TableControlRow")], None, vec![("Columns", array(cells))]);
    let control = object(&[&sma("TableControl"), &sma("PSControl")], None, vec![("Headers", array(headers)), ("Rows", array(vec![row]))]);
    let view = object(&[&sma("FormatViewDefinition")], None, vec![("Name", Value::string("Results")), ("Control", control)]);
    object(
        &[&sma("ExtendedTypeDefinition")],
        None,
        vec![("TypeName", Value::string(type_name)), ("TypeNames", array(vec![Value::string(type_name)])), ("FormatViewDefinition", array(vec![view]))],
    )
}

/// A command's metadata declaring its output types.
fn with_output(mut v: psgate_shared::clixml::Value, types: &[&str]) -> psgate_shared::clixml::Value {
    use psgate_shared::clixml::{Property, Value};
    if let Value::Object(o) = &mut v {
        let o = std::sync::Arc::make_mut(o);
        o.extended.retain(|p| p.name.as_str() != "OutputType");
        o.extended.push(Property::new("OutputType", psgate_lang::values::array(types.iter().map(|t| Value::string(*t)).collect())));
    }
    v
}

#[test]
fn format_data_of_the_output_types_lays_their_objects_out() {
    let mut w = ad_world();
    w.fake.private_data = Some(private_data((5, 1), None));
    w.fake.commands[0] = with_output(w.fake.commands[0].clone(), &["Fake.Result"]);
    // A labelled property, a script column, and a script that is not a pure expression (never run).
    w.fake.format_data = vec![table_view("Fake.Result", &[("What", "Sent", false, 20), ("", "$_.Sent.Length", true, 6), ("Gone", "Remove-PSSession -Id 1", true, 0)])];
    w.run("Import-PSSession $session -Module ActiveDirectory -Prefix rem");
    // Asked for the commands' output types (the renderers size the columns to their text, not to the view's widths), shaped for PowerShell 5.1 (the server is 5.1 or later).
    assert!(w.fake.log.iter().any(|l| l == "start [1] throttle=1 Get-FormatData TypeNameFake.Result PowerShellVersion5.1"), "{:?}", w.fake.log);
    same(
        &w.run("Get-remADUser -Filter *"),
        "
What               $_.Sent.Length Gone
----               -------------- ----
Get-ADUser Filter*             18",
    );
    // The script that was not an expression did nothing: the session is still there.
    same(&w.run("(Get-PSSession).Count"), "1");
    // The objects themselves are untouched: a variable holds the deserialized object, without the view's notes.
    same(&w.run("$u = Get-remADUser -Filter *; \"[$($u.What)] $($u.Sent)\""), "[] Get-ADUser Filter*");
    // Exported with the module, as a format file.
    let xml = w.run("(Export-PSSession -Session $session -Module ActiveDirectory -OutputModule ADRemote)[2].Content");
    assert!(xml.contains("<TypeName>Deserialized.Fake.Result</TypeName>") && xml.contains("<ScriptBlock>$_.Sent.Length</ScriptBlock>"), "{xml}");
}

#[test]
fn which_format_data_is_asked_for() {
    // -CommandName alone: none, as in PowerShell.
    let mut w = ad_world();
    w.fake.commands[0] = with_output(w.fake.commands[0].clone(), &["Fake.Result"]);
    w.run("Import-PSSession $session -CommandName Get-ADUser");
    assert!(!w.fake.log.iter().any(|l| l.contains("Get-FormatData")), "{:?}", w.fake.log);
    // -FormatTypeName as given; a server before 5.1 gets no -PowerShellVersion; no views for a named type: an error.
    w.fake.private_data = Some(private_data((4, 0), None));
    let shown = w.run("Import-PSSession $session -CommandName Set-ADUser -FormatTypeName *User -AllowClobber");
    assert_eq!(w.fake.log.last().map(String::as_str), Some("start [1] throttle=1 Get-FormatData TypeName*User"));
    assert!(shown.contains("Running the Get-FormatData command in a remote session returned no results."), "{shown}");
}

#[test]
fn modules_and_the_entered_session_outlive_the_relay_that_made_them() {
    let mut w = ad_world();
    w.run("Import-PSSession $session -Module ActiveDirectory -Prefix rem");
    w.run("Enter-PSSession $session");
    // As the relay keeps them: the modules as text, the state through CLIXML; another relay (a new runspace, the
    // same sessions: it took them over) takes both back.
    let modules = w.rs.saved_modules();
    let state = psgate_shared::clixml::encode_message(&w.rs.saved_state()).expect("CLIXML");
    let mut again = World { rs: psgate_lang::Runspace::new(), fake: std::mem::take(&mut w.fake), console: common::Console { interactive: true, ..Default::default() } };
    again.rs.restore_modules(&modules).expect("the kept modules read back");
    again.rs.restore_state(&psgate_shared::clixml::decode_message(state.as_bytes()).expect("read back"));
    assert_eq!(again.rs.entered().map(|e| (e.session.0, e.computer_name.as_str())), Some((1, "srv02")), "still in the session entered");
    assert!(matches!(again.rs.route("Get-Date"), psgate_lang::Route::Remote { .. }));
    again.run("exit");
    // The proxies run in their session as before, with their parameter sets.
    again.run("New-remADUser ada -Sam ada -PassThru");
    assert_eq!(again.fake.log.last().map(String::as_str), Some("start [1] throttle=1 New-ADUser [ada] SamAccountNameada PassThruTrue"));
    let shown = again.run("Get-Module | select Name, ExportedCommands");
    assert!(shown.contains("{Get-remADUser, New-remADUser, Set-remADUser, remgadu}"), "{shown}");
    // The next module is named on from the kept ones, never reusing a name.
    let first = again.rs.modules()[0].name.clone();
    again.run("Import-PSSession $session -CommandName Get-Process -Prefix y");
    assert_eq!(again.rs.modules().len(), 2);
    assert_ne!(again.rs.modules()[1].name, first);
    // Text that does not read changes nothing.
    assert!(again.rs.restore_modules("{not json").is_err());
    assert_eq!(again.rs.modules().len(), 2);
}
