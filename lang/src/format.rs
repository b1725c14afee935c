//! Output as text, the way PowerShell's console lays it out: the default table of the prompt's own types
//! (PSSession, jobs, history, commands, members), Format-Table and Format-List's choice, else four or fewer
//! properties as a table and more as a list. `psgate shell` prints with it; the browser renders the same objects
//! with its own renderers.

use psgate_shared::clixml::Value;

use crate::cmdlets::utility::{FORMAT_LIST, FORMAT_TABLE};
use crate::values::{self, text};

/// The columns PowerShell's default view of a type shows (`None`: no view; the general rule applies).
fn view(type_name: &str) -> Option<&'static [&'static str]> {
    Some(match type_name {
        "System.Management.Automation.Runspaces.PSSession" => &["Id", "Name", "Transport", "ComputerName", "ComputerType", "State", "ConfigurationName", "Availability"],
        "System.Management.Automation.PSRemotingJob" => &["Id", "Name", "PSJobTypeName", "State", "HasMoreData", "Location", "Command"],
        "Microsoft.PowerShell.Commands.HistoryInfo" => &["Id", "CommandLine"],
        "System.Management.Automation.CmdletInfo" | "System.Management.Automation.AliasInfo" | "System.Management.Automation.FunctionInfo" => &["CommandType", "Name", "Version", "Source"],
        "System.Management.Automation.PSModuleInfo" => &["ModuleType", "Version", "PreRelease", "Name", "ExportedCommands"],
        "Microsoft.PowerShell.Commands.MemberDefinition" => &["Name", "MemberType", "Definition"],
        _ => return None,
    })
}

/// The columns a table of this object shows.
pub fn default_columns(v: &Value) -> Vec<String> {
    let Some(o) = v.as_object() else { return Vec::new() };
    let formatted = o.type_names().next().is_some_and(|t| t == FORMAT_TABLE || t == FORMAT_LIST);
    for t in o.type_names().filter(|_| !formatted) {
        if let Some(cols) = view(t.strip_prefix("Deserialized.").unwrap_or(t)) {
            let mut cols: Vec<String> = cols.iter().map(|c| (*c).to_owned()).collect();
            // A PSSession under the relay's IdleTimeout or MaxShellRunTime shows the time they leave it.
            cols.extend(["IdleTimeLeft", "RunTimeLeft"].iter().filter(|c| o.property(c).is_some()).map(|c| (*c).to_owned()));
            return cols;
        }
    }
    // Format-Table's own objects carry only the chosen properties; an import's view puts its columns in the set.
    if let Some(set) = display_set(v) {
        return set;
    }
    o.properties().filter(|p| !p.value.is_member_set()).map(|p| p.name.to_string()).collect()
}

/// `PSStandardMembers.DefaultDisplayPropertySet`, when the object carries it.
fn display_set(v: &Value) -> Option<Vec<String>> {
    let o = v.as_object()?;
    let standard = o.extended.iter().find(|p| p.name == "PSStandardMembers")?.value.as_object()?;
    let set = standard.extended.iter().find(|p| p.name == "DefaultDisplayPropertySet")?.value.as_object()?;
    let names = set.extended.iter().find(|p| p.name == "ReferencedPropertyNames")?;
    Some(values::enumerate(names.value.clone()).iter().map(text).collect())
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Shape {
    Scalar,
    Table,
    List,
}

fn shape(v: &Value) -> (Shape, String) {
    let Some(o) = v.as_object() else { return (Shape::Scalar, String::new()) };
    if matches!(o.content, psgate_shared::clixml::Content::Primitive(_) | psgate_shared::clixml::Content::List(..)) || o.properties().next().is_none() {
        return (Shape::Scalar, String::new());
    }
    let first = o.type_names().next().unwrap_or_default().to_owned();
    if first == FORMAT_TABLE {
        return (Shape::Table, o.type_names().nth(1).unwrap_or_default().to_owned());
    }
    if first == FORMAT_LIST {
        return (Shape::List, o.type_names().nth(1).unwrap_or_default().to_owned());
    }
    if o.type_names().any(|t| view(t.strip_prefix("Deserialized.").unwrap_or(t)).is_some()) {
        return (Shape::Table, first);
    }
    let columns = default_columns(v).len();
    (if columns <= 4 { Shape::Table } else { Shape::List }, first)
}

/// Objects as console text (each block followed by a blank line, as PowerShell prints them).
pub fn to_text(items: &[Value]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < items.len() {
        let (s, ty) = shape(&items[i]);
        let mut j = i + 1;
        while j < items.len() && shape(&items[j]) == (s, ty.clone()) && s != Shape::Scalar {
            j += 1;
        }
        let block = &items[i..j];
        match s {
            Shape::Scalar => {
                for v in block {
                    out.push_str(&scalar(v));
                    out.push('\n');
                }
            }
            Shape::Table => out.push_str(&table(block)),
            Shape::List => out.push_str(&list(block)),
        }
        i = j;
    }
    out
}

fn scalar(v: &Value) -> String {
    match v.as_object() {
        Some(o) if matches!(o.content, psgate_shared::clixml::Content::Dict(_)) => dict(v),
        _ => text(v),
    }
}

fn dict(v: &Value) -> String {
    let Some(o) = v.as_object() else { return String::new() };
    let psgate_shared::clixml::Content::Dict(entries) = &o.content else { return String::new() };
    let width = entries.iter().map(|(k, _)| text(k).chars().count()).max().unwrap_or(4).max(4);
    let mut out = format!("\n{:width$} Value\n{:width$} -----\n", "Name", "----");
    for (k, v) in entries {
        out.push_str(&format!("{:width$} {}\n", text(k), cell(v)));
    }
    out
}

fn cell(v: &Value) -> String {
    let s = match v {
        Value::Object(o) if values::as_list(v).is_some() => format!("{{{}}}", values::as_list(v).unwrap_or_default().iter().map(text).collect::<Vec<_>>().join(", ")),
        Value::Object(o) if o.to_string.is_none() && o.properties().next().is_some() => text(v),
        _ => text(v),
    };
    s.replace(['\r', '\n'], " ")
}

fn table(block: &[Value]) -> String {
    // A MemberDefinition table is grouped by its TypeName, as Get-Member prints it.
    let grouped = block.first().is_some_and(|v| values::is_type(v, "Microsoft.PowerShell.Commands.MemberDefinition"));
    let mut out = String::new();
    let mut start = 0;
    while start < block.len() {
        let group_of = |v: &Value| if grouped { text(&values::member(v, "TypeName")) } else { String::new() };
        let g = group_of(&block[start]);
        let mut end = start + 1;
        while end < block.len() && group_of(&block[end]) == g {
            end += 1;
        }
        if grouped {
            out.push_str(&format!("\n   TypeName: {g}\n"));
        }
        let rows = &block[start..end];
        let columns = default_columns(&rows[0]);
        let cells: Vec<Vec<String>> = rows.iter().map(|r| columns.iter().map(|c| cell(&values::member(r, c))).collect()).collect();
        let right: Vec<bool> = columns.iter().map(|c| rows.iter().all(|r| { let v = values::member(r, c); v.is_nil() || values::is_number(&v) })).collect();
        let widths: Vec<usize> = columns.iter().enumerate().map(|(i, c)| cells.iter().map(|r| r[i].chars().count()).max().unwrap_or(0).max(c.chars().count())).collect();
        let line = |values: Vec<String>| {
            let parts: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(i, v)| if right[i] { format!("{v:>w$}", w = widths[i]) } else { format!("{v:<w$}", w = widths[i]) })
                .collect();
            parts.join(" ").trim_end().to_owned() + "\n"
        };
        out.push('\n');
        out.push_str(&line(columns.clone()));
        out.push_str(&line(columns.iter().map(|c| "-".repeat(c.chars().count())).collect()));
        for r in cells {
            out.push_str(&line(r));
        }
        out.push('\n');
        start = end;
    }
    out
}

fn list(block: &[Value]) -> String {
    let mut out = String::new();
    for v in block {
        let Some(o) = v.as_object() else { continue };
        // Format-List shows the display property set where there is one, as PowerShell does (`fl *`: all).
        let names: Vec<String> = if display_set(v).is_none() {
            o.properties().filter(|p| !p.value.is_member_set()).map(|p| p.name.to_string()).collect()
        } else {
            default_columns(v)
        };
        let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        out.push('\n');
        for n in names {
            out.push_str(&format!("{n:width$} : {}\n", cell(&values::member(v, &n))));
        }
    }
    out.push('\n');
    out
}
