//! The prompt end to end against a fake remoting side: each case is lines typed and what the console shows (or
//! what the remoting side was asked), as PowerShell would show it.

mod common;

use common::{Event, World, same};
use psgate_shared::api::{FieldAnswer, HostAnswer, RecordKind};
use psgate_shared::psrp::host::HostMethod;

#[test]
fn the_issue_lines_work_as_written() {
    let mut w = World::new().with_credential();
    same(&w.run("$session1, $session2 = New-PSSession -ComputerName srv02, dc01 -Credential $cred"), "");
    same(
        &w.run("Get-PSSession"),
        "
Id Name      Transport ComputerName ComputerType  State  ConfigurationName    Availability
-- ----      --------- ------------ ------------  -----  -----------------    ------------
 1 Runspace1 WSMan     srv02        RemoteMachine Opened Microsoft.PowerShell Available
 2 Runspace2 WSMan     dc01         RemoteMachine Opened Microsoft.PowerShell Available",
    );
    // Both sessions got the credential's user and password.
    assert_eq!(w.fake.log[..2], ["open winrm srv02 user=contoso\\ada password", "open winrm dc01 user=contoso\\ada password"]);
    assert!(w.run("$session1 | gm").contains("State                  ScriptProperty System.Object State {get=$this.Runspace.RunspaceStateInfo.State;}"));
    same(&w.run("$session1.ComputerName, $session2.Name"), "srv02\nRunspace2");
    w.run("Enter-PSSession -Session $session1");
    assert_eq!(w.rs.entered().map(|e| e.session.0), Some(1));
    w.run("exit");
    assert_eq!(w.rs.entered(), None);
    w.run("$sessions = Get-PSSession");
    w.run("Enter-PSSession -Session ($sessions | where {$_.ComputerName -eq 'SRV02'})");
    assert_eq!(w.rs.entered().map(|e| e.session.0), Some(1));
    w.run("Exit-PSSession");
    w.run("Enter-PSSession -Session (Get-PSSession -ComputerName 'DC01')");
    assert_eq!(w.rs.entered().map(|e| e.session.0), Some(2));
    w.run("exit");
    w.run("Get-PSSession -ComputerName SRV02 | Enter-PSSession");
    assert_eq!(w.rs.entered().map(|e| e.session.0), Some(1));
    w.run("exit");
    same(
        &w.run("Invoke-Command -Command {Get-Process} -Session $session1"),
        "
Sent        PSComputerName
----        --------------
Get-Process srv02",
    );
    w.run("Invoke-Command -Command {Get-Process bits} -Session (Get-PSSession -ComputerName srv02, dc01)");
    assert_eq!(w.fake.log.last().map(String::as_str), Some("start [1, 2] throttle=32 Get-Process [bits]"));
    same(&w.run("Disconnect-PSSession -Id 2 | select Id, State"), "\nId State\n-- -----\n 2 Disconnected");
    same(&w.run("Get-PSSession -ComputerName dc01 | Connect-PSSession | select Id, State"), "\nId State\n-- -----\n 2 Opened");
    w.run("Remove-PSSession $session1");
    same(&w.run("$session1.State; (Get-PSSession).Count"), "Closed\n1");
    w.run("Get-PSSession | Remove-PSSession");
    same(&w.run("Get-PSSession"), "");
    assert_eq!(w.fake.log.iter().filter(|l| l.starts_with("remove")).count(), 2);
}

#[test]
fn new_pssession_over_ssh_asks_the_password_once_and_names_sessions() {
    let mut w = World::new();
    w.console.answers.push_back(HostAnswer::Secure { text: "secret".into() });
    same(&w.run("$iis_server = New-PSSession -HostName pc1, pc2, admin@pc3:2222 -UserName Admin -Name a, b"), "ask: ReadLineAsSecureString");
    let asks: Vec<&Event> = w.console.events.iter().filter(|e| matches!(e, Event::Call(..))).collect();
    assert_eq!(asks.len(), 1, "one password prompt for the three hosts");
    assert!(matches!(asks[0], Event::Call(HostMethod::ReadLineAsSecureString, args) if psgate_lang::values::text(&args[0]) == "Admin@pc1's password: "));
    let t = &w.fake.targets;
    assert_eq!((t[2].computer_name.as_str(), t[2].port, t[2].user.as_deref(), t[2].password.as_deref()), ("pc3", Some(2222), Some("admin"), Some("secret")));
    same(&w.run("$iis_server | ft Name, Transport, ComputerName"), "\nName      Transport ComputerName\n----      --------- ------------\na         SSH       pc1\nb         SSH       pc2\nRunspace3 SSH       pc3");
    // A key file asks nothing.
    w.run("New-PSSession -HostName pc4 -UserName Admin -KeyFilePath /keys/id_ed25519 -Subsystem powershell-jea");
    assert_eq!(w.fake.targets[3].key_file.as_deref(), Some("/keys/id_ed25519"));
    assert_eq!(w.fake.targets[3].subsystem.as_deref(), Some("powershell-jea"));
    assert_eq!(w.fake.targets[3].password, None);
}

#[test]
fn new_pssession_session_opens_new_sessions_like_those() {
    let mut w = World::new().with_credential();
    w.run("$s = New-PSSession -ComputerName srv02 -Port 5986 -UseSSL -Credential $cred");
    same(&w.run("New-PSSession -Session $s -Name again | ft Id, Name, ComputerName"), "\nId Name  ComputerName\n-- ----  ------------\n 2 again srv02");
    let t = &w.fake.targets[1];
    assert_eq!((t.port, t.use_ssl, t.user.as_deref(), t.password.as_deref()), (Some(5986), true, Some("CONTOSO\\ada"), Some("Pa$$w0rd")));
}

#[test]
fn new_pssession_without_a_computer_is_the_relays_local_transport() {
    let mut w = World::new();
    same(&w.run("New-PSSession | select ComputerName, Transport"), "\nComputerName Transport\n------------ ---------\nlocalhost    Process");
}

#[test]
fn localhost_is_the_relays_local_transport_where_the_relay_says_so() {
    let mut w = World::new();
    w.fake.local = vec!["localhost".into()];
    same(&w.run("New-PSSession -ComputerName localhost | select ComputerName, Transport"), "\nComputerName Transport\n------------ ---------\nlocalhost    Process");
    assert!(w.console.events.iter().all(|e| !matches!(e, Event::Call(..))), "no credential asked");
    // Any WinRM setting asks for WinRM.
    w.console.answers.push_back(HostAnswer::Credential { user: "u".into(), password: "p".into() });
    same(&w.run("New-PSSession -ComputerName localhost -Port 5985 | % Transport"), "ask: PromptForCredential1\nWSMan");
}

#[test]
fn a_failed_session_is_an_error_per_host_and_the_others_open() {
    let mut w = World::new().with_credential();
    let out = w.run("$s = New-PSSession -ComputerName srv02, badhost, blockedhost -Credential $cred");
    same(
        &out,
        "error: [badhost] Connecting to remote server badhost failed with the following error message : Access is denied. For more information, see the about_Remote_Troubleshooting Help topic. [AccessDenied,PSSessionOpenFailed]
error: [blockedhost] blockedhost:5985 over WinRM is not in this relay's allow-list [TargetNotAllowed,PSSessionOpenFailed]",
    );
    same(&w.run("$s.ComputerName"), "srv02");
}

#[test]
fn a_missing_credential_is_asked_for_and_a_user_name_fills_the_dialog() {
    let mut w = World::new();
    w.console.answers.push_back(HostAnswer::Credential { user: "CONTOSO\\bob".into(), password: "pw".into() });
    w.run("New-PSSession -ComputerName srv02 -Credential CONTOSO\\bob");
    let Some(Event::Call(HostMethod::PromptForCredential1, args)) = w.console.events.first() else { panic!("no credential dialog: {:?}", w.console.events) };
    assert_eq!(psgate_lang::values::text(&args[2]), "CONTOSO\\bob");
    assert_eq!(w.fake.targets[0].password.as_deref(), Some("pw"));
    // Nobody to ask (a script piped into psgate shell): a clear error, nothing opened.
    let mut w = World::new();
    w.console.interactive = false;
    let out = w.run("New-PSSession -ComputerName srv02");
    assert!(out.contains("give -Credential"), "{out}");
    assert!(w.fake.targets.is_empty());
}

#[test]
fn credentials_never_show_their_password() {
    let mut w = World::new().with_credential();
    let shown = w.run("$cred; $cred.Password; \"$cred\"; $cred | fl *");
    assert!(!shown.contains("Pa$$w0rd"), "{shown}");
    assert!(shown.contains("System.Security.SecureString"), "{shown}");
    assert!(!format!("{:?}", w.rs).contains("Pa$$w0rd"));
}

#[test]
fn unknown_commands_are_refused_as_powershell_words_it_with_the_nearest_names() {
    let mut w = World::new();
    same(
        &w.run("new-pssesion -ComputerName srv02"),
        "error: The term 'new-pssesion' is not recognized as a name of a cmdlet, function, script file, or executable program.
Check the spelling of the name, or if a path was included, verify that the path is correct and try again. [CommandNotFoundException]
information:
[general]
  The most similar commands are:
    \u{27a4} New-PSSession",
    );
    same(&w.run("Frobnicate-Everything"), "error: The term 'Frobnicate-Everything' is not recognized as a name of a cmdlet, function, script file, or executable program.\nCheck the spelling of the name, or if a path was included, verify that the path is correct and try again. [CommandNotFoundException]");
    // The next statement still runs, as in PowerShell.
    assert!(w.run("nope; 'after'").ends_with("after\n"));
}

#[test]
fn binding_errors_name_the_parameter_like_powershell() {
    let mut w = World::new();
    for (line, expect) in [
        ("Get-PSSession -Foo", "A parameter cannot be found that matches parameter name 'Foo'. [NamedParameterNotFound,Microsoft.PowerShell.Commands.GetPSSessionCommand]"),
        (
            "Get-PSSession -C srv02",
            "Parameter cannot be processed because the parameter name 'C' is ambiguous. Possible matches include: -ComputerName -Credential -ConfigurationName. [AmbiguousParameter,Microsoft.PowerShell.Commands.GetPSSessionCommand]",
        ),
        ("Get-PSSession -Id", "Missing an argument for parameter 'Id'. Specify a parameter of type 'System.Int32[]' and try again. [MissingArgument,Microsoft.PowerShell.Commands.GetPSSessionCommand]"),
        (
            "Get-PSSession -Id x",
            "Cannot bind parameter 'Id'. Cannot convert value \"x\" to type \"System.Int32\". Error: \"The input string 'x' was not in a correct format.\" [CannotConvertArgumentNoMessage,Microsoft.PowerShell.Commands.GetPSSessionCommand]",
        ),
        (
            "Get-PSSession -Id 1 -Id 2",
            "Cannot bind parameter because parameter 'Id' is specified more than once. To provide multiple values to parameters that can accept multiple values, use the array syntax. For example, \"-parameter value1,value2,value3\". [ParameterAlreadyBound,Microsoft.PowerShell.Commands.GetPSSessionCommand]",
        ),
        (
            "Get-PSSession -Id 1 -Name x",
            "Parameter set cannot be resolved using the specified named parameters. One or more parameters issued cannot be used together or an insufficient number of parameters were provided. [AmbiguousParameterSet,Microsoft.PowerShell.Commands.GetPSSessionCommand]",
        ),
        ("Remove-PSSession 1 2", "A positional parameter cannot be found that accepts argument '2'. [PositionalParameterNotFound,Microsoft.PowerShell.Commands.RemovePSSessionCommand]"),
        (
            "Disconnect-PSSession -Id 1 -OutputBufferingMode Sometimes",
            "Cannot bind parameter 'OutputBufferingMode'. Cannot convert value \"Sometimes\" to type \"System.Management.Automation.Runspaces.OutputBufferingMode\". Error: \"Unable to match the identifier name Sometimes to a valid enumerator name. Specify one of the following enumerator names and try again:\nNone, Drop, Block\" [CannotConvertArgumentNoMessage,Microsoft.PowerShell.Commands.DisconnectPSSessionCommand]",
        ),
        (
            "Enter-PSSession -Session 'srv02'",
            "Cannot bind parameter 'Session'. Cannot convert the \"srv02\" value of type \"System.String\" to type \"System.Management.Automation.Runspaces.PSSession\". [CannotConvertArgumentNoMessage,Microsoft.PowerShell.Commands.EnterPSSessionCommand]",
        ),
    ] {
        same(&w.run(line), &format!("error: {expect}"));
    }
    // Unambiguous prefixes, aliases and `-Name:value` bind.
    w.console.answers.push_back(HostAnswer::Credential { user: "u".into(), password: "p".into() });
    w.run("nsn -Cn srv02 -Config:JEA -Auth Kerberos -UseS -Po 5986");
    let t = &w.fake.targets[0];
    assert_eq!((t.configuration_name.as_deref(), t.use_ssl, t.port, t.authentication), (Some("JEA"), true, Some(5986), Some(psgate_shared::api::WinrmAuth::Kerberos)));
}

#[test]
fn a_missing_mandatory_parameter_is_prompted_for() {
    let mut w = World::new();
    w.run("New-PSSession -HostName pc1 -KeyFilePath k -UserName u");
    w.console.answers.push_back(HostAnswer::Fields { fields: vec![FieldAnswer { name: "Id".into(), text: "1".into(), secure: false }] });
    w.run("Remove-PSSession");
    let Some(Event::Call(HostMethod::Prompt, args)) = w.console.events.first() else { panic!("no prompt: {:?}", w.console.events) };
    assert_eq!(psgate_lang::values::text(&args[0]), "cmdlet Remove-PSSession at command pipeline position 1");
    assert_eq!(psgate_lang::values::text(&args[1]), "Supply values for the following parameters:");
    assert_eq!(w.fake.log.last().map(String::as_str), Some("remove [1]"));
    // Without anyone to ask: PowerShell's non-interactive error.
    w.console.interactive = false;
    same(&w.run("Enter-PSSession"), "error: Cannot process command because of one or more missing mandatory parameters: ComputerName. [MissingMandatoryParameter,Microsoft.PowerShell.Commands.EnterPSSessionCommand]");
}

#[test]
fn enter_pssession_connects_a_disconnected_session_refuses_a_closed_one_and_closes_a_temporary_one() {
    let mut w = World::new();
    w.run("New-PSSession -HostName pc1 -KeyFilePath k -UserName u; Disconnect-PSSession -Id 1");
    w.run("$s = New-PSSession -HostName pc1 -KeyFilePath k -UserName u");
    w.run("Remove-PSSession $s");
    same(
        &w.run("Enter-PSSession -Session $s"),
        "error: The session Runspace2 is not available: it was removed or closed. [RemoteRunspaceNotAvailable,Microsoft.PowerShell.Commands.EnterPSSessionCommand]",
    );
    assert_eq!(w.rs.entered(), None);
    same(&w.run("Enter-PSSession -Id 7"), "error: The remote session with the session ID 7 is not available. [RemoteRunspaceNotAvailableForSpecifiedSessionId,Microsoft.PowerShell.Commands.EnterPSSessionCommand]");
    w.console.answers.push_back(HostAnswer::Credential { user: "u".into(), password: "p".into() });
    w.run("Enter-PSSession srv03");
    let e = w.rs.entered().cloned().expect("entered");
    assert!(e.temporary);
    w.run("exit");
    assert!(w.fake.log.iter().any(|l| l == &format!("remove [{}]", e.session.0)), "the temporary session is closed at exit: {:?}", w.fake.log);
}

#[test]
fn lines_inside_an_entered_session_go_there_as_command_objects_where_they_can() {
    use psgate_lang::Route;
    let mut w = World::new();
    w.run("Enter-PSSession (New-PSSession -HostName pc1 -KeyFilePath k -UserName u)");
    let Route::Remote { session, pipeline } = w.rs.route("Get-Service -Name bits | Select-Object Name") else { panic!("local") };
    assert_eq!(session.0, 1);
    assert_eq!(common::describe(&pipeline), "Get-Service -Name [bits] | Select-Object [Name]");
    assert!(pipeline.add_to_history);
    for (line, expect) in [
        ("Get-Service -Name:bits", "Get-Service -Name:bits"),
        ("Get-ChildItem -Recurse C:\\x", "Get-ChildItem -Recurse [C:\\x]"),
        ("Stop-Service spooler -Force:$true", "Stop-Service [spooler] -Force:True"),
        ("Get-Process -Id 4, 8", "Get-Process -Id [4 8]"),
        ("Get-Process -Name $n", "script{Get-Process -Name $n}"),
        ("Get-Service | ? { $_.Status -eq 'Running' }", "script{Get-Service | ? { $_.Status -eq 'Running' }}"),
        ("$x = Get-Date", "script{$x = Get-Date}"),
        ("Get-X (Get-Y)", "script{Get-X (Get-Y)}"),
        ("if ($a) { b }", "script{if ($a) { b }}"),
    ] {
        let Route::Remote { pipeline, .. } = w.rs.route(line) else { panic!("local") };
        assert_eq!(common::describe(&pipeline), expect, "{line}");
    }
    assert_eq!(w.rs.route("exit"), Route::Local);
    assert_eq!(w.rs.route("  Exit-PSSession  "), Route::Local);
}

#[test]
fn invoke_command_runs_everywhere_and_reports_each_failing_host() {
    let mut w = World::new();
    w.run("$s = New-PSSession -HostName a1, failing2, a3 -KeyFilePath k -UserName u");
    let out = w.run("icm $s { Get-Service bits } -ThrottleLimit 2");
    same(
        &out,
        "
Sent               PSComputerName
----               --------------
Get-Service [bits] a1

error: failing2 failed [Failed]

Sent               PSComputerName
----               --------------
Get-Service [bits] a3",
    );
    assert_eq!(w.fake.log.last().map(String::as_str), Some("start [1, 2, 3] throttle=2 Get-Service [bits]"));
    // HideComputerName, arguments and script text.
    same(&w.run("Invoke-Command -Session $s[0] -ScriptBlock { param($n) Get-Process $n } -ArgumentList 'bits' -HideComputerName | % Sent"), "script{ param($n) Get-Process $n } [bits]");
    // -ComputerName: temporary sessions, closed after.
    w.console.answers.push_back(HostAnswer::Credential { user: "u".into(), password: "p".into() });
    w.run("icm -cn srv9 { hostname }");
    assert_eq!(w.fake.log[w.fake.log.len() - 3..], ["open winrm srv9 user=u password", "start [4] throttle=32 hostname", "remove [4]"]);
    // No session: the block runs here.
    same(&w.run("Invoke-Command { 1 + 1 }"), "2");
}

#[test]
fn jobs_collect_results_until_received() {
    let mut w = World::new();
    w.run("$s = New-PSSession -HostName a1, a2 -KeyFilePath k -UserName u");
    same(
        &w.run("$j = Invoke-Command -Session $s -ScriptBlock { Get-Date } -AsJob; Get-Job | ft Id, Name, State, HasMoreData, Location"),
        "\nId Name State     HasMoreData Location\n-- ---- -----     ----------- --------\n 1 Job1 Completed True        a1, a2",
    );
    same(&w.run("Receive-Job $j -Keep | % Sent"), "Get-Date\nGet-Date");
    same(&w.run("Receive-Job -Id 1 | % PSComputerName"), "a1\na2");
    same(&w.run("(Get-Job -Id 1).HasMoreData; Receive-Job -Id 1"), "False");
    w.run("Remove-Job -Name Job1");
    same(&w.run("Get-Job"), "");
    same(&w.run("Receive-Job -Id 9"), "error: The command cannot find a job with the job ID 9. Verify the value of the Id parameter and then try the command again. [JobWithSpecifiedSessionIdNotFound,Microsoft.PowerShell.Commands.ReceiveJobCommand]");
}

#[test]
fn receive_pssession_gives_what_a_connected_command_produced() {
    let mut w = World::new();
    w.run("New-PSSession -HostName a1 -KeyFilePath k -UserName u");
    same(&w.run("Receive-PSSession -Id 1"), "buffered 1\nbuffered 2");
}

#[test]
fn the_language_subset() {
    let mut w = World::new();
    for (line, expect) in [
        ("1 + 2 * 3", "7"),
        ("'a' + 1", "a1"),
        ("1, 2 + 3", "1\n2\n3"),
        ("(1, 2, 3).Count", "3"),
        ("$a, $b, $c = 1, 2, 3, 4; $c", "3\n4"),
        ("$a, $b = 1; $b -eq $null", "True"),
        ("@(1, 2, 3) -gt 1", "2\n3"),
        ("1, 2, 3 -contains 2; 2 -in 1, 3; 'Srv02' -eq 'SRV02'; 'Srv02' -ceq 'SRV02'", "True\nFalse\nTrue\nFalse"),
        ("'srv02.contoso' -like 'SRV*'; 'dc01' -notlike 'srv*'; 'abc' -clike 'A*'", "True\nTrue\nFalse"),
        ("'srv02' -match '^srv(?<n>\\d+)$'; $Matches.n", "True\n02"),
        ("-not $true -or 1 -and 'x'", "True"),
        ("$null -eq $null; '' -eq $null; 0 -eq '0'", "True\nFalse\nTrue"),
        ("\"a $(1 + 1) b\"; \"tab`there\"", "a 2 b\ntab\there"),
        ("$x = 'World'; \"Hello $x\"; 'Hello $x'", "Hello World\nHello $x"),
        ("'{0}-{1,3}|{2:N2}' -f 'a', 7, 1234.5", "a-  7|1,234.50"),
        ("1..4 | ? { $_ % 2 -eq 0 }", "2\n4"),
        ("1..3 | % { $_ * 10 }", "10\n20\n30"),
        ("@(3, 1, 2) | sort", "1\n2\n3"),
        ("@(3, 1, 2) | Sort-Object -Descending | select -First 2", "3\n2"),
        ("$h = @{Name='x'; Count=2}; $h.Count; $h['Name']", "2\nx"),
        ("'a,b'.Split(',')[1].ToUpper()", "B"),
        ("$s = 'abc'; $s.Length; $s[-1]", "3\nc"),
        ("$true; $false; $null", "True\nFalse"),
        ("$nothing.Property", ""),
        ("10 / 4; 10 % 3; 2 * 'x'", "2.5\n1"),
        ("$?", "False"),
        ("Write-Output a b c | Measure", ""),
    ] {
        let shown = w.run(line);
        if line.starts_with("10 /") {
            assert!(shown.starts_with("2.5\n1\nerror:"), "{line}: {shown}");
            continue;
        }
        if line.starts_with("Write-Output a b c | Measure") {
            assert!(shown.contains("CommandNotFoundException"), "{shown}");
            continue;
        }
        same(&shown, expect);
    }
}

#[test]
fn where_object_simplified_syntax_and_its_errors() {
    let mut w = World::new();
    w.run("New-PSSession -HostName srv02, dc01, srv03 -KeyFilePath k -UserName u");
    same(&w.run("Get-PSSession | where ComputerName -eq SRV02 | % Id"), "1");
    same(&w.run("Get-PSSession | where ComputerName -like srv* | % Id"), "1\n3");
    same(&w.run("Get-PSSession | ? Id -in 2, 3 | % Id"), "2\n3");
    same(&w.run("Get-PSSession | where Id -gt 2 | % ComputerName"), "srv03");
    same(&w.run("Get-PSSession | where ComputerName -CEQ SRV02 | % Id"), "");
    same(&w.run("Get-PSSession | where Name | % Id"), "1\n2\n3");
    same(
        &w.run("Get-PSSession | where Name x"),
        "error: An operator is required to compare the two specified values. Include a valid operator in the command, and then try the command again. For example, Get-Process | Where-Object -Property Name -eq Idle [OperatorNotSpecified,Microsoft.PowerShell.Commands.WhereObjectCommand]",
    );
    same(
        &w.run("Get-PSSession | where Name -like"),
        "error: The specified operator requires both the -Property and -Value parameters. Provide values for both parameters, and then try the command again. [ValueNotSpecifiedForWhereObject,Microsoft.PowerShell.Commands.WhereObjectCommand]",
    );
}

#[test]
fn select_sort_and_format() {
    let mut w = World::new();
    w.run("New-PSSession -HostName b, a, c -KeyFilePath k -UserName u");
    same(&w.run("Get-PSSession | Sort-Object ComputerName -Descending | select -ExpandProperty ComputerName"), "c\nb\na");
    same(&w.run("Get-PSSession | select -Last 1 -Property Id, @{Name='Host'; Expression={$_.ComputerName.ToUpper()}}"), "\nId Host\n-- ----\n 3 C");
    same(&w.run("Get-PSSession | select -First 1 | fl Name, State"), "\nName  : Runspace1\nState : Opened");
    same(&w.run("Get-PSSession | ft Id"), "\nId\n--\n 1\n 2\n 3");
    same(&w.run("Get-PSSession | select -ExpandProperty Nope"), "error: Property \"Nope\" cannot be found. [ExpandPropertyNotFound,Microsoft.PowerShell.Commands.SelectObjectCommand]\nerror: Property \"Nope\" cannot be found. [ExpandPropertyNotFound,Microsoft.PowerShell.Commands.SelectObjectCommand]\nerror: Property \"Nope\" cannot be found. [ExpandPropertyNotFound,Microsoft.PowerShell.Commands.SelectObjectCommand]");
    same(&w.run("Get-PSSession | select -ExpandProperty Nope -ErrorAction SilentlyContinue"), "");
}

#[test]
fn help_commands_and_history() {
    let mut w = World::new();
    let help = w.run("Get-Help New-PSSession -Full");
    assert!(help.contains("New-PSSession [[-ComputerName] <String[]>]"), "{help}");
    assert!(help.contains("    -ComputerName <String[]>"), "{help}");
    assert!(help.contains("Accept pipeline input?       True (ByValue, ByPropertyName)"), "{help}");
    assert!(help.contains("Example 1"), "{help}");
    let params = w.run("Get-Help Enter-PSSession -Parameter Session");
    assert!(params.starts_with("    -Session <PSSession>"), "{params}");
    assert!(w.run("Get-Help etsn").contains("Enter-PSSession"));
    assert!(w.run("Get-Help Nope-Nothing").contains("HelpNotFound"));
    same(&w.run("gcm *-PSSession | % Name"), "Connect-PSSession\nDisconnect-PSSession\nEnter-PSSession\nExit-PSSession\nExport-PSSession\nGet-PSSession\nImport-PSSession\nNew-PSSession\nReceive-PSSession\nRemove-PSSession");
    same(&w.run("Get-Command gsn | % Name"), "gsn -> Get-PSSession");
    same(&w.run("Get-Command -Verb Enter | ft CommandType, Name, Source"), "\nCommandType Name            Source\n----------- ----            ------\nCmdlet      Enter-PSSession psgate");
    let mut w = World::new();
    w.run("1");
    w.run("bogus-thing");
    same(&w.run("Get-History | ft Id, CommandLine, ExecutionStatus"), "\nId CommandLine ExecutionStatus\n-- ----------- ---------------\n 1 1           Completed\n 2 bogus-thing Failed");
    w.run("cls");
    assert_eq!(w.console.events, vec![Event::Clear]);
}

#[test]
fn psversiontable_and_get_member_of_other_objects() {
    let mut w = World::new();
    same(&w.run("$PSVersionTable.PSEdition"), "psgate");
    let gm = w.run("'text' | gm -MemberType Property");
    same(&gm, "\n   TypeName: System.String\n\nName   MemberType Definition\n----   ---------- ----------\nLength Property   int Length {get;}");
    same(&w.run("gm"), "error: You must specify an object for the Get-Member cmdlet. [NoObjectInGetMember,Microsoft.PowerShell.Commands.GetMemberCommand]");
}

#[test]
fn completion_of_commands_parameters_variables_and_sessions() {
    let mut w = World::new();
    w.run("$session1 = New-PSSession -HostName srv02 -KeyFilePath k -UserName u -Name web");
    let sessions = psgate_lang::Remoting::sessions(&mut w.fake);
    let texts = |line: &str| -> Vec<String> { psgate_lang::complete(&w.rs, &sessions, line, line.len()).matches.into_iter().map(|m| m.text).collect() };
    assert_eq!(texts("Enter-PSS"), ["Enter-PSSession"]);
    assert_eq!(texts("Get-PSSession | Remove-PSS"), ["Remove-PSSession"]);
    assert_eq!(texts("Remove-PS"), ["Remove-PSGateSession", "Remove-PSSession"]);
    assert_eq!(texts("gsn -Comp"), ["-ComputerName"]);
    assert_eq!(texts("New-PSSession -Con"), ["-ConfigurationName"]);
    assert_eq!(texts("$ses"), ["$session1"]);
    assert_eq!(texts("Enter-PSSession -Session $s"), ["$session1"]);
    assert_eq!(texts("Enter-PSSession -Session "), ["$session1"]);
    assert_eq!(texts("Get-PSSession -Id "), ["1"]);
    assert_eq!(texts("Get-PSSession -Name w"), ["web"]);
    assert_eq!(texts("Get-PSSession -ComputerName s"), ["srv02"]);
    assert_eq!(texts("Disconnect-PSSession -OutputBufferingMode B"), ["Block"]);
    let c = psgate_lang::complete(&w.rs, &sessions, "Get-PSSession -Comp | x", 18);
    assert_eq!((c.replacement_index, c.replacement_length), (14, 4));
}

#[test]
fn records_and_outputs_of_a_failing_line_come_in_order() {
    let mut w = World::new();
    w.run("'before'; Get-PSSession -Bogus; 'after'");
    let kinds: Vec<&str> = w
        .console
        .events
        .iter()
        .map(|e| match e {
            Event::Output(_) => "out",
            Event::Record(RecordKind::Error, _) => "error",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["out", "error", "out"]);
}

#[test]
fn wildcards_match_as_powershells_do() {
    use psgate_lang::values::like;
    for (text, pattern, cs, expect) in [
        ("srv02.contoso.com", "SRV*", false, true),
        ("srv02", "srv0?", false, true),
        ("srv02", "srv0[1-3]", false, true),
        ("srv05", "srv0[1-3]", false, false),
        ("a*b", "a`*b", false, true),
        ("axb", "a`*b", false, false),
        ("Straße", "STRASSE", false, false),
        ("Ärger", "ä*", false, true),
        ("Ärger", "ä*", true, false),
        ("SRV", "srv", true, false),
        (&"x".repeat(200), "*x", false, true),
        ("", "*", false, true),
        ("abc", "", false, false),
    ] {
        assert_eq!(like(text, pattern, cs), expect, "{text} -like {pattern}");
    }
}

#[test]
fn the_prompt_state_kept_through_clixml_brings_back_variables_and_history() {
    let mut w = World::new();
    w.run("$greeting = 'hello from relay-a'\n$n = 41 + 1\n$list = 1, 'two', 3");
    // As the relay keeps it: CLIXML text, read back by another relay.
    let text = psgate_shared::clixml::encode_message(&w.rs.saved_state()).expect("CLIXML");
    let state = psgate_shared::clixml::decode_message(text.as_bytes()).expect("read back");
    let mut again = World::new();
    again.rs.restore_state(&state);
    same(&again.run("$greeting; $n; $list.Count"), "hello from relay-a\n42\n3");
    let lines: Vec<&str> = again.rs.history().iter().map(|h| h.line.as_str()).collect();
    assert_eq!(lines[..3], ["$greeting = 'hello from relay-a'", "$n = 41 + 1", "$list = 1, 'two', 3"]);
    assert_eq!(again.rs.history()[3].id, 4, "new lines number on");
    // Anything else is ignored.
    let mut other = World::new();
    other.rs.restore_state(&psgate_shared::clixml::Value::string("not a state"));
    assert!(other.rs.history().is_empty());
}
