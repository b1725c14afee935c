"""The transport-independent part of psgate's PSRP test peers: what both test hosts share.

`psrp_host.py` (the out-of-process transport: `pwsh -s`, the SSH `powershell` subsystem) and `winrm_host.py`
(WS-Management over HTTP/HTTPS) are the same PowerShell server behind different transports. Everything that is not
the transport lives here:

- `HostPool`: psrpcore 0.3.1's `ServerRunspacePool` with Windows' wire habits (a UTF-8 BOM before every message body,
  SESSION_CAPABILITY with protocolversion first, objects laid out as PowerShell's serializer does via clixml_out.py)
  and PowerShell's reading of a client's call id spelled "CI" (pypsrp's SET_MAX_RUNSPACES);
- the object shapes PowerShell 7.4 sends (processes, error records, informational and progress records, command
  metadata, `$PSVersionTable`);
- the emulated commands (`COMMANDS`) with their tiny command-line parser, run one pipeline per thread (`Run`);
- the modules implicit remoting imports (`COMMAND_DEFS`: parameter sets, positions, pipeline input, help text):
  ActiveDirectory over an in-memory directory (Get-/New-/Set-ADUser), BenchModule's 150 generated commands,
  PSGate.Aliases; GET_COMMAND_METADATA, Get-Command (-ShowCommandInfo), Get-Help, Get-FormatData, Select-Object and
  Measure-Object answer from them as PowerShell would;
- the language mode: FullLanguage, or NoLanguage as in PowerShell's RestrictedRemoteServer (JEA) session: a script
  fails the pipeline with ScriptsNotAllowed, only the visible commands run (a module name in the visible list stands
  for its commands: a JEA role) and the RestrictedRemoteServer proxies take only their parameters
  (`PsrpSession.set_language`, `expand_visible`, `RESTRICTED_PARAMETERS`);
- `PsrpSession`: one runspace pool and its pipelines, fed with the client's PSRP bytes; it answers pool requests,
  stops, fails and closes pipelines as pwsh does. A transport subclasses it and says how queued messages leave
  (`flush`) and how bulk output is sent fast (`send_bulk`).

Nothing here reads or writes a socket, a pipe or stdout; psrp_host.py must keep working under the system Python of
the sshd test user, so this module imports only psrpcore and the standard library.
"""

from __future__ import annotations

import base64
import datetime
import fnmatch
import logging
import os
import re
import struct
import threading
import time
import typing
import uuid
from xml.etree import ElementTree

import psrpcore
from psrpcore import (
    CreatePipelineEvent,
    EndOfPipelineInputEvent,
    GetAvailableRunspacesEvent,
    GetCommandMetadataEvent,
    PipelineHostResponseEvent,
    PipelineInputEvent,
    PSRPPayload,
    ResetRunspaceStateEvent,
    ServerHostRequestor,
    ServerPipeline,
    ServerRunspacePool,
    SetMaxRunspacesEvent,
    SetMinRunspacesEvent,
    StreamType,
)
from psrpcore._payload import PSRPMessage, create_message
from psrpcore.types import (
    ApplicationPrivateData,
    ChoiceDescription,
    EndOfPipelineInput,
    FieldDescription,
    PSInvocationState,
    PSRPMessageType,
    PSSecureString,
    PSVersion,
    RunspacePoolState,
    SessionCapability,
    serialize,
)

from clixml_out import I64, U32, Dbl, Enum, Obj, SS, TS, Ver, to_clixml

log = logging.getLogger("psrp_host")

NULL_GUID = uuid.UUID(int=0)
FRAGMENT_SIZE = 32768  # PowerShell's default, 21-byte header included (protocol.md §1.4)
BOM = b"\xef\xbb\xbf"
PS_VERSION = "7.4.6"
CORELIB = "System.Private.CoreLib, Version=8.0.0.0, Culture=neutral, PublicKeyToken=7cec85d7bea7798e"
SMA = "System.Management.Automation, Version=7.4.6.500, Culture=neutral, PublicKeyToken=31bf3856ad364e35"
COMPUTER = "PSGATE-TEST"
USER = "PSGATE-TEST\\psgate-test"


# ---------------------------------------------------------------------------------------------------------------------
# Messages


class Raw:
    """A message body written by clixml_out (already in PowerShell's layout)."""

    __slots__ = ("message_type", "body")

    def __init__(self, message_type: PSRPMessageType, value: typing.Any) -> None:
        self.message_type = message_type
        self.body = to_clixml(value)


def _ps_layout(element: ElementTree.Element) -> None:
    """Reorders psrpcore's elements and attributes into PowerShell's layout (see clixml_out)."""
    for obj in element.iter("Obj"):
        rank = {"TN": 0, "TNRef": 0, "ToString": 1, "Props": 3, "MS": 4}
        children = sorted(list(obj), key=lambda c: rank.get(c.tag, 2))
        for c in list(obj):
            obj.remove(c)
        obj.extend(children)
    for e in element.iter():
        if "N" in e.attrib and "RefId" in e.attrib:
            n, ref = e.attrib["N"], e.attrib["RefId"]
            e.attrib.clear()
            e.attrib["N"] = n
            e.attrib["RefId"] = ref


_EMPTY_S = re.compile(rb'<S( N="[^"]*")? />')


class HostPool(ServerRunspacePool):
    """psrpcore's server pool with Windows' wire habits (module docstring)."""

    def __init__(self) -> None:
        super().__init__(application_private_data={"PSVersionTable": {}})
        self.commands_to_skip = commands_to_skip_from_env()

    # PowerShell reads property names case-insensitively, psrpcore does not: pypsrp 0.9.1 names the call id of
    # SET_MAX/MIN_RUNSPACES "CI" (test_psrp_set_runspaces.yml), which Windows accepts and psrpcore cannot read.
    _CI_MESSAGES = (PSRPMessageType.SetMaxRunspaces, PSRPMessageType.SetMinRunspaces,
                    PSRPMessageType.GetAvailableRunspaces, PSRPMessageType.ResetRunspaceState)

    def _process_message(self, message: PSRPMessage) -> typing.Any:
        if message.message_type in self._CI_MESSAGES and b'N="CI"' in message.data:
            message = PSRPMessage(message.message_type, bytearray(message.data.replace(b'N="CI"', b'N="ci"')),
                                  message.runspace_pool_id, message.pipeline_id, message.object_id, message.stream_type)
        return super()._process_message(message)

    def prepare_message(  # type: ignore[override]
        self,
        message: typing.Any,
        message_type: typing.Optional[PSRPMessageType] = None,
        pipeline_id: typing.Optional[uuid.UUID] = None,
        stream_type: StreamType = StreamType.default,
    ) -> None:
        if isinstance(message, Raw):
            message_type, body = message.message_type, message.body
        elif isinstance(message, SessionCapability):
            message_type = PSRPMessageType.SessionCapability
            body = to_clixml(
                Obj(
                    ms=[
                        ("protocolversion", Ver(str(message.protocolversion))),
                        ("PSVersion", Ver(str(message.PSVersion))),
                        ("SerializationVersion", Ver(str(message.SerializationVersion))),
                    ]
                )
            )
        elif isinstance(message, ApplicationPrivateData):
            message_type = PSRPMessageType.ApplicationPrivateData
            body = to_clixml(application_private_data(self.commands_to_skip))
        elif message is None:
            message_type = message_type or PSRPMessageType.PipelineOutput
            body = b"<Nil />"
        elif isinstance(message, EndOfPipelineInput):
            message_type, body = PSRPMessageType.EndOfPipelineInput, b""
        else:
            element = serialize(
                message, self._cipher, our_capability=self.our_capability, their_capability=self.their_capability
            )
            _ps_layout(element)
            body = _EMPTY_S.sub(rb"<S\1></S>", ElementTree.tostring(element, encoding="utf-8", method="xml"))
            if message_type is None:
                message_type = PSRPMessageType.get_message_id(type(message))
        data = BOM + body if body else body
        raw = create_message(False, message_type, data, self.runspace_pool_id, pipeline_id)
        object_id = self._fragment_counter
        log.debug("queue %s pid=%s oid=%d %s", message_type.name, pipeline_id, object_id, body[:300])
        self._send_buffer.append(
            PSRPMessage(message_type, bytearray(raw), self.runspace_pool_id, pipeline_id, object_id, stream_type)
        )



def fragments(data: bytes) -> typing.Iterator[bytes]:
    """The PSRP fragments (21-byte header + blob) in a payload from `data_to_send`."""
    pos = 0
    while pos < len(data):
        length = struct.unpack_from(">I", data, pos + 17)[0]
        yield data[pos : pos + 21 + length]
        pos += 21 + length


# ---------------------------------------------------------------------------------------------------------------------
# Object shapes (PowerShell 7.4 on the wire)


def type_list(*names: str) -> typing.List[str]:
    return list(names)


def version_table_entries() -> typing.List[typing.Tuple[str, typing.Any]]:
    compatible = ["1.0", "2.0", "3.0", "4.0", "5.0", "5.1.10032.0", "6.0.0", "7.0.0"]
    return [
        ("PSVersion", Ver(PS_VERSION)),
        ("PSEdition", "Core"),
        ("GitCommitId", PS_VERSION),
        ("OS", "Microsoft Windows 10.0.20348"),
        ("Platform", "Win32NT"),
        (
            "PSCompatibleVersions",
            Obj(type_list("System.Version[]", "System.Array", "System.Object"), value=("LST", [Ver(v) for v in compatible])),
        ),
        ("PSRemotingProtocolVersion", Ver("2.3")),
        ("SerializationVersion", Ver("1.1.0.1")),
        ("WSManStackVersion", Ver("3.0")),
    ]


def application_private_data(commands_to_skip: typing.Optional[typing.Sequence[str]] = None) -> Obj:
    """APPLICATION_PRIVATE_DATA: `$PSVersionTable`, and, where the endpoint declares it, implicit remoting's
    `ImplicitRemoting.CommandsToSkip` (a PSPrimitiveDictionary holding a string[], as a session configuration's
    GetApplicationPrivateData puts it)."""
    prim = type_list(
        "System.Management.Automation.PSPrimitiveDictionary", "System.Collections.Hashtable", "System.Object"
    )
    table = Obj(prim, value=("DCT", version_table_entries()))
    entries: typing.List[typing.Tuple[str, typing.Any]] = [("PSVersionTable", table)]
    if commands_to_skip is not None:
        names = Obj(type_list("System.String[]", "System.Array", "System.Object"), value=("LST", list(commands_to_skip)))
        entries.append(("ImplicitRemoting", Obj(prim, value=("DCT", [("CommandsToSkip", names)]))))
    return Obj(ms=[("ApplicationPrivateData", Obj(prim, value=("DCT", entries)))])


def commands_to_skip_from_env() -> typing.Optional[typing.List[str]]:
    """PSRP_HOST_COMMANDS_TO_SKIP (comma-separated, may be empty): the skip list the endpoint declares; unset: none."""
    value = os.environ.get("PSRP_HOST_COMMANDS_TO_SKIP")
    return None if value is None else [c.strip() for c in value.split(",") if c.strip()]


def ps_version_table() -> Obj:
    semver = Obj(
        type_list("System.Management.Automation.SemanticVersion", "System.Object"),
        PS_VERSION,
        props=[("Major", 7), ("Minor", 4), ("Patch", 6), ("PreReleaseLabel", None), ("BuildLabel", None)],
    )
    entries = version_table_entries()
    entries[0] = ("PSVersion", semver)
    return Obj(
        type_list("System.Management.Automation.PSVersionHashTable", "System.Collections.Hashtable", "System.Object"),
        value=("DCT", entries),
    )


def get_date(now: typing.Optional[datetime.datetime] = None) -> Obj:
    now = now or datetime.datetime.now().astimezone()
    hint = Enum("Microsoft.PowerShell.Commands.DisplayHintType", "DateTime", 2)
    return Obj(value=now, ms=[("DisplayHint", hint)])


_BOOT = datetime.datetime(2026, 11, 24, 6, 0, 0, tzinfo=datetime.timezone.utc)
PROCESSES = [
    # name, id, cpu seconds, working set, path
    ("Idle", 0, None, 8192, None),
    ("System", 4, 1234.5, 155648, None),
    ("svchost", 812, 45.25, 23461888, "C:\\Windows\\system32\\svchost.exe"),
    ("svchost", 1020, 12.0625, 11923456, "C:\\Windows\\system32\\svchost.exe"),
    ("svchost", 1544, 3.5, 9064448, "C:\\Windows\\System32\\svchost.exe"),
    ("explorer", 4312, 98.75, 152694784, "C:\\Windows\\explorer.exe"),
    ("pwsh", 6020, 2.890625, 98123776, "C:\\Program Files\\PowerShell\\7\\pwsh.exe"),
    ("sshd", 2904, 0.40625, 7340032, "C:\\Windows\\System32\\OpenSSH\\sshd.exe"),
]


def process_object(name: str, pid: int, cpu: typing.Optional[float], ws: int, path: typing.Optional[str]) -> Obj:
    start = _BOOT + datetime.timedelta(seconds=pid)
    module: typing.Any = None
    if path:
        module_name = path.rsplit("\\", 1)[-1]
        module = Obj(
            type_list("System.Diagnostics.ProcessModule", "System.ComponentModel.Component", "System.MarshalByRefObject", "System.Object"),
            f"System.Diagnostics.ProcessModule ({module_name})",
            props=[
                ("ModuleName", module_name),
                ("FileName", path),
                ("BaseAddress", I64(140695537549312 + pid * 65536)),
                ("ModuleMemorySize", 57344 + pid),
                ("EntryPointAddress", I64(140695537560000 + pid * 65536)),
                ("FileVersionInfo", f"File:             {path}"),
                ("Site", None),
                ("Container", None),
            ],
            ms=[("Size", 56 + pid % 7), ("Company", "Microsoft Corporation"), ("FileVersion", "10.0.20348.1"), ("ProductVersion", "10.0.20348.1"), ("Description", module_name), ("Product", "Microsoft® Windows® Operating System")],
        )
    props = [
        ("Name", name),
        ("Id", pid),
        ("PriorityClass", None if pid == 0 else Enum("System.Diagnostics.ProcessPriorityClass", "Normal", 32)),
        ("FileVersion", None if not path else "10.0.20348.1"),
        ("HandleCount", 100 + pid % 900),
        ("WorkingSet", ws),
        ("PagedMemorySize", ws // 2),
        ("PrivateMemorySize", ws // 2),
        ("VirtualMemorySize", 4096 * 1024),
        ("TotalProcessorTime", None if cpu is None else TS(f"PT{cpu}S")),
        ("SI", 0 if pid < 1000 else 1),
        ("Handles", 100 + pid % 900),
        ("VM", I64(2203318222848 + pid)),
        ("WS", I64(ws)),
        ("PM", I64(ws // 2)),
        ("NPM", I64(12345 + pid)),
        ("Path", path),
        ("CommandLine", path),
        ("Parent", None),
        ("Company", None if not path else "Microsoft Corporation"),
        ("CPU", None if cpu is None else Dbl(cpu)),
        ("ProductVersion", None if not path else "10.0.20348.1"),
        ("Description", None if not path else name),
        ("Product", None if not path else "Microsoft® Windows® Operating System"),
        ("__NounName", "Process"),
        ("SafeHandle", "Microsoft.Win32.SafeHandles.SafeProcessHandle"),
        ("Handle", I64(2000 + pid)),
        ("BasePriority", 8),
        ("ExitCode", None),
        ("HasExited", False),
        ("StartTime", None if pid == 0 else start),
        ("ExitTime", None),
        ("MachineName", "."),
        ("MaxWorkingSet", I64(1413120)),
        ("MinWorkingSet", I64(204800)),
        ("MainModule", module),
        ("Modules", "System.Diagnostics.ProcessModuleCollection"),
        ("NonpagedSystemMemorySize64", I64(12345 + pid)),
        ("PagedMemorySize64", I64(ws // 2)),
        ("PeakWorkingSet64", I64(ws + 4096)),
        ("PrivateMemorySize64", I64(ws // 2)),
        ("ProcessName", name),
        ("ProcessorAffinity", I64(3)),
        ("Responding", True),
        ("SessionId", 0 if pid < 1000 else 1),
        ("StartInfo", "System.Diagnostics.ProcessStartInfo"),
        ("Threads", "System.Diagnostics.ProcessThreadCollection"),
        ("UserProcessorTime", None if cpu is None else TS(f"PT{cpu / 2}S")),
        ("VirtualMemorySize64", I64(2203318222848 + pid)),
        ("EnableRaisingEvents", False),
        ("WorkingSet64", I64(ws)),
        ("Site", None),
        ("Container", None),
    ]
    # Name … __NounName are ETS members (aliases and script properties): <MS>; the rest is the .NET object: <Props>.
    ets_names = {"Name", "SI", "Handles", "VM", "WS", "PM", "NPM", "Path", "CommandLine", "Parent", "Company", "CPU",
                 "FileVersion", "ProductVersion", "Description", "Product", "__NounName"}
    ms = [(k, v) for k, v in props if k in ets_names]
    real = [(k, v) for k, v in props if k not in ets_names]
    return Obj(
        type_list("System.Diagnostics.Process", "System.ComponentModel.Component", "System.MarshalByRefObject", "System.Object"),
        f"System.Diagnostics.Process ({name})",
        props=real,
        ms=ms,
    )


def exception_obj(types: typing.List[str], message: str, extra: typing.Sequence[typing.Tuple[str, typing.Any]] = (),
                  thrown: bool = False) -> Obj:
    data = Obj(type_list("System.Collections.ListDictionaryInternal", "System.Object"), value=("DCT", []))
    props = [
        ("ErrorRecord", message),
        ("WasThrownFromThrowStatement", thrown),
        ("TargetSite", None),
        ("Message", message),
        ("Data", data),
        ("InnerException", None),
        ("HelpLink", None),
        ("Source", None),
        ("HResult", -2146233087),
        ("StackTrace", None),
    ]
    if "System.Management.Automation.RuntimeException" not in types:
        props = props[2:]
    props.extend(extra)
    return Obj(types + ["System.SystemException", "System.Exception", "System.Object"], f"{types[0]}: {message}", props=props)


def invocation_info(command: str, line: str, position: int = 1) -> Obj:
    bound = Obj(
        type_list(f"System.Collections.Generic.Dictionary`2[[System.String, {CORELIB}],[System.Object, {CORELIB}]]", "System.Object"),
        value=("DCT", []),
    )
    unbound = Obj(type_list(f"System.Collections.Generic.List`1[[System.Object, {CORELIB}]]", "System.Object"), value=("LST", []))
    return Obj(
        type_list("System.Management.Automation.InvocationInfo", "System.Object"),
        "System.Management.Automation.InvocationInfo",
        props=[
            ("MyCommand", command or None),
            ("BoundParameters", bound),
            ("UnboundArguments", unbound),
            ("ScriptLineNumber", 1),
            ("OffsetInLine", position),
            ("HistoryId", I64(1)),
            ("ScriptName", ""),
            ("Line", line),
            ("Statement", line),
            ("PositionMessage", f"At line:1 char:{position}\n+ {line}\n+ {'~' * max(1, len(line))}"),
            ("PSScriptRoot", ""),
            ("PSCommandPath", None),
            ("InvocationName", command),
            ("PipelineLength", 0),
            ("PipelinePosition", 0),
            ("ExpectingInput", False),
            ("CommandOrigin", "Internal"),
            ("DisplayScriptPosition", None),
        ],
    )


CATEGORIES = {
    "NotSpecified": 0, "InvalidArgument": 5, "InvalidOperation": 7, "ObjectNotFound": 13, "OperationStopped": 14,
    "InvalidData": 6, "ParserError": 17, "PermissionDenied": 18, "ResourceUnavailable": 21, "WriteError": 23,
}


def ellipsize(text: str) -> str:
    """ErrorCategoryInfo.Ellipsize (ErrorPackage.cs): a text over 40 characters becomes its first and last 19 around
    an ellipsis (ErrorPackage.resx `Ellipsize`: "{0}\u2026{1}"), in ErrorCategory_Message only."""
    return text if len(text) <= 40 else f"{text[:19]}\u2026{text[-19:]}"


def error_record(
    message: str,
    exception_types: typing.List[str],
    error_id: str,
    category: str,
    *,
    activity: str = "",
    reason: typing.Optional[str] = None,
    target: typing.Any = None,
    command: str = "",
    line: str = "",
    write_error_stream: bool = False,
    exception_extra: typing.Sequence[typing.Tuple[str, typing.Any]] = (),
    thrown: bool = False,
) -> Obj:
    """An ErrorRecord as PowerShell serializes it (ErrorRecord.ToPSObjectForRemoting; compare the recordings)."""
    reason = reason or exception_types[0].rsplit(".", 1)[-1]
    target_name = "" if target is None else str(target)
    target_type = "" if target is None else "String" if isinstance(target, str) else type(target).__name__
    category_message = f"{category}: ({ellipsize(target_name)}:{ellipsize(target_type)}) [{ellipsize(activity)}], {reason}"
    ms: typing.List[typing.Tuple[str, typing.Any]] = []
    if write_error_stream:
        ms.append(("writeErrorStream", True))
    ms += [
        ("Exception", exception_obj(exception_types, message, exception_extra, thrown)),
        ("TargetObject", target),
        ("FullyQualifiedErrorId", error_id),
        ("InvocationInfo", invocation_info(command, line) if line else None),
        ("ErrorCategory_Category", CATEGORIES.get(category, 0)),
        ("ErrorCategory_Activity", activity),
        ("ErrorCategory_Reason", reason),
        ("ErrorCategory_TargetName", target_name),
        ("ErrorCategory_TargetType", target_type),
        ("ErrorCategory_Message", category_message),
        ("SerializeExtendedInfo", False),
        ("ErrorDetails_ScriptStackTrace", "at <ScriptBlock>, <No file>: line 1"),
    ]
    return Obj(type_list("System.Management.Automation.ErrorRecord", "System.Object"), message, ms=ms)


def informational(kind: str, message: str) -> Obj:
    return Obj(
        type_list(f"System.Management.Automation.{kind}Record", "System.Management.Automation.InformationalRecord", "System.Object"),
        message,
        ms=[("InformationalRecord_Message", message), ("InformationalRecord_SerializeInvocationInfo", False)],
    )


def information_record(message_data: typing.Any, source: str, tags: typing.Sequence[str]) -> Obj:
    tag_list = Obj(type_list(f"System.Collections.Generic.List`1[[System.String, {CORELIB}]]", "System.Object"), value=("LST", list(tags)))
    return Obj(
        ms=[
            ("MessageData", message_data),
            ("Source", source),
            ("TimeGenerated", datetime.datetime.now().astimezone()),
            ("Tags", tag_list),
            ("User", USER),
            ("Computer", COMPUTER),
            ("ProcessId", U32(os.getpid())),
            ("NativeThreadId", U32(threading.get_native_id())),
            ("ManagedThreadId", U32(16)),
        ]
    )


CONSOLE_COLORS = ["Black", "DarkBlue", "DarkGreen", "DarkCyan", "DarkRed", "DarkMagenta", "DarkYellow", "Gray",
                  "DarkGray", "Blue", "Green", "Cyan", "Red", "Magenta", "Yellow", "White"]


def host_information_message(text: str, no_newline: bool, fg: typing.Optional[str], bg: typing.Optional[str]) -> Obj:
    def color(c: typing.Optional[str]) -> typing.Any:
        if c is None:
            return None
        for i, n in enumerate(CONSOLE_COLORS):
            if n.lower() == str(c).lower():
                return Enum("System.ConsoleColor", n, i)
        raise CommandError(parameter_error("Write-Host", "ForegroundColor", f"Cannot convert value \"{c}\" to type \"System.ConsoleColor\"."))

    return Obj(
        type_list("System.Management.Automation.HostInformationMessage", "System.Object"),
        text,
        props=[("Message", text), ("NoNewLine", no_newline), ("ForegroundColor", color(fg)), ("BackgroundColor", color(bg))],
    )


def progress_record(activity: str, activity_id: int, status: str, current: typing.Optional[str], parent: int,
                    percent: int, completed: bool, seconds: int) -> Obj:
    kind = Enum("System.Management.Automation.ProgressRecordType", "Completed" if completed else "Processing", 1 if completed else 0)
    return Obj(
        ms=[
            ("Activity", activity),
            ("ActivityId", activity_id),
            ("StatusDescription", status),
            ("CurrentOperation", current),
            ("ParentActivityId", parent),
            ("PercentComplete", percent),
            ("Type", kind),
            ("SecondsRemaining", seconds),
        ]
    )


def stopped_error() -> Obj:
    # What pwsh sends with PIPELINE_STATE(Stopped): PipelineStoppedException's ErrorRecord.
    return error_record(
        "The pipeline has been stopped.",
        ["System.Management.Automation.PipelineStoppedException", "System.Management.Automation.RuntimeException"],
        "PipelineStopped",
        "OperationStopped",
    )


def not_recognized(name: str, line: str) -> Obj:
    message = (
        f"The term '{name}' is not recognized as the name of a cmdlet, function, script file, or operable program. "
        "Check the spelling of the name, or if a path was included, verify that the path is correct and try again."
    )
    return error_record(
        message,
        ["System.Management.Automation.CommandNotFoundException", "System.Management.Automation.RuntimeException"],
        "CommandNotFoundException",
        "ObjectNotFound",
        target=name,
        line=line,
        exception_extra=[("CommandName", name)],
    )


# ParserStrings.resx `ScriptsNotAllowed` (PowerShell v7.4.6, src/System.Management.Automation/resources/
# ParserStrings.resx; the same text since PowerShell 6.0).
SCRIPTS_NOT_ALLOWED = "The syntax is not supported by this runspace. This can occur if the runspace is in no-language mode."


def scripts_not_allowed(script: str) -> Obj:
    """A script (Command.IsScript) in a NoLanguage runspace. PowerShell v7.4.6, engine/hostifaces/Command.cs,
    Command.CreateCommandProcessor: `if (IsScript && LanguageMode == NoLanguage && origin == CommandOrigin.Runspace)
    throw InterpreterError.NewInterpreterException(CommandText, typeof(ParseException), null, "ScriptsNotAllowed",
    ParserStrings.ScriptsNotAllowed)`: a ParseException (ErrorId ScriptsNotAllowed, category ParserError, the script
    text as target object, no InvocationInfo: no position). It is thrown while LocalPipeline builds the pipeline
    (CreatePipelineProcessor), before any command runs; LocalPipeline.InvokeThreadProc catches it as a
    RuntimeException and sets PipelineState.Failed with it as reason, which the server sends as PIPELINE_STATE(Failed)
    with ExceptionAsErrorRecord (RemotingEncoder.GeneratePowerShellStateInfo). No ERROR_RECORD message is sent."""
    return error_record(
        SCRIPTS_NOT_ALLOWED,
        ["System.Management.Automation.ParseException", "System.Management.Automation.RuntimeException"],
        "ScriptsNotAllowed",
        "ParserError",
        target=script,
        exception_extra=[("Errors", None)],
    )


def parameter_error(command: str, parameter: str, message: typing.Optional[str] = None,
                    fqid_type: typing.Optional[str] = None) -> Obj:
    message = message or f"A parameter cannot be found that matches parameter name '{parameter}'."
    cmd_class = fqid_type or f"Microsoft.PowerShell.Commands.{command.replace('-', '')}Command"
    return error_record(
        message,
        ["System.Management.Automation.ParameterBindingException", "System.Management.Automation.RuntimeException"],
        f"NamedParameterNotFound,{cmd_class}",
        "InvalidArgument",
        activity=command,
        command=command,
        line=command,
        exception_extra=[("ParameterName", parameter), ("CommandInvocation", None)],
    )


# ---------------------------------------------------------------------------------------------------------------------
# Command definitions: one per emulated module command, for GET_COMMAND_METADATA, Get-Command (-ShowCommandInfo),
# Get-Help and parameter binding. Metadata is shaped after test_psrp_get_command_metadata.yml.

INT_MIN = -2147483648  # CommandParameterInfo.Position of a parameter that is not positional
ALL_SETS = "__AllParameterSets"
SWITCH = "System.Management.Automation.SwitchParameter"
ACTION_PREFERENCE = "System.Management.Automation.ActionPreference"
AD_USER = "Microsoft.ActiveDirectory.Management.ADUser"
# Enum types a parameter may have: (name, value) in declaration order (ShowCommandParameterType.EnumValues).
ENUMS: typing.Dict[str, typing.List[typing.Tuple[str, int]]] = {
    ACTION_PREFERENCE: [("SilentlyContinue", 0), ("Stop", 1), ("Continue", 2), ("Inquire", 3), ("Ignore", 4),
                        ("Suspend", 5), ("Break", 6)],
    "Microsoft.ActiveDirectory.Management.ADSearchScope": [("Base", 0), ("OneLevel", 1), ("Subtree", 2)],
    "Microsoft.ActiveDirectory.Management.ADAuthType": [("Negotiate", 0), ("Basic", 1)],
    "System.Management.Automation.CommandTypes": [
        ("Alias", 1), ("Function", 2), ("Filter", 4), ("Cmdlet", 8), ("ExternalScript", 16), ("Application", 32),
        ("Script", 64), ("Configuration", 256), ("All", 383)],
    "System.DayOfWeek": [("Sunday", 0), ("Monday", 1), ("Tuesday", 2), ("Wednesday", 3), ("Thursday", 4),
                         ("Friday", 5), ("Saturday", 6)],
}
COMMAND_TYPES = {"Alias": 1, "Function": 2, "Filter": 4, "Cmdlet": 8}


class ParamDef:
    """A parameter: its .NET type (as Type.ToString() shows it), aliases, and per parameter set its position (None:
    not positional), whether it is mandatory, takes pipeline input by value, and by property name."""

    def __init__(self, name: str, type_name: str, aliases: typing.Sequence[str] = (), *,
                 sets: typing.Optional[typing.Dict[str, typing.Tuple[typing.Optional[int], bool, bool, bool]]] = None,
                 position: typing.Optional[int] = None, mandatory: bool = False, pipeline: bool = False,
                 by_property: bool = False, help: str = "", validate_set: typing.Sequence[str] = ()) -> None:
        self.name = name
        self.type_name = type_name
        self.aliases = list(aliases)
        self.switch = type_name == SWITCH
        self.sets = sets if sets is not None else {ALL_SETS: (position, mandatory, pipeline, by_property)}
        self.help = help or f"Specifies the {name} of the command."
        self.validate_set = list(validate_set)


COMMON_PARAMETERS = [
    ("Verbose", SWITCH, ["vb"]), ("Debug", SWITCH, ["db"]), ("ErrorAction", ACTION_PREFERENCE, ["ea"]),
    ("WarningAction", ACTION_PREFERENCE, ["wa"]), ("InformationAction", ACTION_PREFERENCE, ["infa"]),
    ("ProgressAction", ACTION_PREFERENCE, ["proga"]), ("ErrorVariable", "System.String", ["ev"]),
    ("WarningVariable", "System.String", ["wv"]), ("InformationVariable", "System.String", ["iv"]),
    ("OutVariable", "System.String", ["ov"]), ("OutBuffer", "System.Int32", ["ob"]),
    ("PipelineVariable", "System.String", ["pv"]),
]
COMMON_PARAMETER_DEFS = [ParamDef(n, t, a) for n, t, a in COMMON_PARAMETERS]
COMMON_NAMES = {n for n, _t, _a in COMMON_PARAMETERS}


class CommandDef:
    """A command of an emulated module: a Cmdlet, a Function or an Alias (`target`: the command it resolves to)."""

    def __init__(self, name: str, module: str, params: typing.Sequence[ParamDef] = (), *, kind: str = "Cmdlet",
                 help_uri: str = "", outputs: typing.Sequence[str] = (), default_set: typing.Optional[str] = None,
                 synopsis: str = "", description: str = "", examples: typing.Sequence[typing.Tuple[str, str, str]] = (),
                 implementing_type: str = "", target: typing.Optional[str] = None, in_metadata: bool = True,
                 version: str = "1.0.0.0") -> None:
        self.name = name
        self.module = module
        self.params = list(params)
        self.kind = kind
        self.help_uri = help_uri
        self.outputs = list(outputs)
        self.default_set = default_set
        self.synopsis = synopsis or f"Runs {name}."
        self.description = description or self.synopsis
        self.examples = list(examples)  # (title, code, remarks)
        self.implementing_type = implementing_type
        self.target = target
        self.in_metadata = in_metadata  # answered by GET_COMMAND_METADATA (the console's built-ins are not)
        self.version = version

    def resolved(self) -> "CommandDef":
        """The command an alias stands for (itself for a cmdlet or function)."""
        return COMMAND_DEFS[self.target.lower()] if self.target else self

    def all_params(self) -> typing.List[ParamDef]:
        return self.resolved().params + COMMON_PARAMETER_DEFS

    def set_names(self) -> typing.List[str]:
        """Parameter sets in declaration order; a command whose parameters all belong to every set has one,
        __AllParameterSets."""
        names: typing.List[str] = []
        for p in self.resolved().params:
            for s in p.sets:
                if s != ALL_SETS and s not in names:
                    names.append(s)
        return names or [ALL_SETS]

    def set_params(self, set_name: str) -> typing.List[typing.Tuple[ParamDef, typing.Tuple[typing.Optional[int], bool, bool, bool]]]:
        out = []
        for p in self.all_params():
            entry = p.sets.get(set_name) or p.sets.get(ALL_SETS)
            if entry is not None:
                out.append((p, entry))
        return out

    def spec(self) -> "Spec":
        """The binder's view: positional parameters in position order, the others named, switches, aliases."""
        resolved = self.resolved()
        positional: typing.Dict[str, int] = {}
        for p in resolved.params:
            for pos, *_ in p.sets.values():
                if pos is not None:
                    positional[p.name] = min(pos, positional.get(p.name, pos))
        ordered = sorted(positional, key=lambda n: positional[n])
        everything = self.all_params()
        named = [p.name for p in everything if not p.switch and p.name not in positional]
        switches = [p.name for p in everything if p.switch]
        aliases = {a: p.name for p in everything for a in p.aliases}
        return Spec(ordered, switches, named=named, aliases=aliases, implementing_type=resolved.implementing_type or None)


COMMAND_DEFS: typing.Dict[str, CommandDef] = {}
MODULES: typing.Dict[str, typing.List[str]] = {}  # module name -> its command names, in definition order
MODULE_VERSIONS = {"ActiveDirectory": "1.0.1.0", "BenchModule": "1.0.0", "PSGate.Aliases": "1.0.0",
                   "Microsoft.PowerShell.Core": "7.4.6.500", "Microsoft.PowerShell.Utility": "7.0.0.0",
                   "Microsoft.PowerShell.Management": "7.0.0.0"}


def define(command: CommandDef) -> CommandDef:
    COMMAND_DEFS[command.name.lower()] = command
    MODULES.setdefault(command.module, []).append(command.name)
    return command


def _p(name: str, type_name: str = "System.String", aliases: typing.Sequence[str] = (), **kw: typing.Any) -> ParamDef:
    return ParamDef(name, type_name, aliases, **kw)


_NULLABLE_BOOL = "System.Nullable`1[System.Boolean]"
_AD_SERVER = [_p("Server", help="Specifies the Active Directory Domain Services instance to connect to."),
              _p("Credential", "System.Management.Automation.PSCredential", help="Specifies the user account credentials to use to perform this task."),
              _p("AuthType", "Microsoft.ActiveDirectory.Management.ADAuthType", help="Specifies the authentication method to use. Negotiate (0) or Basic (1).")]
_SHOULD_PROCESS = [_p("WhatIf", SWITCH, ["wi"]), _p("Confirm", SWITCH, ["cf"])]
_AD_NS = "Microsoft.ActiveDirectory.Management.Commands."

define(CommandDef(
    "Get-ADUser", "ActiveDirectory", [
        _p("Filter", sets={"Filter": (None, True, False, False)},
           help="Specifies a query string that retrieves Active Directory objects, in the PowerShell Expression Language: 'Name -eq \"x\"', or '*'."),
        _p("Identity", AD_USER, sets={"Identity": (0, True, True, False)},
           help="Specifies an Active Directory user object by distinguished name, GUID, security identifier or SAM account name."),
        _p("LDAPFilter", sets={"LdapFilter": (None, True, False, False)}, help="Specifies an LDAP query string."),
        _p("Properties", "System.String[]", ["Property"], help="Specifies the properties of the output object to retrieve from the server ('*' for all)."),
        _p("ResultPageSize", "System.Int32", sets={"Filter": (None, False, False, False), "LdapFilter": (None, False, False, False)}),
        _p("ResultSetSize", "System.Nullable`1[System.Int32]", sets={"Filter": (None, False, False, False), "LdapFilter": (None, False, False, False)}),
        _p("SearchBase", sets={"Filter": (None, False, False, False), "LdapFilter": (None, False, False, False)}),
        _p("SearchScope", "Microsoft.ActiveDirectory.Management.ADSearchScope",
           sets={"Filter": (None, False, False, False), "LdapFilter": (None, False, False, False)},
           help="Specifies the scope of an Active Directory search: Base (0), OneLevel (1) or Subtree (2)."),
        _AD_SERVER[0], _AD_SERVER[1], _AD_SERVER[2],
        _p("Partition", sets={"Identity": (None, False, False, False)}),
    ],
    help_uri="https://go.microsoft.com/fwlink/?LinkId=301397", outputs=[AD_USER], default_set="Filter",
    implementing_type=_AD_NS + "GetADUser",
    synopsis="Gets one or more Active Directory users.",
    description="The Get-ADUser cmdlet gets a specified user object or performs a search to get multiple user objects. "
                "The Identity parameter specifies the Active Directory user to get; the Filter and LDAPFilter "
                "parameters search for users.",
    examples=[("Example 1: Get all of the users in a container", "Get-ADUser -Filter * -SearchBase \"OU=Finance,OU=UserAccounts,DC=FABRIKAM,DC=COM\"", "This command gets all users in the container OU=Finance,OU=UserAccounts,DC=FABRIKAM,DC=COM."),
              ("Example 2: Get a specified user", "Get-ADUser -Identity ChewDavid -Properties *", "This command gets the user with the name ChewDavid in the Active Directory Lightweight Directory Services (AD LDS) instance.")],
))
_NEW_SET_PARAMS = [
    _p("Name", position=0, mandatory=True, help="Specifies the name of the object."),
    _p("SamAccountName", help="Specifies the Security Account Manager (SAM) account name of the user."),
    _p("UserPrincipalName", help="Specifies a user principal name (UPN) in the format <user>@<DNS-domain-name>."),
    _p("GivenName", help="Specifies the user's given name."),
    _p("Surname", help="Specifies the user's last name or surname."),
    _p("DisplayName", help="Specifies the display name of the object."),
    _p("Department", help="Specifies the user's department."),
    _p("Description", help="Specifies a description of the object."),
    _p("Path", help="Specifies the X.500 path of the Organizational Unit (OU) or container where the new object is created."),
    _p("AccountPassword", "System.Security.SecureString"),
    _p("Enabled", _NULLABLE_BOOL, help="Specifies if an account is enabled."),
    _p("ChangePasswordAtLogon", _NULLABLE_BOOL),
    _p("OtherAttributes", "System.Collections.Hashtable"),
    _p("PassThru", SWITCH, help="Returns an object representing the item with which you are working."),
]
define(CommandDef(
    "New-ADUser", "ActiveDirectory", _NEW_SET_PARAMS + _AD_SERVER[:2] + _SHOULD_PROCESS,
    help_uri="https://go.microsoft.com/fwlink/?LinkId=301409", outputs=[AD_USER],
    implementing_type=_AD_NS + "NewADUser",
    synopsis="Creates an Active Directory user.",
    description="The New-ADUser cmdlet creates an Active Directory user. You can set commonly used user property "
                "values by using the cmdlet parameters.",
    examples=[("Example 1: Create a user with an imported certificate", "New-ADUser -Name \"ChewDavid\" -SamAccountName ChewDavid -Enabled $true", "This command creates a user named ChewDavid."),
              ("Example 2: Create a user and return it", "New-ADUser -Name GlenJohn -Department IT -PassThru", "This command creates a user in the IT department and writes it to the pipeline.")],
))
define(CommandDef(
    "Set-ADUser", "ActiveDirectory", [
        _p("Identity", AD_USER, sets={"Identity": (0, True, True, False)},
           help="Specifies an Active Directory user object by distinguished name, GUID, security identifier or SAM account name. Accepts ADUser objects from the pipeline."),
        _p("Instance", AD_USER, sets={"Instance": (None, True, False, False)}),
        _p("Add", "System.Collections.Hashtable", sets={"Identity": (None, False, False, False)}),
        _p("Remove", "System.Collections.Hashtable", sets={"Identity": (None, False, False, False)}),
        _p("Replace", "System.Collections.Hashtable", sets={"Identity": (None, False, False, False)}),
        _p("Clear", "System.String[]", sets={"Identity": (None, False, False, False)}),
        _p("Enabled", _NULLABLE_BOOL, sets={"Identity": (None, False, False, False)}, help="Specifies if an account is enabled."),
        _p("Department", sets={"Identity": (None, False, False, False)}, help="Specifies the user's department."),
        _p("Description", sets={"Identity": (None, False, False, False)}, help="Specifies a description of the object."),
        _p("DisplayName", sets={"Identity": (None, False, False, False)}, help="Specifies the display name of the object."),
        _p("SamAccountName", sets={"Identity": (None, False, False, False)}),
        _p("PassThru", SWITCH, help="Returns an object representing the item with which you are working."),
    ] + _AD_SERVER[:2] + _SHOULD_PROCESS,
    help_uri="https://go.microsoft.com/fwlink/?LinkId=291077", outputs=[AD_USER], default_set="Identity",
    implementing_type=_AD_NS + "SetADUser",
    synopsis="Modifies an Active Directory user.",
    description="The Set-ADUser cmdlet modifies the properties of an Active Directory user. The Identity parameter "
                "specifies the user; it also takes the users that Get-ADUser writes, from the pipeline.",
    examples=[("Example 1: Set properties for a user", "Set-ADUser -Identity ChewDavid -Department Sales -PassThru", "This command sets the department of the user ChewDavid."),
              ("Example 2: Set properties for users from the pipeline", "Get-ADUser -Filter \"Name -like 'Chew*'\" | Set-ADUser -Description Finance", "This command sets the description of the users that Get-ADUser finds.")],
))


# BenchModule: 150 generated commands (a cmdlet, or a function every tenth) with 5 to 15 parameters each, for metadata
# and implicit-remoting benchmarks. Each echoes its bound parameters (cmd_bench).
BENCH_VERBS = ["Get", "Set", "New", "Remove", "Test", "Invoke", "Start", "Stop", "Add", "Clear"]
BENCH_TYPES = ["System.String", "System.Int32", SWITCH, "System.String[]", "System.DateTime", _NULLABLE_BOOL,
               "System.DayOfWeek", "System.Management.Automation.PSCredential", "System.Int64", "System.Object"]
BENCH_COUNT = 150


def bench_name(i: int) -> str:
    return f"{BENCH_VERBS[(i - 1) % len(BENCH_VERBS)]}-Bench{i:03d}"


for _i in range(1, BENCH_COUNT + 1):
    _count = 5 + (_i * 7) % 11
    _params = []
    for _j in range(_count):
        _type = BENCH_TYPES[(_i + _j) % len(BENCH_TYPES)]
        _name = "Name" if _j == 0 else f"Option{_j:02d}"
        _params.append(_p(_name, "System.String" if _j == 0 else _type, position=0 if _j == 0 else None,
                          mandatory=_j == 0 and _i % 3 == 0, pipeline=_j == 0,
                          validate_set=("Low", "Medium", "High") if _j == 1 and _type == "System.String" else ()))
    define(CommandDef(
        bench_name(_i), "BenchModule", _params, kind="Function" if _i % 10 == 0 else "Cmdlet",
        help_uri=f"https://psgate.test/help/BenchModule/{bench_name(_i)}",
        outputs=["System.Management.Automation.PSCustomObject"],
        implementing_type="" if _i % 10 == 0 else f"BenchModule.Commands.{bench_name(_i).replace('-', '')}Command",
        synopsis=f"A generated benchmark command ({_count} parameters).",
    ))

# Aliases in a module of their own (so ActiveDirectory and BenchModule keep their exact counts).
for _alias, _target in (("gadu", "Get-ADUser"), ("nadu", "New-ADUser"), ("sadu", "Set-ADUser"), ("gb1", "Get-Bench001")):
    define(CommandDef(_alias, "PSGate.Aliases", kind="Alias", target=_target))

# The console's built-ins: for Get-Help and Get-Command only (GET_COMMAND_METADATA answers for the modules above).
_CORE = "https://go.microsoft.com/fwlink/?LinkID="
for _name, _module, _uri, _params, _synopsis in (
    ("Get-Command", "Microsoft.PowerShell.Core", _CORE + "2096579", [
        _p("Name", "System.String[]", position=0, pipeline=True), _p("Module", "System.String[]", ["PSSnapin"]),
        _p("CommandType", "System.Management.Automation.CommandTypes", ["Type"]), _p("ArgumentList", "System.Object[]", ["Args"], position=1),
        _p("ListImported", SWITCH), _p("ShowCommandInfo", SWITCH), _p("Syntax", SWITCH), _p("All", SWITCH)],
     "Gets all commands."),
    ("Get-Help", "Microsoft.PowerShell.Core", _CORE + "2096483", [
        _p("Name", position=0), _p("Category", "System.String[]"), _p("Parameter", "System.String[]"),
        _p("Full", SWITCH), _p("Detailed", SWITCH), _p("Examples", SWITCH)],
     "Displays information about PowerShell commands and concepts."),
    ("Import-Module", "Microsoft.PowerShell.Core", _CORE + "2096585", [
        _p("Name", "System.String[]", position=0, mandatory=True), _p("Force", SWITCH), _p("PassThru", SWITCH),
        _p("Prefix")], "Adds modules to the current session."),
    ("Get-FormatData", "Microsoft.PowerShell.Utility", _CORE + "2096614", [
        _p("TypeName", "System.String[]", position=0), _p("PowerShellVersion", "System.Version")],
     "Gets the formatting data in the current session."),
    ("Select-Object", "Microsoft.PowerShell.Utility", _CORE + "2096716", [
        _p("InputObject", "System.Management.Automation.PSObject", pipeline=True), _p("Property", "System.Object[]", position=0),
        _p("ExpandProperty"), _p("First", "System.Int32"), _p("Last", "System.Int32")],
     "Selects objects or object properties."),
    ("Measure-Object", "Microsoft.PowerShell.Utility", _CORE + "2096617", [
        _p("InputObject", "System.Management.Automation.PSObject", pipeline=True), _p("Property", "System.Management.Automation.PSPropertyExpression[]", position=0)],
     "Calculates the numeric properties of objects."),
    ("Get-Service", "Microsoft.PowerShell.Management", _CORE + "2096496", [
        _p("Name", "System.String[]", ["ServiceName"], position=0, pipeline=True), _p("DisplayName", "System.String[]")],
     "Gets the services on the computer."),
    ("Get-Process", "Microsoft.PowerShell.Management", _CORE + "2096814", [
        _p("Name", "System.String[]", ["ProcessName"], position=0), _p("Id", "System.Int32[]", ["PID"])],
     "Gets the processes that are running on the local computer."),
):
    define(CommandDef(_name, _module, _params, help_uri=_uri, synopsis=_synopsis, in_metadata=False,
                      implementing_type=f"Microsoft.PowerShell.Commands.{_name.replace('-', '')}Command",
                      version=MODULE_VERSIONS[_module]))


def _param(p: ParamDef) -> typing.Tuple[str, typing.Any]:
    """A ParameterMetadata entry of the metadata's Parameters dictionary."""
    alias_list = Obj(type_list(f"System.Collections.ObjectModel.Collection`1[[System.String, {CORELIB}]]", "System.Object"), value=("LST", list(p.aliases)))
    return (
        p.name,
        Obj(
            type_list("System.Management.Automation.ParameterMetadata", "System.Object"),
            "System.Management.Automation.ParameterMetadata",
            props=[("Name", p.name), ("ParameterType", p.type_name), ("Aliases", alias_list), ("IsDynamic", False), ("SwitchParameter", p.switch)],
        ),
    )


def command_type_enum(kind: str) -> Obj:
    return Enum("System.Management.Automation.CommandTypes", kind, COMMAND_TYPES[kind])


def command_metadata(name: str) -> Obj:
    """One command of GET_COMMAND_METADATA's answer: `Get-Command … | Select-Object Name, Namespace, HelpUri,
    CommandType, ResolvedCommandName, OutputType, Parameters` (ServerRunspacePoolDriver.HandleGetCommandMetadata).
    Namespace is CommandInfo's alias of ModuleName; an alias answers with its own name, type and module and with its
    command's HelpUri, OutputType and Parameters (AliasInfo), and names that command as ResolvedCommandName."""
    command = COMMAND_DEFS[name.lower()]
    resolved = command.resolved()
    dict_type = (
        f"System.Collections.Generic.Dictionary`2[[System.String, {CORELIB}],"
        f"[System.Management.Automation.ParameterMetadata, {SMA}]]"
    )
    info = {"Cmdlet": "CmdletInfo", "Function": "FunctionInfo", "Alias": "AliasInfo"}[command.kind]
    return Obj(
        type_list(f"Selected.System.Management.Automation.{info}", "System.Management.Automation.PSCustomObject", "System.Object"),
        ms=[
            ("Name", command.name),
            ("Namespace", command.module),
            ("HelpUri", resolved.help_uri),
            ("CommandType", command_type_enum(command.kind)),
            ("ResolvedCommandName", resolved.name if command.target else None),
            (
                "OutputType",
                Obj(
                    type_list(f"System.Collections.ObjectModel.ReadOnlyCollection`1[[System.Management.Automation.PSTypeName, {SMA}]]", "System.Object"),
                    value=("LST", list(resolved.outputs)),
                ),
            ),
            ("Parameters", Obj(type_list(dict_type, "System.Object"), value=("DCT", [_param(p) for p in command.all_params()]))),
        ],
    )


def metadata_count(n: int) -> Obj:
    return Obj(
        type_list("Selected.Microsoft.PowerShell.Commands.GenericMeasureInfo", "System.Management.Automation.PSCustomObject", "System.Object"),
        ms=[("Count", n)],
    )


def metadata_names(patterns: typing.Sequence[str], namespaces: typing.Sequence[str], command_types: int,
                   visible: typing.Callable[[str], bool]) -> typing.List[str]:
    """The commands GET_COMMAND_METADATA lists: Get-Command -Name patterns -Module namespaces -CommandType types,
    the public ones only, sorted as Get-Command sorts (by name)."""
    names = [
        c.name for c in COMMAND_DEFS.values()
        if c.in_metadata and visible(c.name)
        and COMMAND_TYPES[c.kind] & command_types
        and any(fnmatch.fnmatchcase(c.name.lower(), p.lower()) for p in patterns)
        and (not namespaces or any(ns == "" or fnmatch.fnmatchcase(c.module.lower(), ns.lower()) for ns in namespaces))
    ]
    return sorted(names, key=str.lower)


# ---------------------------------------------------------------------------------------------------------------------
# Tiny command-line parser: `Name -Param value 'quoted' "quoted" 42 | Next; Other`


class Param(str):
    """A `-Name` token; .value holds `-Name:value`'s value."""

    value: typing.Any = None
    has_value = False


class Variable(str):
    pass


class CommaList(list):
    """An array argument written with commas; `open` while a trailing comma waits for the next element."""

    open = False


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<comment>\#[^\n]*)
    | (?P<op>[|;\n])
    | '(?P<sq>(?:[^']|'')*)'
    | "(?P<dq>(?:[^"`]|`.)*)"
    | (?P<param>-[A-Za-z_][\w-]*)(?::(?P<pval>'(?:[^']|'')*'|"(?:[^"`]|`.)*"|[^\s|;]+))?
    | (?P<num>-?\d+(?:\.\d+)?)(?=[\s|;]|$)
    | (?P<var>\$[\w:]+)
    | (?P<word>[^\s|;'"]+)
    )""",
    re.X,
)


def _literal(token: str) -> typing.Any:
    low = token.lower()
    if low == "$true":
        return True
    if low == "$false":
        return False
    if low == "$null":
        return None
    return Variable(token)


def parse_script(text: str) -> typing.List[typing.List[typing.Tuple[str, typing.List[typing.Any]]]]:
    """Statements → pipelines → (command name, tokens)."""
    statements: typing.List[typing.List[typing.Tuple[str, typing.List[typing.Any]]]] = [[]]
    current: typing.Optional[typing.List[typing.Any]] = None
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise SyntaxError(f"unexpected text at {pos}: {text[pos:pos + 20]!r}")
        pos = m.end()
        kind = "param" if m.group("param") else m.lastgroup  # lastgroup would be `pval` for -Name:value
        if kind == "comment":
            continue
        if kind == "op":
            if current is not None:
                statements[-1].append((current[0], current[1:]))
                current = None
            if m.group("op") in ";\n" and statements[-1]:
                statements.append([])
            continue
        if kind == "sq":
            value: typing.Any = m.group("sq").replace("''", "'")
        elif kind == "dq":
            value = re.sub(r"`(.)", lambda g: {"n": "\n", "t": "\t", "r": "\r", "0": "\0"}.get(g.group(1), g.group(1)), m.group("dq"))
        elif kind == "param":
            value = Param(m.group("param")[1:])
            if m.group("pval") is not None:
                pv = m.group("pval")
                if pv[:1] in "'\"" and len(pv) >= 2:
                    value.value = pv[1:-1].replace("''", "'") if pv[0] == "'" else pv[1:-1]
                else:
                    value.value = _literal(pv) if pv.startswith("$") else int(pv) if re.fullmatch(r"-?\d+", pv) else pv
                value.has_value = True
        elif kind == "num":
            num = m.group("num")
            value = float(num) if "." in num else int(num)
        elif kind == "var":
            value = _literal(m.group("var"))
        else:
            value = m.group("word")
            if "," in value and current is not None:
                # `a, b` / `a,b`: an array argument (Select-Object Name, Enabled)
                parts = [_literal(w) if w.startswith("$") else w for w in value.split(",")]
                if value.startswith(",") and len(current) > 1:
                    previous = current.pop()
                    parts = (previous if isinstance(previous, CommaList) else [previous]) + parts[1:]
                value = CommaList(x for x in parts if x != "")
                value.open = str(m.group("word")).endswith(",")
                current.append(value)
                continue
        if current is not None and len(current) > 1 and isinstance(current[-1], CommaList) and current[-1].open:
            current[-1].append(value)
            current[-1].open = False
            continue
        if current is None and kind in ("sq", "dq", "num"):
            current = ["Write-Output", value]  # a bare value is output, as in PowerShell
        elif current is None:
            current = [str(value) if not isinstance(value, Param) else "-" + value]
        else:
            current.append(value)
    if current is not None:
        statements[-1].append((current[0], current[1:]))
    return [s for s in statements if s]


class Spec:
    """Command parameters: names in positional order, switches, and their conversions; `named` take a value but have
    no position (Get-Service -DisplayName)."""

    def __init__(self, params: typing.Sequence[str] = (), switches: typing.Sequence[str] = (), remaining: bool = False,
                 named: typing.Sequence[str] = (), aliases: typing.Optional[typing.Dict[str, str]] = None,
                 implementing_type: typing.Optional[str] = None):
        self.params = list(params)
        self.switches = list(switches)
        self.remaining = remaining  # extra positionals bind to the first parameter as a list (Write-Output a b c)
        self.named = list(named)
        self.aliases = dict(aliases or {})  # alias -> parameter (-Property for -Properties, -ea for -ErrorAction)
        self.implementing_type = implementing_type  # for the errors' FullyQualifiedErrorId (else Microsoft.PowerShell.Commands.<Verb><Noun>Command)

    def bind(self, command: str, args: typing.List[typing.Tuple[typing.Optional[str], typing.Any]]) -> typing.Dict[str, typing.Any]:
        names = self.params + self.named + self.switches
        bound: typing.Dict[str, typing.Any] = {}
        positional: typing.List[typing.Any] = []
        for name, value in args:
            if name is None:
                positional.append(value)
                continue
            every = [(n, n) for n in names] + list(self.aliases.items())
            matches = {t for n, t in every if n.lower() == name.lower()} or {t for n, t in every if n.lower().startswith(name.lower())}
            if len(matches) != 1:
                raise CommandError(parameter_error(command, name, fqid_type=self.implementing_type))
            bound[matches.pop()] = value
        free = [p for p in self.params if p not in bound]
        if self.remaining and positional and free and free[0] == self.params[0]:
            bound[self.params[0]] = positional if len(positional) > 1 else positional[0]
            positional = []
        for value in positional:
            if not free:
                raise CommandError(
                    error_record(
                        f"A positional parameter cannot be found that accepts argument '{value}'.",
                        ["System.Management.Automation.ParameterBindingException", "System.Management.Automation.RuntimeException"],
                        f"PositionalParameterNotFound,{self.implementing_type or 'Microsoft.PowerShell.Commands.' + command.replace('-', '') + 'Command'}",
                        "InvalidArgument",
                        activity=command,
                        command=command,
                        line=command,
                    )
                )
            bound[free.pop(0)] = value
        return bound


def as_typed(command: str, args: typing.List[typing.Tuple[typing.Optional[str], typing.Any]], switches: typing.Sequence[str]) -> typing.List[typing.Tuple[typing.Optional[str], typing.Any]]:
    """A Command object's parameters as PowerShell's server reads them (Command.cs ToCommandParameterInternal, then
    the binder's ReparseUnboundArguments): a name with its dash is as typed: `-Name:` carries its value, `-Name`
    alone is a switch or takes the next positional argument; a name without a dash carries its value."""
    out: typing.List[typing.Tuple[typing.Optional[str], typing.Any]] = []
    i = 0
    while i < len(args):
        name, value = args[i]
        i += 1
        if name is None or not name.startswith("-"):
            out.append((name, value))
            continue
        bare = name[1:]
        if bare.endswith(":"):
            out.append((bare[:-1], value))
            continue
        if any(s.lower() == bare.lower() or s.lower().startswith(bare.lower()) for s in switches):
            out.append((bare, True))
            continue
        if i < len(args) and args[i][0] is None:
            out.append((bare, args[i][1]))
            i += 1
            continue
        raise CommandError(parameter_error(command, bare, f"Missing an argument for parameter '{bare}'. Specify a parameter of type 'System.Object' and try again."))
    return out


def tokens_to_args(tokens: typing.List[typing.Any], switches: typing.Sequence[str]) -> typing.List[typing.Tuple[typing.Optional[str], typing.Any]]:
    args: typing.List[typing.Tuple[typing.Optional[str], typing.Any]] = []
    i = 0
    lows = {s.lower() for s in switches}
    while i < len(tokens):
        t = tokens[i]
        if isinstance(t, Param):
            if t.has_value:
                args.append((str(t), t.value))
            elif any(s.startswith(str(t).lower()) for s in lows) or i + 1 >= len(tokens) or isinstance(tokens[i + 1], Param):
                args.append((str(t), True))
            else:
                args.append((str(t), tokens[i + 1]))
                i += 1
        else:
            args.append((None, t))
        i += 1
    return args


# ---------------------------------------------------------------------------------------------------------------------
# Pipelines


class CommandError(Exception):
    """A terminating error: the pipeline fails with this ErrorRecord."""

    def __init__(self, record: Obj) -> None:
        super().__init__("terminating error")
        self.record = record


class Stopped(Exception):
    pass


class Run:
    """One pipeline: its psrpcore ServerPipeline, its worker thread and what the client sends it."""

    def __init__(self, session: "PsrpSession", pipeline: ServerPipeline) -> None:
        self.session = session
        self.pipeline = pipeline
        self.pid = pipeline.pipeline_id
        self.cond = threading.Condition(session.lock)
        self.responses: typing.Dict[int, PipelineHostResponseEvent] = {}
        self.inputs: typing.List[typing.Any] = []
        self.input_done = False
        self.stopped = False
        self.finished = False
        self.thread: typing.Optional[threading.Thread] = None
        self.requestor = ServerHostRequestor(pipeline)
        self.fast = session.fast

    # -- called by commands (worker thread) --
    def check(self) -> None:
        if self.stopped:
            raise Stopped()

    def send(self, message_type: PSRPMessageType, value: typing.Any) -> None:
        with self.session.lock:
            self.check()
            self.session.pool.prepare_message(Raw(message_type, value), pipeline_id=self.pid)
            self.session.flush()
            self.session.wait_for_room(self)

    def output(self, value: typing.Any) -> None:
        self.send(PSRPMessageType.PipelineOutput, value)

    def host_call(self, call: typing.Callable[[], int]) -> typing.Any:
        with self.session.lock:
            self.check()
            ci = call()
            self.session.flush()
            while ci not in self.responses:
                self.check()
                self.cond.wait(1.0)
            event = self.responses.pop(ci)
        if event.error is not None:
            raise CommandError(
                error_record(
                    str(getattr(event.error, "Exception", None) and event.error.Exception.Message or "host error"),
                    ["System.Management.Automation.Remoting.RemoteException"],
                    "RemoteHostExecutionException",
                    "NotSpecified",
                )
            )
        return event.result

    def next_input(self) -> typing.Tuple[bool, typing.Any]:
        with self.session.lock:
            while not self.inputs and not self.input_done:
                self.check()
                self.cond.wait(1.0)
            self.check()
            if self.inputs:
                return True, self.inputs.pop(0)
            return False, None

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        with self.session.lock:
            while True:
                self.check()
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.cond.wait(left)

    # -- the worker --
    def start(self) -> None:
        self.thread = threading.Thread(target=self._main, name=f"pipeline-{self.pid}", daemon=True)
        self.thread.start()

    def _main(self) -> None:
        error: typing.Optional[Obj] = None
        try:
            metadata = self.pipeline.metadata
            if isinstance(metadata, psrpcore.GetMetadata):
                self._metadata(metadata)
            else:
                self._invoke(metadata)
        except Stopped:
            return
        except CommandError as e:
            error = e.record
        except Exception as e:  # a bug here must still end the pipeline like PowerShell would
            log.exception("pipeline %s crashed", self.pid)
            error = error_record(
                f"psrp_host internal error: {e}",
                ["System.Management.Automation.RuntimeException"],
                "PsrpHostInternalError",
                "NotSpecified",
            )
        with self.session.lock:
            if self.stopped or self.pipeline.state != PSInvocationState.Running:
                return
            if error is None:
                self.pipeline.complete()
            else:
                self.session.pool.prepare_message(
                    Raw(PSRPMessageType.PipelineState, Obj(ms=[("PipelineState", 5), ("ExceptionAsErrorRecord", error)])),
                    pipeline_id=self.pid,
                )
                self.pipeline._change_state(PSInvocationState.Failed, emit=False)
            self.finished = True
            self.session.flush()

    def _metadata(self, request: psrpcore.GetMetadata) -> None:
        patterns = [str(n) for n in (request.name or ["*"])]
        namespaces = [str(n) for n in (request.namespace or [])]
        command_types = int(request.command_type) if request.command_type is not None else 383
        # Get-Command lists only the public commands of a restricted session
        names = metadata_names(patterns, namespaces, command_types, self.session.is_visible)
        self.output(metadata_count(len(names)))
        for n in names:
            self.output(command_metadata(n))

    def _invoke(self, ps: psrpcore.PowerShell) -> None:
        # Statements of commands; a command that is a script is parsed into statements of its own.
        # In a NoLanguage session a script stays one unparsed entry (name None) that fails when its statement is built.
        statements: typing.List[typing.List[typing.Tuple[typing.Optional[str], typing.List[typing.Tuple[typing.Optional[str], typing.Any]], str]]] = [[]]
        no_language = self.session.language_mode == NO_LANGUAGE
        for cmd in ps.commands:
            if cmd.is_script and no_language:
                statements[-1].append((None, [], str(cmd.command_text)))
            elif cmd.is_script:
                text = str(cmd.command_text)
                try:
                    parsed = parse_script(text)
                except SyntaxError as e:
                    raise CommandError(
                        error_record(
                            f"psrp_host cannot parse this script: {e}",
                            ["System.Management.Automation.ParseException", "System.Management.Automation.RuntimeException"],
                            "ParseException",
                            "ParserError",
                            line=text,
                        )
                    ) from None
                for i, stmt in enumerate(parsed):
                    if i > 0:
                        statements.append([])
                    for name, tokens in stmt:
                        spec = COMMANDS.get(name.lower(), (None, Spec()))[1]
                        statements[-1].append((name, tokens_to_args(tokens, spec.switches), text))
            else:
                args = [(None if n is None else str(n), plain(v)) for n, v in cmd.parameters]
                statements[-1].append((str(cmd.command_text), args, str(cmd.command_text)))
            if cmd.end_of_statement:
                statements.append([])
        first = True
        for statement in [s for s in statements if s]:
            # PowerShell makes every command processor of a pipeline before it runs any (LocalPipeline.
            # CreatePipelineProcessor): a script refused by NoLanguage or a command that is unknown or private fails
            # the pipeline before the commands ahead of it have run.
            for name, _args, line in statement:
                if name is None:
                    raise CommandError(scripts_not_allowed(line))
                if name.lower() not in COMMANDS or not self.session.is_visible(name):
                    raise CommandError(not_recognized(name, line))
            upstream: typing.Optional[typing.List[typing.Any]] = None
            for index, (name, args, line) in enumerate(statement):
                assert name is not None
                last = index == len(statement) - 1
                func, spec = COMMANDS[name.lower()]
                bound = spec.bind(entry_name(name), as_typed(entry_name(name), args, spec.switches))
                allowed = RESTRICTED_PARAMETERS.get(name.lower()) if no_language else None
                extra = [k for k in bound if allowed is not None and k not in allowed and k not in COMMON_NAMES]
                if extra:
                    raise CommandError(restricted_parameter_error(entry_name(name), extra[0], line))
                if upstream is not None:
                    source: typing.Iterator[typing.Any] = iter(upstream)
                elif first and not ps.no_input:
                    source = self._client_input()
                else:
                    source = iter(())
                collected: typing.List[typing.Any] = []
                ctx = Context(self, None if last else collected, line)
                func(ctx, bound, source)
                upstream = collected
            first = False

    def _client_input(self) -> typing.Iterator[typing.Any]:
        while True:
            more, value = self.next_input()
            if not more:
                return
            yield value


def entry_name(name: str) -> str:
    for key in COMMAND_NAMES:
        if key.lower() == name.lower():
            return key
    return name


def plain(value: typing.Any) -> typing.Any:
    """psrpcore's deserialized values → the plain Python values commands use (and clixml_out writes back)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, PSSecureString):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, datetime.datetime):
        return value
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    return value


class Context:
    """What a command sees: streams, host calls and its input."""

    def __init__(self, run: Run, collect: typing.Optional[typing.List[typing.Any]], line: str) -> None:
        self.run = run
        self.collect = collect
        self.line = line

    def output(self, value: typing.Any) -> None:
        if self.collect is not None:
            self.run.check()
            self.collect.append(value)
        else:
            self.run.output(echo_value(value))

    def error(self, record: Obj) -> None:
        self.run.send(PSRPMessageType.ErrorRecord, record)

    def warning(self, text: str) -> None:
        self.run.send(PSRPMessageType.WarningRecord, informational("Warning", text))

    def verbose(self, text: str) -> None:
        self.run.send(PSRPMessageType.VerboseRecord, informational("Verbose", text))

    def debug(self, text: str) -> None:
        self.run.send(PSRPMessageType.DebugRecord, informational("Debug", text))

    def information(self, data: typing.Any, source: str, tags: typing.Sequence[str]) -> None:
        self.run.send(PSRPMessageType.InformationRecord, information_record(data, source, tags))

    def progress(self, **kw: typing.Any) -> None:
        self.run.send(PSRPMessageType.ProgressRecord, progress_record(**kw))


def echo_value(value: typing.Any) -> typing.Any:
    """A value that came from the client, ready for clixml_out (psrpcore objects are written back as CLIXML text)."""
    if value is None or isinstance(value, (bool, int, float, str, datetime.datetime, Obj)):
        return value
    if isinstance(value, PSSecureString):
        return SS(value._value if hasattr(value, "_value") else "")
    if isinstance(value, (list, tuple)):
        return Obj(type_list("Deserialized.System.Object[]", "Deserialized.System.Array", "Deserialized.System.Object"), value=("LST", [echo_value(v) for v in value]))
    if isinstance(value, dict):
        return Obj(type_list("Deserialized.System.Collections.Hashtable", "Deserialized.System.Object"), value=("DCT", [(echo_value(k), echo_value(v)) for k, v in value.items()]))
    names = list(getattr(getattr(value, "PSObject", None), "type_names", []) or [])
    props = []
    ps = getattr(value, "PSObject", None)
    if ps is not None:
        for p in list(ps.adapted_properties) + list(ps.extended_properties):
            try:
                props.append((p.name, echo_value(plain(p.get_value(value)))))
            except Exception:
                props.append((p.name, None))
    deser = [n if n.startswith("Deserialized.") else "Deserialized." + n for n in names]
    return Obj(deser, str(value), ms=props)


# ---------------------------------------------------------------------------------------------------------------------
# Emulated commands


def cmd_get_date(ctx: Context, p: dict, _input: typing.Iterator) -> None:
    ctx.output(get_date())


def cmd_version_table(ctx: Context, p: dict, _input: typing.Iterator) -> None:
    ctx.output(ps_version_table())


def cmd_get_process(ctx: Context, p: dict, _input: typing.Iterator) -> None:
    names = p.get("Name")
    ids = p.get("Id")
    if names is None and ids is None:
        for row in PROCESSES:
            ctx.output(process_object(*row))
        return
    for name in ([names] if isinstance(names, str) else names or []):
        rows = [r for r in PROCESSES if fnmatch.fnmatchcase(r[0].lower(), str(name).lower())]
        if not rows and not any(c in str(name) for c in "*?["):
            ctx.error(
                error_record(
                    f'Cannot find a process with the name "{name}". Verify the process name and call the cmdlet again.',
                    ["Microsoft.PowerShell.Commands.ProcessCommandException"],
                    "NoProcessFoundForGivenName,Microsoft.PowerShell.Commands.GetProcessCommand",
                    "ObjectNotFound",
                    activity="Get-Process",
                    target=str(name),
                    command="Get-Process",
                    line=ctx.line,
                    write_error_stream=True,
                    exception_extra=[("ProcessName", str(name))],
                )
            )
        for row in rows:
            ctx.output(process_object(*row))
    for pid in ([ids] if isinstance(ids, int) else ids or []):
        for row in [r for r in PROCESSES if r[1] == int(pid)]:
            ctx.output(process_object(*row))


SERVICES = [
    # ServiceName, DisplayName, Status, StartType, DelayedAutoStart, CanStop, CanShutdown, ServiceType (flags), UserName,
    # BinaryPathName, Description, ServicesDependedOn, DependentServices — a Windows Server 2022 with print spooler off.
    ("BITS", "Background Intelligent Transfer Service", "Running", "Manual", False, True, False, 48, "LocalSystem",
     "C:\\Windows\\System32\\svchost.exe -k netsvcs -p",
     "Transfers files in the background using idle network bandwidth. If the service is disabled, then any applications "
     "that depend on BITS, such as Windows Update or MSN Explorer, will be unable to automatically download programs "
     "and other information.", ["RpcSs"], []),
    ("RpcSs", "Remote Procedure Call (RPC)", "Running", "Automatic", False, False, False, 32, "NT AUTHORITY\\NetworkService",
     "C:\\Windows\\system32\\svchost.exe -k rpcss -p",
     "The RPCSS service is the Service Control Manager for COM and DCOM servers. It performs object activations "
     "requests, object exporter resolutions and distributed garbage collection for COM and DCOM servers. If this "
     "service is stopped or disabled, programs using COM or DCOM will not function properly. It is strongly "
     "recommended that you have the RPCSS service running.", ["RpcEptMapper", "DcomLaunch"], ["WinRM", "Spooler", "BITS"]),
    ("Spooler", "Print Spooler", "Stopped", "Disabled", False, False, False, 272, "LocalSystem",
     "C:\\Windows\\System32\\spoolsv.exe",
     "This service spools print jobs and handles interaction with the printer. If you turn off this service, you won't "
     "be able to print or see your printers.", ["RPCSS", "http"], []),
    ("sshd", "OpenSSH SSH Server", "Running", "Automatic", False, True, False, 16, "LocalSystem",
     "C:\\Windows\\System32\\OpenSSH\\sshd.exe",
     "SSH protocol based service to provide secure encrypted communications between two untrusted hosts over an "
     "insecure network.", [], []),
    ("WinRM", "Windows Remote Management (WS-Management)", "Running", "Automatic", False, True, True, 48,
     "NT AUTHORITY\\NetworkService", "C:\\Windows\\System32\\svchost.exe -k NetworkService -p",
     "Windows Remote Management (WinRM) service implements the WS-Management protocol for remote management. "
     "WS-Management is a standard web services protocol used for remote software and hardware management. The WinRM "
     "service listens on the network for WS-Management requests and processes them.", ["RPCSS", "HTTP"], []),
]
SERVICE_STATUS = {"Stopped": 1, "StartPending": 2, "StopPending": 3, "Running": 4, "ContinuePending": 5, "PausePending": 6, "Paused": 7}
SERVICE_START_MODE = {"Boot": 0, "System": 1, "Automatic": 2, "Manual": 3, "Disabled": 4}
SERVICE_STARTUP_TYPE = {"InvalidValue": -1, "Automatic": 2, "Manual": 3, "Disabled": 4, "AutomaticDelayedStart": 10}
SERVICE_TYPE_FLAGS = [("KernelDriver", 1), ("FileSystemDriver", 2), ("Adapter", 4), ("RecognizerDriver", 8),
                      ("Win32OwnProcess", 16), ("Win32ShareProcess", 32), ("UserService", 64),
                      ("UserServiceInstance", 128), ("InteractiveProcess", 256)]
SERVICE_ARRAY = type_list("System.ServiceProcess.ServiceController[]", "System.Array", "System.Object")


def service_object(row: tuple, service_name: typing.Optional[str] = None, display_name: typing.Optional[str] = None) -> Obj:
    """A ServiceController as Get-Service of PowerShell 7.4 writes it to a remote client.

    GetServiceCommand.AddProperties (Service.cs, v7.4.6) adds UserName, Description, DelayedAutoStart, BinaryPathName
    and StartupType as instance properties, inserting a `System.Service.ServiceController#<name>` type name before the
    others each time; the type table (TypeTable_Types_Ps1Xml.cs) adds the aliases Name (ServiceName) and
    RequiredServices (ServicesDependedOn) and ToString() `$this.ServiceName`. The .NET properties (<Props>) follow
    System.ServiceProcess.ServiceController's declaration order, then Component's. At remoting's serialization depth
    the ServiceController[] properties are lists of the services' ToString(), and ServiceHandle its type name.
    `service_name`/`display_name` override the names as the user typed them: `new ServiceController("bits")` keeps
    "bits" as ServiceName, and a display name typed as -Name keeps that spelling as DisplayName (GenerateNames)."""
    (name, display, status, start, delayed, can_stop, can_shutdown, stype, user, binary, description, depends,
     dependents) = row
    service_name = service_name or name
    display_name = display_name or display
    startup = "AutomaticDelayedStart" if start == "Automatic" and delayed else start if start in SERVICE_STARTUP_TYPE else "Disabled"
    type_text = ", ".join(n for n, bit in SERVICE_TYPE_FLAGS if stype & bit)

    def services(names: typing.List[str]) -> Obj:
        return Obj(SERVICE_ARRAY, value=("LST", list(names)))

    return Obj(
        type_list(
            "System.Service.ServiceController#StartupType", "System.Service.ServiceController#BinaryPathName",
            "System.Service.ServiceController#DelayedAutoStart", "System.Service.ServiceController#Description",
            "System.Service.ServiceController#UserName", "System.ServiceProcess.ServiceController",
            "System.ComponentModel.Component", "System.MarshalByRefObject", "System.Object",
        ),
        service_name,
        props=[
            ("CanPauseAndContinue", False),
            ("CanShutdown", can_shutdown and status == "Running"),
            ("CanStop", can_stop and status == "Running"),
            ("DisplayName", display_name),
            ("DependentServices", services(dependents)),
            ("MachineName", "."),
            ("ServiceName", service_name),
            ("ServicesDependedOn", services(depends)),
            ("StartType", Enum("System.ServiceProcess.ServiceStartMode", start, SERVICE_START_MODE[start])),
            ("ServiceHandle", "Microsoft.Win32.SafeHandles.SafeServiceHandle"),
            ("Status", Enum("System.ServiceProcess.ServiceControllerStatus", status, SERVICE_STATUS[status])),
            ("ServiceType", Enum("System.ServiceProcess.ServiceType", type_text, stype)),
            ("Site", None),
            ("Container", None),
        ],
        ms=[
            ("UserName", user),
            ("Description", description),
            ("DelayedAutoStart", delayed),
            ("BinaryPathName", binary),
            ("StartupType", Enum("Microsoft.PowerShell.Commands.ServiceStartupType", startup, SERVICE_STARTUP_TYPE[startup])),
            ("Name", service_name),
            ("RequiredServices", services(depends)),
        ],
    )


def _wildcard(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def _service_error(message: str, error_id: str, service_name: str, target: str, line: str) -> Obj:
    # ServiceBaseCommand.WriteNonTerminatingError: ServiceCommandException (a SystemException with ServiceName), the
    # pattern as target object, ErrorCategory.ObjectNotFound.
    return error_record(
        message,
        ["Microsoft.PowerShell.Commands.ServiceCommandException"],
        f"{error_id},Microsoft.PowerShell.Commands.GetServiceCommand",
        "ObjectNotFound",
        activity="Get-Service",
        target=target,
        command="Get-Service",
        line=line,
        write_error_stream=True,
        exception_extra=[("ServiceName", service_name)],
    )


def cmd_get_service(ctx: Context, p: dict, _input: typing.Iterator) -> None:
    """Get-Service [[-Name] <string[]>] | -DisplayName <string[]> (MultipleServiceCommandBase, Service.cs v7.4.6).

    -Name: a pattern with wildcards matches ServiceName (case-insensitively); one without is looked up as
    `new ServiceController(name)` does: as a display name first, then as a service name; a name that matches
    nothing is a non-terminating NoServiceFoundForGivenName error ("Cannot find any service with service name
    '{0}'.", ServiceResources.resx). -DisplayName: always a wildcard pattern over DisplayName
    (NoServiceFoundForGivenDisplayName, "Cannot find any service with display name '{1}'."). The errors are written
    while matching, before any output; the matches are then deduplicated and sorted by ServiceName."""
    def as_list(value: typing.Any) -> typing.List[str]:
        return [str(v) for v in (value if isinstance(value, list) else [value])]

    if "Name" in p and "DisplayName" in p:
        raise CommandError(
            error_record(
                "Parameter set cannot be resolved using the specified named parameters. One or more parameters issued "
                "cannot be used together or an insufficient number of parameters were provided.",
                ["System.Management.Automation.ParameterBindingException", "System.Management.Automation.RuntimeException"],
                "AmbiguousParameterSet,Microsoft.PowerShell.Commands.GetServiceCommand",
                "InvalidArgument",
                activity="Get-Service",
                command="Get-Service",
                line=ctx.line,
                exception_extra=[("ParameterName", ""), ("CommandInvocation", None)],
            )
        )
    found: typing.List[typing.Tuple[tuple, str, str]] = []  # (row, ServiceName, DisplayName)

    def add(row: tuple, service_name: str, display_name: str) -> None:
        if not any(f[1] == service_name for f in found):
            found.append((row, service_name, display_name))

    if "DisplayName" in p:
        for pattern in as_list(p["DisplayName"]):
            rows = [r for r in SERVICES if fnmatch.fnmatchcase(r[1].lower(), pattern.lower())]
            if not rows and not _wildcard(pattern):
                ctx.error(_service_error(f"Cannot find any service with display name '{pattern}'.",
                                         "NoServiceFoundForGivenDisplayName", "", pattern, ctx.line))
            for r in rows:
                add(r, r[0], r[1])
    elif p.get("Name") is None:
        for r in SERVICES:
            add(r, r[0], r[1])
    else:
        for pattern in as_list(p["Name"]):
            if _wildcard(pattern):
                for r in SERVICES:
                    if fnmatch.fnmatchcase(r[0].lower(), pattern.lower()):
                        add(r, r[0], r[1])
                continue
            by_display = next((r for r in SERVICES if r[1].lower() == pattern.lower()), None)
            by_name = next((r for r in SERVICES if r[0].lower() == pattern.lower()), None)
            if by_display is not None:
                add(by_display, by_display[0], pattern)
            elif by_name is not None:
                add(by_name, pattern, by_name[1])
            else:
                ctx.error(_service_error(f"Cannot find any service with service name '{pattern}'.",
                                         "NoServiceFoundForGivenName", pattern, pattern, ctx.line))
    for row, service_name, display_name in sorted(found, key=lambda f: f[1].lower()):
        ctx.output(service_object(row, service_name, display_name))


def cmd_write_output(ctx: Context, p: dict, _input: typing.Iterator) -> None:
    value = p.get("InputObject")
    for item in value if isinstance(value, list) else [value]:
        ctx.output(item)
    for item in _input:
        ctx.output(item)


def cmd_write_error(ctx: Context, p: dict, _input: typing.Iterator) -> None:
    message = str(p.get("Message", ""))
    ctx.error(
        error_record(
            message,
            ["Microsoft.PowerShell.Commands.WriteErrorException"],
            "Microsoft.PowerShell.Commands.WriteErrorException",
            str(p.get("Category", "NotSpecified")),
            activity="Write-Error",
            command="Write-Error",
            line=ctx.line,
            write_error_stream=True,
        )
    )


def cmd_write_warning(ctx: Context, p: dict, _input: typing.Iterator) -> None:
    ctx.warning(str(p.get("Message", "")))


def cmd_write_verbose(ctx: Context, p: dict, _input: typing.Iterator) -> None:
    ctx.verbose(str(p.get("Message", "")))


def cmd_write_debug(ctx: Context, p: dict, _input: typing.Iterator) -> None:
    ctx.debug(str(p.get("Message", "")))


def cmd_write_information(ctx: Context, p: dict, _input: typing.Iterator) -> None:
    tags = p.get("Tags") or []
    ctx.information(p.get("MessageData"), "Write-Information", [str(t) for t in (tags if isinstance(tags, list) else [tags])])


def cmd_write_host(ctx: Context, p: dict, _input: typing.Iterator) -> None:
    obj = p.get("Object", "")
    text = " ".join(str(o) for o in obj) if isinstance(obj, list) else "" if obj is None else str(obj)
    message = host_information_message(text, bool(p.get("NoNewline")), p.get("ForegroundColor"), p.get("BackgroundColor"))
    ctx.information(message, "Write-Host", ["PSHOST"])


def cmd_write_progress(ctx: Context, p: dict, _input: typing.Iterator) -> None:
    if "Activity" not in p:
        raise CommandError(parameter_error("Write-Progress", "Activity", "Cannot process command because of one or more missing mandatory parameters: Activity."))
    ctx.progress(
        activity=str(p["Activity"]),
        activity_id=int(p.get("Id", 0)),
        status=str(p.get("Status", "Processing")),
        current=None if p.get("CurrentOperation") is None else str(p["CurrentOperation"]),
        parent=int(p.get("ParentId", -1)),
        percent=int(p.get("PercentComplete", -1)),
        completed=bool(p.get("Completed")),
        seconds=int(p.get("SecondsRemaining", -1)),
    )


def cmd_test_progress(ctx: Context, p: dict, _input: typing.Iterator) -> None:
    count = int(p.get("Count", 5))
    for i in range(count):
        ctx.progress(activity="Test-Progress", activity_id=1, status=f"Step {i + 1} of {count}", current=None,
                     parent=-1, percent=(i + 1) * 100 // max(count, 1), completed=False, seconds=-1)
    ctx.progress(activity="Test-Progress", activity_id=1, status="Done", current=None, parent=-1, percent=100,
                 completed=True, seconds=-1)
    ctx.output(f"progress done: {count}")


def cmd_throw(ctx: Context, p: dict, _input: typing.Iterator) -> None:
    message = str(p.get("Message") if p.get("Message") is not None else "ScriptHalted")
    raise CommandError(
        error_record(
            message,
            ["System.Management.Automation.RuntimeException"],
            message,
            "OperationStopped",
            target=message,
            line=ctx.line,
            thrown=True,
        )
    )


def cmd_read_host(ctx: Context, p: dict, _input: typing.Iterator) -> None:
    secure = bool(p.get("AsSecureString"))
    prompt = p.get("Prompt")
    if prompt is not None:
        # Like ReadHostCommand: with -Prompt, pwsh asks the host's Prompt() for one field named after the prompt.
        field = FieldDescription(
            Name=str(prompt),
            ParameterTypeName="SecureString" if secure else "String",
            ParameterTypeFullName="System.Security.SecureString" if secure else "System.String",
            ParameterAssemblyFullName=CORELIB if not secure else "System.Security.SecureString, " + CORELIB,
        )
        result = ctx.run.host_call(lambda: ctx.run.requestor.prompt("", "", [field]))
        value = None
        if isinstance(result, dict):
            value = next(iter(result.values()), None)
    elif secure:
        value = ctx.run.host_call(ctx.run.requestor.read_line_as_secure_string)
    else:
        value = ctx.run.host_call(ctx.run.requestor.read_line)
    if isinstance(value, PSSecureString):
        ctx.output("secure:" + str(value.decrypt()))
    elif secure and value is not None:
        ctx.output("secure:" + str(value))
    else:
        ctx.output(None if value is None else str(value))


def cmd_get_credential(ctx: Context, p: dict, _input: typing.Iterator) -> None:
    user = p.get("UserName") or p.get("Credential")
    result = ctx.run.host_call(
        lambda: ctx.run.requestor.prompt_for_credential(
            caption=str(p.get("Title", "PowerShell credential request")),
            message=str(p.get("Message", "Enter your credentials.")),
            username=None if user is None else str(user),
            target_name="",
        )
    )
    if result is None:
        return
    password = getattr(result, "Password", None)
    ctx.output(str(getattr(result, "UserName", "")))
    ctx.output("password:" + (str(password.decrypt()) if isinstance(password, PSSecureString) else str(password)))


def cmd_test_choice(ctx: Context, p: dict, _input: typing.Iterator) -> None:
    choices = [
        ChoiceDescription(Label="&Yes", HelpMessage="Do it."),
        ChoiceDescription(Label="&No", HelpMessage="Do not do it."),
        ChoiceDescription(Label="&Maybe", HelpMessage="Ask again later."),
    ]
    result = ctx.run.host_call(lambda: ctx.run.requestor.prompt_for_choice("Confirm", "Pick one", choices, 1))
    ctx.output(int(result))


def cmd_test_prompt(ctx: Context, p: dict, _input: typing.Iterator) -> None:
    fields = [
        FieldDescription(Name="Name", Label="&Name", HelpMessage="Your name", ParameterTypeName="String",
                         ParameterTypeFullName="System.String", ParameterAssemblyFullName=CORELIB),
        FieldDescription(Name="Age", Label="&Age", HelpMessage="Your age", ParameterTypeName="Int32",
                         ParameterTypeFullName="System.Int32", ParameterAssemblyFullName=CORELIB),
    ]
    result = ctx.run.host_call(lambda: ctx.run.requestor.prompt("Details", "Tell me about you", fields))
    entries = [(str(k), echo_value(plain(v))) for k, v in (result or {}).items()]
    dict_type = f"System.Collections.Generic.Dictionary`2[[System.String, {CORELIB}],[System.Management.Automation.PSObject, {SMA}]]"
    ctx.output(Obj(type_list(dict_type, "System.Object"), value=("DCT", entries)))


def cmd_convertto_securestring(ctx: Context, p: dict, _input: typing.Iterator) -> None:
    """A SecureString from the server to the client: needs the session key, requested if the client has not sent one."""
    text = str(p.get("String", ""))
    run = ctx.run
    session = run.session
    with session.lock:
        their = getattr(session.pool.their_capability, "protocolversion", None)
        if not session.key_exchanged and their is not None and their < PSVersion("2.2"):
            # PowerShell's server (PSRemotingCryptoHelperServer.EncryptSecureString) asks a client older than 2.2 for
            # its key with PUBLIC_KEY_REQUEST; a newer client is never asked: the server encrypts with its own session
            # key and a client that skipped the key exchange cannot decrypt the result.
            session.pool.request_key()
            session.flush()
            deadline = time.monotonic() + 30
            while not session.key_exchanged:
                run.check()
                if time.monotonic() > deadline:
                    raise CommandError(error_record(
                        "The client did not answer PUBLIC_KEY_REQUEST with its public key.",
                        ["System.Management.Automation.Remoting.PSRemotingDataStructureException"],
                        "ServerKeyExchangeFailed", "NotSpecified"))
                run.cond.wait(0.5)
        encrypted = session.pool._cipher.encrypt(text)
    ctx.output(SS(encrypted))


def cmd_measure_input(ctx: Context, p: dict, source: typing.Iterator) -> None:
    count = 0
    for item in source:
        count += 1
        ctx.output(echo_value(plain(item)))
    ctx.output(count)


def cmd_start_sleep(ctx: Context, p: dict, _input: typing.Iterator) -> None:
    seconds = float(p.get("Seconds", 0) or 0) + float(p.get("Milliseconds", 0) or 0) / 1000
    ctx.run.sleep(seconds)


def cmd_test_long(ctx: Context, p: dict, _input: typing.Iterator) -> None:
    seconds = float(p.get("Seconds", 3600))
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < seconds:
        n += 1
        ctx.output(f"tick {n}")
        ctx.run.sleep(0.1)


def cmd_get_objects(ctx: Context, p: dict, _input: typing.Iterator) -> None:
    count = int(p.get("Count", 10))
    size = str(p.get("Size", "small")).lower()
    fast = bool(p.get("Fast")) or ctx.run.fast
    if ctx.collect is not None:  # piped into another command: the slow path is fine
        for i in range(count):
            ctx.output(sample_object(i, size))
        return
    ctx.run.session.send_bulk(ctx.run, count, size, fast)


LARGE_PAYLOAD = "".join(chr(0x41 + (i % 26)) for i in range(10000))


def output_encoder(rpid: uuid.UUID, pid: uuid.UUID, size: str, fast: bool) -> typing.Callable[[int, int], typing.List[typing.Tuple[str, int, bool, bool]]]:
    """Get-Objects' output, encoded without psrpcore (its per-message cost would be the benchmarks' ceiling): a
    function that gives object `index` as the PIPELINE_OUTPUT fragments of object id `oid`, each as (base64, length,
    start, end). With `fast`, object 0 is serialized once and reused for every index, when it fits one fragment."""
    head = struct.pack("<II", 1, PSRPMessageType.PipelineOutput.value) + rpid.bytes_le + pid.bytes_le
    fixed: typing.Optional[typing.Tuple[str, int]] = None
    if fast:
        message = head + BOM + to_clixml(sample_object(0, size))
        if len(message) <= FRAGMENT_SIZE - 21:
            fixed = (base64.b64encode(message).decode(), len(message))

    def encode(index: int, oid: int) -> typing.List[typing.Tuple[str, int, bool, bool]]:
        if fixed is not None:
            # 21 bytes = 7 base64 quanta, so base64(header + message) = base64(header) + base64(message).
            header = struct.pack(">QQBI", oid, 0, 3, fixed[1])
            return [(base64.b64encode(header).decode() + fixed[0], 21 + fixed[1], True, True)]
        message = head + BOM + to_clixml(sample_object(index, size))
        room = FRAGMENT_SIZE - 21
        chunks = [message[i : i + room] for i in range(0, len(message), room)]
        out = []
        for fid, chunk in enumerate(chunks):
            first, last = fid == 0, fid == len(chunks) - 1
            frag = struct.pack(">QQBI", oid, fid, (1 if first else 0) | (2 if last else 0), len(chunk)) + chunk
            out.append((base64.b64encode(frag).decode(), len(frag), first, last))
        return out

    return encode


def sample_object(i: int, size: str) -> Obj:
    ms: typing.List[typing.Tuple[str, typing.Any]] = [("Index", i), ("Name", f"object {i}"), ("Even", i % 2 == 0)]
    if size == "large":
        ms.append(("Data", LARGE_PAYLOAD))
    elif size == "huge":  # ~100 KiB: one message in several 32 KiB fragments
        ms.append(("Data", LARGE_PAYLOAD * 10))
    return Obj(type_list("System.Management.Automation.PSCustomObject", "System.Object"), ms=ms)


COMMANDS: typing.Dict[str, typing.Tuple[typing.Callable, Spec]] = {}
COMMAND_NAMES: typing.List[str] = []


def _register(name: str, func: typing.Callable, spec: Spec) -> None:
    COMMANDS[name.lower()] = (func, spec)
    COMMAND_NAMES.append(name)


_register("Get-Date", cmd_get_date, Spec())
_register("$PSVersionTable", cmd_version_table, Spec())
_register("Get-Process", cmd_get_process, Spec(["Name", "Id"]))
_register("Get-Service", cmd_get_service, Spec(["Name"], named=["DisplayName"]))
COMMANDS["gsv"] = COMMANDS["get-service"]
_register("Write-Output", cmd_write_output, Spec(["InputObject"], ["NoEnumerate"], remaining=True))
_register("Write-Error", cmd_write_error, Spec(["Message", "Category"]))
_register("Write-Warning", cmd_write_warning, Spec(["Message"]))
_register("Write-Verbose", cmd_write_verbose, Spec(["Message"]))
_register("Write-Debug", cmd_write_debug, Spec(["Message"]))
_register("Write-Information", cmd_write_information, Spec(["MessageData", "Tags"]))
_register("Write-Host", cmd_write_host, Spec(["Object", "ForegroundColor", "BackgroundColor"], ["NoNewline"], remaining=True))
_register("Write-Progress", cmd_write_progress, Spec(["Activity", "Status", "Id", "PercentComplete", "SecondsRemaining", "CurrentOperation", "ParentId"], ["Completed"]))
_register("Test-Progress", cmd_test_progress, Spec(["Count"]))
_register("throw", cmd_throw, Spec(["Message"]))
_register("Test-Terminating", cmd_throw, Spec(["Message"]))
_register("Read-Host", cmd_read_host, Spec(["Prompt"], ["AsSecureString"]))
_register("Get-Credential", cmd_get_credential, Spec(["UserName", "Message", "Title", "Credential"]))
_register("Test-Choice", cmd_test_choice, Spec())
_register("Test-Prompt", cmd_test_prompt, Spec())
_register("Measure-Input", cmd_measure_input, Spec())
_register("ConvertTo-SecureString", cmd_convertto_securestring, Spec(["String"], ["AsPlainText", "Force"]))
_register("Start-Sleep", cmd_start_sleep, Spec(["Seconds", "Milliseconds"]))
_register("Test-Long", cmd_test_long, Spec(["Seconds"]))
_register("Get-Objects", cmd_get_objects, Spec(["Count", "Size"], ["Fast"]))

# ---------------------------------------------------------------------------------------------------------------------
# The console's own commands: the location, `prompt` and `TabExpansion2`, as Enter-PSSession uses them. The file
# system is a small fixed Windows-like tree (the host emulates a Windows server whatever machine it runs on).

DIRECTORIES = [
    "C:\\", "C:\\Program Files", "C:\\Program Files\\PowerShell", "C:\\Users", "C:\\Users\\Public", "C:\\Users\\psgate",
    "C:\\Users\\psgate\\Documents", "C:\\Users\\psgate\\Downloads", "C:\\Windows", "C:\\Windows\\System32",
    "C:\\Windows\\Temp",
]
HOME = "C:\\Users\\psgate"


def location_of(ctx: Context) -> str:
    return getattr(ctx.run.session, "location", HOME)


def resolve_path(current: str, path: str) -> str:
    """An absolute path for `path` typed at `current` (`..`, `.`, `\\`, `~`, drive-relative), not checked."""
    path = path.strip().strip("'\"").replace("/", "\\")
    if path in ("", "~"):
        return HOME
    if path.startswith("~\\"):
        path = HOME + path[1:]
    if re.match(r"^[A-Za-z]:", path):
        parts, rest = [path[0].upper() + ":"], path[2:]
    elif path.startswith("\\"):
        parts, rest = [current[:2]], path
    else:
        parts, rest = current.rstrip("\\").split("\\"), path
    for part in rest.split("\\"):
        if part in ("", "."):
            continue
        if part == "..":
            if len(parts) > 1:
                parts.pop()
            continue
        parts.append(part)
    return parts[0] + "\\" if len(parts) == 1 else "\\".join(parts)


def existing_directory(path: str) -> typing.Optional[str]:
    """The directory's name as stored (Windows paths are case-insensitive), or None."""
    return next((d for d in DIRECTORIES if d.lower() == path.lower()), None)


def path_info(path: str) -> Obj:
    return Obj(
        type_list("System.Management.Automation.PathInfo", "System.Object"),
        path,
        props=[("Drive", path[0]), ("Provider", "Microsoft.PowerShell.Core\\FileSystem"), ("ProviderPath", path), ("Path", path)],
    )


def cmd_get_location(ctx: Context, p: dict, _input: typing.Iterator) -> None:
    ctx.output(path_info(location_of(ctx)))


def cmd_set_location(ctx: Context, p: dict, _input: typing.Iterator) -> None:
    target = resolve_path(location_of(ctx), str(p.get("Path", "~")))
    found = existing_directory(target)
    if found is None:
        ctx.error(
            error_record(
                f"Cannot find path '{target}' because it does not exist.",
                ["System.Management.Automation.ItemNotFoundException"],
                "PathNotFound,Microsoft.PowerShell.Commands.SetLocationCommand",
                "ObjectNotFound",
                activity="Set-Location",
                target=target,
                command="Set-Location",
                line=ctx.line,
            )
        )
        return
    ctx.run.session.location = found


def cmd_prompt(ctx: Context, p: dict, _input: typing.Iterator) -> None:
    # PowerShell's default prompt function: "PS $($executionContext.SessionState.Path.CurrentLocation)> ".
    ctx.output(f"PS {location_of(ctx)}> ")


RESULT_TYPES = {"Command": 2, "ProviderContainer": 4, "ParameterName": 7}


def completion_result(text: str, list_text: str, result_type: str, tooltip: str) -> Obj:
    return Obj(
        type_list("System.Management.Automation.CompletionResult", "System.Object"),
        text,
        props=[
            ("CompletionText", text),
            ("ListItemText", list_text),
            ("ResultType", Enum("System.Management.Automation.CompletionResultType", result_type, RESULT_TYPES[result_type])),
            ("ToolTip", tooltip),
        ],
    )


def complete(line: str, cursor: int, location: str) -> typing.Tuple[int, int, typing.List[Obj]]:
    """What TabExpansion2 completes at `cursor` with the session at `location`: a command name first on a line, a
    parameter after `-`, else a directory. Returns (ReplacementIndex, ReplacementLength, matches)."""
    cursor = max(0, min(cursor, len(line)))
    start = cursor
    while start > 0 and not line[start - 1].isspace() and line[start - 1] not in "|;({":
        start -= 1
    word = line[start:cursor]
    before = line[:start].rstrip()
    first = before == "" or before[-1] in "|;({"
    if word.startswith("-") and not first:
        command = re.split(r"[|;({]", before)[-1].split()
        entry = COMMANDS.get(command[0].lower()) if command else None
        names = (entry[1].params + entry[1].named + entry[1].switches) if entry else []
        found = [n for n in names if n.lower().startswith(word[1:].lower())]
        return start, len(word), [completion_result("-" + n, n, "ParameterName", f"[{n}]") for n in found]
    if first:
        found = sorted({n for n in COMMAND_NAMES if n[0].isalpha() and n.lower().startswith(word.lower())}, key=str.lower)
        return start, len(word), [completion_result(n, n, "Command", n) for n in found]
    # A path: the directory typed so far, then the children whose name starts with the rest.
    typed = word.strip("'\"")
    head, _, partial = typed.rpartition("\\")
    base = resolve_path(location, head + "\\" if head else ".")
    results = []
    for d in DIRECTORIES:
        parent, _, name = d.rstrip("\\").rpartition("\\")
        if name and parent.lower() == base.rstrip("\\").lower() and name.lower().startswith(partial.lower()):
            shown = (head + "\\" + name) if head else (".\\" + name)
            text = f"'{shown}'" if " " in shown else shown
            results.append(completion_result(text, name, "ProviderContainer", d))
    return start, len(word), results



def cmd_tab_expansion2(ctx: Context, p: dict, _input: typing.Iterator) -> None:
    line = str(p.get("inputScript", ""))
    cursor = int(p.get("cursorColumn", len(line)))
    index, length, matches = complete(line, cursor, location_of(ctx))
    ctx.output(
        Obj(
            type_list("System.Management.Automation.CommandCompletion", "System.Object"),
            "System.Management.Automation.CommandCompletion",
            props=[
                ("CurrentMatchIndex", -1),
                ("ReplacementIndex", index),
                ("ReplacementLength", length),
                ("CompletionMatches", Obj(
                    type_list("System.Collections.ObjectModel.Collection`1[[System.Management.Automation.CompletionResult, System.Management.Automation, Version=3.0.0.0, Culture=neutral, PublicKeyToken=31bf3856ad364e35]]", "System.Object"),
                    value=("LST", matches),
                )),
            ],
        )
    )


_register("Get-Location", cmd_get_location, Spec())
_register("Set-Location", cmd_set_location, Spec(["Path"]))
COMMANDS["cd"] = COMMANDS["sl"] = COMMANDS["set-location"]
COMMANDS["pwd"] = COMMANDS["gl"] = COMMANDS["get-location"]
_register("prompt", cmd_prompt, Spec())
_register("TabExpansion2", cmd_tab_expansion2, Spec(["inputScript", "cursorColumn", "options"]))


# ---------------------------------------------------------------------------------------------------------------------
# Modules for implicit remoting: ActiveDirectory (an in-memory directory), BenchModule, Import-Module, Get-Command
# (-ShowCommandInfo), Get-Help, Get-FormatData, Select-Object and Measure-Object. The definitions are COMMAND_DEFS.


def type_names_of(value: typing.Any) -> typing.List[str]:
    """The type names of a value as the server sees it (our Obj, a deserialized psrpcore object, a primitive)."""
    if isinstance(value, Obj):
        return list(value.types)
    names = list(getattr(getattr(value, "PSObject", None), "type_names", []) or [])
    if names:
        return names
    primitive = {bool: "System.Boolean", int: "System.Int32", float: "System.Double", str: "System.String"}
    for kind, name in primitive.items():
        if isinstance(value, kind):
            return [name, "System.ValueType", "System.Object"] if kind is not str else [name, "System.Object"]
    return ["System.Object"]


def property_names_of(value: typing.Any) -> typing.List[str]:
    if isinstance(value, Obj):
        return [k for k, _ in (value.props or []) + (value.ms or [])]
    if isinstance(value, dict):
        return [str(k) for k in value]
    ps = getattr(value, "PSObject", None)
    if ps is None:
        return []
    return [p.name for p in list(ps.adapted_properties) + list(ps.extended_properties)]


def property_of(value: typing.Any, name: str) -> typing.Tuple[bool, typing.Any]:
    """(found, value) of a property read as PowerShell reads it: case-insensitively, adapted or extended."""
    if isinstance(value, Obj):
        for k, v in (value.props or []) + (value.ms or []):
            if k.lower() == name.lower():
                return True, v
        return False, None
    if isinstance(value, dict):
        for k, v in value.items():
            if str(k).lower() == name.lower():
                return True, plain(v)
        return False, None
    ps = getattr(value, "PSObject", None)
    if ps is not None:
        for p in list(ps.adapted_properties) + list(ps.extended_properties):
            if p.name.lower() == name.lower():
                return True, plain(p.get_value(value))
    return False, None


def missing_mandatory(command: CommandDef, names: typing.Sequence[str], line: str) -> Obj:
    """ParameterBindingException for missing mandatory parameters (a remote runspace cannot prompt for them)."""
    return error_record(
        f"Cannot process command because of one or more missing mandatory parameters: {' '.join(names)}.",
        ["System.Management.Automation.ParameterBindingException", "System.Management.Automation.RuntimeException"],
        f"MissingMandatoryParameter,{command.implementing_type or command.name}",
        "InvalidArgument",
        activity=command.name,
        command=command.name,
        line=line,
        exception_extra=[("ParameterName", names[0]), ("CommandInvocation", None)],
    )


def as_list(value: typing.Any) -> typing.List[typing.Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def as_bool(command: str, parameter: str, value: typing.Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return bool(value)
    text = str(value).strip().lower().lstrip("$")
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise CommandError(parameter_error(command, parameter, f"Cannot process argument transformation on parameter "
                                       f"'{parameter}'. Cannot convert value \"{value}\" to type \"System.Boolean\". "
                                       "Boolean parameters accept only Boolean values and numbers, such as $True, "
                                       "$False, 1 or 0."))


# -- the directory ----------------------------------------------------------------------------------------------------

AD_DOMAIN_DN = "DC=psgate,DC=test"
AD_DOMAIN_SID = "S-1-5-21-3623811015-3361044348-30300820"
AD_USERS_DN = "CN=Users," + AD_DOMAIN_DN
AD_EXTRA_PROPERTIES = ["Department", "Description", "DisplayName"]  # shown when set or asked for with -Properties


class Directory:
    """The in-memory Active Directory of one peer process (shared by its sessions): users as dicts."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users: typing.List[typing.Dict[str, typing.Any]] = []
        self.next_rid = 1104
        self.add("Administrator", rid=500, enabled=True, Description="Built-in account for administering the computer/domain")
        self.add("Guest", rid=501, enabled=False, Description="Built-in account for guest access to the computer/domain")
        self.add("krbtgt", rid=502, enabled=False, Description="Key Distribution Center Service Account")

    def add(self, name: str, *, rid: typing.Optional[int] = None, enabled: bool = False, path: str = AD_USERS_DN,
            sam: typing.Optional[str] = None, **extra: typing.Any) -> typing.Dict[str, typing.Any]:
        if rid is None:
            rid, self.next_rid = self.next_rid, self.next_rid + 1
        user: typing.Dict[str, typing.Any] = {
            "Name": name, "SamAccountName": sam or name, "DistinguishedName": f"CN={name},{path}", "Enabled": enabled,
            "GivenName": None, "Surname": None, "UserPrincipalName": None, "ObjectClass": "user",
            "ObjectGUID": uuid.uuid5(uuid.NAMESPACE_URL, f"ad://psgate.test/{name}"), "SID": f"{AD_DOMAIN_SID}-{rid}",
            "Department": None, "Description": None, "DisplayName": None,
        }
        user.update({k: v for k, v in extra.items() if k in user})
        self.users.append(user)
        return user

    def find(self, identity: typing.Any) -> typing.Optional[typing.Dict[str, typing.Any]]:
        """Identity as the AD cmdlets resolve it: DN, GUID, SID, SAM account name (and, leniently, Name); an ADUser
        object (deserialized, as implicit remoting sends it back) by its DistinguishedName, ObjectGUID, SID or
        SamAccountName property."""
        keys: typing.List[str] = []
        if isinstance(identity, (str, int, uuid.UUID)):
            keys = [str(identity)]
        else:
            for prop in ("DistinguishedName", "ObjectGUID", "SID", "SamAccountName", "Name"):
                found, value = property_of(identity, prop)
                if found and value is not None:
                    sid_found, sid_value = property_of(value, "Value") if prop == "SID" and not isinstance(value, str) else (False, None)
                    keys.append(str(sid_value if sid_found else value))
            if not keys:
                keys = [str(identity)]
        for key in keys:
            for field in ("DistinguishedName", "ObjectGUID", "SID", "SamAccountName", "Name"):
                for user in self.users:
                    if str(user[field]).lower() == key.lower():
                        return user
        return None


DIRECTORY = Directory()


def identity_text(identity: typing.Any) -> str:
    if isinstance(identity, (str, int, uuid.UUID)):
        return str(identity)
    for prop in ("DistinguishedName", "SamAccountName", "Name"):
        found, value = property_of(identity, prop)
        if found and value is not None:
            return str(value)
    return str(identity)


def sid_object(sid: str) -> Obj:
    return Obj(
        type_list("System.Security.Principal.SecurityIdentifier", "System.Security.Principal.IdentityReference", "System.Object"),
        sid,
        props=[("BinaryLength", 28), ("AccountDomainSid", sid.rsplit("-", 1)[0]), ("Value", sid)],
    )


def aduser_object(user: typing.Dict[str, typing.Any], requested: typing.Sequence[str] = ()) -> Obj:
    """An ADUser as the AD module writes it: the default properties (and the extra ones set or asked for) as adapted
    properties, sorted by name as ADEntityAdapter lists them; ToString is the distinguished name."""
    wanted = {r.lower() for r in requested}
    names = ["DistinguishedName", "Enabled", "GivenName", "Name", "ObjectClass", "ObjectGUID", "SamAccountName", "SID",
             "Surname", "UserPrincipalName"]
    names += [n for n in AD_EXTRA_PROPERTIES if user.get(n) is not None or n.lower() in wanted or "*" in wanted]
    props = [(n, sid_object(user[n]) if n == "SID" else user[n]) for n in sorted(names, key=str.lower)]
    return Obj(
        type_list(AD_USER, "Microsoft.ActiveDirectory.Management.ADAccount", "Microsoft.ActiveDirectory.Management.ADPrincipal",
                  "Microsoft.ActiveDirectory.Management.ADObject", "Microsoft.ActiveDirectory.Management.ADEntity", "System.Object"),
        user["DistinguishedName"],
        props=props,
    )


def ad_error(command: str, exception: str, message: str, category: str, target: typing.Any, line: str) -> Obj:
    """An AD cmdlet's error: FullyQualifiedErrorId `ActiveDirectoryCmdlet:<exception>,<cmdlet class>`."""
    bases = {
        "ADIdentityNotFoundException": ["ADIdentityResolutionException", "ADException"],
        "ADIdentityAlreadyExistsException": ["ADException"],
        "ADFilterParsingException": ["ADException"],
    }[exception]
    ns = "Microsoft.ActiveDirectory.Management."
    return error_record(
        message,
        [ns + exception] + [ns + b for b in bases],
        f"ActiveDirectoryCmdlet:{ns}{exception},{_AD_NS}{command.replace('-', '')}",
        category,
        activity=command,
        target=target,
        command=command,
        line=line,
    )


def ad_not_found(command: str, identity: typing.Any, line: str) -> Obj:
    text = identity_text(identity)
    return ad_error(command, "ADIdentityNotFoundException",
                    f"Cannot find an object with identity: '{text}' under: '{AD_DOMAIN_DN}'.", "ObjectNotFound", text, line)


_AD_CLAUSE = re.compile(
    r"""^\(?\s*(?P<attr>[A-Za-z][\w-]*)\s+-(?P<op>eq|ne|like|notlike)\s+(?P<value>'(?:[^']|'')*'|"[^"]*"|\S+?)\s*\)?$""",
    re.I,
)
_LDAP_NAMES = {"samaccountname": "SamAccountName", "name": "Name", "cn": "Name", "givenname": "GivenName",
               "sn": "Surname", "department": "Department", "displayname": "DisplayName", "description": "Description",
               "userprincipalname": "UserPrincipalName", "distinguishedname": "DistinguishedName"}


def _user_field(user: typing.Dict[str, typing.Any], attr: str) -> typing.Any:
    for key, value in user.items():
        if key.lower() == attr.lower():
            return value
    return _LDAP_NAMES.get(attr.lower()) and user.get(_LDAP_NAMES[attr.lower()])


def _matches(actual: typing.Any, op: str, expected: typing.Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        same = bool(actual) == bool(expected) if actual is not None else False
    elif op in ("like", "notlike"):
        same = actual is not None and fnmatch.fnmatchcase(str(actual).lower(), str(expected).lower())
    else:
        same = actual is not None and str(actual).lower() == str(expected).lower()
    return same if op in ("eq", "like") else not same


def ad_filter(text: str, command: str, line: str) -> typing.Callable[[typing.Dict[str, typing.Any]], bool]:
    """The AD module's -Filter, in the part the peer understands: `*`, and `Attr -eq|-ne|-like|-notlike value`
    clauses joined by -and/-or (left to right); anything else is ADFilterParsingException."""
    source = text.strip()
    if source.startswith("{") and source.endswith("}"):
        source = source[1:-1].strip()
    if source == "*":
        return lambda user: True
    parts = re.split(r"\s+-(and|or)\s+", source, flags=re.I)
    clauses: typing.List[typing.Tuple[str, str, typing.Any]] = []
    for part in parts[::2]:
        m = _AD_CLAUSE.match(part.strip())
        if not m:
            raise CommandError(ad_error(command, "ADFilterParsingException",
                                        f"Error parsing query: '{text}' Error Message: 'syntax error' at position: '1'.",
                                        "ParserError", text, line))
        raw = m.group("value")
        value: typing.Any = raw[1:-1].replace("''", "'") if raw[:1] in "'\"" else raw
        if raw.lower() in ("$true", "$false"):
            value = raw.lower() == "$true"
        clauses.append((m.group("attr"), m.group("op").lower(), value))
    joins = [j.lower() for j in parts[1::2]]

    def test(user: typing.Dict[str, typing.Any]) -> bool:
        result = _matches(_user_field(user, clauses[0][0]), clauses[0][1], clauses[0][2])
        for join, (attr, op, value) in zip(joins, clauses[1:]):
            this = _matches(_user_field(user, attr), op, value)
            result = (result and this) if join == "and" else (result or this)
        return result

    return test


def ldap_filter(text: str) -> typing.Callable[[typing.Dict[str, typing.Any]], bool]:
    """-LDAPFilter: every `(attribute=value)` term must match (wildcards allowed); objectClass/objectCategory terms
    match every user."""
    terms = [(a, v) for a, v in re.findall(r"\(\s*([A-Za-z][\w-]*)\s*=\s*([^()]*)\)", text)
             if a.lower() not in ("objectclass", "objectcategory")]
    return lambda user: all(_matches(_user_field(user, a), "like", v) for a, v in terms)


def cmd_get_aduser(ctx: Context, p: dict, source: typing.Iterator) -> None:
    command = COMMAND_DEFS["get-aduser"]
    requested = [str(r) for r in as_list(p.get("Properties"))]
    with DIRECTORY.lock:
        if "Identity" in p:
            identities: typing.List[typing.Any] = [p["Identity"]]
        elif "Filter" in p or "LDAPFilter" in p:
            test = ad_filter(str(p["Filter"]), command.name, ctx.line) if "Filter" in p else ldap_filter(str(p["LDAPFilter"]))
            base = str(p.get("SearchBase") or AD_DOMAIN_DN).lower()
            found = [u for u in DIRECTORY.users if u["DistinguishedName"].lower().endswith(base) and test(u)]
            limit = p.get("ResultSetSize")
            for user in found[: int(limit) if limit is not None else None]:
                ctx.output(aduser_object(user, requested))
            return
        else:
            identities = list(source)
            if not identities:
                raise CommandError(missing_mandatory(command, ["Filter"], ctx.line))
        for identity in identities:
            user = DIRECTORY.find(identity)
            if user is None:  # the AD cmdlets throw this one (-ErrorAction cannot silence it)
                raise CommandError(ad_not_found(command.name, identity, ctx.line))
            ctx.output(aduser_object(user, requested))


def cmd_new_aduser(ctx: Context, p: dict, _input: typing.Iterator) -> None:
    command = COMMAND_DEFS["new-aduser"]
    if p.get("Name") in (None, ""):
        raise CommandError(missing_mandatory(command, ["Name"], ctx.line))
    name = str(p["Name"])
    path = str(p.get("Path") or AD_USERS_DN)
    with DIRECTORY.lock:
        sam = str(p.get("SamAccountName") or name)
        if DIRECTORY.find(f"CN={name},{path}") is not None or DIRECTORY.find(sam) is not None:
            raise CommandError(ad_error(command.name, "ADIdentityAlreadyExistsException", "The specified account already exists",
                                        "ResourceExists", f"CN={name},{path}", ctx.line))
        fields = {k: str(p[k]) for k in ("GivenName", "Surname", "DisplayName", "Department", "Description", "UserPrincipalName") if p.get(k) is not None}
        enabled = as_bool(command.name, "Enabled", p["Enabled"]) if p.get("Enabled") is not None else False
        if p.get("WhatIf"):
            ctx.information(f'What if: Performing the operation "New" on target "CN={name},{path}".', "", ["PSHOST"])
            return
        user = DIRECTORY.add(name, enabled=enabled, path=path, sam=sam, **fields)
        if p.get("PassThru"):
            ctx.output(aduser_object(user))


def cmd_set_aduser(ctx: Context, p: dict, source: typing.Iterator) -> None:
    command = COMMAND_DEFS["set-aduser"]
    identities = [p["Identity"]] if "Identity" in p else [p["Instance"]] if "Instance" in p else list(source)
    if not identities:
        raise CommandError(missing_mandatory(command, ["Identity"], ctx.line))
    changes = {k: (None if p[k] is None else str(p[k])) for k in ("Department", "Description", "DisplayName", "SamAccountName") if k in p}
    if p.get("Enabled") is not None:
        changes["Enabled"] = as_bool(command.name, "Enabled", p["Enabled"])
    for prop in as_list(p.get("Clear")):
        changes[str(prop)] = None
    for table in ("Replace", "Add"):
        for k, v in (p.get(table) or {}).items():
            changes[str(k)] = plain(v)
    with DIRECTORY.lock:
        for identity in identities:
            user = DIRECTORY.find(identity)
            if user is None:
                raise CommandError(ad_not_found(command.name, identity, ctx.line))
            if not p.get("WhatIf"):
                for k, v in changes.items():
                    key = next((f for f in user if f.lower() == k.lower()), None)
                    if key is not None and key not in ("ObjectGUID", "SID", "DistinguishedName", "ObjectClass", "Name"):
                        user[key] = v
            if p.get("PassThru"):
                ctx.output(aduser_object(user))


def module_info(name: str) -> Obj:
    kind = ("Binary", 1) if name == "ActiveDirectory" else ("Manifest", 1) if name.startswith("Microsoft.") else ("Script", 0)
    return Obj(
        type_list("System.Management.Automation.PSModuleInfo", "System.Object"),
        name,
        props=[("Name", name), ("Path", f"C:\\Windows\\system32\\WindowsPowerShell\\v1.0\\Modules\\{name}\\{name}.psd1"),
               ("Description", ""), ("ModuleType", Enum("System.Management.Automation.ModuleType", kind[0], kind[1])),
               ("Version", Ver(MODULE_VERSIONS.get(name, "1.0.0"))), ("ExportedCommands", "System.Collections.Generic.Dictionary`2[System.String,System.Management.Automation.CommandInfo]")],
    )


def cmd_import_module(ctx: Context, p: dict, _input: typing.Iterator) -> None:
    """Import-Module: a module the peer emulates imports (its commands are always there); another one is
    PowerShell's Modules_ModuleNotFound error (non-terminating)."""
    if p.get("Name") is None:
        raise CommandError(missing_mandatory(COMMAND_DEFS["import-module"], ["Name"], ctx.line))
    for name in as_list(p.get("Name")):
        module = next((m for m in MODULES if m.lower() == str(name).lower()), None)
        if module is None:
            ctx.error(error_record(
                f"The specified module '{name}' was not loaded because no valid module file was found in any module directory.",
                ["System.IO.FileNotFoundException", "System.IO.IOException"],
                "Modules_ModuleNotFound,Microsoft.PowerShell.Commands.ImportModuleCommand",
                "ResourceUnavailable",
                activity="Import-Module",
                target=str(name),
                command="Import-Module",
                line=ctx.line,
                write_error_stream=True,
                exception_extra=[("FileName", None), ("FusionLog", None)],
            ))
        elif p.get("PassThru"):
            ctx.output(module_info(module))


def cmd_bench(name: str) -> typing.Callable[[Context, dict, typing.Iterator], None]:
    """A BenchModule command: one object per call (or per pipeline input, which binds to Name) with its bound
    parameters as properties."""
    def run(ctx: Context, p: dict, source: typing.Iterator) -> None:
        command = COMMAND_DEFS[name.lower()]
        calls = [p] if "Name" in p else [dict(p, Name=item) for item in source] or [p]
        for bound in calls:
            if "Name" not in bound and command.params[0].sets[ALL_SETS][1]:
                raise CommandError(missing_mandatory(command, ["Name"], ctx.line))
            ctx.output(Obj(
                type_list("BenchModule.Result", "System.Management.Automation.PSCustomObject", "System.Object"),
                ms=[("Command", name), ("ParameterCount", len(bound))] + [(k, echo_value(plain(v))) for k, v in bound.items()],
            ))
    return run


# -- Get-Command --------------------------------------------------------------------------------------------------------

_TYPE_ALIASES = {"System.String": "string", "System.Int32": "int", "System.Int64": "long", "System.Boolean": "bool",
                 "System.Object": "Object", "System.DateTime": "datetime", "System.Collections.Hashtable": "hashtable",
                 "System.Management.Automation.PSCredential": "pscredential", "System.Security.SecureString": "securestring",
                 "System.Version": "version", "System.Management.Automation.PSObject": "psobject", SWITCH: "switch"}


def syntax_type(type_name: str) -> str:
    """A parameter type as PowerShell's syntax text names it (`string[]`, `ADUser`, `System.Nullable[bool]`)."""
    if type_name.endswith("[]"):
        return syntax_type(type_name[:-2]) + "[]"
    m = re.fullmatch(r"System\.Nullable`1\[(.+)\]", type_name)
    if m:
        return f"System.Nullable[{syntax_type(m.group(1))}]"
    return _TYPE_ALIASES.get(type_name, type_name.rsplit(".", 1)[-1])


def syntax_line(command: CommandDef, set_name: str) -> str:
    """CommandParameterSetInfo.ToString(): positional parameters by position, then mandatory named ones, then the
    rest; `[<CommonParameters>]` last."""
    entries = [(p, e) for p, e in command.set_params(set_name) if p not in COMMON_PARAMETER_DEFS]
    ordered = sorted([x for x in entries if x[1][0] is not None], key=lambda x: x[1][0] or 0)
    ordered += [x for x in entries if x[1][0] is None and x[1][1]] + [x for x in entries if x[1][0] is None and not x[1][1]]
    parts = []
    for p, (position, mandatory, _pipe, _by) in ordered:
        if p.switch:
            parts.append(f"-{p.name}" if mandatory else f"[-{p.name}]")
            continue
        name = f"[-{p.name}]" if position is not None else f"-{p.name}"
        text = f"{name} <{syntax_type(p.type_name)}>"
        parts.append(text if mandatory else f"[{text}]")
    return " ".join([command.resolved().name] + parts + ["[<CommonParameters>]"])


def definition(command: CommandDef) -> str:
    if command.kind == "Alias":
        return command.resolved().name
    if command.kind == "Function":
        params = ", ".join(f"[{syntax_type(p.type_name)}]${p.name}" for p in command.params)
        return f"\n    [CmdletBinding()]\n    param({params})\n    $PSBoundParameters\n"
    return "\r\n" + "\r\n\r\n".join(syntax_line(command, s) for s in command.set_names()) + "\r\n"


def command_info(command: CommandDef) -> Obj:
    """Get-Command's CmdletInfo / FunctionInfo / AliasInfo at remoting's depth: collections and other objects under
    the top level are their ToString() text, enums stay enums."""
    resolved = command.resolved()
    info = {"Cmdlet": "CmdletInfo", "Function": "FunctionInfo", "Alias": "AliasInfo"}[command.kind]
    verb, _, noun = command.name.partition("-")
    sets = command.set_names()
    common = [
        ("Name", command.name),
        ("CommandType", command_type_enum(command.kind)),
        ("Source", command.module),
        ("Version", Ver(MODULE_VERSIONS.get(command.module, command.version))),
        ("Visibility", Enum("System.Management.Automation.SessionStateEntryVisibility", "Public", 0)),
        ("ModuleName", command.module),
        ("Module", command.module),
        ("RemotingCapability", Enum("System.Management.Automation.RemotingCapability", "PowerShell", 1)),
        ("Parameters", "System.Collections.Generic.Dictionary`2[System.String,System.Management.Automation.ParameterMetadata]"),
        ("ParameterSets", "System.Collections.ObjectModel.ReadOnlyCollection`1[System.Management.Automation.CommandParameterSetInfo]"),
    ]
    output_type = "System.Collections.ObjectModel.ReadOnlyCollection`1[System.Management.Automation.PSTypeName]"
    if command.kind == "Cmdlet":
        props = [("Verb", verb), ("Noun", noun), ("HelpFile", f"{command.module}.dll-Help.xml"), ("PSSnapIn", None),
                 ("ImplementingType", command.implementing_type), ("Definition", definition(command)),
                 ("DefaultParameterSet", command.default_set), ("OutputType", output_type),
                 ("Options", Enum("System.Management.Automation.ScopedItemOptions", "ReadOnly", 1))]
    elif command.kind == "Function":
        props = [("Verb", verb), ("Noun", noun), ("HelpFile", ""), ("ScriptBlock", definition(command)),
                 ("CmdletBinding", True), ("DefaultParameterSet", command.default_set), ("Definition", definition(command)),
                 ("Options", Enum("System.Management.Automation.ScopedItemOptions", "None", 0)), ("Description", ""),
                 ("OutputType", output_type)]
    else:
        props = [("ResolvedCommand", resolved.name), ("ReferencedCommand", resolved.name),
                 ("ResolvedCommandName", resolved.name), ("Definition", resolved.name),
                 ("Options", Enum("System.Management.Automation.ScopedItemOptions", "None", 0)), ("Description", ""),
                 ("OutputType", output_type)]
    return Obj(
        type_list(f"System.Management.Automation.{info}", "System.Management.Automation.CommandInfo", "System.Object"),
        command.name,
        props=props + common,
        ms=[("HelpUri", resolved.help_uri)] + ([("DLL", f"C:\\Windows\\Microsoft.Net\\assembly\\GAC_64\\{command.module}.dll")] if command.kind == "Cmdlet" else []),
    )


PSOBJECT_ARRAY = type_list("System.Management.Automation.PSObject[]", "System.Array", "System.Object")
CUSTOM = type_list("System.Management.Automation.PSCustomObject", "System.Object")


def show_parameter_type(type_name: str) -> Obj:
    """GetCommandCommand.GetParameterType: FullName, IsEnum, IsArray, EnumValues (an ArrayList of the enum's values),
    HasFlagAttribute, ElementType (for arrays), ImplementsDictionary (always false: it tests the Type object)."""
    is_array = type_name.endswith("[]")
    m = re.fullmatch(r"System\.Nullable`1\[(.+)\]", type_name)
    full_name = f"System.Nullable`1[[{m.group(1)}, {CORELIB}]]" if m else type_name
    values = ENUMS.get(type_name)
    return Obj(CUSTOM, ms=[
        ("FullName", full_name),
        ("IsEnum", values is not None),
        ("IsArray", is_array),
        ("EnumValues", Obj(type_list("System.Collections.ArrayList", "System.Object"),
                           value=("LST", [Enum(type_name, n, v) for n, v in values or []]))),
        ("HasFlagAttribute", False),
        ("ElementType", show_parameter_type(type_name[:-2]) if is_array else None),
        ("ImplementsDictionary", False),
    ])


def show_command_info(command: CommandDef) -> Obj:
    """Get-Command -ShowCommandInfo (GetCommandCommand.ConvertToShowCommandInfo): PSCustomObjects of note properties —
    Name, ModuleName, Module{Name}, CommandType, Definition, ParameterSets[{Name, IsDefault, Parameters[{Name,
    IsMandatory, ValueFromPipeline, Position, ParameterType, HasParameterSet, ValidParamSetValues}]}]."""
    resolved = command.resolved()
    sets = command.set_names()
    set_objects = []
    for set_name in sets:
        params = []
        for p, (position, mandatory, pipeline, _by) in command.set_params(set_name):
            valid = (Obj(type_list("System.String[]", "System.Array", "System.Object"), value=("LST", p.validate_set))
                     if p.validate_set else
                     Obj(type_list(f"System.Collections.Generic.List`1[[System.String, {CORELIB}]]", "System.Object"), value=("LST", [])))
            params.append(Obj(CUSTOM, ms=[
                ("Name", p.name), ("IsMandatory", mandatory), ("ValueFromPipeline", pipeline),
                ("Position", INT_MIN if position is None else position), ("ParameterType", show_parameter_type(p.type_name)),
                ("HasParameterSet", bool(p.validate_set)), ("ValidParamSetValues", valid),
            ]))
        set_objects.append(Obj(CUSTOM, ms=[
            ("Name", set_name), ("IsDefault", set_name == resolved.default_set or len(sets) == 1),
            ("Parameters", Obj(PSOBJECT_ARRAY, value=("LST", params))),
        ]))
    return Obj(CUSTOM, ms=[
        ("Name", command.name),
        ("ModuleName", command.module),
        ("Module", Obj(CUSTOM, ms=[("Name", command.module)])),
        ("CommandType", command_type_enum(command.kind)),
        ("Definition", definition(command)),
        ("ParameterSets", Obj(PSOBJECT_ARRAY, value=("LST", set_objects))),
    ])


def command_types_of(value: typing.Any) -> int:
    if value is None:
        return 383
    total = 0
    for item in as_list(value):
        if isinstance(item, int):
            total |= int(item)
            continue
        for part in str(item).split(","):
            names = {n.lower(): v for n, v in ENUMS["System.Management.Automation.CommandTypes"]}
            if part.strip().lower() not in names:
                raise CommandError(parameter_error("Get-Command", "CommandType", f"Cannot bind parameter 'CommandType'. Cannot convert value \"{part.strip()}\" to type \"System.Management.Automation.CommandTypes\"."))
            total |= names[part.strip().lower()]
    return total


def cmd_get_command(ctx: Context, p: dict, _input: typing.Iterator) -> None:
    """Get-Command [[-Name] <string[]>] [-Module <string[]>] [-CommandType <CommandTypes>] [-ShowCommandInfo]: the
    commands of the emulated modules and the console's built-ins, the public ones only, sorted by name. A name
    without wildcards that matches nothing is CommandNotFoundException (non-terminating)."""
    names = [str(n) for n in as_list(p.get("Name"))] or ["*"]
    modules = [str(m) for m in as_list(p.get("Module"))]
    types = command_types_of(p.get("CommandType"))
    session = ctx.run.session
    found = [
        c for c in COMMAND_DEFS.values()
        if session.is_visible(c.name) and COMMAND_TYPES[c.kind] & types
        and any(fnmatch.fnmatchcase(c.name.lower(), n.lower()) for n in names)
        and (not modules or any(fnmatch.fnmatchcase(c.module.lower(), m.lower()) for m in modules))
    ]
    for n in names:
        if not _wildcard(n) and not any(c.name.lower() == n.lower() for c in found):
            ctx.error(error_record(
                str(not_recognized(n, ctx.line).to_string), [
                    "System.Management.Automation.CommandNotFoundException", "System.Management.Automation.RuntimeException"],
                "CommandNotFoundException,Microsoft.PowerShell.Commands.GetCommandCommand", "ObjectNotFound",
                activity="Get-Command", target=n, command="Get-Command", line=ctx.line, write_error_stream=True,
                exception_extra=[("CommandName", n)],
            ))
    for c in sorted(found, key=lambda c: c.name.lower()):
        ctx.output(show_command_info(c) if p.get("ShowCommandInfo") else command_info(c))


# -- Get-Help -----------------------------------------------------------------------------------------------------------

HELP_CATEGORIES = ["Alias", "Cmdlet", "Provider", "General", "FAQ", "Glossary", "HelpFile", "ScriptCommand", "Function",
                   "Filter", "ExternalScript", "All", "DefaultHelp", "DscResource", "Class", "Configuration"]


def maml(kind: str, ms: typing.List[typing.Tuple[str, typing.Any]]) -> Obj:
    """A MAML element as MamlNode makes it: note properties, one type name `MamlCommandHelpInfo#<element>`."""
    return Obj(type_list(f"MamlCommandHelpInfo#{kind}"), ms=ms)


def paras(*texts: str) -> Obj:
    """A MAML text block: a PSObject[] of MamlParaTextItem (Text)."""
    items = [Obj(type_list("MamlParaTextItem", "MamlTextItem"), ms=[("Text", t)]) for t in texts]
    return Obj(PSOBJECT_ARRAY, value=("LST", items))


def one_or_many(items: typing.List[Obj]) -> typing.Any:
    """MamlNode: one child element is the object itself, several of the same name a PSObject[]."""
    return items[0] if len(items) == 1 else Obj(PSOBJECT_ARRAY, value=("LST", items))


def _help_type(type_name: str) -> str:
    m = re.fullmatch(r"System\.Nullable`1\[(.+)\]", type_name)
    return (m.group(1) if m else type_name).rsplit(".", 1)[-1]


def help_parameter(p: ParamDef, entry: typing.Tuple[typing.Optional[int], bool, bool, bool], full: bool) -> Obj:
    position, mandatory, pipeline, by_property = entry
    ms: typing.List[typing.Tuple[str, typing.Any]] = [("name", p.name)]
    if full:
        ms.append(("description", paras(p.help)))
    if not p.switch:
        ms.append(("parameterValue", Obj(value=_help_type(p.type_name), ms=[("required", "true"), ("variableLength", "false")])))
    if full:
        ms.append(("type", maml("type", [("name", _help_type(p.type_name))])))
        ms.append(("defaultValue", "False" if p.switch else "None"))
    pipe = "True (ByPropertyName, ByValue)" if pipeline and by_property else "True (ByValue)" if pipeline else "True (ByPropertyName)" if by_property else "False"
    ms += [("required", "true" if mandatory else "false"), ("variableLength", "true" if p.type_name.endswith("[]") else "false"),
           ("globbing", "false"), ("pipelineInput", pipe), ("position", "named" if position is None else str(position)),
           ("aliases", ", ".join(p.aliases) or "none")]
    return maml("parameter", ms)


def help_object(command: CommandDef) -> Obj:
    """The full help of a command: MamlCommandHelpInfo as MamlNode builds it from the module's MAML (details,
    description, syntax, parameters, inputTypes, returnValues, examples, relatedLinks, the MAML namespaces), then
    HelpInfo's Name, Category, Synopsis, Component, Role, Functionality and the command's PSSnapIn and ModuleName.
    Type names: MamlCommandHelpInfo#<module>#<command>, MamlCommandHelpInfo#<module>, MamlCommandHelpInfo, HelpInfo."""
    verb, _, noun = command.name.partition("-")
    syntax_items = [maml("syntaxItem", [("name", command.name), ("parameter", one_or_many(
        [help_parameter(p, e, False) for p, e in command.set_params(s) if p not in COMMON_PARAMETER_DEFS]) if command.params else None)])
        for s in command.set_names()]
    params = [help_parameter(p, next(iter(p.sets.values())), True) for p in command.params]
    pipeline_types = sorted({p.type_name for p in command.params if any(e[2] for e in p.sets.values())})
    examples = [maml("example", [("title", f"-------------------------- {title} --------------------------"),
                                 ("introduction", paras("PS C:\\>")), ("code", code), ("remarks", paras(remarks, ""))])
                for title, code, remarks in command.examples]
    links = [maml("navigationLink", [("linkText", "Online Version:"), ("uri", command.help_uri)])]
    links += [maml("navigationLink", [("linkText", other), ("uri", "")])
              for other in MODULES.get(command.module, []) if other != command.name and COMMAND_DEFS[other.lower()].kind != "Alias"][:3]
    ms: typing.List[typing.Tuple[str, typing.Any]] = [
        ("details", maml("details", [("name", command.name), ("description", paras(command.synopsis)), ("verb", verb), ("noun", noun)])),
        ("description", paras(command.description)),
        ("syntax", maml("syntax", [("syntaxItem", one_or_many(syntax_items))])),
        ("parameters", maml("parameters", [("parameter", one_or_many(params))]) if params else ""),
        ("inputTypes", maml("inputTypes", [("inputType", maml("inputType", [("type", maml("type", [("name", "None or " + " or ".join(pipeline_types) if pipeline_types else "None")])), ("description", paras(""))]))])),
        ("returnValues", maml("returnValues", [("returnValue", maml("returnValue", [("type", maml("type", [("name", " or ".join(command.outputs) or "None")])), ("description", paras(""))]))])),
    ]
    if examples:
        ms.append(("examples", maml("examples", [("example", one_or_many(examples))])))
    ms += [
        ("relatedLinks", maml("relatedLinks", [("navigationLink", one_or_many(links))])),
        ("xmlns:maml", "http://schemas.microsoft.com/maml/2004/10"),
        ("xmlns:command", "http://schemas.microsoft.com/maml/dev/command/2004/10"),
        ("xmlns:dev", "http://schemas.microsoft.com/maml/dev/2004/10"),
        ("xmlns:MSHelp", "http://msdn.microsoft.com/mshelp"),
        ("Name", command.name),
        ("Category", "Function" if command.kind == "Function" else "Cmdlet"),
        ("Synopsis", command.synopsis),
        ("Component", None),
        ("Role", None),
        ("Functionality", None),
        ("PSSnapIn", None),
        ("ModuleName", command.module),
    ]
    return Obj(type_list(f"MamlCommandHelpInfo#{command.module}#{command.name}", f"MamlCommandHelpInfo#{command.module}",
                         "MamlCommandHelpInfo", "HelpInfo"), ms=ms)


def help_view(obj: Obj, view: str) -> Obj:
    """GetHelpCommand.TransformView: `<type>#<view>` for each type name on top of the original ones."""
    return Obj([f"{t}#{view}" for t in obj.types if t.lower() not in ("system.string", "system.object")] + obj.types,
               obj.to_string, obj.value, obj.props, obj.ms)


def help_not_found(name: str, line: str) -> Obj:
    return error_record(
        f'Get-Help could not find {name} in a help file in this session. To download updated help topics type: "Update-Help". '
        "To get help online, search for the help topic in the TechNet library at https://go.microsoft.com/fwlink/?LinkID=107116.",
        ["Microsoft.PowerShell.Commands.HelpNotFoundException"],
        "HelpNotFound,Microsoft.PowerShell.Commands.GetHelpCommand",
        "ResourceUnavailable",
        activity="Get-Help",
        command="Get-Help",
        line=line,
        write_error_stream=True,
    )


def cmd_get_help(ctx: Context, p: dict, _input: typing.Iterator) -> None:
    """Get-Help [[-Name] <string>] [-Category <string[]>] [-Full | -Detailed | -Examples | -Parameter <string[]>]:
    the help of an emulated command (an alias gives its command's help), the visible ones only."""
    name = str(p.get("Name") or "Get-Help")
    categories = [str(c) for c in as_list(p.get("Category"))]
    for category in categories:
        if category.lower() not in {c.lower() for c in HELP_CATEGORIES}:
            ctx.error(error_record(
                f"The help category {category} is not valid.", ["Microsoft.PowerShell.Commands.HelpCategoryInvalidException"],
                "InvalidHelpCategory,Microsoft.PowerShell.Commands.GetHelpCommand", "InvalidArgument",
                activity="Get-Help", command="Get-Help", line=ctx.line, write_error_stream=True))
            return
    session = ctx.run.session
    matches = [c for c in COMMAND_DEFS.values() if fnmatch.fnmatchcase(c.name.lower(), name.lower()) and session.is_visible(c.name)]
    helps = []
    for c in matches:
        target = c.resolved()
        category = "Function" if target.kind == "Function" else "Cmdlet"
        wanted = {x.lower() for x in categories}
        if wanted and not wanted & {category.lower(), "all", "alias" if c.kind == "Alias" else category.lower()}:
            continue
        if target not in helps:
            helps.append(target)
    if not helps:
        if not _wildcard(name):
            ctx.error(help_not_found(name, ctx.line))
        return
    if len(helps) > 1:  # several topics: their short help (HelpInfoShort)
        for c in sorted(helps, key=lambda c: c.name.lower()):
            ctx.output(Obj(type_list("HelpInfoShort"), ms=[("Name", c.name), ("Category", "Cmdlet" if c.kind == "Cmdlet" else "Function"),
                                                           ("Component", None), ("Role", None), ("Functionality", None),
                                                           ("Synopsis", c.synopsis)]))
        return
    full = help_object(helps[0])
    if p.get("Parameter") is not None:
        patterns = [str(x) for x in as_list(p["Parameter"])]
        found = [help_parameter(q, next(iter(q.sets.values())), True) for q in helps[0].params
                 if any(fnmatch.fnmatchcase(q.name.lower(), x.lower()) for x in patterns)]
        if not found:
            shown = patterns[0] if not isinstance(p["Parameter"], list) else "System.String[]"
            ctx.error(error_record(
                f"No parameter matches criteria {shown}.", ["System.ArgumentException"],
                "NoParmsFound,Microsoft.PowerShell.Commands.GetHelpCommand", "InvalidArgument",
                activity="Get-Help", command="Get-Help", line=ctx.line, write_error_stream=True))
        for item in found:
            ctx.output(item)
        return
    view = "FullView" if p.get("Full") else "DetailedView" if p.get("Detailed") else "ExamplesView" if p.get("Examples") else None
    ctx.output(help_view(full, view) if view else full)


# -- Get-FormatData -----------------------------------------------------------------------------------------------------


def _list_of(type_name: str, items: typing.List[typing.Any], assembly: str = SMA) -> Obj:
    return Obj(type_list(f"System.Collections.Generic.List`1[[{type_name}, {assembly}]]", "System.Object"), value=("LST", items))


def table_view(view_name: str, columns: typing.Sequence[typing.Tuple[str, str, int]]) -> Obj:
    """A FormatViewDefinition holding a TableControl: one header (Label, Alignment, Width) and one row column
    (Alignment, DisplayEntry{ValueType, Value}, FormatString) per property."""
    sma = "System.Management.Automation."
    alignment = lambda name, value: Enum(sma + "Alignment", name, value)  # noqa: E731
    headers = [Obj(type_list(sma + "TableControlColumnHeader", "System.Object"), sma + "TableControlColumnHeader",
                   props=[("Label", label), ("Alignment", alignment("Undefined", 0)), ("Width", width)])
               for _prop, label, width in columns]
    cells = [Obj(type_list(sma + "TableControlColumn", "System.Object"), prop,
                 props=[("Alignment", alignment("Undefined", 0)),
                        ("DisplayEntry", Obj(type_list(sma + "DisplayEntry", "System.Object"), f"property: {prop}",
                                             props=[("ValueType", Enum(sma + "DisplayEntryValueType", "Property", 0)), ("Value", prop)])),
                        ("FormatString", None)])
             for prop, _label, _width in columns]
    row = Obj(type_list(sma + "TableControlRow", "System.Object"), sma + "TableControlRow",
              props=[("Columns", _list_of(sma + "TableControlColumn", cells)), ("SelectedBy", None), ("Wrap", False)])
    control = Obj(type_list(sma + "TableControl", sma + "PSControl", "System.Object"), sma + "TableControl",
                  props=[("Headers", _list_of(sma + "TableControlColumnHeader", headers)), ("Rows", _list_of(sma + "TableControlRow", [row])),
                         ("AutoSize", False), ("HideTableHeaders", False), ("GroupBy", None), ("OutOfBand", False)])
    return Obj(type_list(sma + "FormatViewDefinition", "System.Object"), sma + "FormatViewDefinition",
               props=[("Name", view_name), ("Control", control)],
               ms=[("InstanceId", uuid.uuid5(uuid.NAMESPACE_URL, f"format://psgate.test/{view_name}"))])


# The ActiveDirectory module's format data as the peer has it: one table view (the real module's views differ).
FORMAT_DATA: typing.Dict[str, typing.List[Obj]] = {
    AD_USER: [table_view("ADUser", [("Name", "Name", 20), ("SamAccountName", "SamAccountName", 16), ("Enabled", "Enabled", 7),
                                    ("DistinguishedName", "DistinguishedName", 0)])],
}


def extended_type_definition(type_name: str) -> Obj:
    """ExtendedTypeDefinition, serialized with its PropertySerializationSet: TypeName, TypeNames, FormatViewDefinition."""
    sma = "System.Management.Automation."
    return Obj(type_list(sma + "ExtendedTypeDefinition", "System.Object"), type_name, props=[
        ("TypeName", type_name),
        ("TypeNames", _list_of("System.String", [type_name], CORELIB)),
        ("FormatViewDefinition", _list_of(sma + "FormatViewDefinition", FORMAT_DATA[type_name])),
    ])


def cmd_get_format_data(ctx: Context, p: dict, _input: typing.Iterator) -> None:
    patterns = [str(t) for t in as_list(p.get("TypeName"))] or ["*"]
    for type_name in FORMAT_DATA:
        if any(fnmatch.fnmatchcase(type_name.lower(), t.lower()) for t in patterns):
            ctx.output(extended_type_definition(type_name))


# -- Select-Object, Measure-Object ------------------------------------------------------------------------------------


def cmd_select_object(ctx: Context, p: dict, source: typing.Iterator) -> None:
    """Select-Object [-Property <names>] [-ExpandProperty <name>] [-First n] [-Last n]: the selected properties as a
    `Selected.<type>` PSCustomObject (wildcards allowed)."""
    items = list(source) + ([p["InputObject"]] if "InputObject" in p else [])
    if p.get("First") is not None:
        items = items[: int(p["First"])]
    if p.get("Last") is not None:
        items = items[-int(p["Last"]):] if int(p["Last"]) else []
    wanted = [str(x) for x in as_list(p.get("Property"))]
    for item in items:
        if p.get("ExpandProperty") is not None:
            found, value = property_of(item, str(p["ExpandProperty"]))
            for v in (as_list(value) if found else []):
                ctx.output(v if isinstance(v, Obj) else echo_value(v))
            continue
        if not wanted:
            ctx.output(item if isinstance(item, Obj) else echo_value(plain(item)))
            continue
        names: typing.List[str] = []
        available = property_names_of(item)
        for w in wanted:
            hits = [n for n in available if fnmatch.fnmatchcase(n.lower(), w.lower())] if _wildcard(w) else [w]
            names += [n for n in hits if n.lower() not in {x.lower() for x in names}]
        ms = []
        for n in names:
            _found, value = property_of(item, n)
            real = next((a for a in available if a.lower() == n.lower()), n)
            ms.append((real, value if isinstance(value, Obj) else echo_value(value)))
        first = type_names_of(item)[0].removeprefix("Deserialized.")
        ctx.output(Obj(type_list(f"Selected.{first}", "System.Management.Automation.PSCustomObject", "System.Object"), ms=ms))


def cmd_measure_object(ctx: Context, p: dict, source: typing.Iterator) -> None:
    """Measure-Object: GenericMeasureInfo with the Count of its input (the statistics are not computed)."""
    count = sum(1 for _ in source) + (1 if p.get("InputObject") is not None else 0)
    ctx.output(Obj(
        type_list("Microsoft.PowerShell.Commands.GenericMeasureInfo", "Microsoft.PowerShell.Commands.MeasureInfo", "System.Object"),
        "Microsoft.PowerShell.Commands.GenericMeasureInfo",
        props=[("Count", count), ("Average", None), ("Sum", None), ("Maximum", None), ("Minimum", None),
               ("StandardDeviation", None), ("Property", None)],
    ))


def _register_defined(name: str, func: typing.Callable) -> None:
    command = COMMAND_DEFS[name.lower()]
    _register(command.name, func, command.spec())


for _name, _func in (("Get-ADUser", cmd_get_aduser), ("New-ADUser", cmd_new_aduser), ("Set-ADUser", cmd_set_aduser),
                     ("Import-Module", cmd_import_module), ("Get-Command", cmd_get_command), ("Get-Help", cmd_get_help),
                     ("Get-FormatData", cmd_get_format_data), ("Select-Object", cmd_select_object),
                     ("Measure-Object", cmd_measure_object)):
    _register_defined(_name, _func)
for _i in range(1, BENCH_COUNT + 1):
    _register_defined(bench_name(_i), cmd_bench(bench_name(_i)))
for _command in list(COMMAND_DEFS.values()):
    if _command.kind == "Alias":
        _register(_command.name, COMMANDS[_command.target.lower()][0], _command.spec())
COMMANDS["select"] = COMMANDS["select-object"]
COMMANDS["measure"] = COMMANDS["measure-object"]
COMMANDS["gcm"] = COMMANDS["get-command"]
COMMANDS["ipmo"] = COMMANDS["import-module"]
COMMANDS["help"] = COMMANDS["get-help"]

# The parameters of RestrictedRemoteServer's proxies (CommandMetadata.GetRestrictedCommands): in a NoLanguage session
# these commands take only these parameters (Get-Help: -Name and -Category, as implicit remoting calls it).
RESTRICTED_PARAMETERS = {
    "get-command": ["Name", "Module", "ArgumentList", "CommandType", "ListImported", "ShowCommandInfo"],
    "get-formatdata": ["TypeName", "PowerShellVersion"],
    "get-help": ["Name", "Category"],
    "select-object": ["Property", "InputObject"],
    "measure-object": ["InputObject"],
}


def restricted_parameter_error(command: str, parameter: str, line: str) -> Obj:
    """A parameter the RestrictedRemoteServer proxy function does not have (FullyQualifiedErrorId names the proxy)."""
    return error_record(
        f"A parameter cannot be found that matches parameter name '{parameter}'.",
        ["System.Management.Automation.ParameterBindingException", "System.Management.Automation.RuntimeException"],
        f"NamedParameterNotFound,{command}",
        "InvalidArgument",
        activity=command,
        command=command,
        line=line,
        exception_extra=[("ParameterName", parameter), ("CommandInvocation", None)],
    )


# ---------------------------------------------------------------------------------------------------------------------
# The session: one runspace pool, its pipelines and what pwsh does with the client's messages


FULL_LANGUAGE = "FullLanguage"
NO_LANGUAGE = "NoLanguage"
# InitialSessionState.CreateRestrictedForRemoteServer (PowerShell v7.4.6, engine/InitialSessionState.cs): the
# RestrictedRemoteServer session (LanguageMode NoLanguage) makes every command private but these. The built-in functions
# `prompt`, `TabExpansion2`… are private too, so a client's prompt query fails with CommandNotFoundException.
RESTRICTED_REMOTE_SERVER_COMMANDS = [
    "Get-Command", "Get-FormatData", "Clear-Host", "Select-Object", "Get-Help", "Measure-Object", "Out-Default",
    "Exit-PSSession",
]
# Our NoLanguage default: that list plus what the tests call (JEA's VisibleCmdlets would add them the same way).
DEFAULT_VISIBLE_COMMANDS = RESTRICTED_REMOTE_SERVER_COMMANDS + ["Get-Service", "Get-Process"]


def expand_visible(names: typing.Sequence[str]) -> typing.List[str]:
    """A visible-command list as configured: command names; a module name (ActiveDirectory, BenchModule,
    PSGate.Aliases), like a JEA role capability that imports the module, stands for all its commands;
    `RestrictedRemoteServer` stands for that session's list. An entry written `+Name` adds to
    DEFAULT_VISIBLE_COMMANDS instead of replacing it (`+ActiveDirectory`: the default JEA set and the AD cmdlets)."""
    out: typing.List[str] = list(DEFAULT_VISIBLE_COMMANDS) if any(n.strip().startswith("+") for n in names) else []
    for entry in names:
        name = entry.strip().lstrip("+").strip()
        module = next((m for m in MODULES if m.lower() == name.lower()), None)
        if module is not None:
            out.extend(MODULES[module])
        elif name.lower() == "restrictedremoteserver":
            out.extend(RESTRICTED_REMOTE_SERVER_COMMANDS)
        elif name:
            out.append(name)
    return out


def parse_language(language: typing.Optional[str], visible: typing.Optional[str]) -> typing.Tuple[str, typing.Optional[typing.List[str]]]:
    """(language mode, visible commands) from their text forms (PSRP_HOST_LANGUAGE, PSRP_HOST_VISIBLE_COMMANDS):
    FullLanguage (default) or NoLanguage, any case; a comma-separated command list, or None for the default."""
    mode = FULL_LANGUAGE
    if language and language.strip():
        modes = {m.lower(): m for m in (FULL_LANGUAGE, NO_LANGUAGE)}
        if language.strip().lower() not in modes:
            raise ValueError(f"language mode {language!r}: FullLanguage or NoLanguage")
        mode = modes[language.strip().lower()]
    names = None if visible is None or not visible.strip() else [c.strip() for c in visible.split(",") if c.strip()]
    return mode, names


class PsrpSession:
    """One runspace pool and its pipelines, whatever the transport.

    A transport feeds the client's PSRP bytes to `feed()` (under `lock`), starts the pipelines that became ready with
    `start_ready_runs()`, and implements `flush()` (move every message psrpcore queued to the client) and `send_bulk()`
    (Get-Objects' fast path). `wait_for_room()` lets a transport hold a producing pipeline back (flow control).
    """

    def __init__(self, fast: bool = False, language_mode: str = FULL_LANGUAGE,
                 visible_commands: typing.Optional[typing.Sequence[str]] = None) -> None:
        self.lock = threading.RLock()
        self.pool = HostPool()
        self.runs: typing.Dict[uuid.UUID, Run] = {}
        self.key_exchanged = False
        self.fast = fast  # Get-Objects repeats one serialized object (benchmarks)
        self.set_language(language_mode, visible_commands)

    def set_language(self, language_mode: str, visible_commands: typing.Optional[typing.Sequence[str]] = None) -> None:
        """FullLanguage (every command public) or NoLanguage (RestrictedRemoteServer: scripts refused, only
        `visible_commands` public, DEFAULT_VISIBLE_COMMANDS if None). A visible list applies in either mode."""
        if language_mode not in (FULL_LANGUAGE, NO_LANGUAGE):
            raise ValueError(f"language mode {language_mode!r}: FullLanguage or NoLanguage")
        self.language_mode = language_mode
        if visible_commands is None and language_mode == NO_LANGUAGE:
            visible_commands = DEFAULT_VISIBLE_COMMANDS
        self.visible_commands = None if visible_commands is None else {c.lower() for c in expand_visible(visible_commands)}

    def is_visible(self, name: str) -> bool:
        """Whether the client may call the command (its visibility is Public); aliases count by their own name."""
        return self.visible_commands is None or name.lower() in self.visible_commands

    # -- what a transport provides --
    def flush(self) -> None:
        raise NotImplementedError

    def send_bulk(self, run: Run, count: int, size: str, fast: bool) -> None:
        raise NotImplementedError

    def wait_for_room(self, run: Run) -> None:
        """Called by a pipeline after each message it queued; a transport may block it here. Default: never."""

    # -- input --
    def feed(self, guid: uuid.UUID, stream_type: StreamType, data: bytes) -> None:
        """The client's PSRP fragments for the pool (NULL_GUID) or a pipeline; events are answered as pwsh does."""
        with self.lock:
            try:
                self.pool.receive_data(PSRPPayload(data, stream_type, None if guid == NULL_GUID else guid))
                while True:
                    event = self.pool.next_event()
                    if event is None:
                        break
                    self.on_event(event)
            except Exception as e:
                log.exception("bad data for %s", guid)
                self.pool._receive_buffer = bytearray()
                self.pool._incoming_fragments.clear()
                self.fail(guid, e)

    def new_run(self, pid: uuid.UUID) -> Run:
        """A pipeline announced by the transport (Command), before its CREATE_PIPELINE arrives."""
        with self.lock:
            run = Run(self, ServerPipeline(self.pool, pid))
            self.runs[pid] = run
            return run

    def start_ready_runs(self) -> None:
        with self.lock:
            for run in list(self.runs.values()):
                if run.thread is None and run.pipeline.metadata is not None and run.pipeline.state == PSInvocationState.Running:
                    run.start()

    def on_event(self, event: psrpcore.PSRPEvent) -> None:
        log.debug("event %s", type(event).__name__)
        pool = self.pool
        if isinstance(event, psrpcore.PublicKeyEvent):  # psrpcore has queued ENCRYPTED_SESSION_KEY
            self.key_exchanged = True
            for run in self.runs.values():
                run.cond.notify_all()
        elif isinstance(event, SetMaxRunspacesEvent):
            pool.runspace_availability_response(event.ci, event.count >= max(1, pool.min_runspaces))
        elif isinstance(event, SetMinRunspacesEvent):
            pool.runspace_availability_response(event.ci, 1 <= event.count <= max(1, pool.max_runspaces))
        elif isinstance(event, ResetRunspaceStateEvent):
            pool.runspace_availability_response(event.ci, True)
        elif isinstance(event, GetAvailableRunspacesEvent):
            busy = sum(1 for r in self.runs.values() if r.pipeline.state == PSInvocationState.Running)
            pool.runspace_availability_response(event.ci, max(0, pool.max_runspaces - busy))
        elif isinstance(event, (CreatePipelineEvent, GetCommandMetadataEvent)):
            run = self.runs[event.pipeline_id]
            # pwsh sends no PIPELINE_STATE(Running) (none in any recording): change state silently.
            run.pipeline._change_state(PSInvocationState.Running, emit=False)
        elif isinstance(event, PipelineInputEvent):
            run = self.runs.get(event.pipeline_id)
            if run is not None:
                run.inputs.append(event.data)
                run.cond.notify_all()
        elif isinstance(event, EndOfPipelineInputEvent):
            run = self.runs.get(event.pipeline_id)
            if run is not None:
                run.input_done = True
                run.cond.notify_all()
        elif isinstance(event, PipelineHostResponseEvent):
            run = self.runs.get(event.pipeline_id)
            if run is not None:
                run.responses[event.ci] = event
                run.cond.notify_all()

    # -- failures, stops, closes --
    def fail(self, guid: uuid.UUID, exc: Exception) -> None:
        """Undecodable data: the pipeline it was for fails, or the pool breaks, with PSRemotingDataStructureException."""
        record = error_record(
            f"psrp_host could not process the data it received: {exc}",
            ["System.Management.Automation.Remoting.PSRemotingDataStructureException", "System.Management.Automation.RuntimeException"],
            "PSRemotingDataStructureException",
            "InvalidData",
        )
        run = self.runs.get(guid)
        if run is not None and run.pipeline.state in (PSInvocationState.NotStarted, PSInvocationState.Running):
            run.stopped = True
            run.cond.notify_all()
            self.pool.prepare_message(
                Raw(PSRPMessageType.PipelineState, Obj(ms=[("PipelineState", 5), ("ExceptionAsErrorRecord", record)])),
                pipeline_id=guid,
            )
            run.pipeline._change_state(PSInvocationState.Failed, emit=False)
        elif guid == NULL_GUID and self.pool.state in (RunspacePoolState.Opened, RunspacePoolState.Opening):
            self.pool.prepare_message(
                Raw(PSRPMessageType.RunspacePoolState, Obj(ms=[("RunspaceState", 5), ("ExceptionAsErrorRecord", record)]))
            )
            self.pool._change_state(RunspacePoolState.Broken, emit=False)

    def stop_run(self, run: Run) -> None:
        """PowerShell.Stop(): PIPELINE_STATE(Stopped) with PipelineStoppedException's ErrorRecord, if still running."""
        if run.pipeline.state in (PSInvocationState.Running, PSInvocationState.Stopping) and not run.stopped:
            run.stopped = True
            self.pool.prepare_message(
                Raw(PSRPMessageType.PipelineState, Obj(ms=[("PipelineState", 3), ("ExceptionAsErrorRecord", stopped_error())])),
                pipeline_id=run.pid,
            )
            run.pipeline._change_state(PSInvocationState.Stopped, emit=False)
        run.stopped = True
        run.cond.notify_all()

    def close_pipeline(self, pid: uuid.UUID) -> typing.Optional[Run]:
        """The client is done with a pipeline: stop it if it runs, and forget it."""
        with self.lock:
            run = self.runs.pop(pid, None)
            if run is not None:
                self.stop_run(run)
                self.flush()
                try:
                    run.pipeline.close()
                except Exception:
                    self.pool.pipeline_table.pop(pid, None)
            return run

    def close_session(self) -> None:
        """Close of the whole pool: every pipeline stopped, then RUNSPACEPOOL_STATE(Closed) (before any CloseAck)."""
        with self.lock:
            for run in list(self.runs.values()):
                self.stop_run(run)
                run.pipeline.close()
            self.runs.clear()
            self.flush()
            if self.pool.state in (RunspacePoolState.Opened, RunspacePoolState.Closing):
                self.pool.close()  # queues RUNSPACEPOOL_STATE(Closed)
            elif self.pool.state != RunspacePoolState.Closed:
                self.pool._change_state(RunspacePoolState.Closed, emit=False)
            self.flush()
