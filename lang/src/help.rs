//! Get-Help and Get-Command for psgate's prompt: built from the cmdlets' own signatures, so the syntax shown is
//! the syntax the binder takes.

use psgate_shared::clixml::Value;

use crate::bind::{Bound, COMMON, Kind, Param};
use crate::cmdlets::{self, Cmdlet};
use crate::error::{Category, ErrorSpec, Failure};
use crate::eval::{Ctx, Flow, R, Sink};
use crate::values::{self, text};

/// Examples shown by `Get-Help -Examples` (and `-Full`), per cmdlet.
fn examples(name: &str) -> &'static [(&'static str, &'static str)] {
    match name {
        "New-PSSession" => &[
            ("$s = New-PSSession -ComputerName srv02 -Credential (Get-Credential)", "A session to srv02 over WinRM."),
            ("$s1, $s2 = New-PSSession -ComputerName srv02, dc01", "Two sessions, one in each variable."),
            ("New-PSSession -HostName pc1 -UserName admin", "A session over SSH (the password is asked for)."),
            ("New-PSSession", "A session to the relay's own computer (its local transport)."),
        ],
        "Get-PSSession" => &[("Get-PSSession", "Every session psgate holds for you."), ("Get-PSSession -ComputerName srv02 | Enter-PSSession", "Enter the session to srv02.")],
        "Enter-PSSession" => &[
            ("Enter-PSSession -Session $s", "The console becomes [SRV02]: PS C:\\> until exit."),
            ("Get-PSSession -ComputerName srv02 | Enter-PSSession", "The same, by computer."),
        ],
        "Invoke-Command" => &[
            ("Invoke-Command -Session $s1, $s2 -ScriptBlock { Get-Service bits }", "Run on two sessions; each result carries PSComputerName."),
            ("Invoke-Command -ComputerName srv02 -ScriptBlock { Get-Process } -AsJob", "Run as a job; Receive-Job gets the results."),
        ],
        "Remove-PSSession" => &[("Get-PSSession | Remove-PSSession", "Close every session.")],
        "Disconnect-PSSession" => &[("Disconnect-PSSession -Id 3 -IdleTimeoutSec 3600", "Leave session 3 running at the target for an hour.")],
        "Connect-PSSession" => &[("Get-PSSession -ComputerName srv02 | Connect-PSSession", "Connect the disconnected session to srv02 again.")],
        "Where-Object" => &[("Get-PSSession | where ComputerName -eq SRV02", "Sessions to SRV02."), ("Get-PSSession | ? { $_.State -ne 'Opened' }", "Sessions that are not open.")],
        _ => &[],
    }
}

/// `Verb-Noun [[-Name] <Type>] [-Switch] …` for one parameter set.
fn syntax(c: &Cmdlet, set: &str) -> String {
    let mut parts = vec![c.sig.name.to_owned()];
    let mut params: Vec<&Param> = c.sig.params.iter().filter(|p| p.in_set(set)).collect();
    params.sort_by_key(|p| (p.position.is_none(), p.position, !p.mandatory_in(set)));
    for p in params {
        let name = if p.position.is_some() { format!("[-{}]", p.name) } else { format!("-{}", p.name) };
        let part = if p.kind == Kind::Switch { name } else { format!("{name} <{}>", p.kind.short_name()) };
        parts.push(if p.mandatory_in(set) { part } else { format!("[{part}]") });
    }
    parts.push("[<CommonParameters>]".into());
    parts.join(" ")
}

/// The help text of a cmdlet.
pub fn help_text(c: &Cmdlet, full: bool, examples_only: bool, parameters: &[String]) -> String {
    let mut out = String::new();
    if examples_only {
        out.push_str(&format!("NAME\n    {}\n\nSYNOPSIS\n    {}\n\n", c.sig.name, c.synopsis));
        push_examples(&mut out, c.sig.name);
        return out;
    }
    if !parameters.is_empty() {
        for want in parameters {
            for p in c.sig.params.iter().filter(|p| values::like(p.name, want, false)) {
                push_parameter(&mut out, c, p);
            }
        }
        return out;
    }
    out.push_str(&format!("NAME\n    {}\n\nSYNOPSIS\n    {}\n\nSYNTAX\n", c.sig.name, c.synopsis));
    let sets: Vec<&str> = if c.sig.sets.is_empty() { vec![""] } else { c.sig.sets.to_vec() };
    for set in sets {
        out.push_str(&format!("    {}\n\n", syntax(c, set)));
    }
    if !c.aliases.is_empty() {
        out.push_str(&format!("ALIASES\n    {}\n\n", c.aliases.join(", ")));
    }
    if full {
        out.push_str("PARAMETERS\n");
        let mut seen: Vec<&str> = Vec::new();
        for p in c.sig.params {
            if !seen.contains(&p.name) {
                seen.push(p.name);
                push_parameter(&mut out, c, p);
            }
        }
        out.push_str("    <CommonParameters>\n        This cmdlet supports the common parameters: -ErrorAction (honoured), -Verbose, -Debug, -WarningAction,\n        -InformationAction, -ErrorVariable, -WarningVariable, -InformationVariable, -OutVariable, -OutBuffer,\n        -PipelineVariable (accepted).\n\n");
        push_examples(&mut out, c.sig.name);
    }
    out.push_str(&format!("REMARKS\n    This is psgate's prompt: {} runs on the relay, on the sessions it holds for you.\n    For the parameters and examples, type: \"Get-Help {} -Full\".", c.sig.name, c.sig.name));
    out
}

fn push_parameter(out: &mut String, c: &Cmdlet, p: &Param) {
    let ty = if p.kind == Kind::Switch { String::new() } else { format!(" <{}>", p.kind.short_name()) };
    out.push_str(&format!("    -{}{ty}\n        {}\n\n", p.name, p.help));
    let position = p.position.map_or("named".to_owned(), |n| n.to_string());
    let required = c.sig.params.iter().filter(|x| x.name == p.name).any(|x| !x.mandatory.is_empty());
    let pipe = match p.pipe {
        crate::bind::Pipe::No => "False",
        crate::bind::Pipe::ByValue => "True (ByValue)",
        crate::bind::Pipe::ByPropertyName => "True (ByPropertyName)",
        crate::bind::Pipe::Both => "True (ByValue, ByPropertyName)",
    };
    let aliases = if p.aliases.is_empty() { "None".to_owned() } else { p.aliases.join(", ") };
    out.push_str(&format!(
        "        Required?                    {required}\n        Position?                    {position}\n        Accept pipeline input?       {pipe}\n        Aliases                      {aliases}\n        Accept wildcard characters?  {}\n\n",
        if p.help.contains("wildcards") { "true" } else { "false" },
        required = if required { "true" } else { "false" }
    ));
}

fn push_examples(out: &mut String, name: &str) {
    for (i, (code, what)) in examples(name).iter().enumerate() {
        out.push_str(&format!("    -------------------------- Example {} --------------------------\n\n    PS psgate> {code}\n\n    {what}\n\n", i + 1));
    }
}

const ABOUT: &str = "psgate's prompt (PS psgate>)

    The prompt runs PowerShell's remoting cmdlets on the sessions the psgate relay holds for you, with
    PowerShell's names, parameters and words. Script blocks run remotely; Where-Object and ForEach-Object run
    them here.

    Sessions:   New-PSSession, Get-PSSession, Remove-PSSession, Disconnect-PSSession, Connect-PSSession,
                Receive-PSSession
    Consoles:   Enter-PSSession (then exit), Invoke-Command (-AsJob with Get-Job, Receive-Job, Wait-Job,
                Stop-Job, Remove-Job)
    Objects:    Where-Object, ForEach-Object, Select-Object, Sort-Object, Format-Table, Format-List, Get-Member
    Other:      Get-Credential, Get-Help, Get-Command, Get-History, Clear-Host, Write-Output, Write-Host

    The language: variables ($s = …, $a, $b = …), arrays (a, b), strings ('…', \"$x and $($y.Name)\"),
    numbers, $true/$false/$null, ( … ), $( … ), @( … ), @{ … }, .Property (also of every item of an array),
    [index], the comparison operators (-eq -ne -gt -ge -lt -le -like -notlike -match -notmatch -in -notin
    -contains -notcontains, with c forms), -and -or -xor -not, + - * / %, .., -f, pipelines and ;.

    Type Get-Help <command> -Full for a command's parameters and examples.";

pub(crate) fn get_help(cx: &mut Ctx<'_>, b: &Bound, sink: &mut Sink<'_>) -> R<()> {
    let Some(name) = b.string("Name").filter(|n| !n.trim().is_empty()) else {
        cx.emit(sink, Value::string(ABOUT));
        return Ok(());
    };
    if name.eq_ignore_ascii_case("about_psgate") || name.eq_ignore_ascii_case("about_PSSessions") {
        cx.emit(sink, Value::string(ABOUT));
        return Ok(());
    }
    if !values::has_wildcards(&name)
        && let Some((module, proxy)) = crate::implicit::find(&cx.rs.modules, &name)
    {
        let proxy = proxy.clone();
        return crate::implicit::help(cx, module, &proxy, b, sink);
    }
    let found: Vec<&Cmdlet> = if values::has_wildcards(&name) {
        cmdlets::all().filter(|c| values::like(c.sig.name, &name, false)).collect()
    } else {
        cmdlets::find(&name).into_iter().collect()
    };
    if found.is_empty() {
        return Err(Flow::Error(Failure::new(ErrorSpec {
            message: format!("Get-Help could not find {name} in a help file in this session. psgate's prompt knows its own commands (Get-Command); for a remote command, run Get-Help in the session."),
            id: "HelpNotFound,Microsoft.PowerShell.Commands.GetHelpCommand".into(),
            category: Category::ResourceUnavailable,
            exception: "System.Management.Automation.HelpNotFoundException",
            target: Some(name),
            activity: "Get-Help".into(),
            position: None,
        })));
    }
    if found.len() > 1 {
        for c in found {
            cx.emit(sink, command_info(c.sig.name, None, c.synopsis));
        }
        return Ok(());
    }
    let c = found[0];
    let text = help_text(c, b.switch("Full") || b.switch("Detailed"), b.switch("Examples"), &b.strings("Parameter"));
    cx.emit(sink, Value::string(text));
    Ok(())
}

/// A `CmdletInfo` or `AliasInfo` as Get-Command outputs it.
fn command_info(name: &str, alias_of: Option<&str>, synopsis: &str) -> Value {
    let (type_names, command_type, shown): (&[&str], &str, String) = match alias_of {
        Some(target) => (&["System.Management.Automation.AliasInfo", "System.Management.Automation.CommandInfo"], "Alias", format!("{name} -> {target}")),
        None => (&["System.Management.Automation.CmdletInfo", "System.Management.Automation.CommandInfo"], "Cmdlet", name.to_owned()),
    };
    values::object(
        type_names,
        Some(name.to_owned()),
        vec![
            ("CommandType", Value::string(command_type)),
            ("Name", Value::string(shown)),
            ("Version", Value::string(crate::eval::PSGATE_VERSION)),
            ("Source", Value::string("psgate")),
            ("Definition", Value::string(synopsis)),
        ],
    )
}

pub(crate) fn get_command(cx: &mut Ctx<'_>, b: &Bound, sink: &mut Sink<'_>) -> R<()> {
    let names = b.strings("Name");
    let verbs = b.strings("Verb");
    let nouns = b.strings("Noun");
    let types = b.strings("CommandType");
    let mut rows: Vec<(&str, Option<&str>, &str)> = Vec::new();
    for c in cmdlets::all() {
        rows.push((c.sig.name, None, c.synopsis));
        for a in c.aliases {
            rows.push((a, Some(c.sig.name), c.synopsis));
        }
    }
    // Without a name, Get-Command lists cmdlets (aliases only when asked for by name or type).
    let mut found = 0;
    let mut out: Vec<(&str, Option<&str>, &str)> = rows
        .into_iter()
        .filter(|(n, alias, _)| {
            let by_name = if names.is_empty() { alias.is_none() || types.iter().any(|t| t.eq_ignore_ascii_case("Alias")) } else { names.iter().any(|w| values::like(n, w, false)) };
            let (verb, noun) = n.split_once('-').unwrap_or((n, ""));
            by_name
                && (verbs.is_empty() || (alias.is_none() && verbs.iter().any(|v| values::like(verb, v, false))))
                && (nouns.is_empty() || (alias.is_none() && nouns.iter().any(|v| values::like(noun, v, false))))
                && (types.is_empty() || types.iter().any(|t| values::like(if alias.is_some() { "Alias" } else { "Cmdlet" }, t, false)))
        })
        .collect();
    out.sort_by_key(|(n, alias, _)| (alias.is_none(), n.to_lowercase()));
    out.sort_by_key(|(n, alias, _)| (alias.is_some(), n.to_lowercase()));
    // The proxies of imported modules are functions (listed first, as PowerShell lists functions before cmdlets).
    let mut proxies: Vec<Value> = Vec::new();
    for m in &cx.rs.modules {
        for p in &m.proxies {
            let (verb, noun) = p.name.split_once('-').unwrap_or((&p.name, ""));
            let by_name = if names.is_empty() { true } else { names.iter().any(|w| values::like(&p.name, w, false)) };
            if by_name
                && (verbs.is_empty() || verbs.iter().any(|v| values::like(verb, v, false)))
                && (nouns.is_empty() || nouns.iter().any(|v| values::like(noun, v, false)))
                && (types.is_empty() || types.iter().any(|t| values::like("Function", t, false)))
            {
                proxies.push(crate::implicit::command_info(m, p));
            }
        }
    }
    for v in proxies {
        found += 1;
        cx.emit(sink, v);
    }
    for (n, alias, synopsis) in out {
        found += 1;
        cx.emit(sink, command_info(n, alias, synopsis));
    }
    if found == 0
        && let Some(n) = names.iter().find(|n| !values::has_wildcards(n))
    {
        return Err(Flow::Error(Failure::new(ErrorSpec {
            message: format!(
                "The term '{n}' is not recognized as a name of a cmdlet, function, script file, or executable program.\nCheck the spelling of the name, or if a path was included, verify that the path is correct and try again."
            ),
            id: "CommandNotFoundException,Microsoft.PowerShell.Commands.GetCommandCommand".into(),
            category: Category::ObjectNotFound,
            exception: "System.Management.Automation.CommandNotFoundException",
            target: Some(n.clone()),
            activity: "Get-Command".into(),
            position: None,
        })));
    }
    let _ = COMMON;
    Ok(())
}

/// The text of a remote command's help object (PowerShell's `MamlCommandHelpInfo`, as Get-Help in the session
/// sends it), shown under the proxy's name `local` (the remote name `remote` replaced in its syntax and examples).
pub(crate) fn maml_text(help: &Value, local: &str, remote: &str, full: bool, examples_only: bool, parameters: &[String]) -> String {
    let get = |v: &Value, name: &str| values::property(v, name).filter(|x| !x.is_nil());
    let rename = |s: String| replace_word(&s, remote, local);
    // `description` and friends: an array of objects with `Text`, or plain strings.
    let texts = |v: Option<Value>| -> String {
        let Some(v) = v else { return String::new() };
        values::enumerate(v).iter().map(|t| get(t, "Text").map_or_else(|| text(t), |x| text(&x))).filter(|t| !t.trim().is_empty()).collect::<Vec<_>>().join("\n")
    };
    let indent = |s: &str, n: usize| s.lines().map(|l| format!("{}{l}", " ".repeat(n))).collect::<Vec<_>>().join("\n");
    let list = |v: Option<Value>, name: &str| -> Vec<Value> { v.map(|x| get(&x, name).map_or_else(|| values::enumerate(x), values::enumerate)).unwrap_or_default() };
    let synopsis = get(help, "Synopsis").map(|s| texts(Some(s))).or_else(|| get(help, "details").map(|d| texts(get(&d, "description")))).unwrap_or_default();
    let mut out = format!("\nNAME\n    {local}\n\nSYNOPSIS\n{}\n\n", indent(&synopsis, 4));
    let params = list(get(help, "parameters"), "parameter");
    let param_text = |p: &Value| -> String {
        let name = get(p, "name").map(|n| text(&n)).unwrap_or_default();
        let ty = get(p, "type").and_then(|t| get(&t, "name")).or_else(|| get(p, "parameterValue")).map(|t| format!(" <{}>", text(&t))).unwrap_or_default();
        let field = |n: &str, default: &str| get(p, n).map_or_else(|| default.to_owned(), |v| text(&v));
        format!(
            "    -{name}{ty}\n{}\n\n        Required?                    {}\n        Position?                    {}\n        Default value                {}\n        Accept pipeline input?       {}\n        Aliases                      {}\n        Accept wildcard characters?  {}\n\n",
            indent(&texts(get(p, "description")), 8),
            field("required", "false"),
            field("position", "named"),
            field("defaultValue", ""),
            field("pipelineInput", "false"),
            field("aliases", "None"),
            field("globbing", "false"),
        )
    };
    if !parameters.is_empty() {
        let mut out = String::new();
        for want in parameters {
            for p in params.iter().filter(|p| get(p, "name").is_some_and(|n| values::like(&text(&n), want, false))) {
                out.push_str(&param_text(p));
            }
        }
        return out;
    }
    let examples = list(get(help, "examples"), "example");
    let example_text = |out: &mut String| {
        for e in &examples {
            let title = get(e, "title").map(|t| text(&t)).unwrap_or_default();
            let code = get(e, "code").map(|t| text(&t)).unwrap_or_default();
            out.push_str(&format!("    {}\n\n    {}\n\n{}\n\n", title.trim(), rename(code).trim(), indent(&rename(texts(get(e, "remarks"))), 4)));
        }
    };
    if examples_only {
        example_text(&mut out);
        return out;
    }
    out.push_str("SYNTAX\n");
    for item in list(get(help, "syntax"), "syntaxItem") {
        let mut line = vec![local.to_owned()];
        for p in list(Some(item), "parameter") {
            let name = get(&p, "name").map(|n| text(&n)).unwrap_or_default();
            let value = get(&p, "parameterValue").map(|v| format!(" <{}>", text(&v))).unwrap_or_default();
            let position = get(&p, "position").map(|v| text(&v)).filter(|v| v != "named");
            let shown = if position.is_some() { format!("[-{name}]{value}") } else { format!("-{name}{value}") };
            let required = get(&p, "required").is_some_and(|r| text(&r).eq_ignore_ascii_case("true"));
            line.push(if required { shown } else { format!("[{shown}]") });
        }
        line.push("[<CommonParameters>]".into());
        out.push_str(&format!("    {}\n\n", line.join(" ")));
    }
    let description = texts(get(help, "description"));
    if !description.is_empty() {
        out.push_str(&format!("DESCRIPTION\n{}\n\n", indent(&rename(description), 4)));
    }
    if full {
        out.push_str("PARAMETERS\n");
        for p in &params {
            out.push_str(&param_text(p));
        }
        out.push_str("    <CommonParameters>\n        This cmdlet supports the common parameters: Verbose, Debug,\n        ErrorAction, ErrorVariable, WarningAction, WarningVariable,\n        OutBuffer, PipelineVariable, and OutVariable.\n\n");
        if !examples.is_empty() {
            out.push_str("EXAMPLES\n");
            example_text(&mut out);
        }
    }
    let links: Vec<String> = list(get(help, "relatedLinks"), "navigationLink")
        .iter()
        .map(|l| {
            let uri = get(l, "uri").map(|u| text(&u)).unwrap_or_default();
            let link = get(l, "linkText").map(|u| text(&u)).unwrap_or_default();
            if uri.is_empty() { link } else { uri }
        })
        .filter(|l| !l.trim().is_empty())
        .collect();
    if !links.is_empty() {
        out.push_str(&format!("RELATED LINKS\n{}\n\n", indent(&links.join("\n"), 4)));
    }
    out.push_str(&format!("REMARKS\n    {local} runs {remote} in its session (implicit remoting).\n    For the parameters and examples, type: \"Get-Help {local} -Full\"."));
    out
}

/// `text` with the command name `from` replaced by `to` where it stands as a word.
fn replace_word(text: &str, from: &str, to: &str) -> String {
    if from.is_empty() {
        return text.to_owned();
    }
    let lower = text.to_lowercase();
    let needle = from.to_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(i) = lower[at..].find(&needle).map(|i| i + at) {
        let before = text[..i].chars().next_back();
        let after = text[i + from.len()..].chars().next();
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '-');
        out.push_str(&text[at..i]);
        out.push_str(if word(before) || word(after) { &text[i..i + from.len()] } else { to });
        at = i + from.len();
    }
    out.push_str(&text[at..]);
    out
}
