//! WinRM's configuration as PowerShell's WSMan provider reads and changes it (`Get-Item
//! WSMan:\SRV02\Shell\MaxShellsPerUser`, `Set-Item … 10`): a WS-Transfer Get of the resource, the one setting edited
//! in the resource's own XML, and a WS-Transfer Put of the whole resource back.
//!
//! The resources ([`ConfigResource`]) are the ones `winrm get` names: `winrm/config` (`cfg:Config`, laid out as in
//! test_wsman_update_envelope_size_*.yml), `…/config/service` (`cfg:Service`) and `…/config/winrs` (`cfg:Winrs`),
//! each element in the namespace of its own resource URI, and `…/config/plugin` with the selector `Name=` (a
//! session configuration's `PlugInConfiguration`, MS-WSMV 3.1.4.1.34.3, its quotas in the attributes of `Quotas`).
//!
//! - **Verbatim.** An answer's resource is kept as the text the server sent ([`ConfigDocument::xml`]), cut out of
//!   the envelope with the namespace declarations it relies on; [`edit`] replaces the text of one leaf element, or
//!   the value of one attribute, and keeps every other byte (namespaces, order, `Source="GPO"`, `xml:lang`, the
//!   other values), so that the Put carries exactly what the server gave, one setting changed.
//! - **Flat.** A resource's settings are [`ConfigItem`]s with `/`-separated paths relative to the resource:
//!   `MaxEnvelopeSizekb`, `Service/Auth/Basic` and `Winrs/MaxShellsPerUser` in `winrm/config`, `MaxShellsPerUser`
//!   in `…/winrs`, `Enabled` and `Quotas/MaxShellsPerUser` in a plugin. The provider's own layout
//!   (`WSMan:\SRV02\Shell`) is the caller's to map.
//! - **Refusals are faults.** The target checks a Put (administrators only, Group Policy, read-only settings,
//!   ranges); its fault comes back as [`super::WsmanError::Fault`] with its code, and [`super::FaultKind`] names it.
//!
//! Pure code: requests are built by [`super::Request::get_resource`] and [`super::Request::put_resource`], answers read by
//! [`parse_config_response`]; `session::winrm::config_get` and `config_set` send them.

use std::fmt;
use std::ops::Range;

use super::envelope::{CONFIG_URI, ResponseEnvelope, Selector, read_response};
use super::xml::{Document, Element, push_attr, push_text, scan_start_tag};
use super::{Response, WsmanError, ns};

/// `winrm/config/service`: the service's settings (`MaxConcurrentOperationsPerUser`, `Auth/Basic`, …).
pub const SERVICE_URI: &str = "http://schemas.microsoft.com/wbem/wsman/1/config/service";
/// `winrm/config/winrs`: the remote shells' settings (`MaxShellsPerUser`, `IdleTimeout`, …).
pub const WINRS_URI: &str = "http://schemas.microsoft.com/wbem/wsman/1/config/winrs";
/// `winrm/config/plugin`: one plugin (a PowerShell session configuration) with the selector `Name`.
pub const PLUGIN_URI: &str = "http://schemas.microsoft.com/wbem/wsman/1/config/plugin";
/// The namespace of a plugin's `PlugInConfiguration` (its default namespace in Windows' answers).
pub const PLUGIN_NS: &str = "http://schemas.microsoft.com/wbem/wsman/1/config/PluginConfiguration";

/// A configuration resource of a WinRM target, as `winrm get` and PowerShell's WSMan provider address them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ConfigResource {
    /// `winrm/config`: everything (`MaxEnvelopeSizekb`, `Client/…`, `Service/…`, `Winrs/…`); the WSMan drive's
    /// computer node.
    Config,
    /// `winrm/config/service` (the drive's `Service`).
    Service,
    /// `winrm/config/winrs` (the drive's `Shell`).
    Winrs,
    /// `winrm/config/plugin?Name=…`: the plugin of a session configuration (`Microsoft.PowerShell`, a JEA
    /// endpoint), the drive's `Plugin\<name>`.
    Plugin(String),
}

impl ConfigResource {
    /// The resource URI the requests name.
    pub fn resource_uri(&self) -> &'static str {
        match self {
            ConfigResource::Config => CONFIG_URI,
            ConfigResource::Service => SERVICE_URI,
            ConfigResource::Winrs => WINRS_URI,
            ConfigResource::Plugin(_) => PLUGIN_URI,
        }
    }

    /// The selectors the requests carry: `Name` for a plugin, none otherwise.
    pub fn selectors(&self) -> Vec<Selector> {
        match self {
            ConfigResource::Plugin(name) => vec![Selector::new("Name", name.as_str())],
            _ => Vec::new(),
        }
    }
}

/// As `winrm get` takes it: `winrm/config/winrs`, `winrm/config/plugin?Name=Microsoft.PowerShell`.
impl fmt::Display for ConfigResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigResource::Config => f.write_str("winrm/config"),
            ConfigResource::Service => f.write_str("winrm/config/service"),
            ConfigResource::Winrs => f.write_str("winrm/config/winrs"),
            ConfigResource::Plugin(name) => write!(f, "winrm/config/plugin?Name={name}"),
        }
    }
}

/// Where a setting's value is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ItemKind {
    /// The text of a leaf element: `<cfg:MaxShellsPerUser>30</cfg:MaxShellsPerUser>` (`winrm/config`, `…/service`,
    /// `…/winrs`).
    Element,
    /// An attribute: `Enabled="true"` on a plugin's `PlugInConfiguration`, `MaxShellsPerUser="25"` on its `Quotas`.
    Attribute,
}

/// One setting of a configuration resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigItem {
    /// Relative to the resource, containers joined with `/`: `Service/Auth/Basic` in `winrm/config`,
    /// `MaxShellsPerUser` in `…/winrs`, `Quotas/MaxShellsPerUser` in a plugin. What [`edit`] takes.
    pub path: String,
    /// The value, its XML escapes resolved and surrounding whitespace trimmed.
    pub value: String,
    /// The element's `Source` attribute: `GPO` when Group Policy sets the setting (the target then refuses to change
    /// it), absent when the local configuration does.
    pub source: Option<String>,
    pub kind: ItemKind,
}

/// A configuration resource as the target answered it: its element's XML, verbatim, and its settings in document
/// order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigDocument {
    /// The resource's element (`<cfg:Winrs xmlns:cfg="…">…</cfg:Winrs>`) exactly as sent, with any namespace
    /// declaration it relied on from the envelope added to its start tag: what [`edit`] changes and a Put sends
    /// back.
    pub xml: String,
    pub items: Vec<ConfigItem>,
}

impl ConfigDocument {
    /// Reads the settings of a resource's XML (an answer's, or one [`edit`] made).
    pub fn parse(xml: String) -> Result<ConfigDocument, WsmanError> {
        let items = items(&xml)?;
        Ok(ConfigDocument { xml, items })
    }

    /// The setting at `path`, found as [`edit`] finds it.
    pub fn item(&self, path: &str) -> Option<&ConfigItem> {
        find(&self.items, path, |i| &i.path)
    }
}

/// Reads a GetResponse or PutResponse of a configuration resource: the envelope (to check with
/// [`ResponseEnvelope::answers`]) and the resource, `None` when the body is empty (WS-Transfer lets a Put's answer be
/// empty when the resource was taken as sent; Windows sends it back). A fault is [`WsmanError::Fault`], its code
/// kept.
pub fn parse_config_response(bytes: &[u8]) -> Result<(ResponseEnvelope, Option<ConfigDocument>), WsmanError> {
    let doc = Document::parse(bytes)?;
    let envelope = read_response(&doc)?;
    if !matches!(envelope.body, Response::Get(_) | Response::Put(_)) {
        return Err(WsmanError::Unexpected {
            expected: "GetResponse or PutResponse",
            found: envelope.body.action().to_string(),
        });
    }
    let source = std::str::from_utf8(bytes).map_err(|e| WsmanError::NotUtf8 { position: e.valid_up_to() })?;
    let resource = doc.root().child(ns::S, "Body").and_then(|b| b.children().next());
    let document = match resource {
        None => None,
        Some(element) => {
            let xml = element.standalone_xml(source).ok_or(WsmanError::Missing("the text of the resource"))?;
            Some(ConfigDocument::parse(xml)?)
        }
    };
    Ok((envelope, document))
}

/// The settings of a configuration resource's XML, in document order: the leaf elements of `cfg:Config`,
/// `cfg:Service` and `cfg:Winrs` (containers such as `Auth` make the path), or a plugin's root attributes and its
/// `Quotas` attributes (`xml:lang` and other namespaced attributes are not settings).
pub fn items(resource_xml: &str) -> Result<Vec<ConfigItem>, WsmanError> {
    Ok(locate(resource_xml)?.into_iter().map(|l| l.item).collect())
}

/// `resource_xml` with the setting at `path` set to `value` (escaped as XML requires), every other byte kept: ready
/// to Put back. `path` is a [`ConfigItem::path`], matched exactly or else without regard to ASCII case (as the
/// WSMan provider's paths are); a container, or a path the resource does not have, is
/// [`WsmanError::UnknownSetting`]. A value XML cannot carry (a control character) is [`WsmanError::Invalid`].
pub fn edit(resource_xml: &str, path: &str, value: &str) -> Result<String, WsmanError> {
    if value.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) {
        return Err(WsmanError::Invalid {
            what: "configuration value (a control character)",
            value: value.escape_debug().to_string(),
        });
    }
    let located = locate(resource_xml)?;
    let Some(setting) = find(&located, path, |l| &l.item.path) else {
        let resource = Document::parse(resource_xml.as_bytes())?.root().name().to_owned();
        return Err(WsmanError::UnknownSetting { path: path.to_owned(), resource });
    };
    let mut out = String::with_capacity(resource_xml.len() + value.len() + 16);
    let replaced = match &setting.target {
        Target::Text(range) => {
            push_text(&mut out, value);
            range.clone()
        }
        Target::EmptyTag(range) => {
            // `<cfg:TrustedHosts/>` becomes `<cfg:TrustedHosts>value</cfg:TrustedHosts>`.
            let tag = &resource_xml[range.clone()];
            let name = scan_start_tag(tag).map(|t| tag[t.name].to_owned()).ok_or(WsmanError::Missing("a start tag"))?;
            out.push_str(tag.trim_end_matches('>').trim_end_matches('/'));
            out.push('>');
            push_text(&mut out, value);
            out.push_str("</");
            out.push_str(&name);
            out.push('>');
            range.clone()
        }
        Target::Attribute { value: range, quote } => {
            let mut escaped = String::with_capacity(value.len());
            push_attr(&mut escaped, value);
            out.push_str(&if *quote == '\'' { escaped.replace('\'', "&apos;") } else { escaped });
            range.clone()
        }
    };
    out.insert_str(0, &resource_xml[..replaced.start]);
    out.push_str(&resource_xml[replaced.end..]);
    Ok(out)
}

/// A setting and where its value lies in the resource's text.
struct Located {
    item: ConfigItem,
    target: Target,
}

enum Target {
    /// The text between a leaf element's tags.
    Text(Range<usize>),
    /// A leaf written as an empty-element tag (`<a/>`): its whole tag.
    EmptyTag(Range<usize>),
    /// An attribute's value between its quotes.
    Attribute { value: Range<usize>, quote: char },
}

fn locate(source: &str) -> Result<Vec<Located>, WsmanError> {
    let doc = Document::parse(source.as_bytes())?;
    let root = doc.root();
    let mut out = Vec::new();
    if root.is(PLUGIN_NS, "PlugInConfiguration") {
        attributes(source, root, "", &mut out)?;
        if let Some(quotas) = root.child(PLUGIN_NS, "Quotas") {
            attributes(source, quotas, "Quotas/", &mut out)?;
        }
        return Ok(out);
    }
    // Depth-first, in document order; the XML reader bounds the depth.
    let mut stack: Vec<(Element<'_>, String)> = root.children().map(|c| (c, String::new())).collect();
    stack.reverse();
    while let Some((e, prefix)) = stack.pop() {
        let path = format!("{prefix}{}", e.name());
        if e.children().next().is_some() {
            let inner = format!("{path}/");
            let before = stack.len();
            stack.extend(e.children().map(|c| (c, inner.clone())));
            stack[before..].reverse();
            continue;
        }
        let target = match e.content_range() {
            Some(range) => Target::Text(range),
            None => Target::EmptyTag(e.start_tag_range()),
        };
        let item = ConfigItem {
            path,
            value: e.text().to_owned(),
            source: e.attr("Source").map(str::to_owned),
            kind: ItemKind::Element,
        };
        out.push(Located { item, target });
    }
    Ok(out)
}

/// The unprefixed attributes of `e` as settings `{prefix}{name}`.
fn attributes(source: &str, e: Element<'_>, prefix: &str, out: &mut Vec<Located>) -> Result<(), WsmanError> {
    let tag_range = e.start_tag_range();
    let tag = source.get(tag_range.clone()).ok_or(WsmanError::Missing("a start tag"))?;
    let scanned = scan_start_tag(tag).ok_or(WsmanError::Missing("a start tag"))?;
    for raw in scanned.attributes {
        let name = &tag[raw.name.clone()];
        if name.contains(':') || name == "xmlns" {
            continue;
        }
        let Some(value) = e.attr(name) else { continue };
        let start = tag_range.start;
        out.push(Located {
            item: ConfigItem {
                path: format!("{prefix}{name}"),
                value: value.trim().to_owned(),
                source: None,
                kind: ItemKind::Attribute,
            },
            target: Target::Attribute { value: start + raw.value.start..start + raw.value.end, quote: raw.quote },
        });
    }
    Ok(())
}

/// The entry whose path is `path`, else the one that matches it without regard to ASCII case.
fn find<'a, T>(entries: &'a [T], path: &str, path_of: impl Fn(&T) -> &String) -> Option<&'a T> {
    entries
        .iter()
        .find(|e| path_of(e) == path)
        .or_else(|| entries.iter().find(|e| path_of(e).eq_ignore_ascii_case(path)))
}

/// The recordings' reader that the relay's replay test uses (`relay/tests/wsman_replay.rs`), for the recorded
/// `winrm/config` answers.
#[cfg(test)]
#[path = "../../../shared/tests/common/mod.rs"]
mod common;

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::common;
    use super::*;
    use crate::wsman::{Action, Body, ClientConfig, FaultKind, GetResponse, Request};

    const ANONYMOUS: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous";
    const GET_RESPONSE: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/GetResponse";
    const PUT_RESPONSE: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/PutResponse";

    /// What the WS-Management test peer (`tests/peers/winrm_host.py`, started with `--gpo-setting
    /// Winrs/MaxConcurrentUsers=3`) answered a Get of `…/config/winrs`, `…/service` and
    /// `…/plugin?Name=Microsoft.PowerShell`, and a Put of `…/winrs` (MaxShellsPerUser 7) and of the plugin (its
    /// Quotas' MaxShellsPerUser 25): the bodies as captured.
    const PEER_WINRS: &str = "<cfg:Winrs xmlns:cfg=\"http://schemas.microsoft.com/wbem/wsman/1/config/winrs\">\
        <cfg:AllowRemoteShellAccess>true</cfg:AllowRemoteShellAccess><cfg:IdleTimeout>7200000</cfg:IdleTimeout>\
        <cfg:MaxConcurrentUsers Source=\"GPO\">3</cfg:MaxConcurrentUsers><cfg:MaxShellRunTime>2147483647\
        </cfg:MaxShellRunTime><cfg:MaxProcessesPerShell>2147483647</cfg:MaxProcessesPerShell><cfg:MaxMemoryPerShellMB>\
        2147483647</cfg:MaxMemoryPerShellMB><cfg:MaxShellsPerUser>2147483647</cfg:MaxShellsPerUser></cfg:Winrs>";
    const PEER_SERVICE: &str = "<cfg:Service xmlns:cfg=\"http://schemas.microsoft.com/wbem/wsman/1/config/service\">\
        <cfg:RootSDDL>O:NSG:BAD:P(A;;GA;;;BA)(A;;GR;;;IU)S:P(AU;FA;GA;;;WD)(AU;SA;GXGW;;;WD)</cfg:RootSDDL>\
        <cfg:MaxConcurrentOperations>4294967295</cfg:MaxConcurrentOperations><cfg:MaxConcurrentOperationsPerUser>1500\
        </cfg:MaxConcurrentOperationsPerUser><cfg:EnumerationTimeoutms>240000</cfg:EnumerationTimeoutms>\
        <cfg:MaxConnections>300</cfg:MaxConnections><cfg:MaxPacketRetrievalTimeSeconds>120\
        </cfg:MaxPacketRetrievalTimeSeconds><cfg:AllowUnencrypted>true</cfg:AllowUnencrypted><cfg:Auth><cfg:Basic>true\
        </cfg:Basic><cfg:Kerberos>false</cfg:Kerberos><cfg:Negotiate>false</cfg:Negotiate><cfg:Certificate>false\
        </cfg:Certificate><cfg:CredSSP>false</cfg:CredSSP><cfg:CbtHardeningLevel>Relaxed</cfg:CbtHardeningLevel>\
        </cfg:Auth><cfg:DefaultPorts><cfg:HTTP>5985</cfg:HTTP><cfg:HTTPS>5986</cfg:HTTPS></cfg:DefaultPorts>\
        <cfg:IPv4Filter>*</cfg:IPv4Filter><cfg:IPv6Filter>*</cfg:IPv6Filter><cfg:EnableCompatibilityHttpListener>false\
        </cfg:EnableCompatibilityHttpListener><cfg:EnableCompatibilityHttpsListener>false\
        </cfg:EnableCompatibilityHttpsListener><cfg:CertificateThumbprint></cfg:CertificateThumbprint>\
        <cfg:AllowRemoteAccess>true</cfg:AllowRemoteAccess></cfg:Service>";
    const PEER_PLUGIN: &str = "<PlugInConfiguration \
        xmlns=\"http://schemas.microsoft.com/wbem/wsman/1/config/PluginConfiguration\" Name=\"Microsoft.PowerShell\" \
        Filename=\"%windir%\\system32\\pwrshplugin.dll\" SDKVersion=\"2\" XmlRenderingType=\"text\" Enabled=\"true\" \
        Architecture=\"64\" UseSharedProcess=\"false\" ProcessIdleTimeoutSec=\"0\" RunAsUser=\"\" RunAsPassword=\"\" \
        AutoRestart=\"false\" OutputBufferingMode=\"Block\" xml:lang=\"en-US\"><InitializationParameters><Param \
        Name=\"PSVersion\" Value=\"5.1\"/></InitializationParameters><Resources><Resource \
        ResourceUri=\"http://schemas.microsoft.com/powershell/Microsoft.PowerShell\" SupportsOptions=\"true\" \
        ExactMatch=\"true\"><Security Uri=\"http://schemas.microsoft.com/powershell/Microsoft.PowerShell\" \
        ExactMatch=\"true\" Sddl=\"O:NSG:BAD:P(A;;GA;;;BA)(A;;GA;;;IU)(A;;GA;;;RM)S:P(AU;FA;GA;;;WD)(AU;SA;GXGW;;;WD)\"/>\
        <Capability Type=\"Shell\"/></Resource></Resources><Quotas IdleTimeoutms=\"7200000\" \
        MaxConcurrentUsers=\"2147483647\" MaxProcessesPerShell=\"2147483647\" MaxMemoryPerShellMB=\"2147483647\" \
        MaxShellsPerUser=\"2147483647\" MaxConcurrentCommandsPerShell=\"2147483647\" MaxShells=\"2147483647\" \
        MaxIdleTimeoutms=\"2147483647\"/></PlugInConfiguration>";

    /// A response as the peer lays it out (its `envelope()`, Windows' layout).
    fn peer_envelope(action: &str, body: &str) -> String {
        format!(
            "<s:Envelope xml:lang=\"en-US\" xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\" \
             xmlns:a=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\" \
             xmlns:x=\"http://schemas.xmlsoap.org/ws/2004/09/transfer\" \
             xmlns:w=\"http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd\" \
             xmlns:p=\"http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd\"><s:Header><a:Action>{action}</a:Action>\
             <a:MessageID>uuid:09F98FEE-B5F4-49B1-87B3-3571B5FA2EA2</a:MessageID><a:To>{ANONYMOUS}</a:To>\
             <a:RelatesTo>uuid:D4909985-CE1E-48D4-9AEC-DAB0C34BD421</a:RelatesTo></s:Header><s:Body>{body}</s:Body>\
             </s:Envelope>"
        )
    }

    /// A fault as the peer lays it out (its `WSManFault.body()`, Windows' layout), the message the reason.
    fn peer_fault(value: &str, subcode: &str, code: u32, text: &str, detail: &str) -> String {
        let detail = if detail.is_empty() {
            String::new()
        } else {
            format!("<w:FaultDetail>http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/{detail}</w:FaultDetail>")
        };
        format!(
            "<s:Envelope xml:lang=\"en-US\" xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\" \
             xmlns:a=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\" \
             xmlns:x=\"http://schemas.xmlsoap.org/ws/2004/09/transfer\" \
             xmlns:e=\"http://schemas.xmlsoap.org/ws/2004/08/eventing\" \
             xmlns:n=\"http://schemas.xmlsoap.org/ws/2004/09/enumeration\" \
             xmlns:w=\"http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd\" \
             xmlns:p=\"http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd\"><s:Header>\
             <a:Action>http://schemas.dmtf.org/wbem/wsman/1/wsman/fault</a:Action>\
             <a:MessageID>uuid:867B75F9-C4BC-4AE9-9842-5E3C467D6BD2</a:MessageID><a:To>{ANONYMOUS}</a:To>\
             <a:RelatesTo>uuid:D4909985-CE1E-48D4-9AEC-DAB0C34BD421</a:RelatesTo></s:Header><s:Body><s:Fault>\
             <s:Code><s:Value>{value}</s:Value><s:Subcode><s:Value>{subcode}</s:Value></s:Subcode></s:Code><s:Reason>\
             <s:Text xml:lang=\"en-US\">{text}</s:Text></s:Reason><s:Detail>{detail}<f:WSManFault \
             xmlns:f=\"http://schemas.microsoft.com/wbem/wsman/1/wsmanfault\" Code=\"{code}\" Machine=\"127.0.0.1\">\
             <f:Message>{text}</f:Message></f:WSManFault></s:Detail></s:Fault></s:Body></s:Envelope>"
        )
    }

    fn client() -> ClientConfig {
        ClientConfig::new("http://srv02:5985/wsman", Uuid::from_u128(0x9A33_A0EC_A837_46BC_9A96_6382_C9E9_4BDF))
    }

    /// A Get's or Put's answer read as a configuration resource.
    fn read(response: &str) -> (Response, ConfigDocument) {
        let (envelope, document) = parse_config_response(response.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        (envelope.body, document.expect("a resource in the body"))
    }

    fn value<'a>(document: &'a ConfigDocument, path: &str) -> (&'a str, Option<&'a str>, ItemKind) {
        let item = document.item(path).unwrap_or_else(|| panic!("no {path} in {:?}", document.items));
        (item.value.as_str(), item.source.as_deref(), item.kind)
    }

    #[test]
    fn requests_name_the_resource_and_a_put_carries_the_resource() {
        let cases = [
            (ConfigResource::Config, "http://schemas.microsoft.com/wbem/wsman/1/config", "winrm/config"),
            (ConfigResource::Service, SERVICE_URI, "winrm/config/service"),
            (ConfigResource::Winrs, WINRS_URI, "winrm/config/winrs"),
            (
                ConfigResource::Plugin("Microsoft.PowerShell".into()),
                PLUGIN_URI,
                "winrm/config/plugin?Name=Microsoft.PowerShell",
            ),
        ];
        for (resource, uri, shown) in cases {
            assert_eq!(resource.to_string(), shown);
            let get = Request::get_resource(&resource).to_xml(&client(), Uuid::from_u128(7));
            assert!(get.contains(">http://schemas.xmlsoap.org/ws/2004/09/transfer/Get</wsa:Action>"), "{get}");
            assert!(get.contains(&format!(">{uri}</wsman:ResourceURI>")), "{get}");
            assert!(get.ends_with("<s:Body /></s:Envelope>"), "{get}");
            let parsed = Request::parse(get.as_bytes()).expect("a request").request;
            assert_eq!((parsed.action, parsed.resource_uri.as_str(), &parsed.body), (Action::Get, uri, &Body::Empty));
            assert_eq!(parsed.selectors, resource.selectors());
        }
        let plugin = ConfigResource::Plugin("Microsoft.PowerShell".into());
        let put = Request::put_resource(&plugin, PEER_PLUGIN.to_owned()).to_xml(&client(), Uuid::from_u128(8));
        assert!(put.contains(">http://schemas.xmlsoap.org/ws/2004/09/transfer/Put</wsa:Action>"), "{put}");
        assert!(put.contains(&format!(">{PLUGIN_URI}</wsman:ResourceURI>")), "{put}");
        assert!(
            put.contains("<wsman:SelectorSet><wsman:Selector Name=\"Name\">Microsoft.PowerShell</wsman:Selector>"),
            "{put}"
        );
        assert!(put.ends_with(&format!("<s:Body>{PEER_PLUGIN}</s:Body></s:Envelope>")), "the resource as given: {put}");
        let parsed = Request::parse(put.as_bytes()).expect("a request").request;
        assert_eq!(parsed.action, Action::Put);
        assert_eq!(parsed.body, Body::Resource(PEER_PLUGIN.to_owned()));
    }

    #[test]
    fn the_recorded_windows_configuration_reads_as_settings() {
        for kb in [150u64, 500, 4096] {
            let path = common::fixtures().join(format!("winrm-recorded/test_wsman_update_envelope_size_{kb}.yml"));
            let [exchange] = common::exchanges(&path).try_into().expect("one exchange");
            let (body, document) = read(&exchange.response);
            let Response::Get(GetResponse::Config(config)) = body else { panic!("{body:?}") };
            assert_eq!(config.max_envelope_size_kb, Some(kb));
            // The resource exactly as Windows sent it: its namespace is declared on itself.
            let start = exchange.response.find("<cfg:Config").expect("cfg:Config");
            let end = exchange.response.find("</s:Body>").expect("s:Body");
            assert_eq!(document.xml, exchange.response[start..end]);
            let paths: Vec<&str> = document.items.iter().map(|i| i.path.as_str()).collect();
            assert_eq!(paths.len(), 44, "{paths:?}");
            assert_eq!(
                paths[..5],
                ["MaxEnvelopeSizekb", "MaxTimeoutms", "MaxBatchItems", "MaxProviderRequests", "Client/NetworkDelayms"]
            );
            assert_eq!(value(&document, "MaxEnvelopeSizekb"), (kb.to_string().as_str(), None, ItemKind::Element));
            assert_eq!(value(&document, "Client/Auth/CredSSP").0, "false");
            assert_eq!(value(&document, "Service/Auth/CredSSP").0, "true");
            assert_eq!(value(&document, "Service/Auth/CbtHardeningLevel").0, "Relaxed");
            assert_eq!(value(&document, "Client/TrustedHosts").0, "");
            assert_eq!(value(&document, "Winrs/MaxShellsPerUser").0, "2147483647");
            assert!(document.items.iter().all(|i| i.kind == ItemKind::Element && i.source.is_none()));
        }
    }

    #[test]
    fn the_peers_resources_read_as_settings() {
        let (body, winrs) = read(&peer_envelope(GET_RESPONSE, PEER_WINRS));
        assert_eq!(body, Response::Get(GetResponse::Other("Winrs".into())));
        assert_eq!(winrs.xml, PEER_WINRS);
        let paths: Vec<&str> = winrs.items.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "AllowRemoteShellAccess",
                "IdleTimeout",
                "MaxConcurrentUsers",
                "MaxShellRunTime",
                "MaxProcessesPerShell",
                "MaxMemoryPerShellMB",
                "MaxShellsPerUser"
            ]
        );
        assert_eq!(value(&winrs, "MaxConcurrentUsers"), ("3", Some("GPO"), ItemKind::Element));
        assert_eq!(value(&winrs, "MaxShellsPerUser"), ("2147483647", None, ItemKind::Element));

        let (_, service) = read(&peer_envelope(GET_RESPONSE, PEER_SERVICE));
        assert_eq!(service.items.len(), 21);
        assert_eq!(value(&service, "Auth/Basic").0, "true");
        assert_eq!(value(&service, "DefaultPorts/HTTPS").0, "5986");
        assert_eq!(value(&service, "MaxConcurrentOperationsPerUser").0, "1500");

        let (_, plugin) = read(&peer_envelope(GET_RESPONSE, PEER_PLUGIN));
        assert_eq!(plugin.xml, PEER_PLUGIN);
        let paths: Vec<&str> = plugin.items.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths.len(), 20, "12 root attributes (not xml:lang) and 8 quotas: {paths:?}");
        assert_eq!(paths[..2], ["Name", "Filename"]);
        assert!(!paths.iter().any(|p| p.contains("lang") || p.starts_with("InitializationParameters")));
        assert_eq!(value(&plugin, "Filename").0, "%windir%\\system32\\pwrshplugin.dll");
        assert_eq!(value(&plugin, "Enabled"), ("true", None, ItemKind::Attribute));
        assert_eq!(value(&plugin, "RunAsUser").0, "");
        assert_eq!(value(&plugin, "Quotas/MaxShellsPerUser"), ("2147483647", None, ItemKind::Attribute));
        assert_eq!(value(&plugin, "Quotas/IdleTimeoutms").0, "7200000");

        // The Put answers: the resource as it now stands.
        let answer = PEER_WINRS.replace(">2147483647</cfg:MaxShellsPerUser>", ">7</cfg:MaxShellsPerUser>");
        let (body, put) = read(&peer_envelope(PUT_RESPONSE, &answer));
        assert_eq!(body, Response::Put(GetResponse::Other("Winrs".into())));
        assert_eq!(value(&put, "MaxShellsPerUser").0, "7");
        let answer = PEER_PLUGIN.replace("MaxShellsPerUser=\"2147483647\"", "MaxShellsPerUser=\"25\"");
        let (body, put) = read(&peer_envelope(PUT_RESPONSE, &answer));
        assert_eq!(body, Response::Put(GetResponse::Other("PlugInConfiguration".into())));
        assert_eq!(value(&put, "Quotas/MaxShellsPerUser").0, "25");
        // An empty PutResponse (WS-Transfer allows it) carries no resource.
        let (envelope, none) = parse_config_response(peer_envelope(PUT_RESPONSE, "").as_bytes()).expect("parses");
        assert_eq!((envelope.body, none), (Response::Put(GetResponse::Other(String::new())), None));
        // Not a Get or Put answer.
        let receive = peer_envelope("http://schemas.microsoft.com/wbem/wsman/1/windows/shell/ReceiveResponse", "");
        assert!(parse_config_response(receive.as_bytes()).is_err());
    }

    #[test]
    fn a_resource_declared_by_the_envelope_is_cut_out_with_its_namespace() {
        // A server may declare the prefix on the envelope: the resource then gets the declaration, and reads alone.
        let response = peer_envelope(GET_RESPONSE, "<c:Winrs><c:MaxShellsPerUser>5</c:MaxShellsPerUser></c:Winrs>")
            .replacen("<s:Envelope ", &format!("<s:Envelope xmlns:c=\"{WINRS_URI}\" "), 1);
        let (_, document) = read(&response);
        assert_eq!(
            document.xml,
            format!("<c:Winrs xmlns:c=\"{WINRS_URI}\"><c:MaxShellsPerUser>5</c:MaxShellsPerUser></c:Winrs>")
        );
        let put =
            Request::put_resource(&ConfigResource::Winrs, edit(&document.xml, "MaxShellsPerUser", "6").expect("edits"));
        let parsed = Request::parse(put.to_xml(&client(), Uuid::from_u128(9)).as_bytes()).expect("a request");
        assert_eq!(parsed.request.body, put.body);
    }

    #[test]
    fn an_edit_changes_one_setting_and_keeps_every_other_byte() {
        let path = common::fixtures().join("winrm-recorded/test_wsman_update_envelope_size_500.yml");
        let [exchange] = common::exchanges(&path).try_into().expect("one exchange");
        let (_, config) = read(&exchange.response);
        let edited = edit(&config.xml, "Winrs/MaxShellsPerUser", "10").expect("edits");
        assert_eq!(
            edited,
            config.xml.replace("<cfg:MaxShellsPerUser>2147483647<", "<cfg:MaxShellsPerUser>10<"),
            "only that value changed"
        );
        // The provider's paths are case-insensitive; the value is escaped and reads back as given.
        let edited = edit(&config.xml, "client/trustedhosts", "*.corp & <lab>").expect("edits");
        assert!(edited.contains("<cfg:TrustedHosts>*.corp &amp; &lt;lab&gt;</cfg:TrustedHosts>"), "{edited}");
        let again = ConfigDocument::parse(edited).expect("parses");
        assert_eq!(value(&again, "Client/TrustedHosts").0, "*.corp & <lab>");
        let mut expected = config.items.clone();
        for item in expected.iter_mut().filter(|i| i.path == "Client/TrustedHosts") {
            item.value = "*.corp & <lab>".into();
        }
        assert_eq!(again.items, expected);

        // A GPO-marked setting: its Source is kept (the target decides whether the change is allowed).
        let winrs = edit(PEER_WINRS, "MaxConcurrentUsers", "4").expect("edits");
        assert!(winrs.contains("<cfg:MaxConcurrentUsers Source=\"GPO\">4</cfg:MaxConcurrentUsers>"), "{winrs}");

        // Attributes of a plugin: only the one asked for.
        let plugin = edit(PEER_PLUGIN, "Quotas/MaxShellsPerUser", "3").expect("edits");
        assert_eq!(plugin, PEER_PLUGIN.replace("MaxShellsPerUser=\"2147483647\"", "MaxShellsPerUser=\"3\""));
        let plugin = edit(PEER_PLUGIN, "Enabled", "false").expect("edits");
        assert_eq!(plugin, PEER_PLUGIN.replace("Enabled=\"true\"", "Enabled=\"false\""));
        let runas = edit(PEER_PLUGIN, "RunAsUser", "CORP\\svc \"jea\"").expect("edits");
        assert!(runas.contains("RunAsUser=\"CORP\\svc &quot;jea&quot;\""), "{runas}");
        assert_eq!(value(&ConfigDocument::parse(runas).expect("parses"), "RunAsUser").0, "CORP\\svc \"jea\"");

        // Other ways of writing a leaf or an attribute.
        let empty = "<c:W xmlns:c='urn:c'><c:TrustedHosts /><c:Q A='1' /></c:W>";
        assert_eq!(
            edit(empty, "TrustedHosts", "a&b").expect("edits"),
            "<c:W xmlns:c='urn:c'><c:TrustedHosts >a&amp;b</c:TrustedHosts><c:Q A='1' /></c:W>"
        );
        let quoted = "<PlugInConfiguration xmlns='http://schemas.microsoft.com/wbem/wsman/1/config/PluginConfiguration' \
                      Name='it&apos;s'/>";
        let renamed = edit(quoted, "Name", "O'Neil").expect("edits");
        assert!(renamed.ends_with("Name='O&apos;Neil'/>"), "{renamed}");
        assert_eq!(value(&ConfigDocument::parse(renamed).expect("parses"), "Name").0, "O'Neil");
    }

    #[test]
    fn the_fuzz_targets_checks_hold_for_configuration_traffic() {
        // Every setting of these edits alone (`fuzz_parse` checks it), duplicates and empty-element leaves included.
        let odd = "<c:W xmlns:c='urn:c'><c:x>1</c:x><c:x>1</c:x><c:X/><c:Y a='1'>  </c:Y></c:W>";
        for body in [PEER_WINRS, PEER_SERVICE, PEER_PLUGIN, odd] {
            crate::wsman::fuzz_parse(peer_envelope(GET_RESPONSE, body).as_bytes());
            crate::wsman::fuzz_parse(peer_envelope(PUT_RESPONSE, body).as_bytes());
            let put = Request::put_resource(&ConfigResource::Winrs, body.to_owned());
            crate::wsman::fuzz_parse(put.to_xml(&client(), Uuid::from_u128(3)).as_bytes());
        }
        assert_eq!(items(odd).expect("parses").len(), 4);
    }

    #[test]
    fn an_unknown_setting_or_a_bad_value_is_refused_before_anything_is_sent() {
        for path in ["Winrs/MaxShells", "Service/Auth", "Winrs", ""] {
            let error = edit(PEER_SERVICE, path, "1").expect_err("not a setting");
            assert!(
                matches!(&error, WsmanError::UnknownSetting { path: p, resource } if p == path && resource == "Service")
            );
            assert_eq!(error.to_string(), format!("the configuration resource Service has no setting {path}"));
        }
        let error = edit(PEER_WINRS, "MaxShellsPerUser", "1\u{0}").expect_err("a control character");
        assert!(matches!(error, WsmanError::Invalid { .. }), "{error}");
        assert!(edit("<not closed>", "x", "1").is_err());
    }

    #[test]
    fn refused_changes_keep_their_code_and_text() {
        // The peer's refusals (winrm_host.py: access_denied, gpo_controlled, deprecated_setting,
        // idle_timeout_out_of_bounds, schema_invalid, resource_not_found), laid out as Windows lays faults out.
        let gpo = "The config setting MaxShellsPerUser cannot be changed because is controlled by policies. The policy \
                   would need to be set to \"Not Configured\" in order to change the config setting. ";
        let cases = [
            ("s:Sender", "w:AccessDenied", 5, "Access is denied. ", "", FaultKind::AccessDenied, "access denied"),
            (
                "s:Receiver",
                "w:InternalError",
                2150859182,
                "The WinRM service cannot process the request because it is trying to update a deprecated setting. \
                 Remove this setting from the command and try again. ",
                "",
                FaultKind::DeprecatedSetting,
                "read-only setting",
            ),
            ("s:Receiver", "w:InternalError", 2150858890, gpo, "", FaultKind::PolicyControlled, "Group Policy"),
            (
                "s:Receiver",
                "w:InternalError",
                2150859250,
                "The WS-Management service cannot process the request. The requested IdleTimeout is outside the \
                 allowed range. ",
                "",
                FaultKind::IdleTimeoutOutOfRange,
                "idle timeout outside the allowed range",
            ),
            (
                "s:Sender",
                "a:DestinationUnreachable",
                2150858752,
                "The WS-Management service cannot process the request. The service cannot find the resource \
                 identified by the resource URI and selectors. ",
                "ResourceNotFound",
                FaultKind::ResourceNotFound,
                "no such resource",
            ),
            (
                "s:Sender",
                "w:SchemaValidationError",
                2150858817,
                "The SOAP XML in the message does not match the corresponding XML schema definition. Change the XML \
                 and retry. ",
                "",
                FaultKind::SchemaValidation,
                "not valid for this resource",
            ),
        ];
        for (value, subcode, code, text, detail, kind, words) in cases {
            let fault = peer_fault(value, subcode, code, &text.replace('"', "&quot;"), detail);
            let error = parse_config_response(fault.as_bytes()).expect_err("a fault");
            let f = error.fault().unwrap_or_else(|| panic!("not a fault: {error}"));
            assert_eq!((f.wsman_code, f.kind(), f.subcode.as_deref()), (Some(code), kind, Some(subcode)));
            assert_eq!(f.text(), text.trim());
            assert_eq!(f.machine.as_deref(), Some("127.0.0.1"));
            let shown = error.to_string();
            assert!(
                shown.contains(words) && shown.contains(&code.to_string()) && shown.contains(text.trim()),
                "{shown}"
            );
        }
    }
}
