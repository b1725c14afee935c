//! The layout of PowerShell's `WSMan:` drive over WinRM's configuration resources: `WSMan:\SRV02` is
//! `winrm/config` (its own settings, `Client`, `Service`, `Shell` and `Plugin` below it), `…\Shell` is
//! `winrm/config/winrs`, `…\Service` is `winrm/config/service`, `…\Plugin\<name>` is `winrm/config/plugin?Name=<name>`
//! (its attributes and its `Quotas`). Pure: paths in, a resource and the items at a path out.

use psgate_lang::{WsmanItem, WsmanNode};

use crate::wsman::{ConfigItem, ConfigResource};

/// Where a drive path (below the computer) leads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Located {
    /// A path in a resource: the resource and the path relative to it (`/`-joined segments).
    In(ConfigResource, Vec<String>),
    /// `…\Plugin`: the list of plugins (WinRM enumerates them; psgate lists the ones it knows of).
    Plugins,
}

/// The resource a drive path is in.
pub fn locate(path: &[String]) -> Located {
    let Some(first) = path.first() else { return Located::In(ConfigResource::Config, Vec::new()) };
    let rest = path[1..].to_vec();
    match first.to_ascii_lowercase().as_str() {
        "shell" => Located::In(ConfigResource::Winrs, rest),
        "service" => Located::In(ConfigResource::Service, rest),
        "plugin" => match rest.split_first() {
            None => Located::Plugins,
            Some((name, inner)) => Located::In(ConfigResource::Plugin(name.clone()), inner.to_vec()),
        },
        _ => Located::In(ConfigResource::Config, path.to_vec()),
    }
}

fn leaf(name: &str, item: &ConfigItem) -> WsmanItem {
    WsmanItem { name: name.to_owned(), value: Some(item.value.clone()), source: item.source.clone(), container: false }
}

fn container(name: &str) -> WsmanItem {
    WsmanItem { name: name.to_owned(), value: None, source: None, container: true }
}

/// The node at `inner` (relative to the resource) among a resource's items; `None`: no such item. At the computer's
/// root (`winrm/config`, `inner` empty) the drive names `Winrs` `Shell` and adds `Plugin`.
pub fn node(resource: &ConfigResource, items: &[ConfigItem], inner: &[String], name: &str) -> Option<WsmanNode> {
    let key = inner.join("/");
    if let Some(item) = items.iter().find(|i| !key.is_empty() && i.path.eq_ignore_ascii_case(&key)) {
        return Some(WsmanNode::Leaf(leaf(inner.last().map_or(name, String::as_str), item)));
    }
    let root = *resource == ConfigResource::Config && inner.is_empty();
    let mut children: Vec<WsmanItem> = Vec::new();
    for item in items {
        let rest = if key.is_empty() {
            Some(item.path.as_str())
        } else {
            item.path.get(..key.len()).filter(|p| p.eq_ignore_ascii_case(&key)).and_then(|_| item.path[key.len()..].strip_prefix('/'))
        };
        let Some(rest) = rest else { continue };
        let (child, deeper) = rest.split_once('/').map_or((rest, false), |(c, _)| (c, true));
        let shown = if root && child.eq_ignore_ascii_case("Winrs") { "Shell" } else { child };
        if children.iter().any(|c| c.name.eq_ignore_ascii_case(shown)) {
            continue;
        }
        children.push(if deeper { container(shown) } else { leaf(shown, item) });
    }
    if root {
        children.push(container("Plugin"));
    }
    if children.is_empty() {
        return None;
    }
    Some(WsmanNode::Container(container(name), children))
}

/// The plugins under `…\Plugin`: the configurations the user's sessions to the computer use, and PowerShell's own.
pub fn plugins(mut known: Vec<String>) -> WsmanNode {
    known.push("microsoft.powershell".into());
    known.sort_unstable_by_key(|n| n.to_lowercase());
    known.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    WsmanNode::Container(container("Plugin"), known.iter().map(|n| container(n)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wsman::ItemKind;

    fn item(path: &str, value: &str) -> ConfigItem {
        ConfigItem { path: path.into(), value: value.into(), source: None, kind: ItemKind::Element }
    }

    fn names(n: &WsmanNode) -> Vec<(String, bool)> {
        match n {
            WsmanNode::Container(_, c) => c.iter().map(|i| (i.name.clone(), i.container)).collect(),
            WsmanNode::Leaf(i) => vec![(i.name.clone(), i.container)],
        }
    }

    #[test]
    fn the_drive_maps_onto_the_resources() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(locate(&[]), Located::In(ConfigResource::Config, vec![]));
        assert_eq!(locate(&s(&["Shell", "MaxShellsPerUser"])), Located::In(ConfigResource::Winrs, s(&["MaxShellsPerUser"])));
        assert_eq!(locate(&s(&["service", "Auth"])), Located::In(ConfigResource::Service, s(&["Auth"])));
        assert_eq!(locate(&s(&["Plugin"])), Located::Plugins);
        assert_eq!(locate(&s(&["Plugin", "JEA", "Quotas"])), Located::In(ConfigResource::Plugin("JEA".into()), s(&["Quotas"])));
        assert_eq!(locate(&s(&["MaxEnvelopeSizekb"])), Located::In(ConfigResource::Config, s(&["MaxEnvelopeSizekb"])));
        let config = [item("MaxEnvelopeSizekb", "500"), item("Client/Auth/Basic", "true"), item("Service/MaxConnections", "300"), item("Winrs/MaxShellsPerUser", "30")];
        let root = node(&ConfigResource::Config, &config, &[], "SRV02").expect("the root");
        assert_eq!(names(&root), [("MaxEnvelopeSizekb".into(), false), ("Client".into(), true), ("Service".into(), true), ("Shell".into(), true), ("Plugin".into(), true)]);
        let auth = node(&ConfigResource::Config, &config, &s(&["client", "auth"]), "Auth").expect("a container");
        assert_eq!(names(&auth), [("Basic".into(), false)]);
        let WsmanNode::Leaf(l) = node(&ConfigResource::Config, &config, &s(&["Client", "Auth", "basic"]), "basic").expect("a leaf") else { panic!("a leaf") };
        assert_eq!((l.name.as_str(), l.value.as_deref()), ("basic", Some("true")));
        assert!(node(&ConfigResource::Winrs, &[item("MaxShellsPerUser", "30")], &s(&["Nope"]), "Nope").is_none());
        assert_eq!(names(&plugins(vec!["JEA.AD".into(), "Microsoft.PowerShell".into()])), [("JEA.AD".into(), true), ("Microsoft.PowerShell".into(), true)]);
    }
}
