"""WS-Transfer Get and Put of the WS-Management test peer's configuration (winrm_host.py), driven by pypsrp's WSMan client.

The resources Windows' WinRM service serves: http://schemas.microsoft.com/wbem/wsman/1/config, …/config/winrs,
…/config/service and …/config/plugin?Name=CONFIGURATION. Get: the shapes of the recorded Windows answers
(shared/fixtures/winrm-recorded/test_wsman_update_envelope_size_*.yml; a sub-resource is the recorded element in the
namespace of its own URI), the plugins as PowerShell registers them. Put: a changed quota is enforced at once (Create
then fails with Windows' quota fault), and the refusals carry Windows' codes: Access is denied for a user who is not an
administrator, ERROR_WSMAN_DEPRECATED_CONFIG_SETTING for MaxShellRunTime and MaxConcurrentOperations, the Group Policy
fault for a --gpo-setting, ERROR_WINRS_IDLETIMEOUT_OUTOFBOUNDS, SchemaValidationError, an unknown plugin Name.

Run: `$PSGATE_PYTHON -m pytest tests/peers/test_winrm_config.py -q` (each module or test starts its own peers).
"""

from __future__ import annotations

import copy
import typing
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from pypsrp.exceptions import WSManFaultError  # noqa: E402
from pypsrp.powershell import RunspacePool  # noqa: E402
from pypsrp.wsman import SelectorSet, WSMan, WSManAction  # noqa: E402

# The WinRM peer tests' harness: the peer as a child process (and the module's default one), its users, the recordings.
from test_winrm_peer import ADA, BOB, FIXTURES, QUOTAS, Peer, http_peer, skeleton  # noqa: E402,F401

CONFIG = "http://schemas.microsoft.com/wbem/wsman/1/config"
PLUGIN = CONFIG + "/plugin"
PLUGIN_NS = "http://schemas.microsoft.com/wbem/wsman/1/config/PluginConfiguration"
PS = "http://schemas.microsoft.com/powershell/"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

# Fault codes (wsmerror.h names in the comments)
ACCESS_DENIED = 5  # ERROR_ACCESS_DENIED
RESOURCE_NOT_FOUND = 0x80338000  # ERROR_WSMAN_RESOURCE_NOT_FOUND
SCHEMA_VALIDATION = 0x80338041  # ERROR_WSMAN_SCHEMA_VALIDATION_ERROR
GPO_CONTROLLED = 0x8033808A  # ERROR_WSMAN_CONFIG_CANNOT_CHANGE_GPO_CONTROLLED_SETTING
DEPRECATED_SETTING = 0x803381AE  # ERROR_WSMAN_DEPRECATED_CONFIG_SETTING
CBT_HARDENING_INVALID = 0x803381B8  # ERROR_SERVICE_CBT_HARDENING_INVALID
IDLETIMEOUT_OUT_OF_BOUNDS = 0x803381F2  # ERROR_WINRS_IDLETIMEOUT_OUTOFBOUNDS
QUOTA = {name: code for code, name in QUOTAS.items()}

# The plugin's Quotas as PowerShell's Register-PSSessionConfiguration writes them (WSManConfigurationOption).
PLUGIN_QUOTAS = ["IdleTimeoutms", "MaxConcurrentUsers", "MaxProcessesPerShell", "MaxMemoryPerShellMB", "MaxShellsPerUser",
                 "MaxConcurrentCommandsPerShell", "MaxShells", "MaxIdleTimeoutms"]


@pytest.fixture(scope="module")
def locked_peer(tmp_path_factory: pytest.TempPathFactory) -> typing.Iterator[Peer]:
    """Only Ada is an administrator; Group Policy sets MaxShellsPerUser and MaxConcurrentUsers; a JEA endpoint."""
    args = ["--admin-users", "PSGATE\\ada", "--gpo-setting", "Winrs/MaxShellsPerUser=5",
            "--gpo-setting", "Winrs/MaxConcurrentUsers=1", "--restricted-configuration", "JEA"]
    with Peer(tmp_path_factory.mktemp("winrm-config"), *args) as peer:
        yield peer


# -- helpers ----------------------------------------------------------------------------------------------------------


def resource(suffix: str, element: str, **settings: str) -> ET.Element:
    """A Put's body: the resource's element in its URI's namespace, as a Get gives it, with only the settings to set
    (Auth__Basic="false" nests: cfg:Auth/cfg:Basic)."""
    ns = CONFIG + suffix
    root = ET.Element(f"{{{ns}}}{element}")
    for name, value in settings.items():
        parent = root
        *containers, leaf = name.split("__")
        for c in containers:
            found = parent.find(f"{{{ns}}}{c}")
            parent = found if found is not None else ET.SubElement(parent, f"{{{ns}}}{c}")
        ET.SubElement(parent, f"{{{ns}}}{leaf}").text = value
    return root


def winrs(**settings: str) -> ET.Element:
    return resource("/winrs", "Winrs", **settings)


def service(**settings: str) -> ET.Element:
    return resource("/service", "Service", **settings)


def value(body: ET.Element, suffix: str, path: str) -> ET.Element:
    """The element at `path` (Winrs/MaxShellsPerUser) in a Get's or Put's s:Body."""
    ns = CONFIG + suffix
    found = body.find("/".join(f"{{{ns}}}{p}" for p in path.split("/")))
    assert found is not None, f"{path} missing from {ET.tostring(body)[:500]!r}"
    return found


def named(name: str) -> SelectorSet:
    selectors = SelectorSet()
    selectors.add_option("Name", name)
    return selectors


def fault(call: typing.Callable[[], typing.Any]) -> WSManFaultError:
    with pytest.raises(WSManFaultError) as e:
        call()
    return e.value


def recorded_get() -> ET.Element:
    """Windows' GetResponse for …/config (Windows Server defaults, MaxEnvelopeSizekb 500)."""
    path = FIXTURES / "test_wsman_update_envelope_size_500.yml"
    return ET.fromstring(yaml.safe_load(path.read_text(encoding="utf-8"))["messages"][0]["response"])


def in_namespace(element: ET.Element, old: str, new: str) -> ET.Element:
    element = copy.deepcopy(element)
    for e in element.iter():
        e.tag = e.tag.replace(f"{{{old}}}", f"{{{new}}}")
    return element


def recorded_part(name: str) -> ET.Element:
    """The recorded GetResponse with cfg:Config's child `name` alone as the body, in the namespace …/config/name."""
    envelope = recorded_get()
    body = envelope.find("{http://www.w3.org/2003/05/soap-envelope}Body")
    config = body[0]
    body.remove(config)
    body.append(in_namespace(config.find(f"{{{CONFIG}}}{name}"), CONFIG, f"{CONFIG}/{name.lower()}"))
    return envelope


def opens(w: WSMan) -> typing.Optional[WSManFaultError]:
    """Opens and closes a runspace pool (a shell): None, or the fault its Create got."""
    try:
        RunspacePool(w).open()
    except WSManFaultError as e:
        return e
    return None


# -- Get ----------------------------------------------------------------------------------------------------------------


def test_get_has_the_recorded_shapes(http_peer: Peer) -> None:
    w = http_peer.wsman()
    ours = w.invoke(WSManAction.GET, CONFIG, None)
    assert skeleton(ours) == skeleton(recorded_get())
    for name in ("Winrs", "Service"):
        ours = w.invoke(WSManAction.GET, f"{CONFIG}/{name.lower()}", None)
        assert skeleton(ours) == skeleton(recorded_part(name)), f"…/config/{name.lower()}: {ET.tostring(ours)[:3000]!r}"
    # The peer's defaults are Windows Server's: the winrs values too.
    body = w.get(CONFIG + "/winrs")
    expected = recorded_part("Winrs").find("{http://www.w3.org/2003/05/soap-envelope}Body")
    assert [(e.tag, e.text) for e in body.iter()][1:] == [(e.tag, e.text) for e in expected.iter()][1:]


def test_get_plugins(locked_peer: Peer) -> None:
    w = locked_peer.wsman(user=BOB)  # anyone may read
    for name, version in (("Microsoft.PowerShell", "5.1"), ("PowerShell.7", "7.4"), ("JEA", "7.4")):
        (plugin,) = list(w.get(PLUGIN, selector_set=named(name.upper())))  # the Name selector in any case
        assert plugin.tag == f"{{{PLUGIN_NS}}}PlugInConfiguration"
        assert (plugin.get("Name"), plugin.get("SDKVersion"), plugin.get(XML_LANG)) == (name, "2", "en-US")
        assert [c.tag.split("}")[1] for c in plugin] == ["InitializationParameters", "Resources", "Quotas"]
        params = {p.get("Name"): p.get("Value") for p in plugin.iter(f"{{{PLUGIN_NS}}}Param")}
        assert params["PSVersion"] == version
        assert ("sessiontype" in params) == (name == "JEA")
        res = plugin.find(f"{{{PLUGIN_NS}}}Resources/{{{PLUGIN_NS}}}Resource")
        assert res.get("ResourceUri") == PS + name
        assert res.find(f"{{{PLUGIN_NS}}}Security").get("Uri") == PS + name
        assert res.find(f"{{{PLUGIN_NS}}}Capability").get("Type") == "Shell"
        quotas = plugin.find(f"{{{PLUGIN_NS}}}Quotas")
        assert list(quotas.attrib) == PLUGIN_QUOTAS
        assert quotas.get("IdleTimeoutms") == "7200000" and quotas.get("MaxShellsPerUser") == "2147483647"
    e = fault(lambda: w.get(PLUGIN, selector_set=named("NoSuchEndpoint")))
    assert (e.code, e.reason) == (RESOURCE_NOT_FOUND, "The WS-Management service cannot process the request. The "
                                  "service cannot find the resource identified by the resource URI and selectors.")


# -- Put: the change is effective ---------------------------------------------------------------------------------------


def test_put_winrs_and_service_quotas_are_enforced(tmp_path: Path) -> None:
    with Peer(tmp_path) as peer:
        w = peer.wsman()
        answer = w.put(CONFIG + "/winrs", winrs(MaxShellsPerUser="1"))  # only the setting to change
        # The answer is the whole resource as a Get now shows it.
        assert len(list(value(answer, "/winrs", "Winrs"))) == 7
        assert value(answer, "/winrs", "Winrs/MaxShellsPerUser").text == "1"
        assert value(w.get(CONFIG + "/winrs"), "/winrs", "Winrs/MaxShellsPerUser").text == "1"
        assert value(w.get(CONFIG), "", "Config/Winrs/MaxShellsPerUser").text == "1"
        with RunspacePool(peer.wsman()):
            e = opens(peer.wsman())
            assert e is not None and (e.code, e.reason) == (
                QUOTA["MaxShellsPerUser"], "The WS-Management service cannot process the request. This user is "
                "allowed a maximum number of 1 concurrent shells, which has been exceeded. Close existing shells or "
                "raise the quota for this user.")
            # 0: any number of shells (MS-WSMV 2.2.4.42); MaxConcurrentUsers 1 keeps Bob out while Ada has a shell.
            w.put(CONFIG + "/winrs", winrs(MaxShellsPerUser="0", MaxConcurrentUsers="1"))
            assert opens(peer.wsman()) is None
            e = opens(peer.wsman(user=BOB))
            assert e is not None and e.code == QUOTA["MaxConcurrentUsers"]
            answer = w.put(CONFIG + "/service", service(MaxConcurrentOperationsPerUser="1"))
            assert value(answer, "/service", "Service/MaxConcurrentOperationsPerUser").text == "1"
            e = opens(peer.wsman())  # Ada's shell is her one operation
            assert e is not None and e.code == QUOTA["MaxConcurrentOperationsPerUser"]
            assert "maximum number of 1 concurrent operations" in e.reason


# The session configuration's own quotas (plugin Quotas) and their faults (wsmerror.h *_PPQ; texts unverified).
QUOTA_PPQ = {"MaxShellsPerUser": 0x803381E4, "MaxConcurrentUsers": 0x803381E5, "MaxShells": 0x803381E6}


def test_put_plugin_quotas_are_enforced_for_that_configuration(tmp_path: Path) -> None:
    with Peer(tmp_path) as peer:
        w = peer.wsman()
        plugin = w.get(PLUGIN, selector_set=named("PowerShell.7"))[0]
        plugin.find(f"{{{PLUGIN_NS}}}Quotas").set("MaxShellsPerUser", "1")
        w.put(PLUGIN, plugin, selector_set=named("PowerShell.7"))
        with RunspacePool(peer.wsman(), configuration_name="PowerShell.7"):
            try:
                RunspacePool(peer.wsman(), configuration_name="PowerShell.7").open()
                raise AssertionError("a second shell of the configuration was allowed")
            except WSManFaultError as e:
                assert (e.code, e.reason) == (
                    QUOTA_PPQ["MaxShellsPerUser"], "The WS-Management service cannot process the request. This user is "
                    "allowed a maximum number of 1 concurrent shells for this plugin, which has been exceeded. Close "
                    "existing shells or raise the plugin quota for this user.")
            # Other configurations are not counted; another user of this one is.
            assert opens(peer.wsman()) is None
            with RunspacePool(peer.wsman(user=BOB), configuration_name="PowerShell.7"):
                pass
        quotas = plugin.find(f"{{{PLUGIN_NS}}}Quotas")
        quotas.set("MaxShellsPerUser", "5")
        quotas.set("MaxConcurrentUsers", "1")
        w.put(PLUGIN, plugin, selector_set=named("PowerShell.7"))
        with RunspacePool(peer.wsman(), configuration_name="PowerShell.7"):
            with RunspacePool(peer.wsman(), configuration_name="PowerShell.7"):
                pass  # the same user again
            e = fault(lambda: RunspacePool(peer.wsman(user=BOB), configuration_name="PowerShell.7").open())
            assert e.code == QUOTA_PPQ["MaxConcurrentUsers"] and "maximum number of users (1)" in e.reason
        quotas.set("MaxConcurrentUsers", "10")
        quotas.set("MaxShells", "1")
        w.put(PLUGIN, plugin, selector_set=named("PowerShell.7"))
        with RunspacePool(peer.wsman(), configuration_name="PowerShell.7"):
            e = fault(lambda: RunspacePool(peer.wsman(user=BOB), configuration_name="PowerShell.7").open())
            assert e.code == QUOTA_PPQ["MaxShells"] and "a maximum number of 1 shells" in e.reason


def test_put_config(tmp_path: Path) -> None:
    with Peer(tmp_path) as peer:
        w = peer.wsman()
        config = ET.Element(f"{{{CONFIG}}}Config")
        ET.SubElement(config, f"{{{CONFIG}}}MaxEnvelopeSizekb").text = "150"
        nested = ET.SubElement(ET.SubElement(config, f"{{{CONFIG}}}Winrs"), f"{{{CONFIG}}}IdleTimeout")
        nested.text = "600000"
        answer = w.invoke(WSManAction.PUT, CONFIG, config)
        assert answer.findtext("s:Header/{http://schemas.xmlsoap.org/ws/2004/08/addressing}Action",
                               namespaces={"s": "http://www.w3.org/2003/05/soap-envelope"}).endswith("/PutResponse")
        w.update_max_payload_size()  # pypsrp's own Get of …/config
        assert w.max_envelope_size == 150 * 1024
        assert value(w.get(CONFIG + "/winrs"), "/winrs", "Winrs/IdleTimeout").text == "600000"
        # A Get's whole answer put back unchanged (as `winrm set` round-trips it) is accepted.
        whole = w.get(CONFIG + "/service")[0]
        assert ET.tostring(w.put(CONFIG + "/service", whole)[0]) == ET.tostring(whole)
        e = fault(lambda: w.put(CONFIG + "/service", service(Auth__CbtHardeningLevel="Lax")))
        assert e.code == CBT_HARDENING_INVALID and "The valid values are \"None\", \"Relaxed\" and \"Strict\"" in e.reason


def test_put_plugin(locked_peer: Peer) -> None:
    w = locked_peer.wsman()
    plugin = w.get(PLUGIN, selector_set=named("PowerShell.7"))[0]  # a Get's answer, edited, put back
    original = copy.deepcopy(plugin)
    quotas = plugin.find(f"{{{PLUGIN_NS}}}Quotas")
    quotas.set("MaxShellsPerUser", "3")
    quotas.set("IdleTimeoutms", "3600000")
    envelope = w.invoke(WSManAction.PUT, PLUGIN, plugin, selector_set=named("PowerShell.7"))
    # Windows answers with the plugin: nothing says a WinRM restart is due (PowerShell's provider warns by itself).
    (body,) = [e for e in envelope if e.tag.endswith("}Body")]
    (answer,) = list(body)
    assert answer.find(f"{{{PLUGIN_NS}}}Quotas").get("MaxShellsPerUser") == "3"
    got = w.get(PLUGIN, selector_set=named("PowerShell.7"))[0].find(f"{{{PLUGIN_NS}}}Quotas")
    assert (got.get("MaxShellsPerUser"), got.get("IdleTimeoutms"), got.get("MaxShells")) == ("3", "3600000", "2147483647")
    logged = [line for line in locked_peer.log.read_text().splitlines() if "changed plugin PowerShell.7:" in line]
    assert "Quotas/MaxShellsPerUser=3" in logged[-1] and "Quotas/IdleTimeoutms=3600000" in logged[-1]
    assert "MaxShells=" not in logged[-1] and "effective after a WinRM restart" in logged[-1]
    for attr, text in (("IdleTimeoutms", "59999"), ("MaxIdleTimeoutms", "2147483648"), ("IdleTimeoutms", "4000000")):
        edited = copy.deepcopy(plugin)
        q = edited.find(f"{{{PLUGIN_NS}}}Quotas")
        q.set(attr, text)
        if text == "4000000":
            q.set("MaxIdleTimeoutms", "3600000")  # IdleTimeoutms above MaxIdleTimeoutms
        e = fault(lambda: w.put(PLUGIN, edited, selector_set=named("PowerShell.7")))
        assert (e.code, e.reason) == (IDLETIMEOUT_OUT_OF_BOUNDS, "The WS-Management service cannot process the "
                                      "request. The requested IdleTimeout is outside the allowed range."), (attr, text)
    edited = copy.deepcopy(plugin)
    edited.find(f"{{{PLUGIN_NS}}}Quotas").set("MaxShells", "0")
    assert fault(lambda: w.put(PLUGIN, edited, selector_set=named("PowerShell.7"))).code == SCHEMA_VALIDATION
    assert fault(lambda: w.put(PLUGIN, plugin, selector_set=named("NoSuchEndpoint"))).code == RESOURCE_NOT_FOUND
    w.put(PLUGIN, original, selector_set=named("PowerShell.7"))  # as it was, for the other tests of this peer
    assert ET.tostring(w.get(PLUGIN, selector_set=named("PowerShell.7"))[0]) == ET.tostring(original)


# -- Put: refused as Windows refuses it ---------------------------------------------------------------------------------


def test_put_by_a_user_who_is_not_an_administrator(locked_peer: Peer) -> None:
    bob = locked_peer.wsman(user=BOB)
    before = ET.tostring(bob.get(CONFIG + "/winrs"))
    for uri, body, selectors in ((CONFIG + "/winrs", winrs(MaxMemoryPerShellMB="512"), None),
                                 (CONFIG + "/service", service(MaxConnections="100"), None),
                                 (PLUGIN, bob.get(PLUGIN, selector_set=named("JEA"))[0], named("JEA"))):
        e = fault(lambda: bob.put(uri, body, selector_set=selectors))
        assert (e.code, e.reason) == (ACCESS_DENIED, "Access is denied.")
    assert ET.tostring(bob.get(CONFIG + "/winrs")) == before
    assert "PSGATE\\bob may not change the configuration" in locked_peer.log.read_text()


def test_put_of_a_read_only_setting(locked_peer: Peer) -> None:
    w = locked_peer.wsman()
    text = ("The WinRM service cannot process the request because it is trying to update a deprecated setting. Remove "
            "this setting from the command and try again.")
    for uri, body in ((CONFIG + "/winrs", winrs(MaxShellRunTime="28800000")),
                      (CONFIG + "/service", service(MaxConcurrentOperations="100"))):
        e = fault(lambda: w.put(uri, body))
        assert (e.code, e.reason) == (DEPRECATED_SETTING, text)
    # Repeating the value is not changing it.
    answer = w.put(CONFIG + "/winrs", winrs(MaxShellRunTime="2147483647", MaxProcessesPerShell="25"))
    assert value(answer, "/winrs", "Winrs/MaxProcessesPerShell").text == "25"


def test_put_of_a_setting_group_policy_controls(locked_peer: Peer) -> None:
    w = locked_peer.wsman()
    for body in (w.get(CONFIG + "/winrs"), w.get(CONFIG)):
        element = body.find(f".//{{{CONFIG}/winrs}}MaxShellsPerUser")
        element = element if element is not None else body.find(f".//{{{CONFIG}}}MaxShellsPerUser")
        assert (element.text, element.get("Source")) == ("5", "GPO")
    e = fault(lambda: w.put(CONFIG + "/winrs", winrs(MaxShellsPerUser="10")))
    assert (e.code, e.reason) == (GPO_CONTROLLED, "The config setting MaxShellsPerUser cannot be changed because is "
                                  'controlled by policies. The policy would need to be set to "Not Configured" in order '
                                  "to change the config setting.")
    w.put(CONFIG + "/winrs", winrs(MaxShellsPerUser="5"))  # the policy's own value
    # The policy's values are effective: MaxConcurrentUsers=1 keeps Bob out while Ada has a shell.
    with RunspacePool(locked_peer.wsman()):
        e = opens(locked_peer.wsman(user=BOB))
        assert e is not None and e.code == QUOTA["MaxConcurrentUsers"]


def test_put_of_bad_values_changes_nothing(locked_peer: Peer) -> None:
    w = locked_peer.wsman()
    before = ET.tostring(w.get(CONFIG + "/winrs"))
    e = fault(lambda: w.put(CONFIG + "/winrs", winrs(MaxMemoryPerShellMB="512", IdleTimeout="2147483648")))
    assert e.code == IDLETIMEOUT_OUT_OF_BOUNDS
    schema = ("The SOAP XML in the message does not match the corresponding XML schema definition. Change the XML and "
              "retry.")
    for body in (winrs(MaxMemoryPerShellMB="512", MaxProcessesPerShell="lots"), winrs(MaxShellsPerSession="3"),
                 winrs(AllowRemoteShellAccess="yes"), winrs(MaxConcurrentUsers="0")):
        e = fault(lambda: w.put(CONFIG + "/winrs", body))
        assert (e.code, e.reason) == (SCHEMA_VALIDATION, schema), ET.tostring(body)
    assert ET.tostring(w.get(CONFIG + "/winrs")) == before  # all or nothing
    e = fault(lambda: w.put(CONFIG + "/winrs", service(MaxConnections="100")))  # not this resource's element
    assert e.code == 0x80338015  # ERROR_WSMAN_INVALID_REPRESENTATION
