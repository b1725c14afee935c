"""Implicit remoting against the test peers: what Import-PSSession -Module ActiveDirectory asks a server for.

The ActiveDirectory cmdlets run as Command objects (named, positional and `-Name:value` parameters, pipeline input of
the deserialized ADUser objects a client sends back), Get-Help's MamlCommandHelpInfo, Get-Command -ShowCommandInfo,
Get-FormatData's ExtendedTypeDefinition, GET_COMMAND_METADATA (compared with the recorded Windows answer) for the AD
module, for BenchModule's 150 commands and for aliases, and a JEA (NoLanguage) endpoint whose role exposes the module.
Driven by psrpcore's client over the out-of-process transport (the host as a local process) and by pypsrp's WinRM
client against winrm_host.py.

Run: `$PSGATE_PYTHON -m pytest tests/peers/test_implicit_remoting.py -q`.
"""

from __future__ import annotations

import re
import sys
import typing
import uuid
from pathlib import Path
from xml.etree import ElementTree

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from psrpcore.types import PSInvocationState  # noqa: E402

from client import Session  # noqa: E402
from test_peer import BOM, host_argv, host_env, recorded, result_messages  # noqa: E402

AD_USER_TYPES = [
    "Deserialized.Microsoft.ActiveDirectory.Management.ADUser", "Deserialized.Microsoft.ActiveDirectory.Management.ADAccount",
    "Deserialized.Microsoft.ActiveDirectory.Management.ADPrincipal", "Deserialized.Microsoft.ActiveDirectory.Management.ADObject",
    "Deserialized.Microsoft.ActiveDirectory.Management.ADEntity", "Deserialized.System.Object",
]
AD_DEFAULT_PROPERTIES = ["DistinguishedName", "Enabled", "GivenName", "Name", "ObjectClass", "ObjectGUID", "SamAccountName",
                         "SID", "Surname", "UserPrincipalName"]


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> typing.Iterator[Session]:
    tmp = tmp_path_factory.mktemp("implicit")
    with Session.spawn(host_argv(), env=host_env(tmp)) as s:
        s.open()
        yield s


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def names_of(props: typing.Any) -> typing.List[str]:
    return [p.name for p in props]


# -- the ActiveDirectory module's commands -----------------------------------------------------------------------------


def test_import_module(local: Session) -> None:
    r = local.run_command("Import-Module", Name="ActiveDirectory")
    assert r.state == PSInvocationState.Completed and r.output == [] and r.error == []
    r = local.run("Import-Module ActiveDirectory")
    assert r.state == PSInvocationState.Completed and r.output == [] and r.error == []
    r = local.run_command("Import-Module", "Nonexistent")
    assert r.state == PSInvocationState.Completed and not r.output
    (err,) = r.error
    assert str(err) == ("The specified module 'Nonexistent' was not loaded because no valid module file was found in any "
                        "module directory.")
    assert err.FullyQualifiedErrorId == "Modules_ModuleNotFound,Microsoft.PowerShell.Commands.ImportModuleCommand"
    assert int(err.CategoryInfo.Category) == 21 and err.TargetObject == "Nonexistent"  # ResourceUnavailable


def test_get_aduser_shapes_and_lookups(local: Session) -> None:
    r = local.run_command("Get-ADUser", Filter="*")
    assert r.state == PSInvocationState.Completed
    by_sam = {u.SamAccountName: u for u in r.output}
    assert {"Administrator", "Guest", "krbtgt"} <= set(by_sam)
    admin = by_sam["Administrator"]
    assert admin.PSTypeNames == AD_USER_TYPES
    assert str(admin) == admin.DistinguishedName == "CN=Administrator,CN=Users,DC=psgate,DC=test"
    assert admin.Enabled is True and by_sam["Guest"].Enabled is False and admin.ObjectClass == "user"
    assert isinstance(admin.ObjectGUID, uuid.UUID) and str(admin.SID).endswith("-500") and admin.SID.Value == str(admin.SID)
    # The AD properties are the object's own (adapted) properties, sorted by name; Description only when set.
    body = [b for t, b in result_messages(local, r.pipeline_id) if t == 0x00041004][0]
    props = ElementTree.fromstring(body.lstrip(BOM)).find("Props")
    assert props is not None
    assert [e.get("N") for e in props] == ["Description"] + AD_DEFAULT_PROPERTIES
    # -Identity by SAM account name, name, DN, GUID and SID; positionally; in script text, `-Name:value` too.
    for identity in ("Guest", "CN=Guest,CN=Users,DC=psgate,DC=test", str(by_sam["Guest"].ObjectGUID), str(by_sam["Guest"].SID)):
        assert [u.SamAccountName for u in local.run_command("Get-ADUser", Identity=identity).output] == ["Guest"]
    assert [u.Name for u in local.run_command("Get-ADUser", "krbtgt").output] == ["krbtgt"]
    assert [u.Name for u in local.run("Get-ADUser -Identity:'Guest'").output] == ["Guest"]
    # A Command object's parameter named as typed: `-Identity:` with its value, `-Identity` then the argument.
    for name, value, argument in (("-Identity:", "Guest", None), ("-Identity", None, "Guest")):
        ps = local.powershell()
        ps.add_command("Get-ADUser").add_parameter(name, value)
        if argument is not None:
            ps.add_argument(argument)
        assert [u.Name for u in local.invoke(ps).output] == ["Guest"], name
    (limited,) = local.run_command("Get-ADUser", Filter="*", ResultSetSize=1).output  # a typed Int32
    assert limited.Name == "Administrator"
    assert [u.Name for u in local.run("Get-ADUser -Filter \"Name -eq 'Guest'\"").output] == ["Guest"]
    assert [u.Name for u in local.run("Get-ADUser -Filter 'SamAccountName -like \"krb*\" -or Name -eq \"Guest\"'").output] == ["Guest", "krbtgt"]
    assert [u.Name for u in local.run_command("Get-ADUser", Filter="Enabled -eq $false -and Name -like 'G*'").output] == ["Guest"]
    assert [u.Name for u in local.run_command("Get-ADUser", LDAPFilter="(&(objectClass=user)(sAMAccountName=Admin*))").output] == ["Administrator"]
    (full,) = local.run_command("Get-ADUser", "Guest", Properties=["Department", "DisplayName"]).output
    assert full.Department is None and "Department" in names_of(full.PSObject.adapted_properties)


def test_get_aduser_errors(local: Session) -> None:
    r = local.run_command("Get-ADUser", Identity="nosuch")
    assert r.state == PSInvocationState.Failed and not r.output
    reason = r.reason
    assert str(reason) == "Cannot find an object with identity: 'nosuch' under: 'DC=psgate,DC=test'."
    assert reason.FullyQualifiedErrorId == ("ActiveDirectoryCmdlet:Microsoft.ActiveDirectory.Management.ADIdentityNotFoundException,"
                                            "Microsoft.ActiveDirectory.Management.Commands.GetADUser")
    assert int(reason.CategoryInfo.Category) == 13 and reason.TargetObject == "nosuch"  # ObjectNotFound
    assert reason.Exception.PSTypeNames[:2] == [
        "Deserialized.Microsoft.ActiveDirectory.Management.ADIdentityNotFoundException",
        "Deserialized.Microsoft.ActiveDirectory.Management.ADIdentityResolutionException",
    ]
    r = local.run_command("Get-ADUser", Filter="Name -eq")
    assert r.state == PSInvocationState.Failed and "Error parsing query" in str(r.reason)
    r = local.run_command("Get-ADUser", Nope=1)
    assert r.state == PSInvocationState.Failed
    assert r.reason.FullyQualifiedErrorId == "NamedParameterNotFound,Microsoft.ActiveDirectory.Management.Commands.GetADUser"
    r = local.run_command("New-ADUser", SamAccountName="nameless")
    assert r.state == PSInvocationState.Failed and str(r.reason) == (
        "Cannot process command because of one or more missing mandatory parameters: Name.")


def test_new_get_then_pipe_into_set(local: Session) -> None:
    name = unique("Ada")
    r = local.run_command("New-ADUser", name, SamAccountName=name.lower(), GivenName="Ada", Surname="Lovelace",
                          Department="Engines", Enabled=True, PassThru=True)
    assert r.state == PSInvocationState.Completed, r.reason
    (created,) = r.output
    assert (created.Name, created.SamAccountName, created.GivenName, created.Department, created.Enabled) == (
        name, name.lower(), "Ada", "Engines", True)
    assert created.DistinguishedName == f"CN={name},CN=Users,DC=psgate,DC=test"
    assert local.run_command("New-ADUser", name).reason.FullyQualifiedErrorId.startswith(
        "ActiveDirectoryCmdlet:Microsoft.ActiveDirectory.Management.ADIdentityAlreadyExistsException")
    assert local.run_command("New-ADUser", Name=unique("Quiet")).output == [], "no -PassThru: no output"
    # Get, then the deserialized ADUser goes back as pipeline input (what an implicit-remoting proxy sends).
    (got,) = local.run_command("Get-ADUser", name.lower()).output
    assert got.PSTypeNames[0] == "Deserialized.Microsoft.ActiveDirectory.Management.ADUser"
    ps = local.powershell(no_input=False)
    ps.add_command("Set-ADUser").add_parameter("Department", "Analytics").add_parameter("Description", "first programmer")
    ps.add_parameter("PassThru", True)
    r = local.invoke(ps, inputs=[got])
    assert r.state == PSInvocationState.Completed, r.reason
    (changed,) = r.output
    assert (changed.Name, changed.Department, changed.Description) == (name, "Analytics", "first programmer")
    # A plain string identity, positionally; -Enabled as a typed boolean; the change is in the directory.
    assert local.run_command("Set-ADUser", name.lower(), Enabled=False).state == PSInvocationState.Completed
    (again,) = local.run_command("Get-ADUser", Filter=f"Name -eq '{name}'").output
    assert (again.Department, again.Enabled) == ("Analytics", False)
    # The same in script text, with a pipeline on the server.
    r = local.run(f"Get-ADUser -Filter \"Name -eq '{name}'\" | Set-ADUser -DisplayName:'Ada L.' -Enabled $true -PassThru")
    assert [(u.DisplayName, u.Enabled) for u in r.output] == [("Ada L.", True)]
    r = local.run_command("Set-ADUser", Identity="nosuch", Department="x")
    assert r.state == PSInvocationState.Failed and r.reason.FullyQualifiedErrorId.endswith("Commands.SetADUser")


def test_select_and_measure(local: Session) -> None:
    r = local.run("Get-ADUser -Filter * | Select-Object Name, Enabled -First 2")
    assert [o.PSTypeNames[0] for o in r.output] == ["Deserialized.Selected.Microsoft.ActiveDirectory.Management.ADUser"] * 2
    assert [names_of(o.PSObject.extended_properties) for o in r.output] == [["Name", "Enabled"]] * 2
    assert local.run("Get-ADUser -Filter * | Select-Object -ExpandProperty SamAccountName -First 1").output == ["Administrator"]
    (measure,) = local.run("Get-ADUser -Filter * | Measure-Object").output
    assert measure.PSTypeNames[0] == "Deserialized.Microsoft.PowerShell.Commands.GenericMeasureInfo"
    assert measure.Count == len(local.run_command("Get-ADUser", Filter="*").output) >= 3


# -- Get-Help ------------------------------------------------------------------------------------------------------------

HELP_TYPES = ["MamlCommandHelpInfo#ActiveDirectory#New-ADUser", "MamlCommandHelpInfo#ActiveDirectory", "MamlCommandHelpInfo", "HelpInfo"]


@pytest.mark.parametrize("switch,view", [(None, None), ("Full", "FullView"), ("Detailed", "DetailedView"), ("Examples", "ExamplesView")])
def test_help_object(local: Session, switch: typing.Optional[str], view: typing.Optional[str]) -> None:
    params: typing.Dict[str, typing.Any] = {"Name": "New-ADUser"}
    if switch:
        params[switch] = True
    (h,) = local.run_command("Get-Help", **params).output
    types = ([f"{t}#{view}" for t in HELP_TYPES] if view else []) + HELP_TYPES
    assert h.PSTypeNames == ["Deserialized." + t for t in types]
    assert (h.Name, h.Category, h.ModuleName, h.Synopsis) == ("New-ADUser", "Cmdlet", "ActiveDirectory", "Creates an Active Directory user.")
    assert h.Component is None and h.Role is None and h.Functionality is None
    assert h.details.PSTypeNames[0] == "Deserialized.MamlCommandHelpInfo#details"
    assert (h.details.name, h.details.verb, h.details.noun) == ("New-ADUser", "New", "ADUser")
    assert [d.Text for d in h.details.description] == [h.Synopsis]
    assert h.description[0].PSTypeNames[:2] == ["Deserialized.MamlParaTextItem", "Deserialized.MamlTextItem"]
    assert h.description[0].Text.startswith("The New-ADUser cmdlet creates")
    item = h.syntax.syntaxItem  # one parameter set: one syntaxItem, not an array
    assert item.PSTypeNames[0] == "Deserialized.MamlCommandHelpInfo#syntaxItem" and item.name == "New-ADUser"
    params_by_name = {p.name: p for p in h.parameters.parameter}
    name = params_by_name["Name"]
    assert (name.required, name.position, name.pipelineInput, name.globbing, name.aliases) == ("true", "0", "False", "false", "none")
    assert str(name.parameterValue) == "String" and name.type.name == "String"
    assert params_by_name["Department"].required == "false" and params_by_name["Department"].position == "named"
    assert "Verbose" not in params_by_name, "the common parameters are not in MAML"
    examples = h.examples.example
    assert examples[0].PSTypeNames[0] == "Deserialized.MamlCommandHelpInfo#example"
    assert examples[0].code.startswith("New-ADUser -Name") and examples[0].title.startswith("-------------------------- Example 1")
    links = h.relatedLinks.navigationLink
    assert (links[0].linkText, links[0].uri) == ("Online Version:", "https://go.microsoft.com/fwlink/?LinkId=301409")


def test_help_parameters_categories_and_errors(local: Session) -> None:
    (h,) = local.run_command("Get-Help", Name="Get-ADUser", Category="Cmdlet").output
    assert h.Name == "Get-ADUser" and [s.name for s in h.syntax.syntaxItem] == ["Get-ADUser"] * 3
    (identity,) = local.run_command("Get-Help", "Get-ADUser", Parameter="Identity").output
    assert identity.PSTypeNames[0] == "Deserialized.MamlCommandHelpInfo#parameter"
    assert (identity.name, identity.required, identity.position, identity.pipelineInput) == ("Identity", "true", "0", "True (ByValue)")
    assert [p.name for p in local.run_command("Get-Help", "Get-ADUser", Parameter="Search*").output] == ["SearchBase", "SearchScope"]
    (gadu,) = local.run_command("Get-Help", "gadu").output  # an alias gives its command's help
    assert gadu.Name == "Get-ADUser"
    assert local.run("Get-Help Get-Service -Category Cmdlet").output[0].ModuleName == "Microsoft.PowerShell.Management"
    for params in ({"Name": "Nonexistent"}, {"Name": "Get-ADUser", "Category": "Function"}):
        r = local.run_command("Get-Help", **params)
        assert r.state == PSInvocationState.Completed and not r.output
        (err,) = r.error
        assert err.FullyQualifiedErrorId == "HelpNotFound,Microsoft.PowerShell.Commands.GetHelpCommand"
        assert str(err).startswith(f"Get-Help could not find {params['Name']} in a help file in this session.")
        assert int(err.CategoryInfo.Category) == 21  # ResourceUnavailable
    r = local.run_command("Get-Help", "Get-ADUser", Parameter="Nope")
    assert [e.FullyQualifiedErrorId for e in r.error] == ["NoParmsFound,Microsoft.PowerShell.Commands.GetHelpCommand"]


# -- Get-Command -ShowCommandInfo, Get-Command ---------------------------------------------------------------------------


def test_show_command_info(local: Session) -> None:
    r = local.run_command("Get-Command", Name="*-ADUser", Module="ActiveDirectory", ShowCommandInfo=True)
    assert r.state == PSInvocationState.Completed and [c.Name for c in r.output] == ["Get-ADUser", "New-ADUser", "Set-ADUser"]
    get, new, set_ = r.output
    # PSCustomObjects (psrpcore's client does not prefix that type with Deserialized.)
    assert [t.removeprefix("Deserialized.") for t in get.PSTypeNames] == ["System.Management.Automation.PSCustomObject", "System.Object"]
    assert names_of(get.PSObject.extended_properties) == ["Name", "ModuleName", "Module", "CommandType", "Definition", "ParameterSets"]
    assert (get.ModuleName, get.Module.Name, int(get.CommandType)) == ("ActiveDirectory", "ActiveDirectory", 8)
    assert "Get-ADUser [-Identity] <ADUser>" in get.Definition
    assert [(s.Name, s.IsDefault) for s in get.ParameterSets] == [("Filter", True), ("Identity", False), ("LdapFilter", False)]
    identity_set = {p.Name: p for p in get.ParameterSets[1].Parameters}
    identity = identity_set["Identity"]
    assert names_of(identity.PSObject.extended_properties) == [
        "Name", "IsMandatory", "ValueFromPipeline", "Position", "ParameterType", "HasParameterSet", "ValidParamSetValues"]
    assert (identity.IsMandatory, identity.ValueFromPipeline, identity.Position) == (True, True, 0)
    assert identity.ParameterType.FullName == "Microsoft.ActiveDirectory.Management.ADUser"
    assert {"AuthType", "Verbose", "ErrorAction"} <= set(identity_set) and "Filter" not in identity_set
    scope = {p.Name: p for p in get.ParameterSets[0].Parameters}["SearchScope"]
    assert scope.Position == -2147483648 and scope.IsMandatory is False
    kind = scope.ParameterType
    assert names_of(kind.PSObject.extended_properties) == [
        "FullName", "IsEnum", "IsArray", "EnumValues", "HasFlagAttribute", "ElementType", "ImplementsDictionary"]
    assert (kind.FullName, kind.IsEnum, kind.IsArray, kind.ElementType) == ("Microsoft.ActiveDirectory.Management.ADSearchScope", True, False, None)
    assert [(str(v), int(v)) for v in kind.EnumValues] == [("Base", 0), ("OneLevel", 1), ("Subtree", 2)]
    auth = identity_set["AuthType"].ParameterType
    assert [str(v) for v in auth.EnumValues] == ["Negotiate", "Basic"]
    properties = identity_set["Properties"].ParameterType
    assert (properties.IsArray, properties.ElementType.FullName, properties.ImplementsDictionary) == (True, "System.String", False)
    (only,) = new.ParameterSets
    assert (only.Name, only.IsDefault) == ("__AllParameterSets", True)
    name = {p.Name: p for p in only.Parameters}["Name"]
    assert (name.IsMandatory, name.Position, name.ValueFromPipeline) == (True, 0, False)
    enabled = {p.Name: p for p in only.Parameters}["Enabled"].ParameterType
    assert enabled.FullName.startswith("System.Nullable`1[[System.Boolean, System.Private.CoreLib")
    s = {p.Name: p for p in set_.ParameterSets[0].Parameters}["Identity"]
    assert (set_.ParameterSets[0].Name, s.IsMandatory, s.Position, s.ValueFromPipeline) == ("Identity", True, 0, True)
    assert "Department" in {p.Name for p in set_.ParameterSets[0].Parameters}
    # ValidateSet values (a BenchModule parameter has one).
    bench = [c for c in local.run_command("Get-Command", Module="BenchModule", ShowCommandInfo=True).output]
    assert len(bench) == 150
    with_set = [p for c in bench for p in c.ParameterSets[0].Parameters if p.HasParameterSet]
    assert with_set and list(with_set[0].ValidParamSetValues) == ["Low", "Medium", "High"]


def test_get_command_objects(local: Session) -> None:
    (get,) = local.run_command("Get-Command", Name="Get-ADUser", Module="ActiveDirectory").output
    assert get.PSTypeNames[:2] == ["Deserialized.System.Management.Automation.CmdletInfo", "Deserialized.System.Management.Automation.CommandInfo"]
    assert (get.Name, get.ModuleName, get.Verb, get.Noun, get.DefaultParameterSet, int(get.CommandType)) == (
        "Get-ADUser", "ActiveDirectory", "Get", "ADUser", "Filter", 8)
    assert get.HelpUri == "https://go.microsoft.com/fwlink/?LinkId=301397"
    (alias,) = local.run_command("Get-Command", "gadu").output
    assert alias.PSTypeNames[0] == "Deserialized.System.Management.Automation.AliasInfo" and alias.ResolvedCommandName == "Get-ADUser"
    function = local.run_command("Get-Command", Name="*-Bench010").output[0]
    assert function.PSTypeNames[0] == "Deserialized.System.Management.Automation.FunctionInfo" and int(function.CommandType) == 2
    r = local.run_command("Get-Command", Name=["Get-ADUser", "No-Such"])
    assert [c.Name for c in r.output] == ["Get-ADUser"]
    assert [e.FullyQualifiedErrorId for e in r.error] == ["CommandNotFoundException,Microsoft.PowerShell.Commands.GetCommandCommand"]
    assert [c.Name for c in local.run_command("Get-Command", Name="*-ADUser", CommandType="Alias").output] == []


# -- Get-FormatData --------------------------------------------------------------------------------------------------------


def test_format_data(local: Session) -> None:
    r = local.run_command("Get-FormatData", TypeName="Microsoft.ActiveDirectory.Management.ADUser")
    (data,) = r.output
    assert data.PSTypeNames == ["Deserialized.System.Management.Automation.ExtendedTypeDefinition", "Deserialized.System.Object"]
    assert data.TypeName == str(data) == "Microsoft.ActiveDirectory.Management.ADUser"
    assert list(data.TypeNames) == ["Microsoft.ActiveDirectory.Management.ADUser"]
    (view,) = data.FormatViewDefinition
    assert view.PSTypeNames[0] == "Deserialized.System.Management.Automation.FormatViewDefinition"
    assert view.Name == "ADUser" and isinstance(view.InstanceId, uuid.UUID)
    control = view.Control
    assert control.PSTypeNames[:2] == ["Deserialized.System.Management.Automation.TableControl", "Deserialized.System.Management.Automation.PSControl"]
    assert [h.Label for h in control.Headers] == ["Name", "SamAccountName", "Enabled", "DistinguishedName"]
    assert str(control.Headers[0].Alignment) == "Undefined" and control.Headers[0].Width == 20
    (row,) = control.Rows
    entries = [c.DisplayEntry for c in row.Columns]
    assert [(str(e.ValueType), e.Value) for e in entries][:2] == [("Property", "Name"), ("Property", "SamAccountName")]
    assert str(entries[0]) == "property: Name"
    assert control.AutoSize is False and control.HideTableHeaders is False and row.Wrap is False
    assert [d.TypeName for d in local.run_command("Get-FormatData", TypeName="*ADUser").output] == [data.TypeName]
    assert local.run_command("Get-FormatData", TypeName="No.Such.Type").output == []


# -- GET_COMMAND_METADATA --------------------------------------------------------------------------------------------------


def test_bench_module_metadata_and_commands(local: Session) -> None:
    r = local.get_command_metadata("*", namespace=["BenchModule"])
    count, *commands = r.output
    assert count.Count == 150 == len(commands)
    assert len({c.Name for c in commands}) == 150 and all(re.fullmatch(r"[A-Z][a-z]+-Bench\d{3}", c.Name) for c in commands)
    sizes = [len(c.Parameters) - 12 for c in commands]  # the 12 common parameters of PowerShell 7.4
    assert min(sizes) == 5 and max(sizes) == 15
    kinds = {int(c.CommandType) for c in commands}
    assert kinds == {2, 8}, "cmdlets and functions"
    assert local.get_command_metadata("*").output[0].Count >= 150 + 3
    (result,) = local.run_command("Get-Bench001", "echo", Option01="x").output
    assert (result.Command, result.Name, result.Option01) == ("Get-Bench001", "echo", "x")
    piped = local.powershell(no_input=False)
    piped.add_command("Set-Bench002")
    assert [o.Name for o in local.invoke(piped, inputs=["a", "b"]).output] == ["a", "b"]


def _normalize_types(text: str) -> str:
    text = re.sub(r"mscorlib, Version=4\.0\.0\.0, Culture=neutral, PublicKeyToken=b77a5c561934e089", "CORELIB", text)
    text = re.sub(r"System\.Private\.CoreLib, Version=[\d.]+, Culture=neutral, PublicKeyToken=7cec85d7bea7798e", "CORELIB", text)
    return re.sub(r"System\.Management\.Automation, Version=[\d.]+,", "System.Management.Automation, Version=SMA,", text)


def _shape(e: ElementTree.Element) -> str:
    """Elements, N attributes and type names (assembly versions normalized); values and RefIds left out."""
    if e.tag == "T":
        return f"<T>{_normalize_types(e.text or '')}</T>"
    name = f" N={e.get('N')}" if e.get("N") is not None and e.get("N") not in ("Key", "Value") else ""
    return f"<{e.tag}{name}>" + "".join(_shape(c) for c in e) + f"</{e.tag}>"


def test_metadata_has_the_recorded_windows_shapes(local: Session) -> None:
    windows = [ElementTree.fromstring(b.lstrip(BOM)) for f, t, b in recorded()
               if f == "test_psrp_get_command_metadata.yml" and t == 0x00041004]
    win_commands = [w for w in windows if w.find("MS/S[@N='Name']") is not None]
    win_cmdlet = next(w for w in win_commands if w.find("MS/Obj[@N='OutputType']/LST/S") is not None
                      and "CmdletInfo" in (w.find("TN/T").text or ""))
    win_function = next(w for w in win_commands if "FunctionInfo" in (w.find("TN/T").text or ""))
    r = local.get_command_metadata(["Get-ADUser", "Clear-Bench010", "gadu"])
    bodies = [ElementTree.fromstring(b.lstrip(BOM)) for t, b in result_messages(local, r.pipeline_id) if t == 0x00041004]
    count, ours_function, ours_alias, ours_cmdlet = bodies  # sorted by name: Clear-Bench010, gadu, Get-ADUser
    assert _shape(count) == _shape(windows[0]), "CommandMetadataCount"

    def without_parameters(e: ElementTree.Element) -> str:
        return re.sub(r"<Obj N=Parameters>.*", "", _shape(e))

    for ours, theirs in ((ours_cmdlet, win_cmdlet), (ours_function, win_function)):
        assert without_parameters(ours) == without_parameters(theirs)
        assert [c.get("N") for c in ours.find("MS")] == [c.get("N") for c in theirs.find("MS")] == [
            "Name", "Namespace", "HelpUri", "CommandType", "ResolvedCommandName", "OutputType", "Parameters"]
        our_entries = {_shape(en) for en in ours.find("MS/Obj[@N='Parameters']/DCT")}
        their_entries = {_shape(en) for w in win_commands for en in w.find("MS/Obj[@N='Parameters']/DCT")}
        assert our_entries <= their_entries, f"ParameterMetadata shapes Windows never sent: {our_entries - their_entries}"
        assert _shape(ours.find("MS/Obj[@N='Parameters']/TN")) == _shape(theirs.find("MS/Obj[@N='Parameters']/TN"))
    assert [t.text for t in ours_function.find("TN")][0] == "Selected.System.Management.Automation.FunctionInfo"
    assert ours_function.find("MS/Obj[@N='CommandType']/ToString").text == "Function"
    # An alias: AliasInfo, CommandType Alias, the command it resolves to, that command's HelpUri and parameters.
    assert [t.text for t in ours_alias.find("TN")][0] == "Selected.System.Management.Automation.AliasInfo"
    assert ours_alias.find("MS/Obj[@N='CommandType']/ToString").text == "Alias"
    assert ours_alias.find("MS/Obj[@N='CommandType']/I32").text == "1"
    assert ours_alias.find("MS/S[@N='ResolvedCommandName']").text == "Get-ADUser"
    assert ours_cmdlet.find("MS/Nil[@N='ResolvedCommandName']") is not None
    assert ours_alias.find("MS/S[@N='HelpUri']").text == ours_cmdlet.find("MS/S[@N='HelpUri']").text
    assert _shape(ours_alias.find("MS/Obj[@N='Parameters']")) == _shape(ours_cmdlet.find("MS/Obj[@N='Parameters']"))
    function, alias, cmdlet = r.output[1:]
    assert (alias.Namespace, function.Namespace, cmdlet.Namespace) == ("PSGate.Aliases", "BenchModule", "ActiveDirectory")
    new_user, set_user = local.get_command_metadata(["New-ADUser", "Set-ADUser"]).output[1:]
    assert new_user.Parameters["Department"].ParameterType == set_user.Parameters["Department"].ParameterType == "System.String"
    assert "Department" not in cmdlet.Parameters, "Get-ADUser has no -Department"


def test_metadata_filters_by_command_type(local: Session) -> None:
    import psrpcore
    from psrpcore.types import CommandTypes

    gcm = psrpcore.ClientGetCommandMetadata(local.pool, ["g*"], command_type=CommandTypes.Alias)
    r = local.finish(local.start(gcm))
    assert [c.Name for c in r.output[1:]] == ["gadu", "gb1"]
    gcm = psrpcore.ClientGetCommandMetadata(local.pool, ["*-ADUser", "gadu"], command_type=CommandTypes.Cmdlet)
    assert [c.Name for c in local.finish(local.start(gcm)).output[1:]] == ["Get-ADUser", "New-ADUser", "Set-ADUser"]


# -- JEA: a NoLanguage endpoint whose role exposes the ActiveDirectory module ----------------------------------------------


@pytest.fixture(scope="module")
def jea(tmp_path_factory: pytest.TempPathFactory) -> typing.Iterator[Session]:
    tmp = tmp_path_factory.mktemp("jea-ad")
    env = host_env(tmp, PSRP_HOST_LANGUAGE="NoLanguage", PSRP_HOST_VISIBLE_COMMANDS="+ActiveDirectory")
    with Session.spawn(host_argv(), env=env) as s:
        s.open()
        yield s


def test_jea_role_runs_the_module(jea: Session) -> None:
    (count, *commands) = jea.get_command_metadata("*").output
    assert count.Count == 3 and [c.Name for c in commands] == ["Get-ADUser", "New-ADUser", "Set-ADUser"]
    assert jea.get_command_metadata("*", namespace=["BenchModule"]).output[0].Count == 0, "BenchModule stays hidden"
    name = unique("Jea")
    (user,) = jea.run_command("New-ADUser", Name=name, Department="Ops", PassThru=True).output
    ps = jea.powershell(no_input=False)
    ps.add_command("Set-ADUser").add_parameter("Description", "via JEA").add_parameter("PassThru", True)
    (changed,) = jea.invoke(ps, inputs=[user]).output
    assert (changed.Name, changed.Department, changed.Description) == (name, "Ops", "via JEA")
    r = jea.run(f"Get-ADUser -Identity {name}")
    assert r.state == PSInvocationState.Failed and r.reason.FullyQualifiedErrorId == "ScriptsNotAllowed"
    r = jea.run_command("Get-Bench001")
    assert r.state == PSInvocationState.Failed and r.reason.FullyQualifiedErrorId == "CommandNotFoundException"
    assert jea.run_command("Get-Service", "bits").output[0].DisplayName == "Background Intelligent Transfer Service", (
        "the default JEA set is still there")


def test_jea_restricted_helpers(jea: Session) -> None:
    # RestrictedRemoteServer's Get-Help takes -Name and -Category only (what implicit remoting sends).
    (h,) = jea.run_command("Get-Help", Name="Set-ADUser", Category="Cmdlet").output
    assert h.Name == "Set-ADUser" and h.PSTypeNames[2] == "Deserialized.MamlCommandHelpInfo"
    r = jea.run_command("Get-Help", Name="Set-ADUser", Full=True)
    assert r.state == PSInvocationState.Failed and r.reason.FullyQualifiedErrorId == "NamedParameterNotFound,Get-Help"
    assert str(r.reason) == "A parameter cannot be found that matches parameter name 'Full'."
    assert [e.FullyQualifiedErrorId for e in jea.run_command("Get-Help", Name="Get-Bench001").error] == [
        "HelpNotFound,Microsoft.PowerShell.Commands.GetHelpCommand"], "no help for an invisible command"
    shown = jea.run_command("Get-Command", Name="*", ShowCommandInfo=True).output
    assert {"Get-ADUser", "Get-Help", "Get-Command", "Select-Object", "Measure-Object", "Get-FormatData"} <= {c.Name for c in shown}
    assert not [c for c in shown if "Bench" in c.Name]
    assert jea.run_command("Get-FormatData", TypeName="Microsoft.ActiveDirectory.Management.ADUser").output[0].TypeName.endswith("ADUser")
    ps = jea.powershell()
    ps.add_command("Get-ADUser").add_parameter("Filter", "*")
    ps.add_command("Measure-Object")
    (measure,) = jea.invoke(ps).output
    assert measure.Count >= 3
    ps = jea.powershell()
    ps.add_command("Get-ADUser").add_parameter("Identity", "Guest")
    ps.add_command("Select-Object").add_parameter("Property", ["Name", "Enabled"])
    (selected,) = jea.invoke(ps).output
    assert (selected.Name, selected.Enabled) == ("Guest", False)


def test_default_jea_hides_the_module(tmp_path: Path) -> None:
    with Session.spawn(host_argv(), env=host_env(tmp_path, PSRP_HOST_LANGUAGE="NoLanguage")) as s:
        s.open()
        assert s.get_command_metadata("*").output[0].Count == 0
        r = s.run_command("Get-ADUser", Filter="*")
        assert r.state == PSInvocationState.Failed and r.reason.FullyQualifiedErrorId == "CommandNotFoundException"
        assert [e.FullyQualifiedErrorId for e in s.run_command("Get-Help", Name="Get-ADUser").error] == [
            "HelpNotFound,Microsoft.PowerShell.Commands.GetHelpCommand"]
        assert s.run_command("Get-Help", Name="Get-Service").output[0].Name == "Get-Service"
        s.close()
    env = host_env(tmp_path, PSRP_HOST_LANGUAGE="NoLanguage", PSRP_HOST_VISIBLE_COMMANDS="RestrictedRemoteServer,BenchModule")
    with Session.spawn(host_argv(), env=env) as s:
        s.open()
        assert s.get_command_metadata("*").output[0].Count == 150
        assert s.run_command("Get-Service", "bits").reason.FullyQualifiedErrorId == "CommandNotFoundException"
        s.close()


# -- the same over WinRM with pypsrp ---------------------------------------------------------------------------------------


def test_over_winrm_with_pypsrp(tmp_path: Path) -> None:
    from pypsrp.powershell import PowerShell, RunspacePool

    from test_winrm_peer import Peer, prop

    def command(rp: RunspacePool, name: str, *args: typing.Any, input: typing.Any = None, **params: typing.Any) -> PowerShell:
        ps = PowerShell(rp)
        ps.add_cmdlet(name)
        for a in args:
            ps.add_argument(a)
        for k, v in params.items():
            ps.add_parameter(k, v)
        ps.invoke(input=input)
        return ps

    with Peer(tmp_path, "--restricted-configuration", "JEA.AD", "--visible-commands", "+ActiveDirectory") as peer:
        for configuration in (None, "JEA.AD"):
            kw = {"configuration_name": configuration} if configuration else {}
            with RunspacePool(peer.wsman(), **kw) as rp:
                assert [c.name for c in rp.get_command_metadata("*-ADUser")] == ["Get-ADUser", "New-ADUser", "Set-ADUser"]
                name = unique("Win")
                ps = command(rp, "New-ADUser", name, Department="WinRM", PassThru=True)
                assert not ps.had_errors, ps.streams.error
                (created,) = ps.output
                assert created.types[0] == "Microsoft.ActiveDirectory.Management.ADUser"  # pypsrp keeps the wire's names
                assert prop(created, "Department") == "WinRM"
                # pypsrp sends the deserialized ADUser back as pipeline input.
                ps = command(rp, "Set-ADUser", input=[created], Description="piped over WinRM", PassThru=True)
                assert not ps.had_errors, ps.streams.error
                (changed,) = ps.output
                assert (prop(changed, "Name"), prop(changed, "Description")) == (name, "piped over WinRM")
                (h,) = command(rp, "Get-Help", Name="Set-ADUser", Category="Cmdlet").output
                # MamlNode's type names end without System.Object: pypsrp gives such an object back as its CLIXML.
                assert isinstance(h, str)
                assert [t.text for t in ElementTree.fromstring(h).find("TN")] == [
                    "MamlCommandHelpInfo#ActiveDirectory#Set-ADUser", "MamlCommandHelpInfo#ActiveDirectory",
                    "MamlCommandHelpInfo", "HelpInfo"]
                (info,) = command(rp, "Get-Command", Name="Set-ADUser", ShowCommandInfo=True).output
                assert prop(info, "Name") == "Set-ADUser" and prop(info, "ModuleName") == "ActiveDirectory"
                (data,) = command(rp, "Get-FormatData", TypeName="Microsoft.ActiveDirectory.Management.ADUser").output
                assert data.types[0] == "System.Management.Automation.ExtendedTypeDefinition"
            with RunspacePool(peer.wsman(), **kw) as rp:
                metadata = rp.get_command_metadata("*", namespace=["BenchModule"])
                assert len(metadata) == (0 if configuration else 150)


# -- the endpoint's own skip list ---------------------------------------------------------------------------------------


def test_a_declared_skip_list_travels_in_the_application_private_data(tmp_path: Path) -> None:
    """PSRP_HOST_COMMANDS_TO_SKIP: the endpoint declares ImplicitRemoting.CommandsToSkip beside $PSVersionTable, as a
    session configuration's GetApplicationPrivateData does; unset, there is no ImplicitRemoting entry (Windows'
    default endpoints declare none: clients then use PowerShell's default list)."""
    with Session.spawn(host_argv(), env=host_env(tmp_path, PSRP_HOST_COMMANDS_TO_SKIP="Get-Command,Select-Object")) as s:
        s.open()
        data = s.pool.application_private_data
        assert list(data["ImplicitRemoting"]["CommandsToSkip"]) == ["Get-Command", "Select-Object"]
        assert str(data["PSVersionTable"]["PSVersion"]).startswith("7.")
    with Session.spawn(host_argv(), env=host_env(tmp_path, PSRP_HOST_COMMANDS_TO_SKIP="")) as s:
        s.open()
        assert list(s.pool.application_private_data["ImplicitRemoting"]["CommandsToSkip"]) == []
    with Session.spawn(host_argv(), env=host_env(tmp_path)) as s:
        s.open()
        assert "ImplicitRemoting" not in s.pool.application_private_data
