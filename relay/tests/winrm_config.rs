//! A WinRM target's configuration read and changed as PowerShell's WSMan provider does it
//! (`psgate_relay::session::winrm::config_get` / `config_set`: WS-Transfer Get, one setting edited, Put back), against
//! the WS-Management test peer (`tests/peers/winrm_host.py`) over NTLM with message encryption: a changed quota is
//! enforced at once, and the target's refusals (not an administrator, Group Policy, a read-only setting, an unknown
//! plugin) come back as its faults with their codes.

#[path = "common/winrm_peer.rs"]
mod winrm_peer;

use std::time::Duration;

use psgate_relay::session::outofproc::Session;
use psgate_relay::session::winrm::{self, WinrmOpError, WinrmTarget, config_get, config_set};
use psgate_relay::transport::winrm::{AuthMethod, Endpoint, WinrmOptions};
use psgate_relay::wsman::{ConfigItem, ConfigResource, FaultKind, ItemKind, WsmanError};
use psgate_shared::psrp::messages::{ErrorRecordView, PoolState};
use psgate_shared::psrp::outofproc::ClientEvent;
use psgate_shared::psrp::pool::Event;
use winrm_peer::{PASSWORD, PeerOptions, USER, WinrmPeer};

const EVENT_TIMEOUT: Duration = Duration::from_secs(60);
const BOB: &str = "PSGATE\\bob";
const BOB_PASSWORD: &str = "Bob-Secret-41d2";

fn target(peer: &WinrmPeer, user: &str, password: &str) -> WinrmTarget {
    let endpoint = Endpoint::parse(&peer.url).expect("endpoint");
    WinrmTarget::new(WinrmOptions::new(endpoint, user, password.to_owned().into(), AuthMethod::Ntlm))
}

fn setting<'a>(items: &'a [ConfigItem], path: &str) -> &'a ConfigItem {
    items.iter().find(|i| i.path == path).unwrap_or_else(|| panic!("no {path} in {items:?}"))
}

/// The fault a refused request got: its kind, WS-Management code and text.
fn refusal(result: Result<Vec<ConfigItem>, WinrmOpError>) -> (FaultKind, Option<u32>, String) {
    let error = result.expect_err("refused");
    let fault = error.fault().unwrap_or_else(|| panic!("not a fault of the target: {error}"));
    (fault.kind(), fault.wsman_code, fault.text().to_owned())
}

/// Opens a shell (a runspace pool): `Ok` once it is open, `Err` with the pool's error when the target refused it.
async fn open_shell(target: WinrmTarget) -> Result<Session, String> {
    let mut s = winrm::connect(target, None, false).await.expect("connects");
    s.with(|c| c.open()).await.expect("alive").expect("queued");
    loop {
        let event = tokio::time::timeout(EVENT_TIMEOUT, s.events.recv()).await.expect("an event in time").expect("a session");
        match event {
            ClientEvent::Psrp(Event::PoolState { state: PoolState::Opened, .. }) => return Ok(s),
            ClientEvent::Psrp(Event::PoolState { state: PoolState::Broken | PoolState::Closed, error }) => {
                return Err(error.map(|e| ErrorRecordView::from_value(&e).message).unwrap_or_default());
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_quota_set_through_the_configuration_is_enforced() {
    let peer = WinrmPeer::start(PeerOptions::default());
    let ada = target(&peer, USER, PASSWORD);

    let (xml, items) = config_get(&ada, &ConfigResource::Winrs).await.expect("reads winrm/config/winrs");
    assert!(xml.starts_with("<cfg:Winrs xmlns:cfg=\"http://schemas.microsoft.com/wbem/wsman/1/config/winrs\">"), "{xml}");
    let quota = setting(&items, "MaxShellsPerUser");
    assert_eq!((quota.value.as_str(), quota.source.as_deref(), quota.kind), ("2147483647", None, ItemKind::Element));

    let items = config_set(&ada, &ConfigResource::Winrs, "MaxShellsPerUser", "1").await.expect("an administrator sets it");
    assert_eq!(setting(&items, "MaxShellsPerUser").value, "1", "the Put's answer shows the new value");
    assert_eq!(setting(&items, "IdleTimeout").value, "7200000", "the others are as they were");
    let (_, all) = config_get(&ada, &ConfigResource::Config).await.expect("reads winrm/config");
    assert_eq!(setting(&all, "Winrs/MaxShellsPerUser").value, "1");

    // Effective at once: one shell opens, a second is refused with the target's quota fault.
    let first = open_shell(ada.clone()).await.expect("the first shell opens");
    let refused = open_shell(ada.clone()).await.expect_err("a second shell is refused");
    assert!(refused.contains("MaxShellsPerUser") && refused.contains("maximum number of 1 concurrent shells"), "{refused}");
    drop(first);

    // A plugin's quota, an attribute of its Quotas (effective on Windows after a WinRM restart).
    let plugin = ConfigResource::Plugin("Microsoft.PowerShell".into());
    let items = config_set(&ada, &plugin, "Quotas/MaxShellsPerUser", "3").await.expect("sets the plugin's quota");
    let quota = setting(&items, "Quotas/MaxShellsPerUser");
    assert_eq!((quota.value.as_str(), quota.kind), ("3", ItemKind::Attribute));
    let (_, items) = config_get(&ada, &plugin).await.expect("reads the plugin");
    assert_eq!(setting(&items, "Quotas/MaxShellsPerUser").value, "3");
    assert_eq!(setting(&items, "Enabled").value, "true");

    // Refused here, before anything is put: a setting the resource does not have.
    let error = config_set(&ada, &ConfigResource::Winrs, "MaxShells", "3").await.expect_err("no such setting");
    assert!(matches!(&error, WinrmOpError::Wsman(WsmanError::UnknownSetting { path, .. }) if path == "MaxShells"), "{error}");
    // Refused by the target: an unknown plugin, a value out of range, a read-only setting.
    let unknown = ConfigResource::Plugin("NoSuchEndpoint".into());
    let error = config_get(&ada, &unknown).await.expect_err("no such plugin");
    assert_eq!((error.kind(), error.fault().and_then(|f| f.wsman_code)), (Some(FaultKind::ResourceNotFound), Some(2150858752)));
    let (kind, code, _) = refusal(config_set(&ada, &ConfigResource::Winrs, "MaxConcurrentUsers", "0").await);
    assert_eq!((kind, code), (FaultKind::SchemaValidation, Some(2150858817)));
    let (kind, code, _) = refusal(config_set(&ada, &ConfigResource::Winrs, "IdleTimeout", "2147483648").await);
    assert_eq!((kind, code), (FaultKind::IdleTimeoutOutOfRange, Some(2150859250)));
    let (kind, code, text) = refusal(config_set(&ada, &ConfigResource::Winrs, "MaxShellRunTime", "60000").await);
    assert_eq!((kind, code), (FaultKind::DeprecatedSetting, Some(2150859182)));
    assert!(text.contains("trying to update a deprecated setting"), "{text}");
    let (_, items) = config_get(&ada, &ConfigResource::Winrs).await.expect("reads");
    assert_eq!((setting(&items, "MaxShellsPerUser").value.as_str(), setting(&items, "IdleTimeout").value.as_str()), ("1", "7200000"));
}

#[tokio::test]
async fn a_user_who_is_no_administrator_and_group_policy_are_refused() {
    let extra = ["--user", &format!("{BOB}:{BOB_PASSWORD}"), "--admin-users", USER, "--gpo-setting", "Winrs/MaxShellsPerUser=5"];
    let peer = WinrmPeer::start(PeerOptions { extra: extra.iter().map(|s| s.to_string()).collect(), ..PeerOptions::default() });
    let ada = target(&peer, USER, PASSWORD);
    let bob = target(&peer, BOB, BOB_PASSWORD);

    // Anyone may read; the policy's setting is marked.
    let (_, items) = config_get(&bob, &ConfigResource::Winrs).await.expect("bob reads");
    let quota = setting(&items, "MaxShellsPerUser");
    assert_eq!((quota.value.as_str(), quota.source.as_deref()), ("5", Some("GPO")));

    // Not an administrator: Access is denied (code 5, w:AccessDenied), nothing changed.
    let error = config_set(&bob, &ConfigResource::Winrs, "MaxMemoryPerShellMB", "512").await.expect_err("refused");
    let fault = error.fault().unwrap_or_else(|| panic!("not a fault: {error}"));
    assert_eq!((fault.kind(), fault.wsman_code, fault.subcode.as_deref()), (FaultKind::AccessDenied, Some(5), Some("w:AccessDenied")));
    assert_eq!(fault.text(), "Access is denied.");
    let (_, items) = config_get(&ada, &ConfigResource::Winrs).await.expect("reads");
    assert_eq!(setting(&items, "MaxMemoryPerShellMB").value, "2147483647");

    // Group Policy sets it: even an administrator is refused, in Windows' words.
    let (kind, code, text) = refusal(config_set(&ada, &ConfigResource::Winrs, "MaxShellsPerUser", "10").await);
    assert_eq!((kind, code), (FaultKind::PolicyControlled, Some(2150858890)));
    assert!(text.starts_with("The config setting MaxShellsPerUser cannot be changed because is controlled by policies."), "{text}");
    // Through winrm/config the same; another setting of the same resource can be changed (the policy's value is
    // put back as it is).
    let (kind, _, _) = refusal(config_set(&ada, &ConfigResource::Config, "Winrs/MaxShellsPerUser", "10").await);
    assert_eq!(kind, FaultKind::PolicyControlled);
    let items = config_set(&ada, &ConfigResource::Winrs, "MaxMemoryPerShellMB", "512").await.expect("not controlled");
    assert_eq!(setting(&items, "MaxMemoryPerShellMB").value, "512");
    let quota = setting(&items, "MaxShellsPerUser");
    assert_eq!((quota.value.as_str(), quota.source.as_deref()), ("5", Some("GPO")));
}
