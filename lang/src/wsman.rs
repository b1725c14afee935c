//! The `WSMan:` drive of PowerShell's WSMan provider at psgate's prompt: a WinRM target's configuration read and
//! changed with `Get-Item`, `Set-Item` and `Get-ChildItem` (`Set-Item WSMan:\SRV02\Shell\MaxShellsPerUser 10`), the
//! way the provider does it — the relay reads the configuration resource with WS-Transfer Get, edits the element and
//! Puts the resource back, with the credentials of one of the user's WinRM sessions to that computer. The layout is
//! the provider's: `WSMan:\<computer>\Shell` (WinRM's `Winrs`), `…\Service`, `…\Client`, `…\Plugin\<name>\Quotas`.
//! It is the only drive: other paths get PowerShell's DriveNotFound.

use psgate_shared::clixml::Value;

use crate::bind::{Bound, Kind, Signature, p};
use crate::cmdlets::Cmdlet;
use crate::error::{Category, ErrorSpec, Failure};
use crate::eval::{Ctx, R, Sink};
use crate::remote::{RemoteError, Remoting as _, WsmanNode};
use crate::values;

/// A setting's type name.
pub const LEAF_TYPE: &str = "Microsoft.WSMan.Management.WSManConfigLeafElement";
/// A container's type name.
pub const CONTAINER_TYPE: &str = "Microsoft.WSMan.Management.WSManConfigContainerElement";

pub(crate) static CMDLETS: &[Cmdlet] = &[
    Cmdlet {
        sig: Signature {
            name: "Get-Item",
            class: "Microsoft.PowerShell.Commands.GetItemCommand",
            params: &[p("Path", Kind::Strings, "The item: WSMan:\\<computer>\\Shell\\MaxShellsPerUser, …").at(0).mandatory(&["*"]).alias(&["PSPath", "LiteralPath"])],
            sets: &[],
        },
        aliases: &["gi"],
        synopsis: "Gets a setting (or a container) of a WinRM computer's configuration on the WSMan: drive.",
        run: get_item,
    },
    Cmdlet {
        sig: Signature {
            name: "Get-ChildItem",
            class: "Microsoft.PowerShell.Commands.GetChildItemCommand",
            params: &[p("Path", Kind::Strings, "The container: WSMan:\\<computer>\\Shell, …").at(0).alias(&["PSPath", "LiteralPath"])],
            sets: &[],
        },
        aliases: &["gci", "dir", "ls"],
        synopsis: "Gets the settings in a container of a WinRM computer's configuration on the WSMan: drive.",
        run: get_child_item,
    },
    Cmdlet {
        sig: Signature {
            name: "Set-Item",
            class: "Microsoft.PowerShell.Commands.SetItemCommand",
            params: &[
                p("Path", Kind::Strings, "The setting: WSMan:\\<computer>\\Shell\\MaxShellsPerUser, …").at(0).mandatory(&["*"]).alias(&["PSPath", "LiteralPath"]),
                p("Value", Kind::Object, "Its new value.").at(1),
                p("Force", Kind::Switch, "Accepted: psgate does not ask before setting."),
            ],
            sets: &[],
        },
        aliases: &["si"],
        synopsis: "Changes a setting of a WinRM computer's configuration on the WSMan: drive (Get, edit, Put).",
        run: set_item,
    },
];

/// A `WSMan:` path: the computer and the path below it (`None`: not on the WSMan: drive).
pub fn parse_path(path: &str) -> Option<(String, Vec<String>)> {
    let rest = path.trim();
    let (drive, rest) = rest.split_once(':')?;
    if !drive.eq_ignore_ascii_case("WSMan") {
        return None;
    }
    let mut parts = rest.split(['\\', '/']).filter(|s| !s.is_empty()).map(str::to_owned);
    let computer = parts.next().unwrap_or_default();
    Some((computer, parts.collect()))
}

fn drive_error(path: &str, activity: &str) -> Failure {
    let drive = path.split_once(':').map_or(path, |(d, _)| d).to_owned();
    Failure::new(ErrorSpec {
        message: format!("Cannot find drive. A drive with the name '{drive}' does not exist. (psgate's prompt has the WSMan: drive only.)"),
        id: format!("DriveNotFound,Microsoft.PowerShell.Commands.{}Command", activity.replace('-', "")),
        category: Category::ObjectNotFound,
        exception: "System.Management.Automation.DriveNotFoundException",
        target: Some(drive),
        activity: activity.into(),
        position: None,
    })
}

fn remote_failure(e: RemoteError, path: &str, activity: &str) -> Failure {
    let category = match e.code {
        psgate_shared::api::ErrorCode::UnknownSession => Category::ObjectNotFound,
        psgate_shared::api::ErrorCode::AuthenticationFailed => Category::PermissionDenied,
        psgate_shared::api::ErrorCode::TargetNotAllowed => Category::PermissionDenied,
        _ => Category::InvalidOperation,
    };
    Failure::new(ErrorSpec {
        message: e.message,
        id: format!("System.InvalidOperationException,Microsoft.PowerShell.Commands.{}Command", activity.replace('-', "")),
        category,
        exception: "System.InvalidOperationException",
        target: Some(path.to_owned()),
        activity: activity.into(),
        position: None,
    })
}

/// The provider's path of an item: `Microsoft.WSMan.Management\WSMan::SRV02\Shell\MaxShellsPerUser`.
fn ps_path(computer: &str, path: &[String]) -> String {
    let mut out = format!("Microsoft.WSMan.Management\\WSMan::{computer}");
    for p in path {
        out.push('\\');
        out.push_str(p);
    }
    out
}

/// The object the provider writes for an item at `computer\parent\name`: a setting or a container, shown as
/// PowerShell shows them (Type, Name, SourceOfValue, Value).
fn item_object(computer: &str, parent: &[String], item: &crate::remote::WsmanItem) -> Value {
    let mut path = parent.to_vec();
    path.push(item.name.clone());
    let (type_name, kind) = if item.container { (CONTAINER_TYPE, "Container") } else { (LEAF_TYPE, "System.String") };
    let mut props = vec![("Name", Value::string(item.name.as_str())), ("Type", Value::string(kind))];
    if !item.container {
        props.push(("SourceOfValue", Value::string(item.source.clone().unwrap_or_default())));
        props.push(("Value", Value::string(item.value.clone().unwrap_or_default())));
    }
    props.push(("PSPath", Value::string(ps_path(computer, &path))));
    props.push(("PSParentPath", Value::string(ps_path(computer, parent))));
    props.push(("PSChildName", Value::string(item.name.as_str())));
    let mut object = values::object(&[type_name, "Microsoft.WSMan.Management.WSManConfigElement"], None, props);
    if let Value::Object(o) = &mut object {
        values::set_display_properties(std::sync::Arc::make_mut(o), &["Type", "Name", "SourceOfValue", "Value"]);
    }
    object
}

/// The hosts at the drive's root: the computers of the user's WinRM sessions.
fn hosts(cx: &mut Ctx<'_>) -> Vec<crate::remote::WsmanItem> {
    let mut names: Vec<String> = cx.remoting.list().iter().filter(|s| s.transport == psgate_shared::api::Transport::Winrm).map(|s| s.computer_name.clone()).collect();
    names.sort_unstable_by_key(|n| n.to_lowercase());
    names.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    names.into_iter().map(|name| crate::remote::WsmanItem { name, value: None, source: None, container: true }).collect()
}

fn get_item(cx: &mut Ctx<'_>, b: &Bound, sink: &mut Sink<'_>) -> R<()> {
    for path in b.strings("Path") {
        let Some((computer, parts)) = parse_path(&path) else {
            cx.write_error(drive_error(&path, "Get-Item"))?;
            continue;
        };
        if computer.is_empty() {
            let root = crate::remote::WsmanItem { name: "WSMan".into(), value: None, source: None, container: true };
            let object = item_object("", &[], &root);
            cx.emit(sink, object);
            continue;
        }
        if parts.is_empty() {
            let host = crate::remote::WsmanItem { name: computer.clone(), value: None, source: None, container: true };
            let object = item_object("", &[], &host);
            cx.emit(sink, object);
            continue;
        }
        match cx.remoting.wsman_get(&computer, &parts) {
            Ok(WsmanNode::Leaf(item)) | Ok(WsmanNode::Container(item, _)) => {
                let object = item_object(&computer, &parts[..parts.len() - 1], &item);
                cx.emit(sink, object);
            }
            Err(e) => cx.write_error(remote_failure(e, &path, "Get-Item"))?,
        }
    }
    Ok(())
}

fn get_child_item(cx: &mut Ctx<'_>, b: &Bound, sink: &mut Sink<'_>) -> R<()> {
    let paths = match b.strings("Path") {
        p if p.is_empty() => vec!["WSMan:\\".to_owned()],
        p => p,
    };
    for path in paths {
        let Some((computer, parts)) = parse_path(&path) else {
            cx.write_error(drive_error(&path, "Get-ChildItem"))?;
            continue;
        };
        if computer.is_empty() {
            for host in hosts(cx) {
                let object = item_object("", &[], &host);
                cx.emit(sink, object);
            }
            continue;
        }
        match cx.remoting.wsman_get(&computer, &parts) {
            Ok(WsmanNode::Container(_, children)) => {
                for child in &children {
                    let object = item_object(&computer, &parts, child);
                    cx.emit(sink, object);
                }
            }
            // A setting's children are the setting itself, as the provider answers.
            Ok(WsmanNode::Leaf(item)) => {
                let object = item_object(&computer, &parts[..parts.len().saturating_sub(1)], &item);
                cx.emit(sink, object);
            }
            Err(e) => cx.write_error(remote_failure(e, &path, "Get-ChildItem"))?,
        }
    }
    Ok(())
}

/// The global quotas whose change PowerShell's provider warns may leave plugins' own quotas above them.
const GLOBAL_QUOTAS: &[&str] = &["maxconcurrentoperationsperuser", "idletimeout", "maxprocessespershell", "maxmemorypershellmb", "maxshellsperuser", "maxconcurrentusers"];

fn set_item(cx: &mut Ctx<'_>, b: &Bound, _sink: &mut Sink<'_>) -> R<()> {
    let value = b.items("Value").into_iter().next().map(|v| values::text(&v)).unwrap_or_default();
    for path in b.strings("Path") {
        let Some((computer, parts)) = parse_path(&path) else {
            cx.write_error(drive_error(&path, "Set-Item"))?;
            continue;
        };
        if computer.is_empty() || parts.is_empty() {
            cx.write_error(Failure::new(ErrorSpec {
                message: "This command cannot be used in the current path because this cmdlet is not supported at this level of Provider path.".into(),
                id: "System.InvalidOperationException,Microsoft.PowerShell.Commands.SetItemCommand".into(),
                category: Category::InvalidOperation,
                exception: "System.InvalidOperationException",
                target: Some(path.clone()),
                activity: "Set-Item".into(),
                position: None,
            }))?;
            continue;
        }
        if let Err(e) = cx.remoting.wsman_set(&computer, &parts, &value) {
            cx.write_error(remote_failure(e, &path, "Set-Item"))?;
            continue;
        }
        let container = parts[0].to_ascii_lowercase();
        let name = parts.last().map(|n| n.to_ascii_lowercase()).unwrap_or_default();
        if matches!(container.as_str(), "shell" | "service") && parts.len() == 2 && GLOBAL_QUOTAS.contains(&name.as_str()) {
            warn(
                cx,
                &format!(
                    "The updated configuration might affect the operation of the plugins having a per plugin quota value greater than {value}. Verify the configuration of all the registered plugins and change the per plugin quota values for the affected plugins."
                ),
            );
        }
        if container == "plugin" {
            warn(cx, &format!("The configuration changes you made will only be effective after the WinRM service is restarted on {computer}."));
        }
    }
    Ok(())
}

fn warn(cx: &mut Ctx<'_>, message: &str) {
    cx.host.record(psgate_shared::api::RecordKind::Warning, crate::error::informational("Warning", message));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_on_the_drive() {
        assert_eq!(parse_path("WSMan:\\SRV02\\Shell\\MaxShellsPerUser"), Some(("SRV02".into(), vec!["Shell".into(), "MaxShellsPerUser".into()])));
        assert_eq!(parse_path("wsman:/srv02/Plugin/microsoft.powershell/Quotas/"), Some(("srv02".into(), vec!["Plugin".into(), "microsoft.powershell".into(), "Quotas".into()])));
        assert_eq!(parse_path("WSMan:\\"), Some((String::new(), vec![])));
        assert_eq!(parse_path("C:\\Windows"), None);
        assert_eq!(parse_path("Shell"), None);
    }
}
