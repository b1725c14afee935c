//! The WSMan: drive at the prompt against the fake: Get-Item, Get-ChildItem and Set-Item on a WinRM computer's
//! configuration, laid out and worded as PowerShell's WSMan provider does it.

mod common;

use common::{World, same};

fn world() -> World {
    let mut w = World::new().with_credential();
    let row = |k: &str, v: &str| (k.to_owned(), v.to_owned(), None);
    w.fake.wsman = vec![
        row("srv02/MaxEnvelopeSizekb", "500"),
        row("srv02/Shell/AllowRemoteShellAccess", "true"),
        row("srv02/Shell/IdleTimeout", "7200000"),
        row("srv02/Shell/MaxShellsPerUser", "30"),
        ("srv02/Shell/MaxConcurrentUsers".to_owned(), "10".to_owned(), Some("GPO".to_owned())),
        row("srv02/Service/Auth/Basic", "false"),
        row("srv02/Plugin/microsoft.powershell/Quotas/MaxShellsPerUser", "25"),
    ];
    w.run("$s = New-PSSession -ComputerName srv02 -Credential $cred");
    w
}


#[test]
fn get_childitem_lists_a_container_as_the_provider_does() {
    let mut w = world();
    same(
        &w.run("Get-ChildItem WSMan:\\srv02\\Shell"),
        "
Type          Name                   SourceOfValue Value
----          ----                   ------------- -----
System.String AllowRemoteShellAccess               true
System.String IdleTimeout                          7200000
System.String MaxShellsPerUser                     30
System.String MaxConcurrentUsers     GPO           10",
    );
    same(&w.run("dir WSMan:\\srv02 | % { '{0} {1}' -f $_.Type, $_.Name }"), "System.String MaxEnvelopeSizekb\nContainer Shell\nContainer Service\nContainer Plugin");
    // The drive's root: the computers of the user's WinRM sessions.
    same(&w.run("(Get-ChildItem WSMan:\\).Name"), "srv02");
}

#[test]
fn get_item_and_set_item_change_a_setting_with_powershells_warnings() {
    let mut w = world();
    same(&w.run("(Get-Item WSMan:\\srv02\\Shell\\MaxShellsPerUser).Value"), "30");
    same(&w.run("(Get-Item WSMan:\\srv02\\Shell\\MaxShellsPerUser).PSPath"), "Microsoft.WSMan.Management\\WSMan::srv02\\Shell\\MaxShellsPerUser");
    w.run("Set-Item WSMan:\\srv02\\Shell\\MaxShellsPerUser 10");
    assert_eq!(w.fake.log.last().map(String::as_str), Some("wsman set srv02/shell/maxshellsperuser = 10"));
    assert_eq!(
        w.warnings(),
        ["The updated configuration might affect the operation of the plugins having a per plugin quota value greater than 10. Verify the configuration of all the registered plugins and change the per plugin quota values for the affected plugins."]
    );
    same(&w.run("(Get-Item WSMan:\\srv02\\Shell\\MaxShellsPerUser).Value"), "10");
    w.run("Set-Item -Path WSMan:\\srv02\\Plugin\\microsoft.powershell\\Quotas\\MaxShellsPerUser -Value 5");
    assert_eq!(w.warnings().last().map(String::as_str), Some("The configuration changes you made will only be effective after the WinRM service is restarted on srv02."));
    // A refusal is the target's, as an error of Set-Item.
    let shown = w.run("Set-Item WSMan:\\srv02\\Shell\\MaxConcurrentUsers 3");
    assert!(shown.contains("cannot be changed because is controlled by policies") && shown.contains("SetItemCommand"), "{shown}");
}

#[test]
fn only_the_wsman_drive() {
    let mut w = world();
    let shown = w.run("Get-Item C:\\Windows");
    assert!(shown.contains("Cannot find drive. A drive with the name 'C' does not exist.") && shown.contains("DriveNotFound,Microsoft.PowerShell.Commands.GetItemCommand"), "{shown}");
    let shown = w.run("Set-Item WSMan:\\srv02 1");
    assert!(shown.contains("this cmdlet is not supported at this level of Provider path"), "{shown}");
}
