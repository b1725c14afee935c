//! Export-PSSession: the module files that take an Import-PSSession module home. Run with plain `pwsh` on the
//! user's own machine (`Import-Module ./<leaf>`), the module's proxies open a session to the same computer with
//! ordinary PowerShell remoting (WinRM, or SSH, which PowerShell's own generator cannot write), import the remote
//! modules there, and run the remote commands through `Invoke-Command`, streaming their pipeline input, as
//! PowerShell's generated proxies do. Pure text: no IO, no clock, no randomness (the GUID is a hash).

use crate::implicit::{Module, Proxy, is_safe_name};

/// How the exported module opens its own session on the user's machine (no password ever goes in the files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExportTarget {
    /// WinRM (WS-Management): `New-PSSession -ComputerName …`.
    WinRm {
        /// `-ComputerName`
        computer_name: String,
        /// `-Port`, when not the default 5985/5986.
        port: Option<u16>,
        /// `-UseSSL` (HTTPS)
        use_ssl: bool,
        /// `-ConfigurationName`: the endpoint (a JEA one, say); `None` for the default.
        configuration_name: Option<String>,
        /// `-Authentication` (`Negotiate`, `Kerberos`, `Basic`, …); `None` for the default.
        authentication: Option<String>,
        /// The user to ask a password for (`-Credential` from `PromptForCredential`); `None`: the current user.
        user: Option<String>,
    },
    /// SSH: `New-PSSession -HostName … -UserName … -Port …`; ssh itself asks for a password or uses a key.
    Ssh {
        /// `-HostName`
        host_name: String,
        /// `-Port`
        port: u16,
        /// `-UserName`
        user_name: String,
        /// `-Subsystem`; `None` for the default (`powershell`).
        subsystem: Option<String>,
    },
}

/// The manifest keys PowerShell accepts in a module manifest (`Test-ModuleManifest`'s list).
pub const MANIFEST_KEYS: &[&str] = &[
    "RootModule", "ModuleToProcess", "ModuleVersion", "CompatiblePSEditions", "GUID", "Author", "CompanyName", "Copyright", "Description",
    "PowerShellVersion", "PowerShellHostName", "PowerShellHostVersion", "DotNetFrameworkVersion", "ClrVersion", "CLRVersion",
    "ProcessorArchitecture", "RequiredModules", "RequiredAssemblies", "ScriptsToProcess", "TypesToProcess", "FormatsToProcess",
    "NestedModules", "FunctionsToExport", "CmdletsToExport", "VariablesToExport", "AliasesToExport", "DscResourcesToExport",
    "ModuleList", "FileList", "PrivateData", "HelpInfoURI", "DefaultCommandPrefix",
];

/// Common parameters a proxy keeps for the local `Invoke-Command` only; the preference ones go to both.
const COMMON_MOVED: &[&str] = &["Verbose", "Debug", "ErrorVariable", "WarningVariable", "OutVariable", "OutBuffer", "PipelineVariable", "InformationVariable"];
const COMMON_COPIED: &[&str] = &["ErrorAction", "WarningAction", "InformationAction", "ProgressAction"];

/// The files of the exported module `<leaf>`: (file name, UTF-8 text) for `<leaf>.psm1`, `<leaf>.psd1` and
/// `<leaf>.format.ps1xml`. `command_line` (the Export-PSSession line as typed) goes into a comment only.
pub fn module_files(module: &Module, leaf: &str, target: &ExportTarget, command_line: &str) -> Vec<(String, String)> {
    let proxies = exported(module);
    let names: Vec<&str> = proxies.iter().map(|p| p.name.as_str()).collect();
    vec![
        (format!("{leaf}.psm1"), psm1(module, target, command_line, &proxies)),
        (format!("{leaf}.psd1"), psd1(module, leaf, command_line, &names)),
        (format!("{leaf}.format.ps1xml"), crate::format_data::ps1xml(&module.formats)),
    ]
}

/// Text for a single-quoted PowerShell string: every quote PowerShell takes as `'` (the typographic ones too) doubled.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}') {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// `@('a', 'b')`
fn quoted_list<S: AsRef<str>>(items: &[S]) -> String {
    format!("@({})", items.iter().map(|s| quote(s.as_ref())).collect::<Vec<_>>().join(", "))
}

/// Text that can stand in a `#` comment: one line, no control characters.
fn comment_text(s: &str) -> String {
    s.chars().map(|c| if c.is_control() || matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}') { ' ' } else { c }).collect()
}

/// Whether a proxy can be written safely: its names, its parameters' names (no `:`) and aliases.
fn is_safe_proxy(p: &Proxy) -> bool {
    is_safe_name(&p.name)
        && is_safe_name(&p.meta.name)
        && p.meta.parameters.iter().all(|m| is_safe_name(&m.name) && !m.name.contains(':') && m.aliases.iter().all(|a| is_safe_name(a)))
}

/// The proxies written: the safe ones, the first of each name.
fn exported(module: &Module) -> Vec<&Proxy> {
    let mut out: Vec<&Proxy> = Vec::new();
    for p in module.proxies.iter().filter(|p| is_safe_proxy(p)) {
        if !out.iter().any(|o| o.name.eq_ignore_ascii_case(&p.name)) {
            out.push(p);
        }
    }
    out
}

/// A deterministic GUID from the module's name and the leaf (two FNV-1a hashes, mixed; version 8, RFC 9562).
fn guid(module: &Module, leaf: &str) -> String {
    let hash = |seed: u64| {
        let mut h = seed;
        for b in module.name.bytes().chain([0]).chain(leaf.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    };
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&hash(0xcbf2_9ce4_8422_2325).to_be_bytes());
    b[8..].copy_from_slice(&hash(0x6c62_272e_07bb_0142).to_be_bytes());
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

fn header(out: &mut String, command_line: &str) {
    out.push_str("# Implicit remoting module, written by psgate's Export-PSSession\n");
    out.push_str(&format!("# Invoked with the following command line: {}\n\n", comment_text(command_line)));
}

fn psd1(module: &Module, leaf: &str, command_line: &str, names: &[&str]) -> String {
    let mut out = String::new();
    header(&mut out, command_line);
    out.push_str("@{\n");
    out.push_str(&format!("    GUID = {}\n", quote(&guid(module, leaf))));
    out.push_str(&format!("    Description = {}\n", quote(&format!("Implicit remoting for {}", module.computer_name))));
    out.push_str("    ModuleVersion = '1.0'\n");
    out.push_str(&format!("    RootModule = {}\n", quote(&format!("{leaf}.psm1"))));
    out.push_str(&format!("    FormatsToProcess = {}\n", quoted_list(&[format!("{leaf}.format.ps1xml")])));
    out.push_str(&format!("    FunctionsToExport = {}\n", quoted_list(names)));
    out.push_str("    CmdletsToExport = @()\n    VariablesToExport = @()\n    AliasesToExport = @()\n");
    out.push_str("    PrivateData = @{\n        ImplicitRemoting = $true\n    }\n}\n");
    out
}

/// The `New-PSSession` call that opens the module's session again.
fn new_session(target: &ExportTarget) -> String {
    match target {
        ExportTarget::WinRm { computer_name, port, use_ssl, configuration_name, authentication, user } => {
            let mut s = format!("& $script:NewPSSession -ComputerName {}", quote(computer_name));
            if let Some(port) = port {
                s.push_str(&format!(" -Port {port}"));
            }
            if *use_ssl {
                s.push_str(" -UseSSL");
            }
            if let Some(c) = configuration_name.as_deref().filter(|c| !c.is_empty()) {
                s.push_str(&format!(" -ConfigurationName {}", quote(c)));
            }
            if let Some(a) = authentication.as_deref().filter(|a| !a.is_empty()) {
                s.push_str(&format!(" -Authentication {}", quote(a)));
            }
            if let Some(u) = user.as_deref().filter(|u| !u.is_empty()) {
                s.push_str(&format!(
                    " -Credential ($host.UI.PromptForCredential('PowerShell Credential Request', {}, {}, {}))",
                    quote(&format!("Enter your credentials for {computer_name}.")),
                    quote(u),
                    quote(computer_name)
                ));
            }
            s.push_str(" -SessionOption $options");
            s
        }
        ExportTarget::Ssh { host_name, port, user_name, subsystem } => {
            let mut s = format!("& $script:NewPSSession -HostName {} -UserName {} -Port {port}", quote(host_name), quote(user_name));
            if let Some(sub) = subsystem.as_deref().filter(|s| !s.is_empty()) {
                s.push_str(&format!(" -Subsystem {}", quote(sub)));
            }
            s
        }
    }
}

fn psm1(module: &Module, target: &ExportTarget, command_line: &str, proxies: &[&Proxy]) -> String {
    let mut out = String::new();
    header(&mut out, command_line);
    let rule = format!("\n{}\n\n", "#".repeat(78));
    out.push_str(
        "param(\n    # Optional: the session this module's commands run in (else the module opens its own).\n    [System.Management.Automation.Runspaces.PSSession] $PSSessionOverride,\n    [System.Management.Automation.Remoting.PSSessionOption] $PSSessionOptionOverride\n)\n\n",
    );
    out.push_str("# The cmdlets the module calls, looked up once: functions defined later cannot stand in for them.\n");
    for cmdlet in ["Write-Host", "Get-PSSession", "New-PSSession", "Connect-PSSession", "Remove-PSSession", "Invoke-Command", "New-Object", "Set-Item", "Export-ModuleMember"] {
        out.push_str(&format!(
            "$script:{} = $ExecutionContext.InvokeCommand.GetCommand('{cmdlet}', [System.Management.Automation.CommandTypes]::Cmdlet)\n",
            cmdlet.replace('-', "")
        ));
    }
    out.push_str("$script:MyModule = $MyInvocation.MyCommand.ScriptBlock.Module\n$script:PSSession = $null\n");
    out.push_str(&rule);
    out.push_str(
        "function Write-PSImplicitRemotingMessage {\n    param([Parameter(Mandatory = $true, Position = 0)] [string] $Message)\n    try { & $script:WriteHost -Object $Message -ErrorAction SilentlyContinue } catch { }\n}\n\n",
    );
    out.push_str(
        "function Set-PSImplicitRemotingSession {\n    param(\n        [Parameter(Mandatory = $true, Position = 0)] [AllowNull()] [System.Management.Automation.Runspaces.PSSession] $PSSession,\n        [Parameter(Position = 1)] [bool] $CreatedByModule = $false\n    )\n    if ($null -eq $PSSession) { return }\n    $script:PSSession = $PSSession\n    if ($CreatedByModule -and $null -ne $script:MyModule) {\n        # The module's own session goes with the module.\n        $remove = $script:RemovePSSession\n        $previous = $script:MyModule.OnRemove\n        $script:MyModule.OnRemove = {\n            & $remove -Session $PSSession -ErrorAction SilentlyContinue\n            if ($previous) { & $previous @args }\n        }.GetNewClosure()\n    }\n}\n\n",
    );
    out.push_str("if ($PSSessionOverride) { Set-PSImplicitRemotingSession $PSSessionOverride }\n\n");
    out.push_str("function Get-PSImplicitRemotingSession {\n    param([Parameter(Mandatory = $true, Position = 0)] [string] $CommandName)\n");
    out.push_str("    if ($null -ne $script:PSSession -and $script:PSSession.Runspace.RunspaceStateInfo.State -eq 'Disconnected') {\n");
    out.push_str("        Set-PSImplicitRemotingSession (& $script:ConnectPSSession -Session $script:PSSession -ErrorAction SilentlyContinue)\n    }\n");
    out.push_str("    if ($null -eq $script:PSSession -or $script:PSSession.Runspace.RunspaceStateInfo.State -ne 'Opened') {\n");
    out.push_str("        Write-PSImplicitRemotingMessage ('Creating a new session for implicit remoting of \"{0}\" command...' -f $CommandName)\n");
    if matches!(target, ExportTarget::WinRm { .. }) {
        // (The SSH parameter set has no -SessionOption.)
        out.push_str("        $options = if ($PSSessionOptionOverride) { $PSSessionOptionOverride } else { & $script:NewObject System.Management.Automation.Remoting.PSSessionOption }\n");
    }
    out.push_str(&format!("        Set-PSImplicitRemotingSession -CreatedByModule $true -PSSession ({})\n", new_session(target)));
    for m in &module.modules {
        out.push_str(&format!(
            "        try {{ $null = & $script:InvokeCommand -Session $script:PSSession -ErrorAction SilentlyContinue -ScriptBlock {{ Import-Module -Name {} }} }} catch {{ }}\n",
            quote(m)
        ));
    }
    out.push_str("    }\n");
    out.push_str("    if ($null -eq $script:PSSession -or $script:PSSession.Runspace.RunspaceStateInfo.State -ne 'Opened') {\n");
    out.push_str("        throw 'No session has been associated with this implicit remoting module.'\n    }\n");
    out.push_str("    return [System.Management.Automation.Runspaces.PSSession] $script:PSSession\n}\n\n");
    out.push_str(&format!(
        "function Get-PSImplicitRemotingClientSideParameters {{\n    param($BoundParameters, [bool] $WrapsCmdlet)\n    $client = @{{}}\n    if ($BoundParameters.ContainsKey('AsJob')) {{\n        $client['AsJob'] = $BoundParameters['AsJob']\n        $null = $BoundParameters.Remove('AsJob')\n    }}\n    if ($WrapsCmdlet) {{\n        foreach ($name in {}) {{\n            if ($BoundParameters.ContainsKey($name)) {{ $client[$name] = $BoundParameters[$name] }}\n        }}\n        foreach ($name in {}) {{\n            if ($BoundParameters.ContainsKey($name)) {{\n                $client[$name] = $BoundParameters[$name]\n                $null = $BoundParameters.Remove($name)\n            }}\n        }}\n    }}\n    return $client\n}}\n",
        quoted_list(COMMON_COPIED),
        quoted_list(COMMON_MOVED)
    ));
    out.push_str(&rule);
    for p in &module.proxies {
        if !proxies.iter().any(|e| std::ptr::eq(*e, p)) {
            out.push_str("# A command was skipped: its name, a parameter's or an alias's is not safe, or another proxy has its name.\n\n");
        }
    }
    for p in proxies {
        proxy(&mut out, p);
    }
    out.push_str(&rule);
    let names: Vec<&str> = proxies.iter().map(|p| p.name.as_str()).collect();
    out.push_str(&format!("& $script:ExportModuleMember -Function {}\n", quoted_list(&names)));
    out
}

/// One proxy function: the remote command run through `Invoke-Command` in a steppable pipeline.
fn proxy(out: &mut String, p: &Proxy) {
    let mut params: Vec<String> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for m in p.meta.parameters.iter().filter(|m| !m.name.eq_ignore_ascii_case("AsJob")) {
        if seen.iter().any(|s| s.eq_ignore_ascii_case(&m.name)) {
            continue;
        }
        seen.push(&m.name);
        let mut text = String::from("        ");
        if !m.aliases.is_empty() {
            text.push_str(&format!("[Alias({})] ", m.aliases.iter().map(|a| quote(a)).collect::<Vec<_>>().join(", ")));
        }
        if m.switch {
            text.push_str("[switch] ");
        }
        text.push_str(&format!("${{{}}}", m.name));
        params.push(text);
    }
    params.push("        [switch] ${AsJob}".into());
    let wraps_cmdlet = COMMON_MOVED.iter().chain(&COMMON_COPIED[..3]).all(|c| p.meta.parameters.iter().any(|m| m.name.eq_ignore_ascii_case(c)));
    let name = quote(&p.name);
    out.push_str(&format!("& $script:SetItem -Path {} -Value {{\n    param(\n{}\n    )\n", quote(&format!("function:script:{}", p.name)), params.join(",\n")));
    out.push_str("    begin {\n        try {\n");
    out.push_str("            # The remote command binds positions itself: give it back what was bound by position here.\n");
    out.push_str("            $positionalArguments = & $script:NewObject System.Collections.ArrayList\n");
    out.push_str("            foreach ($parameterName in @($PSBoundParameters.BoundPositionally)) {\n");
    out.push_str("                $null = $positionalArguments.Add($PSBoundParameters[$parameterName])\n");
    out.push_str("                $null = $PSBoundParameters.Remove($parameterName)\n            }\n");
    out.push_str("            $positionalArguments.AddRange($args)\n");
    out.push_str(&format!(
        "            $clientSideParameters = Get-PSImplicitRemotingClientSideParameters $PSBoundParameters ${}\n",
        if wraps_cmdlet { "true" } else { "false" }
    ));
    out.push_str(&format!(
        "            $scriptCmd = {{ & $script:InvokeCommand @clientSideParameters -HideComputerName -Session (Get-PSImplicitRemotingSession {name}) -ArgumentList ({}, $PSBoundParameters, $positionalArguments) -ScriptBlock {{ param($name, $boundParams, $unboundParams) & $name @boundParams @unboundParams }} }}\n",
        quote(&p.meta.name)
    ));
    out.push_str("            $steppablePipeline = $scriptCmd.GetSteppablePipeline($MyInvocation.CommandOrigin)\n");
    out.push_str("            $steppablePipeline.Begin($MyInvocation.ExpectingInput, $ExecutionContext)\n");
    out.push_str("        } catch { throw }\n    }\n");
    out.push_str("    process { try { $steppablePipeline.Process($_) } catch { throw } }\n");
    out.push_str("    end { try { $steppablePipeline.End() } catch { throw } }\n");
    out.push_str(&format!("    <#\n    .ForwardHelpTargetName {}\n", p.meta.name));
    let category = &p.meta.command_type;
    if !category.eq_ignore_ascii_case("Alias") && !category.is_empty() && category.chars().all(|c| c.is_ascii_alphanumeric()) {
        out.push_str(&format!("    .ForwardHelpCategory {category}\n"));
    }
    out.push_str("    .RemoteHelpRunspace PSSession\n    #>\n}\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format_data::{FormatColumn, FormatView, Source};
    use psgate_shared::api::SessionId;
    use psgate_shared::psrp::messages::{CommandMetadata, ParameterMetadata};

    fn param(name: &str, aliases: &[&str], switch: bool) -> ParameterMetadata {
        ParameterMetadata { name: name.into(), type_name: if switch { "System.Management.Automation.SwitchParameter" } else { "System.Object" }.into(), aliases: aliases.iter().map(|a| (*a).into()).collect(), switch }
    }

    fn proxy(local: &str, remote: &str, command_type: &str, params: Vec<ParameterMetadata>) -> Proxy {
        let meta = CommandMetadata { name: remote.into(), namespace: "Demo".into(), help_uri: String::new(), command_type: command_type.into(), resolved_command_name: None, output_type: vec![], parameters: params };
        Proxy { name: local.into(), meta, sets: Vec::new() }
    }

    fn module() -> Module {
        let mut cmdlet = vec![param("Identity", &["Id", "Name"], false), param("Force", &[], true), param("AsJob", &[], true)];
        cmdlet.extend(COMMON_MOVED.iter().chain(COMMON_COPIED).map(|c| param(c, &[], matches!(*c, "Verbose" | "Debug"))));
        Module {
            name: "tmp_ab1cd2ef.gh3".into(),
            session: SessionId(3),
            computer_name: "srv'02".into(),
            modules: vec!["ActiveDirectory".into(), "O'Module".into()],
            prefix: "rem".into(),
            formats: vec![FormatView {
                name: "AD<User>".into(),
                types: vec!["Microsoft.ActiveDirectory.Management.ADUser".into()],
                list: false,
                columns: vec![
                    FormatColumn { label: "Name".into(), labelled: false, source: Source::Property("Name".into()), width: 20, alignment: String::new() },
                    FormatColumn { label: "On?".into(), labelled: true, source: Source::Property("Enabled".into()), width: 0, alignment: "Right".into() },
                    FormatColumn { label: "Size".into(), labelled: true, source: Source::Script("\"{0:N2}\" -f ($_.Size / 1GB) -lt 3 -and 'a' -ne \"b\"".into()), width: 8, alignment: String::new() },
                ],
            }],
            proxies: vec![
                proxy("Get-remADUser", "Get-ADUser", "Cmdlet", cmdlet),
                proxy("remgadu", "Get-ADUser", "Alias", vec![]),
                proxy("Get-remIt'; Remove-Item", "Get-It'; Remove-Item", "Function", vec![]),
                proxy("Get-remX", "Get-X", "Function", vec![param("a b", &[], false)]),
            ],
        }
    }

    fn winrm(user: Option<&str>) -> ExportTarget {
        ExportTarget::WinRm { computer_name: "srv'02".into(), port: Some(5986), use_ssl: true, configuration_name: Some("JEA'Maint".into()), authentication: Some("Negotiate".into()), user: user.map(Into::into) }
    }

    fn files(target: &ExportTarget) -> Vec<(String, String)> {
        module_files(&module(), "AD'Tools", target, "Export-PSSession $s -OutputModule AD'Tools #> <# \n Remove-Item C:\\")
    }

    fn file<'a>(files: &'a [(String, String)], suffix: &str) -> &'a str {
        files.iter().find(|(n, _)| n.ends_with(suffix)).map(|(_, t)| t.as_str()).unwrap_or_default()
    }

    /// A value of a PowerShell data file (the subset a manifest uses).
    #[derive(Debug, PartialEq)]
    enum V {
        Str(String),
        List(Vec<V>),
        Map(Vec<(String, V)>),
        Bool(bool),
    }

    struct Data<'a> {
        s: &'a [char],
        i: usize,
    }

    impl Data<'_> {
        /// Skips blanks, comments and (where a list or hashtable allows) newlines and separators.
        fn skip(&mut self, separators: &[char]) {
            while let Some(&c) = self.s.get(self.i) {
                if c == '#' {
                    while self.s.get(self.i).is_some_and(|&c| c != '\n') {
                        self.i += 1;
                    }
                } else if c == ' ' || c == '\t' || c == '\r' || c == '\n' || separators.contains(&c) {
                    self.i += 1;
                } else {
                    break;
                }
            }
        }

        fn eat(&mut self, word: &str) -> bool {
            let w: Vec<char> = word.chars().collect();
            let ok = self.s.get(self.i..self.i + w.len()).is_some_and(|s| s.iter().zip(&w).all(|(a, b)| a.eq_ignore_ascii_case(b)));
            if ok {
                self.i += w.len();
            }
            ok
        }

        fn value(&mut self) -> Result<V, String> {
            self.skip(&[]);
            if self.eat("@(") {
                let mut items = Vec::new();
                loop {
                    self.skip(&[',']);
                    if self.eat(")") {
                        return Ok(V::List(items));
                    }
                    items.push(self.value()?);
                }
            }
            if self.eat("@{") {
                let mut entries = Vec::new();
                loop {
                    self.skip(&[';']);
                    if self.eat("}") {
                        return Ok(V::Map(entries));
                    }
                    let start = self.i;
                    while self.s.get(self.i).is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_') {
                        self.i += 1;
                    }
                    let key: String = self.s[start..self.i].iter().collect();
                    self.skip(&[]);
                    if key.is_empty() || !self.eat("=") {
                        return Err(format!("expected `Key =` at {}", self.i));
                    }
                    entries.push((key, self.value()?));
                }
            }
            if self.eat("$true") {
                return Ok(V::Bool(true));
            }
            if self.eat("$false") {
                return Ok(V::Bool(false));
            }
            if self.eat("'") {
                let mut out = String::new();
                loop {
                    match self.s.get(self.i) {
                        None => return Err("unterminated string".into()),
                        Some('\'') if self.s.get(self.i + 1) == Some(&'\'') => {
                            out.push('\'');
                            self.i += 2;
                        }
                        Some('\'') => {
                            self.i += 1;
                            return Ok(V::Str(out));
                        }
                        Some(&c) => {
                            out.push(c);
                            self.i += 1;
                        }
                    }
                }
            }
            Err(format!("not allowed in a data file at {}: {:?}", self.i, self.s.get(self.i)))
        }
    }

    /// Reads a manifest as Import-Module would: one hashtable literal of allowed keys and literal values.
    fn manifest(text: &str) -> Result<Vec<(String, V)>, String> {
        let chars: Vec<char> = text.chars().collect();
        let mut d = Data { s: &chars, i: 0 };
        let V::Map(entries) = d.value()? else { return Err("not a hashtable".into()) };
        d.skip(&[]);
        if d.i != chars.len() {
            return Err(format!("text after the hashtable at {}", d.i));
        }
        for (k, _) in &entries {
            if !MANIFEST_KEYS.iter().any(|m| m.eq_ignore_ascii_case(k)) {
                return Err(format!("not a manifest key: {k}"));
            }
        }
        Ok(entries)
    }

    fn get<'a>(entries: &'a [(String, V)], key: &str) -> Option<&'a V> {
        entries.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v)
    }

    fn strings(v: Option<&V>) -> Vec<String> {
        match v {
            Some(V::List(items)) => items.iter().filter_map(|i| if let V::Str(s) = i { Some(s.clone()) } else { None }).collect(),
            Some(V::Str(s)) => vec![s.clone()],
            _ => vec![],
        }
    }

    /// Brackets balance outside strings and comments (PowerShell's quoting: `''`, backtick, `<# #>`).
    fn balanced(text: &str) -> Result<(), String> {
        let c: Vec<char> = text.chars().collect();
        let mut stack = Vec::new();
        let mut i = 0;
        while i < c.len() {
            match c[i] {
                '\'' => {
                    i += 1;
                    while i < c.len() && !(c[i] == '\'' && c.get(i + 1) != Some(&'\'')) {
                        i += if c[i] == '\'' { 2 } else { 1 };
                    }
                }
                '"' => {
                    i += 1;
                    while i < c.len() && c[i] != '"' {
                        i += if c[i] == '`' { 2 } else { 1 };
                    }
                }
                '<' if c.get(i + 1) == Some(&'#') => {
                    while i + 1 < c.len() && !(c[i] == '#' && c[i + 1] == '>') {
                        i += 1;
                    }
                    i += 1;
                }
                '#' => {
                    while i < c.len() && c[i] != '\n' {
                        i += 1;
                    }
                }
                '`' => i += 1,
                open @ ('{' | '(' | '[') => stack.push(open),
                close @ ('}' | ')' | ']') => {
                    let want = match close {
                        '}' => '{',
                        ')' => '(',
                        _ => '[',
                    };
                    if stack.pop() != Some(want) {
                        return Err(format!("unbalanced {close} at {i}"));
                    }
                }
                _ => {}
            }
            i += 1;
        }
        if i > c.len() + 1 || !stack.is_empty() { Err(format!("unclosed: {stack:?}")) } else { Ok(()) }
    }

    #[test]
    fn three_files() {
        let f = files(&winrm(None));
        let names: Vec<&str> = f.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["AD'Tools.psm1", "AD'Tools.psd1", "AD'Tools.format.ps1xml"]);
        // The format file: PowerShell's schema, well-formed, the view for the type and its deserialized name.
        let xml = file(&f, ".format.ps1xml");
        let mut reader = quick_xml::Reader::from_str(xml);
        let (mut path, mut seen, mut text) = (Vec::new(), Vec::new(), String::new());
        loop {
            match reader.read_event().unwrap_or_else(|e| panic!("{e}\n{xml}")) {
                quick_xml::events::Event::Start(e) => {
                    path.push(e.name().into_inner().to_owned());
                    text.clear();
                }
                quick_xml::events::Event::End(_) => {
                    seen.push((path.join("/"), std::mem::take(&mut text).trim().to_owned()));
                    path.pop();
                }
                quick_xml::events::Event::Text(t) => text.push_str(&t.into_inner()),
                quick_xml::events::Event::GeneralRef(r) => {
                    let entity = format!("&{};", r.into_inner());
                    text.push_str(&quick_xml::escape::unescape(&entity).unwrap_or_else(|e| panic!("{entity}: {e}")));
                }
                quick_xml::events::Event::Eof => break,
                _ => {}
            }
        }
        let at = |p: &str| -> Vec<&str> { seen.iter().filter(|(q, t)| q.ends_with(p) && !t.is_empty()).map(|(_, t)| t.as_str()).collect() };
        assert_eq!(at("View/Name"), ["AD<User>"]);
        assert_eq!(at("ViewSelectedBy/TypeName"), ["Microsoft.ActiveDirectory.Management.ADUser", "Deserialized.Microsoft.ActiveDirectory.Management.ADUser"]);
        assert_eq!(at("TableColumnHeader/Label"), ["On?", "Size"]);
        assert_eq!(at("TableColumnHeader/Width"), ["20", "8"]);
        assert_eq!(at("TableColumnHeader/Alignment"), ["Right"]);
        assert_eq!(at("TableColumnItem/PropertyName"), ["Name", "Enabled"]);
        assert_eq!(at("TableColumnItem/ScriptBlock"), ["\"{0:N2}\" -f ($_.Size / 1GB) -lt 3 -and 'a' -ne \"b\""]);
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Configuration>\n  <ViewDefinitions>\n"), "{xml}");
    }

    #[test]
    fn manifest_is_a_valid_data_file() {
        let f = files(&winrm(None));
        let m = manifest(file(&f, ".psd1")).unwrap_or_else(|e| panic!("{e}\n{}", file(&f, ".psd1")));
        let V::Str(version) = get(&m, "ModuleVersion").unwrap_or(&V::Bool(false)) else { panic!("ModuleVersion") };
        let parts: Vec<_> = version.split('.').collect();
        assert!((2..=4).contains(&parts.len()) && parts.iter().all(|p| p.parse::<u32>().is_ok()), "{version}");
        let V::Str(g) = get(&m, "GUID").unwrap_or(&V::Bool(false)) else { panic!("GUID") };
        let groups: Vec<usize> = g.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert!(g.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
        assert_eq!(strings(get(&m, "RootModule")), ["AD'Tools.psm1"]);
        assert_eq!(strings(get(&m, "FormatsToProcess")), ["AD'Tools.format.ps1xml"]);
        assert_eq!(strings(get(&m, "FunctionsToExport")), ["Get-remADUser", "remgadu"]);
        assert_eq!(strings(get(&m, "Description")), ["Implicit remoting for srv'02"]);
        assert_eq!(get(&m, "PrivateData"), Some(&V::Map(vec![("ImplicitRemoting".into(), V::Bool(true))])));
        // Deterministic, and different for another leaf.
        assert_eq!(files(&winrm(None)), f);
        assert_ne!(guid(&module(), "a"), guid(&module(), "b"));
        // The checker refuses what a manifest may not hold.
        assert!(manifest("@{ Bogus = 'x' }").is_err());
        assert!(manifest("@{ GUID = \"$(evil)\" }").is_err());
        assert!(manifest("@{ GUID = 'x' } ; Remove-Item x").is_err());
    }

    #[test]
    fn module_script_is_well_formed() {
        let f = files(&winrm(None));
        let psm1 = file(&f, ".psm1");
        balanced(psm1).unwrap_or_else(|e| panic!("{e}\n{psm1}"));
        assert!(balanced("{ '}' ").is_err() && balanced("{ \"`\"\" } # }").is_ok());
        assert!(psm1.contains("[System.Management.Automation.Runspaces.PSSession] $PSSessionOverride"));
        for helper in ["function Write-PSImplicitRemotingMessage", "function Get-PSImplicitRemotingSession", "function Get-PSImplicitRemotingClientSideParameters"] {
            assert!(psm1.contains(helper), "{helper}");
        }
        assert!(psm1.contains("'Creating a new session for implicit remoting of \"{0}\" command...' -f $CommandName"));
        // One function per safe proxy; the unsafe ones are skipped with a comment.
        assert_eq!(psm1.matches("& $script:SetItem -Path 'function:script:").count(), 2);
        assert!(psm1.contains("'function:script:Get-remADUser'") && psm1.contains("'function:script:remgadu'"));
        assert!(!psm1.contains("Get-remIt") && !psm1.contains("Get-remX") && !psm1.contains("${a b}"));
        assert_eq!(psm1.matches("# A command was skipped").count(), 2);
        let export = psm1.lines().find(|l| l.starts_with("& $script:ExportModuleMember")).unwrap_or_default();
        assert_eq!(export, "& $script:ExportModuleMember -Function @('Get-remADUser', 'remgadu')");
        // The proxy: its parameters, the remote name, streaming, client-side common parameters, help.
        assert!(psm1.contains("[Alias('Id', 'Name')] ${Identity},\n        [switch] ${Force},"));
        assert_eq!(psm1.matches("${AsJob}").count(), 2);
        assert!(psm1.contains("-HideComputerName -Session (Get-PSImplicitRemotingSession 'Get-remADUser') -ArgumentList ('Get-ADUser', $PSBoundParameters, $positionalArguments) -ScriptBlock { param($name, $boundParams, $unboundParams) & $name @boundParams @unboundParams }"));
        assert!(psm1.contains("Get-PSImplicitRemotingClientSideParameters $PSBoundParameters $true") && psm1.contains("Get-PSImplicitRemotingClientSideParameters $PSBoundParameters $false"));
        assert_eq!(psm1.matches("$steppablePipeline.Process($_)").count(), 2);
        assert!(psm1.contains(".ForwardHelpTargetName Get-ADUser\n    .ForwardHelpCategory Cmdlet\n    .RemoteHelpRunspace PSSession"));
        // The remote modules are imported again in a new session.
        assert!(psm1.contains("-ErrorAction SilentlyContinue -ScriptBlock { Import-Module -Name 'ActiveDirectory' }"));
        // The command line stays in its comment.
        assert!(psm1.lines().any(|l| l.starts_with("# Invoked with the following command line: Export-PSSession $s -OutputModule AD'Tools #> <#   Remove-Item C:\\")));
        assert!(!psm1.to_lowercase().contains("password") && !psm1.contains("AsPlainText"));
    }

    #[test]
    fn quotes_are_doubled() {
        assert_eq!(quote("it's"), "'it''s'");
        assert_eq!(quote("a\u{2019}b"), "'a\u{2019}\u{2019}b'");
        let f = files(&winrm(None));
        let psm1 = file(&f, ".psm1");
        assert!(psm1.contains("Import-Module -Name 'O''Module'"));
        assert!(psm1.contains("-ComputerName 'srv''02' -Port 5986 -UseSSL -ConfigurationName 'JEA''Maint' -Authentication 'Negotiate'"));
        assert!(file(&f, ".psd1").contains("RootModule = 'AD''Tools.psm1'"));
        balanced(file(&f, ".psd1")).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn ssh_targets_use_host_name() {
        let target = ExportTarget::Ssh { host_name: "srv02.corp".into(), port: 2222, user_name: "CORP\\admin".into(), subsystem: Some("pwsh".into()) };
        let f = files(&target);
        let psm1 = file(&f, ".psm1");
        assert!(psm1.contains("(& $script:NewPSSession -HostName 'srv02.corp' -UserName 'CORP\\admin' -Port 2222 -Subsystem 'pwsh')"), "{psm1}");
        assert!(!psm1.contains("-ComputerName") && !psm1.contains("-SessionOption") && !psm1.contains("PromptForCredential"));
        balanced(psm1).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn winrm_users_are_prompted_for_a_password() {
        let f = files(&winrm(Some("CORP\\o'neil")));
        let psm1 = file(&f, ".psm1");
        assert!(psm1.contains(
            "-Credential ($host.UI.PromptForCredential('PowerShell Credential Request', 'Enter your credentials for srv''02.', 'CORP\\o''neil', 'srv''02'))"
        ));
        assert!(!psm1.to_lowercase().contains("password") && !psm1.contains("SecureString"));
        assert!(!files(&winrm(None)).iter().any(|(_, t)| t.contains("PromptForCredential")));
    }
}
