#!/usr/bin/env python3
"""psgate's WS-Management test peer: PowerShell Remoting over WinRM's HTTP(S) transport, without Windows.

An HTTP/1.1 server that answers WS-Management (MS-WSMV) the way a Windows WinRM service with the PowerShell plugin
does, shaped after the recorded responses in shared/fixtures/winrm-recorded: Create (creationXml), Command, Send,
Receive (OperationTimeout → the w:TimedOut fault), Signal (powershell/signal/crtl_c and ctrl_c stop a pipeline,
anything else — …/signal/terminate — releases the command), Delete, Disconnect (IdleTimeOut, BufferMode Block/Drop),
Reconnect, Connect (connectXml → connectResponseXml, and per command), Enumerate (+ Pull) of shells and commands,
WS-Transfer Get and Put of the configuration (below) and Get of a shell. The PowerShell side is
the same as the out-of-process test host's: psrpcore 0.3.1's server role with the emulated commands of host_core.py
(Get-Date, Get-Process, Get-Service, every stream, host calls, pipeline input, Test-Long, Get-Objects with a fast
mode, …).

Session configurations: `--configuration NAME` (repeatable; default Microsoft.PowerShell and PowerShell.7) are
FullLanguage; `--restricted-configuration NAME` (repeatable) adds a NoLanguage one, like a JEA endpoint or
`Register-PSSessionConfiguration -SessionType RestrictedRemoteServer`: a pipeline with a script (IsScript) fails with
PowerShell's ScriptsNotAllowed ParseException, and only the visible commands run — `--visible-commands A,B,…`, by
default RestrictedRemoteServer's (Get-Command, Get-FormatData, Clear-Host, Select-Object, Get-Help, Measure-Object,
Out-Default, Exit-PSSession) plus Get-Service and Get-Process; any other command, `prompt` and `TabExpansion2`
included, is not recognized (CommandNotFoundException). In the list a module name (ActiveDirectory, BenchModule,
PSGate.Aliases) stands for its commands, as a JEA role that imports the module, `RestrictedRemoteServer` for that
list, and a `+` entry adds to the default instead of replacing it (`--visible-commands +ActiveDirectory`: the JEA
endpoint for implicit remoting of the AD module). Get-Command, Get-Help, Get-FormatData, Select-Object and
Measure-Object take only the parameters of RestrictedRemoteServer's proxies there (Get-Help: -Name, -Category).
Command objects with parameters run as in FullLanguage. A client picks it by its resource URI,
http://schemas.microsoft.com/powershell/NAME (pypsrp: configuration_name=NAME).

Configuration, WS-Transfer Get and Put as Windows' WinRM service answers them:
http://schemas.microsoft.com/wbem/wsman/1/config (cfg:Config, the recorded layout), …/config/service (cfg:Service) and
…/config/winrs (cfg:Winrs), each in the namespace of its own URI, and …/config/plugin with the selector
Name=CONFIGURATION: one PlugInConfiguration per configuration served (--configuration, --restricted-configuration) as
PowerShell registers it, its Quotas (IdleTimeoutms, MaxConcurrentUsers, MaxProcessesPerShell, MaxMemoryPerShellMB,
MaxShellsPerUser, MaxConcurrentCommandsPerShell, MaxShells, MaxIdleTimeoutms) included. A Put carries the resource's
element with the settings to set (a Get's whole answer or some of its elements); every value is checked first (out of
its range or not a number: SchemaValidationError 2150858817; Winrs/IdleTimeout, the plugin's IdleTimeoutms or
MaxIdleTimeoutms: ERROR_WINRS_IDLETIMEOUT_OUTOFBOUNDS 2150859250; CbtHardeningLevel: 2150859192), then all are set and
the answer is the resource as a Get now shows it. A change is effective where the peer emulates the setting —
Winrs/MaxShellsPerUser, Winrs/MaxConcurrentUsers and Service/MaxConcurrentOperationsPerUser (the quotas below),
Winrs/IdleTimeout (new shells' default), MaxEnvelopeSizekb, MaxTimeoutms, Service/AllowUnencrypted, Service/Auth/Basic,
Service/Auth/Negotiate (NTLM), CbtHardeningLevel — and only kept and shown otherwise. Refused as Windows refuses them: a
Put by a user not in `--admin-users A,B` (Access is denied, code 5; by default every user may); a change to
Winrs/MaxShellRunTime or Service/MaxConcurrentOperations, read-only since WinRM 2.0
(ERROR_WSMAN_DEPRECATED_CONFIG_SETTING 2150859182); a change to a setting Group Policy controls, `--gpo-setting
Winrs/MaxShellsPerUser=5` (repeatable: the value is fixed and effective, a Get marks it Source="GPO", a Put gets
2150858890 "The config setting MaxShellsPerUser cannot be changed because is controlled by policies. …"); an unknown
plugin Name (ERROR_WSMAN_RESOURCE_NOT_FOUND 2150858752). A plugin Put is answered like the others: on Windows it takes
effect after `Restart-Service WinRM` and nothing in the answer says so (PowerShell's WSMan provider and
Set-PSSessionConfiguration warn by themselves), so the peer keeps and shows the new values; it enforces no plugin quota.

Authentication: NTLM through pyspnego 0.12.4's acceptor (offered as `WWW-Authenticate: Negotiate`; the users are an
NTLM_USER_FILE; raw NTLM tokens, or NTLM inside SPNEGO, whose final token comes back in the 200's WWW-Authenticate as
HTTP Negotiate's mutual authentication does), with MS-WSMV message encryption (multipart/encrypted, spnego wrap_winrm/unwrap_winrm) over plain
HTTP; Basic; HTTPS with a self-signed certificate made at start, where NTLM's channel binding is checked (Windows'
default CbtHardeningLevel=Relaxed: a missing or all-zero binding passes, a wrong one is refused). Authentication
belongs to the TCP connection, so connections are kept alive. A wrong password is answered 401.

Kerberos (`--auth kerberos --keytab FILE [--krb5-config FILE]`, a realm from tests/peers/kdc.py): pyspnego's GSSAPI
acceptor (python-gssapi over MIT krb5) with the keytab's service principals (HTTP/host, WSMAN/host). Offered as
`WWW-Authenticate: Negotiate` and `Kerberos`; a raw Kerberos AP-REQ (pypsrp's auth="kerberos") or SPNEGO with Kerberos
inside is accepted in one round trip, the AP-REP coming back in the 200's WWW-Authenticate; messages are sealed as for
NTLM (`application/HTTP-Kerberos-session-encrypted` under the raw `Kerberos` scheme); over HTTPS the channel binding is
checked in the authenticator: MIT refuses a wrong one and accepts an initiator that sent none (as Windows' Relaxed level
does); under --cbt-hardening Strict the peer also refuses the latter — MIT's acceptor reports a matching binding with
GSS_C_CHANNEL_BOUND_FLAG (krb5 1.19+), and "Kerberos: USER authenticated (channel-bound)" says it was. The user is the
client principal (`ada@PSGATE.TEST`). Without `kerberos` the peer has no keytab, so SPNEGO picks NTLM even when the
client lists Kerberos first.

Run it with $PSGATE_PYTHON (psrpcore, pyspnego; `source scripts/env.sh`). It prints one ready line,
`winrm_host listening on http://127.0.0.1:PORT/wsman`, once it accepts connections:

    $PSGATE_PYTHON tests/peers/winrm_host.py --port 0 --user 'PSGATE\\ada:Secret-1' --auth ntlm,basic [--tls] [--log FILE]
    $PSGATE_PYTHON tests/peers/winrm_host.py --port 0 --auth kerberos,ntlm --user 'PSGATE\\ada:Secret-1' \\
        --keytab $DIR/http.keytab --krb5-config $DIR/krb5.conf

`--tls --cert-out FILE` writes the self-signed certificate to FILE, for a client that should trust it.

`--help` lists the rest: quotas (--max-shells-per-user, --max-concurrent-users,
--max-concurrent-operations-per-user), --idle-timeout, --buffer-bytes, --max-envelope-kb, --fast, --configuration,
--restricted-configuration, --visible-commands, --admin-users, --gpo-setting.

Where this peer differs from Windows (each a deliberate simplification or a guess where nothing recorded says more):
- Only the PowerShell plugin: a resource URI outside http://schemas.microsoft.com/powershell/ (the cmd shell, WMI)
  is refused like an unknown configuration; CredSSP and certificate authentication are not offered.
- The unknown-configuration fault carries Windows' code (2150858811) and message; its SOAP subcode
  (wsa:DestinationUnreachable with faultDetail/InvalidResourceURI, the DMTF fault for an unknown resource URI) is
  inferred, not recorded. The quota faults carry the SDK codes and Windows' texts, with subcode w:QuotaLimit
  (MS-WSMV 3.1.4.5.2.1); MaxConcurrentUsers' text is inferred from WinRM's event-log message.
- Faults for a disconnected shell (ERROR_WINRS_SHELL_DISCONNECTED), a Reconnect from another wsmv:SessionId
  (…CLIENTSESSIONID_MISMATCH) and a Connect to a shell another client holds (…CONNECTED_TO_DIFFERENT_CLIENT) use the
  SDK codes with texts of our own. An unencrypted request over HTTP with AllowUnencrypted=false is answered 401.
- Enumerate of commands answers `<rsp:Command><rsp:CommandId>…` items (what pypsrp reads); Windows' full item shape is
  not in the recordings. Shell properties are constant where Windows measures (MemoryUsed 46MB, ChildProcesses 0,
  ProcessId = this process).
- Quotas are counted simply: MaxShellsPerUser and MaxConcurrentUsers over the shells that exist (connected or not),
  MaxConcurrentOperationsPerUser over the user's shells plus their running pipelines; MaxConnections is not enforced.
  A configuration's plugin Quotas MaxShellsPerUser, MaxConcurrentUsers and MaxShells are counted over that
  configuration's shells (faults 2150859236-38, their texts unverified); a Put of them takes effect at once, where
  Windows applies a plugin change after a WinRM restart.
- Output buffering: each command's (and the pool's) undelivered output is capped at --buffer-bytes. A connected
  client's pipeline, and a disconnected one in Block mode, waits for room; a disconnected one in Drop mode discards
  its oldest output messages (never the PIPELINE_STATE or a host call). Windows' own buffer sizes are not emulated.
- A connected shell is deleted after IdleTimeOut without any request for it and no Receive waiting; a disconnected
  one after IdleTimeOut from the Disconnect, as Windows does; the reaper runs every 0.2 s.
- A Receive answers at once with whatever is queued: whole PSRP messages, one fragment (32 KiB at most,
  PowerShell's default) per <rsp:Stream>, as many as fit the request's MaxEnvelopeSize. Windows' timing differs:
  it answered the pool's first Receive with SESSION_CAPABILITY and APPLICATION_PRIVATE_DATA and the next with
  RUNSPACEPOOL_STATE(Opened), where this peer sends the three together. CommandState Pending is reported when a host
  call is in the answer (as in the recordings), Done with ExitCode 0 once the pipeline's last message is out.
- After Connect from a new client the next pool Receive yields APPLICATION_PRIVATE_DATA (PowerShell's
  ServerRemoteSession.HandlePostConnect), not the RUNSPACEPOOL_STATE(Opened) that pypsrp's
  test_psrp_disconnect_runspaces.yml shows there (that response repeats an earlier response's MessageID and object id:
  it looks edited). Object ids continue across a Connect, as in that recording's connectResponseXml.
- A shell of another user is answered as not found; Windows may answer access denied.
- A --restricted-configuration emulates only the language mode, the command visibility and the proxies' parameters
  of RestrictedRemoteServer: its visible commands that the peer does not emulate (Clear-Host, Out-Default,
  Exit-PSSession) are not recognized.
- Configuration: no Put is recorded. The refusals' codes are the SDK's (wsmerror.h); MS-WSMV <18> gives 2150859182 for
  MaxConcurrentOperations, <30> only wsman:InternalError for MaxShellRunTime (the same code is used). The GPO text is
  the one Windows users report; the subcodes of the GPO, read-only, IdleTimeout and CbtHardeningLevel faults
  (w:InternalError) and of the unknown plugin (a:DestinationUnreachable, ResourceNotFound) are inferred. A Put that
  repeats the current value of a read-only or policy-controlled setting is accepted (MS-WSMV speaks of attempts to
  modify it). cfg:Service and cfg:Winrs carry no xml:lang, like the recorded cfg:Config (unverified); the plugin does
  (MS-WSMV 3.1.4.1.34.3). A plugin Put takes the root attributes and Quotas only (Resources and InitializationParameters
  stay the peer's), a Quotas element left out changes nothing, and IdleTimeoutms above MaxIdleTimeoutms is refused
  with 2150859250 (inferred). Winrs/IdleTimeout takes 0–2147483647 as MS-WSMV 2.2.4.42 says (Windows 7 treats 0–59999
  as 60000; not emulated). Any user may Get the configuration (Windows' RootSDDL lets administrators and interactive
  users read it). No Enumerate of plugins, no …/config/client, …/service/auth or listener resources.
- A request larger than MaxEnvelopeSizekb is refused with DSP0226's wsman:EncodingLimit fault (MaxEnvelopeSize
  detail); its WS-Management code and text are ours. wsman:Locale, DataLocale and OptionSets other than
  WINRS_NOPROFILE are accepted and ignored; protocolversion is not negotiated at the WS-Management layer.
"""

from __future__ import annotations

import argparse
import base64
import collections
import datetime
import hashlib
import http.server
import logging
import os
import re
import shutil
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
import typing
import uuid
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import spnego  # noqa: E402
import spnego.channel_bindings  # noqa: E402
from psrpcore import StreamType  # noqa: E402
from psrpcore.types import (  # noqa: E402
    ApplicationPrivateData,
    PSInvocationState,
    PSRPMessageType,
    RunspacePoolInitData,
    RunspacePoolState,
)

from host_core import (  # noqa: E402
    FRAGMENT_SIZE,
    NULL_GUID,
    HostPool,
    NO_LANGUAGE,
    PS_VERSION,
    PsrpSession,
    Run,
    fragments,
    output_encoder,
)

log = logging.getLogger("winrm_host")

# ---------------------------------------------------------------------------------------------------------------------
# WS-Management names

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "wsa": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "wsman": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "wsmv": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "wsen": "http://schemas.xmlsoap.org/ws/2004/09/enumeration",
    "wst": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "cfg": "http://schemas.microsoft.com/wbem/wsman/1/config",
    "pwsh": "http://schemas.microsoft.com/powershell",
}
ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer/"
ENUMERATION = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/"
SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
PS_URI_PREFIX = "http://schemas.microsoft.com/powershell/"
CONFIG_URI = "http://schemas.microsoft.com/wbem/wsman/1/config"
COMMAND_STATE = SHELL + "/CommandState/"
FAULT_ACTION = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"
FAULT_DETAIL = "http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/"
STOP_SIGNALS = {"powershell/signal/crtl_c", "powershell/signal/ctrl_c"}  # PS's spelling, and MS-WSMV's / pypsrp's
SPNEGO_PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
KERBEROS_PROTOCOL = "application/HTTP-Kerberos-session-encrypted"  # the raw `Kerberos` scheme's sealing
BOUNDARY = "Encrypted Boundary"

# The response envelope's namespace declarations, per kind of answer, as Windows writes them (see the recordings).
_XS = 'xmlns:s="http://www.w3.org/2003/05/soap-envelope"'
_XA = 'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing"'
_XX = 'xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer"'
_XE = 'xmlns:e="http://schemas.xmlsoap.org/ws/2004/08/eventing"'
_XN = 'xmlns:n="http://schemas.xmlsoap.org/ws/2004/09/enumeration"'
_XW = 'xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"'
_XR = 'xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell"'
_XP = 'xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd"'
DECLS = {
    "shell": " ".join([_XS, _XA, _XX, _XW, _XR, _XP]),  # Create, Command, Send, Signal, Connect
    "receive": " ".join([_XS, _XA, _XW, _XR, _XP]),
    "empty": " ".join([_XS, _XA, _XW, _XP]),  # Delete, Disconnect, Reconnect
    "enumerate": " ".join([_XS, _XA, _XN, _XW, _XP]),
    "get": " ".join([_XS, _XA, _XX, _XW, _XP]),
    "fault": " ".join([_XS, _XA, _XX, _XE, _XN, _XW, _XP]),
}

# Fault codes (MS-WSMV / winerror.h names in the comments)
TIMED_OUT = 2150858793  # ERROR_WSMAN_OPERATION_TIMEDOUT 0x80338029
UNEXPECTED_SELECTORS = 2150858843  # ERROR_WSMAN_UNEXPECTED_SELECTORS 0x8033805B
INVALID_HEADER = 2150858767  # ERROR_WSMAN_INVALID_MESSAGE_INFORMATION_HEADER 0x8033800F
INVALID_RESOURCE_URI = 2150858811  # ERROR_WSMAN_INVALID_RESOURCE_URI 0x8033803B
ALREADY_EXISTS = 2150858803  # ERROR_WSMAN_ALREADY_EXISTS 0x80338033
ACTION_NOT_SUPPORTED = 2150858771  # ERROR_WSMAN_ACTION_NOT_SUPPORTED 0x80338013
QUOTA_MAX_SHELLS = 2150859173  # ERROR_WSMAN_QUOTA_MAX_SHELLS 0x803381A5 (MaxShellsPerUser)
QUOTA_MAX_OPERATIONS = 2150859174  # ERROR_WSMAN_QUOTA_MAX_OPERATIONS 0x803381A6 (MaxConcurrentOperationsPerUser)
QUOTA_MAX_SHELLUSERS = 2150859179  # ERROR_WSMAN_QUOTA_MAX_SHELLUSERS 0x803381AB (MaxConcurrentUsers)
SHELL_DISCONNECTED = 2150859204  # ERROR_WINRS_SHELL_DISCONNECTED 0x803381C4
SESSIONID_MISMATCH = 2150859206  # ERROR_WINRS_SHELL_CLIENTSESSIONID_MISMATCH 0x803381C6
CONNECTED_ELSEWHERE = 2150859213  # ERROR_WINRS_SHELL_CONNECTED_TO_DIFFERENT_CLIENT 0x803381CD
ACCESS_DENIED = 5  # ERROR_ACCESS_DENIED (winrm.cmd shows it as 0x80070005)
# Configuration (WS-Transfer Get/Put of http://schemas.microsoft.com/wbem/wsman/1/config…); values and texts from the
# SDK's wsmerror.h, the subcodes from its "wsman, code=…, subcode=…" comments where it has one.
RESOURCE_NOT_FOUND = 2150858752  # ERROR_WSMAN_RESOURCE_NOT_FOUND 0x80338000 (an unknown plugin Name)
INVALID_REPRESENTATION = 2150858773  # ERROR_WSMAN_INVALID_REPRESENTATION 0x80338015
SCHEMA_VALIDATION = 2150858817  # ERROR_WSMAN_SCHEMA_VALIDATION_ERROR 0x80338041
GPO_CONTROLLED = 2150858890  # ERROR_WSMAN_CONFIG_CANNOT_CHANGE_GPO_CONTROLLED_SETTING 0x8033808A
DEPRECATED_SETTING = 2150859182  # ERROR_WSMAN_DEPRECATED_CONFIG_SETTING 0x803381AE (MS-WSMV <18>: MaxConcurrentOperations)
CBT_HARDENING_INVALID = 2150859192  # ERROR_SERVICE_CBT_HARDENING_INVALID 0x803381B8
IDLETIMEOUT_OUT_OF_BOUNDS = 2150859250  # ERROR_WINRS_IDLETIMEOUT_OUTOFBOUNDS 0x803381F2

# Message types whose loss Drop mode allows (output and the other streams); state messages and host calls are kept.
DROPPABLE = {0x00041004, 0x00041005, 0x00041007, 0x00041008, 0x00041009, 0x00041010, 0x00041011}
HOST_CALL = 0x00041100
TERMINAL = (PSInvocationState.Completed, PSInvocationState.Failed, PSInvocationState.Stopped)

_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def parse_duration(text: str) -> float:
    """xs:duration as WinRM uses it (PT20S, PT7200.000S, P0DT0H0M2S) → seconds; ValueError otherwise."""
    m = _DURATION.match(text.strip())
    if not m or text.strip() in ("P", "PT"):
        raise ValueError(text)
    days, hours, minutes, seconds = m.groups()
    return int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0)


def run_time(seconds: float) -> str:
    """ShellRunTime / ShellInactivity: P0DT0H0M2S."""
    s = int(seconds)
    return f"P{s // 86400}DT{s % 86400 // 3600}H{s % 3600 // 60}M{s % 60}S"


def new_uuid() -> str:
    return str(uuid.uuid4()).upper()


# ---------------------------------------------------------------------------------------------------------------------
# Faults


class WSManFault(Exception):
    """A SOAP fault as Windows lays it out: s:Code/s:Subcode, s:Reason, s:Detail/f:WSManFault(Code, Machine)."""

    def __init__(self, code: int, subcode: str, reason: str, message: typing.Optional[str] = None, *,
                 sender: bool = True, detail: typing.Optional[str] = None, provider: typing.Optional[str] = None) -> None:
        super().__init__(message or reason)
        self.code = code
        self.subcode = subcode
        self.reason = reason
        self.message = message if message is not None else reason
        self.sender = sender
        self.detail = detail
        self.provider = provider  # Windows' nesting under <f:ProviderFault provider="Shell provider" …>

    def body(self, machine: str) -> str:
        value = "s:Sender" if self.sender else "s:Receiver"
        detail = f"<w:FaultDetail>{FAULT_DETAIL}{self.detail}</w:FaultDetail>" if self.detail else ""
        f = 'xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"'
        message = escape(self.message)
        if self.provider:
            message = (f'<f:ProviderFault provider="{self.provider}" path="%systemroot%\\system32\\WsmSvc.dll">'
                       f'<f:WSManFault {f} Code="{self.code}" Machine="{machine}"><f:Message>{message}</f:Message>'
                       f"</f:WSManFault></f:ProviderFault>")
        return (f"<s:Fault><s:Code><s:Value>{value}</s:Value><s:Subcode><s:Value>{self.subcode}</s:Value></s:Subcode>"
                f'</s:Code><s:Reason><s:Text xml:lang="en-US">{escape(self.reason)}</s:Text></s:Reason><s:Detail>{detail}'
                f'<f:WSManFault {f} Code="{self.code}" Machine="{machine}"><f:Message>{message}</f:Message>'
                f"</f:WSManFault></s:Detail></s:Fault>")


def timed_out() -> WSManFault:
    text = "The WS-Management service cannot complete the operation within the time specified in OperationTimeout.  "
    return WSManFault(TIMED_OUT, "w:TimedOut", text, sender=False)


INVALID_SELECTORS = "The WS-Management service cannot process the request because the request contained invalid selectors for the resource. "


def shell_not_found(shell_id: str) -> WSManFault:
    return WSManFault(
        UNEXPECTED_SELECTORS, "w:InvalidSelectors", INVALID_SELECTORS,
        f"The request for the Windows Remote Shell with ShellId {shell_id} failed because the shell was not found on "
        "the server. Possible causes are: the specified ShellId is incorrect or the shell no longer exists on the "
        "server. Provide the correct ShellId or create a new shell and retry the operation. ",
        detail="UnexpectedSelectors")


def get_not_found() -> WSManFault:
    """What a WS-Transfer Get of a shell that is gone answers (test_psrp_is_alive_invalid_selectors.yml)."""
    return WSManFault(UNEXPECTED_SELECTORS, "w:InvalidSelectors", INVALID_SELECTORS, detail="UnexpectedSelectors",
                      provider="Shell provider")


def command_not_found() -> WSManFault:
    return WSManFault(
        UNEXPECTED_SELECTORS, "w:InvalidSelectors", INVALID_SELECTORS,
        "The Windows Remote Shell received a request to perform an operation on a command identifier that does not "
        "exist. Either the command has completed execution or the client specified an invalid command identifier. ",
        detail="UnexpectedSelectors")


def unknown_resource(uri: str) -> WSManFault:
    text = (f"The WS-Management service cannot process the request. The resource URI ({uri}) was not found in the "
            "WS-Management catalog. The catalog contains the metadata that describes resources, or logical endpoints. ")
    return WSManFault(INVALID_RESOURCE_URI, "a:DestinationUnreachable", text, detail="InvalidResourceURI")


def shell_disconnected(shell_id: str) -> WSManFault:
    return WSManFault(SHELL_DISCONNECTED, "w:InvalidSelectors",
                      f"The request for the Windows Remote Shell with ShellId {shell_id} failed because the shell is "
                      "disconnected. Reconnect to the shell and retry the operation. ", sender=False)


ENVELOPE_TOO_LARGE_PLACEHOLDER = 2150858818


def envelope_too_large(size: int, limit: int) -> WSManFault:
    # DSP0226's fault for a request over the service's MaxEnvelopeSize: wsman:EncodingLimit with the MaxEnvelopeSize
    # detail. No recording shows Windows' answer: the code is a placeholder of ours and the text is inferred.
    return WSManFault(ENVELOPE_TOO_LARGE_PLACEHOLDER, "w:EncodingLimit",
                      f"The WS-Management service cannot process the request because the request of {size} bytes exceeds "
                      f"MaxEnvelopeSizekb ({limit // 1024}). ", detail="MaxEnvelopeSize")


def quota_fault(code: int, generic: str, specific: str) -> WSManFault:
    return WSManFault(code, "w:QuotaLimit", "The WS-Management service cannot process the request. " + generic,
                      "The WS-Management service cannot process the request. " + specific, sender=False)


def max_shells(n: int) -> WSManFault:
    return quota_fault(
        QUOTA_MAX_SHELLS,
        "The maximum number of concurrent shells for this user has been exceeded. Close existing shells or raise the "
        "quota for this user. ",
        f"This user is allowed a maximum number of {n} concurrent shells, which has been exceeded. Close existing "
        "shells or raise the quota for this user. ")


def max_operations(n: int) -> WSManFault:
    return quota_fault(
        QUOTA_MAX_OPERATIONS,
        "The maximum number of concurrent operations for this user has been exceeded. Close existing operations for "
        "this user, or raise the quota for this user. ",
        f"This user is allowed a maximum number of {n} concurrent operations, which has been exceeded. Close existing "
        "operations for this user, or raise the quota for this user. ")


def max_users(n: int) -> WSManFault:
    return quota_fault(
        QUOTA_MAX_SHELLUSERS,
        "The server exceeded the maximum number of users concurrently performing remote operations on the same "
        "system. Retry later. ",
        f"The maximum number of users ({n}) executing shell operations has been exceeded. Retry later or raise the "
        "quota. ")


# The session configuration's (plugin's) quotas: ERROR_WSMAN_QUOTA_MAX_SHELLS_PPQ, _USERS_PPQ, _PLUGINSHELLS_PPQ. No
# recorded Windows fault carries these texts: they follow the shell quotas' wording, naming the plugin (unverified).
QUOTA_MAX_SHELLS_PPQ = 2150859236  # 0x803381E4 (Plugin Quotas MaxShellsPerUser)
QUOTA_MAX_USERS_PPQ = 2150859237  # 0x803381E5 (Plugin Quotas MaxConcurrentUsers)
QUOTA_MAX_PLUGINSHELLS_PPQ = 2150859238  # 0x803381E6 (Plugin Quotas MaxShells)


def plugin_quota(quota: str, n: int) -> WSManFault:
    code, generic, specific = {
        "MaxShellsPerUser": (
            QUOTA_MAX_SHELLS_PPQ,
            "The maximum number of concurrent shells allowed for this plugin has been exceeded. ",
            f"This user is allowed a maximum number of {n} concurrent shells for this plugin, which has been exceeded. "
            "Close existing shells or raise the plugin quota for this user. "),
        "MaxConcurrentUsers": (
            QUOTA_MAX_USERS_PPQ,
            "The maximum number of concurrent users allowed for this plugin has been exceeded. ",
            f"The maximum number of users ({n}) allowed for this plugin has been exceeded. Retry later or raise the "
            "plugin quota. "),
        "MaxShells": (
            QUOTA_MAX_PLUGINSHELLS_PPQ,
            "The maximum number of shells allowed for this plugin has been exceeded. ",
            f"This plugin allows a maximum number of {n} shells, which has been exceeded. Close existing shells or "
            "raise the plugin quota. "),
    }[quota]
    return quota_fault(code, generic, specific)


def access_denied() -> WSManFault:
    """A configuration change by a user who is not an administrator (what winrm.cmd shows as 0x80070005)."""
    return WSManFault(ACCESS_DENIED, "w:AccessDenied", "Access is denied. ")


def resource_not_found() -> WSManFault:
    # The subcode and detail are DSP0226's for a resource that does not exist (MS-WSMV 4.x's example of this code).
    return WSManFault(RESOURCE_NOT_FOUND, "a:DestinationUnreachable",
                      "The WS-Management service cannot process the request. The service cannot find the resource "
                      "identified by the resource URI and selectors. ", detail="ResourceNotFound")


def invalid_representation() -> WSManFault:
    return WSManFault(INVALID_REPRESENTATION, "w:InvalidRepresentation",
                      "The WS-Management service cannot identify the format of the object passed to a Put or Create "
                      "method. The input XML may not be appropriate for the resource or uses the wrong schema for the "
                      "resource. Change the input XML in the request. ")


def schema_invalid() -> WSManFault:
    """A setting that is not in the resource's schema, or a value of the wrong type or out of its range (MS-WSMV
    2.2.4.42: wsman:SchemaValidationError)."""
    return WSManFault(SCHEMA_VALIDATION, "w:SchemaValidationError",
                      "The SOAP XML in the message does not match the corresponding XML schema definition. Change the "
                      "XML and retry. ")


def gpo_controlled(name: str) -> WSManFault:
    # The text is the one Windows users report (Set-Item WSMan:\…, Enable-WSManCredSSP, winrm set); the subcode is ours.
    text = (f"The config setting {name} cannot be changed because is controlled by policies. The policy would need to "
            'be set to "Not Configured" in order to change the config setting. ')
    return WSManFault(GPO_CONTROLLED, "w:InternalError", text, sender=False)


def deprecated_setting() -> WSManFault:
    # MS-WSMV <18> (Service/MaxConcurrentOperations: Code 2150859182) and <30> (Winrs/MaxShellRunTime: wsman:InternalError,
    # no code given: the same one is used).
    return WSManFault(DEPRECATED_SETTING, "w:InternalError",
                      "The WinRM service cannot process the request because it is trying to update a deprecated setting. "
                      "Remove this setting from the command and try again. ", sender=False)


def cbt_hardening_invalid() -> WSManFault:
    return WSManFault(CBT_HARDENING_INVALID, "w:InternalError",
                      "The WinRM service cannot process the request. The Channel Binding Token Hardening Level "
                      '(CbtHardeningLevel) value is invalid. The valid values are "None", "Relaxed" and "Strict". Change '
                      "the CbtHardeningLevel value and try again. ", sender=False)


def idle_timeout_out_of_bounds() -> WSManFault:
    return WSManFault(IDLETIMEOUT_OUT_OF_BOUNDS, "w:InternalError",
                      "The WS-Management service cannot process the request. The requested IdleTimeout is outside the "
                      "allowed range. ", sender=False)


def bad_timeout(text: str) -> WSManFault:
    return WSManFault(
        INVALID_HEADER, "a:InvalidMessageInformationHeader",
        "The WS-Management service cannot process the request. The request contains one or more invalid SOAP headers. ",
        f"The WS-Management service cannot process the request. The XML contains an invalid timeout field in the SOAP "
        f"header: {text}. ")


# ---------------------------------------------------------------------------------------------------------------------
# Configuration


U32 = 4294967295
I31 = 2147483647


class Setting(typing.NamedTuple):
    """One setting of the configuration tree: its path under cfg:Config (containers joined with /), type and range."""

    path: str
    kind: str = "uint"  # uint, idle (a uint whose range fault is IDLETIMEOUT_OUTOFBOUNDS), bool, str, cbt
    low: int = 0
    high: int = U32


# http://schemas.microsoft.com/wbem/wsman/1/config in Windows' order (test_wsman_update_envelope_size_*.yml); ranges
# from MS-WSMV 2.2.4.10, 2.2.4.36 and 2.2.4.42 (and its notes for Windows 7 and later).
SETTINGS = {s.path: s for s in [
    Setting("MaxEnvelopeSizekb", low=32), Setting("MaxTimeoutms", low=500), Setting("MaxBatchItems", low=1),
    Setting("MaxProviderRequests", low=1),
    Setting("Client/NetworkDelayms"), Setting("Client/URLPrefix", "str"), Setting("Client/AllowUnencrypted", "bool"),
    Setting("Client/Auth/Basic", "bool"), Setting("Client/Auth/Digest", "bool"), Setting("Client/Auth/Kerberos", "bool"),
    Setting("Client/Auth/Negotiate", "bool"), Setting("Client/Auth/Certificate", "bool"),
    Setting("Client/Auth/CredSSP", "bool"), Setting("Client/DefaultPorts/HTTP", low=1, high=65535),
    Setting("Client/DefaultPorts/HTTPS", low=1, high=65535), Setting("Client/TrustedHosts", "str"),
    Setting("Service/RootSDDL", "str"), Setting("Service/MaxConcurrentOperations", low=1),
    Setting("Service/MaxConcurrentOperationsPerUser", low=1), Setting("Service/EnumerationTimeoutms", low=500),
    Setting("Service/MaxConnections", low=1, high=512), Setting("Service/MaxPacketRetrievalTimeSeconds", low=1),
    Setting("Service/AllowUnencrypted", "bool"), Setting("Service/Auth/Basic", "bool"),
    Setting("Service/Auth/Kerberos", "bool"), Setting("Service/Auth/Negotiate", "bool"),
    Setting("Service/Auth/Certificate", "bool"), Setting("Service/Auth/CredSSP", "bool"),
    Setting("Service/Auth/CbtHardeningLevel", "cbt"), Setting("Service/DefaultPorts/HTTP", low=1, high=65535),
    Setting("Service/DefaultPorts/HTTPS", low=1, high=65535), Setting("Service/IPv4Filter", "str"),
    Setting("Service/IPv6Filter", "str"), Setting("Service/EnableCompatibilityHttpListener", "bool"),
    Setting("Service/EnableCompatibilityHttpsListener", "bool"), Setting("Service/CertificateThumbprint", "str"),
    Setting("Service/AllowRemoteAccess", "bool"),
    Setting("Winrs/AllowRemoteShellAccess", "bool"), Setting("Winrs/IdleTimeout", "idle", high=I31),
    Setting("Winrs/MaxConcurrentUsers", low=1, high=I31), Setting("Winrs/MaxShellRunTime"),
    Setting("Winrs/MaxProcessesPerShell", high=I31), Setting("Winrs/MaxMemoryPerShellMB", high=I31),
    Setting("Winrs/MaxShellsPerUser", high=I31),
]}
# Read-only since WinRM 2.0 (MS-WSMV <18>, <30>): a Put may repeat the value, not change it.
DEPRECATED = {"Service/MaxConcurrentOperations", "Winrs/MaxShellRunTime"}
# Resource URI → (its settings' path prefix, the element, the namespace of the answer: the resource URI itself, as
# PowerShell's CredSSP.cs reads cfg:Service from …/config/service and cfg:Auth from …/config/client/auth).
CONFIG_RESOURCES = {
    CONFIG_URI: ("", "Config", CONFIG_URI),
    CONFIG_URI + "/service": ("Service/", "Service", CONFIG_URI + "/service"),
    CONFIG_URI + "/winrs": ("Winrs/", "Winrs", CONFIG_URI + "/winrs"),
}
PLUGIN_URI = CONFIG_URI + "/plugin"
PLUGIN_NS = "http://schemas.microsoft.com/wbem/wsman/1/config/PluginConfiguration"
PLUGIN_ATTRS = ("Name", "Filename", "SDKVersion", "XmlRenderingType", "Enabled", "Architecture", "UseSharedProcess",
                "ProcessIdleTimeoutSec", "RunAsUser", "RunAsPassword", "AutoRestart", "OutputBufferingMode")
# The plugin's Quotas as PowerShell writes them (WSManConfigurationOption.ConstructQuotas: this order, these defaults)
# with MS-WSMV 2.2.4.23's ranges; MaxConcurrentOperations(PerUser) are the schema's other, optional ones.
PLUGIN_QUOTAS = {
    "IdleTimeoutms": ("7200000", 60000, I31), "MaxConcurrentUsers": (str(I31), 1, I31),
    "MaxProcessesPerShell": (str(I31), 0, I31), "MaxMemoryPerShellMB": (str(I31), 0, I31),
    "MaxShellsPerUser": (str(I31), 1, I31), "MaxConcurrentCommandsPerShell": (str(I31), 1, I31),
    "MaxShells": (str(I31), 1, I31), "MaxIdleTimeoutms": (str(I31), 60000, I31),
    "MaxConcurrentOperations": ("", 1, U32), "MaxConcurrentOperationsPerUser": ("", 1, U32),
}


def config_resource(uri: str) -> typing.Optional[str]:
    """The key of CONFIG_RESOURCES a resource URI names (any case, a trailing / allowed), or None."""
    uri = uri.rstrip("/").lower()
    return next((k for k in CONFIG_RESOURCES if k.lower() == uri), None)


def _number(text: str, low: int, high: int, idle: bool = False) -> str:
    if not re.fullmatch(r"[0-9]+", text):
        raise schema_invalid()
    if not low <= int(text) <= high:
        raise idle_timeout_out_of_bounds() if idle else schema_invalid()
    return str(int(text))


def setting_value(s: Setting, text: str) -> str:
    """The value a Put asks for, as the configuration then holds it; raises the fault Windows gives for a bad one."""
    text = text.strip()
    if s.kind == "str":
        return text
    if s.kind == "bool":
        if text.lower() not in ("true", "false"):
            raise schema_invalid()
        return text.lower()
    if s.kind == "cbt":
        value = next((v for v in ("None", "Relaxed", "Strict") if v.lower() == text.lower()), None)
        if value is None:
            raise cbt_hardening_invalid()
        return value
    if s.path in DEPRECATED:
        return _number(text, 0, U32)  # any number: changing it is the fault
    return _number(text, s.low, s.high, idle=s.kind == "idle")


class Plugin:
    """A session configuration's WinRM plugin (…/config/plugin?Name=NAME) as PowerShell registers it: Windows
    PowerShell's Register-PSSessionConfiguration for microsoft.powershell*, PowerShell 7's Enable-PSRemoting /
    Install-PowerShellRemoting.ps1 for the others; attribute order and xml:lang as in MS-WSMV 3.1.4.1.34.3."""

    def __init__(self, name: str, restricted: bool) -> None:
        windows_powershell = name.lower().startswith("microsoft.powershell")
        self.name = name
        self.attrs = {
            "Name": name,
            "Filename": ("%windir%\\system32\\pwrshplugin.dll" if windows_powershell
                         else f"%windir%\\system32\\PowerShell\\{PS_VERSION}\\pwrshplugin.dll"),
            "SDKVersion": "2", "XmlRenderingType": "text", "Enabled": "true", "Architecture": "64",
            "UseSharedProcess": "false", "ProcessIdleTimeoutSec": "0", "RunAsUser": "", "RunAsPassword": "",
            "AutoRestart": "false", "OutputBufferingMode": "Block",
        }
        self.params = [("PSVersion", "5.1" if windows_powershell else ".".join(PS_VERSION.split(".")[:2]))]
        if restricted:  # the parameter Set-PSSessionConfiguration reads
            self.params.append(("sessiontype", "RestrictedRemoteServer"))
        self.sddl = ("O:NSG:BAD:P(A;;GA;;;BA)(A;;GA;;;IU)(A;;GA;;;RM)S:P(AU;FA;GA;;;WD)(AU;SA;GXGW;;;WD)"
                     if windows_powershell else "O:NSG:BAD:P(A;;GA;;;BA)S:P(AU;FA;GA;;;WD)(AU;SA;GXGW;;;WD)")
        self.quotas = {k: v[0] for k, v in PLUGIN_QUOTAS.items() if v[0]}

    def xml(self) -> str:
        def attrs(items: typing.Iterable[typing.Tuple[str, str]]) -> str:
            return "".join(f' {k}="{escape(v, {chr(34): "&quot;"})}"' for k, v in items)

        uri = escape(PS_URI_PREFIX + self.name, {chr(34): "&quot;"})
        params = "".join(f"<Param{attrs([('Name', k), ('Value', v)])}/>" for k, v in self.params)
        return (f'<PlugInConfiguration xmlns="{PLUGIN_NS}"{attrs(self.attrs.items())} xml:lang="en-US">'
                f"<InitializationParameters>{params}</InitializationParameters><Resources>"
                f'<Resource ResourceUri="{uri}" SupportsOptions="true" ExactMatch="true"><Security Uri="{uri}" '
                f'ExactMatch="true" Sddl="{self.sddl}"/><Capability Type="Shell"/></Resource></Resources>'
                f"<Quotas{attrs(self.quotas.items())}/></PlugInConfiguration>")

    def changes(self, item: typing.Optional[ET.Element]) -> typing.Tuple[typing.Dict[str, str], typing.Dict[str, str]]:
        """The root attributes and Quotas a Put's PlugInConfiguration sets, checked; Resources and
        InitializationParameters are kept as they are (the peer serves what its command line says)."""
        if (item is None or not item.tag.startswith(f"{{{PLUGIN_NS}}}")
                or item.tag.rsplit("}", 1)[-1].lower() != "pluginconfiguration"):
            raise invalid_representation()
        attrs: typing.Dict[str, str] = {}
        for key, value in item.attrib.items():
            if key.startswith("{") or key == "lang":
                continue  # xml:lang (and lang), as a Get gave them: PowerShell's WSMan provider drops xml:lang first
            if key not in PLUGIN_ATTRS:
                raise schema_invalid()
            value = value.strip()
            if key in ("Enabled", "UseSharedProcess", "AutoRestart") and value.lower() not in ("true", "false"):
                raise schema_invalid()
            if key == "ProcessIdleTimeoutSec":
                value = _number(value, 0, 1209600)
            elif key in ("SDKVersion", "Architecture"):
                value = _number(value, 1, 2 if key == "SDKVersion" else 64)
            elif key == "OutputBufferingMode" and value not in ("Block", "Drop"):
                raise schema_invalid()
            elif key == "XmlRenderingType":
                if value.lower() not in ("text", "xmlreader"):
                    raise schema_invalid()
                value = "text"  # MS-WSMV 3.1.4.1.34.2: XmlReader is taken as text
            attrs[key] = value
        if attrs.get("Name", self.name).lower() != self.name.lower():
            raise invalid_representation()  # a Put does not rename a plugin
        attrs.pop("Name", None)
        quotas: typing.Dict[str, str] = {}
        element = next((c for c in item if c.tag == f"{{{PLUGIN_NS}}}Quotas"), None)
        for key, value in (element.attrib.items() if element is not None else ()):
            if key not in PLUGIN_QUOTAS:
                raise schema_invalid()
            _default, low, high = PLUGIN_QUOTAS[key]
            quotas[key] = _number(value.strip(), low, high, idle=key.endswith("IdleTimeoutms"))
        merged = {**self.quotas, **quotas}
        if int(merged["IdleTimeoutms"]) > int(merged["MaxIdleTimeoutms"]):
            raise idle_timeout_out_of_bounds()
        return attrs, quotas


class Config:
    """What the command line sets (defaults: Windows Server's, see test_wsman_update_envelope_size_*.yml), and the
    configuration's settings as WS-Transfer Get shows them and Put changes them."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.auth = {a.strip().lower() for a in args.auth.split(",") if a.strip()}
        self.tls = args.tls
        self.allow_unencrypted = args.allow_unencrypted
        self.cbt_hardening = args.cbt_hardening
        self.configurations = {c.lower(): c for c in (args.configuration or ["Microsoft.PowerShell", "PowerShell.7"])}
        self.restricted = {c.lower(): c for c in (args.restricted_configuration or [])}  # NoLanguage configurations
        self.configurations.update(self.restricted)
        self.visible_commands = (None if args.visible_commands is None
                                 else [c.strip() for c in args.visible_commands.split(",") if c.strip()])
        self.idle_timeout = float(args.idle_timeout)
        self.max_envelope_kb = int(args.max_envelope_kb)
        self.max_timeout_ms = int(args.max_timeout_ms)
        self.buffer_bytes = int(args.buffer_bytes)
        self.max_shells_per_user = args.max_shells_per_user
        self.max_concurrent_users = args.max_concurrent_users
        self.max_operations_per_user = args.max_concurrent_operations_per_user
        self.fast = args.fast or os.environ.get("WINRM_HOST_FAST") == "1"
        self.admin_users = (None if args.admin_users is None
                            else {u.strip().lower() for u in args.admin_users.split(",") if u.strip()})
        self.lock = threading.RLock()
        self.values = self._initial_values()
        self.gpo: typing.Set[str] = set()
        for entry in args.gpo_setting or []:
            self._set_by_policy(entry)
        self.plugins = {key: Plugin(name, key in self.restricted) for key, name in self.configurations.items()}

    def _initial_values(self) -> typing.Dict[str, str]:
        def b(v: typing.Any) -> str:
            return "true" if v else "false"

        def quota(v: typing.Optional[int], default: int) -> str:
            return str(default if v is None else v)

        values = {
            "MaxEnvelopeSizekb": str(self.max_envelope_kb), "MaxTimeoutms": str(self.max_timeout_ms),
            "MaxBatchItems": "32000", "MaxProviderRequests": "4294967295",
            "Client/NetworkDelayms": "5000", "Client/URLPrefix": "wsman", "Client/AllowUnencrypted": "false",
            "Client/Auth/Basic": "true", "Client/Auth/Digest": "true", "Client/Auth/Kerberos": "true",
            "Client/Auth/Negotiate": "true", "Client/Auth/Certificate": "true", "Client/Auth/CredSSP": "false",
            "Client/DefaultPorts/HTTP": "5985", "Client/DefaultPorts/HTTPS": "5986", "Client/TrustedHosts": "",
            "Service/RootSDDL": "O:NSG:BAD:P(A;;GA;;;BA)(A;;GR;;;IU)S:P(AU;FA;GA;;;WD)(AU;SA;GXGW;;;WD)",
            "Service/MaxConcurrentOperations": "4294967295",
            "Service/MaxConcurrentOperationsPerUser": quota(self.max_operations_per_user, 1500),
            "Service/EnumerationTimeoutms": "240000", "Service/MaxConnections": "300",
            "Service/MaxPacketRetrievalTimeSeconds": "120", "Service/AllowUnencrypted": b(self.allow_unencrypted),
            "Service/Auth/Basic": b("basic" in self.auth), "Service/Auth/Kerberos": b("kerberos" in self.auth),
            "Service/Auth/Negotiate": b(self.auth & {"ntlm", "kerberos"}), "Service/Auth/Certificate": "false",
            "Service/Auth/CredSSP": "false", "Service/Auth/CbtHardeningLevel": self.cbt_hardening,
            "Service/DefaultPorts/HTTP": "5985", "Service/DefaultPorts/HTTPS": "5986", "Service/IPv4Filter": "*",
            "Service/IPv6Filter": "*", "Service/EnableCompatibilityHttpListener": "false",
            "Service/EnableCompatibilityHttpsListener": "false", "Service/CertificateThumbprint": "",
            "Service/AllowRemoteAccess": "true",
            "Winrs/AllowRemoteShellAccess": "true", "Winrs/IdleTimeout": str(int(self.idle_timeout * 1000)),
            "Winrs/MaxConcurrentUsers": quota(self.max_concurrent_users, I31), "Winrs/MaxShellRunTime": str(I31),
            "Winrs/MaxProcessesPerShell": str(I31), "Winrs/MaxMemoryPerShellMB": str(I31),
            "Winrs/MaxShellsPerUser": quota(self.max_shells_per_user, I31),
        }
        assert list(values) == list(SETTINGS)
        return values

    def _set_by_policy(self, entry: str) -> None:
        """--gpo-setting PATH=VALUE: a setting Group Policy controls (fixed, Source="GPO")."""
        path, sep, text = entry.partition("=")
        setting = next((s for p, s in SETTINGS.items() if p.lower() == path.strip().strip("/").lower()), None)
        if not sep or setting is None:
            raise SystemExit(f"winrm_host: --gpo-setting {entry!r}: expected PATH=VALUE, PATH one of "
                             f"{', '.join(SETTINGS)}")
        try:
            value = setting_value(setting, text)
        except WSManFault as e:
            raise SystemExit(f"winrm_host: --gpo-setting {entry!r}: {e.message.strip()}") from None
        self.gpo.add(setting.path)
        if value != self.values[setting.path]:
            self.values[setting.path] = value
            self.apply(setting.path, value)

    def apply(self, path: str, value: str) -> None:
        """Makes a changed setting effective where the peer emulates it; the others are only kept and shown."""
        if path == "MaxEnvelopeSizekb":
            self.max_envelope_kb = int(value)
        elif path == "MaxTimeoutms":
            self.max_timeout_ms = int(value)
        elif path == "Service/MaxConcurrentOperationsPerUser":
            self.max_operations_per_user = int(value)
        elif path == "Service/AllowUnencrypted":
            self.allow_unencrypted = value == "true"
        elif path in ("Service/Auth/Basic", "Service/Auth/Negotiate"):
            name = "basic" if path.endswith("Basic") else "ntlm"
            self.auth = self.auth | {name} if value == "true" else self.auth - {name}
        elif path == "Service/Auth/CbtHardeningLevel":
            self.cbt_hardening = value
        elif path == "Winrs/IdleTimeout":
            self.idle_timeout = int(value) / 1000
        elif path == "Winrs/MaxConcurrentUsers":
            self.max_concurrent_users = int(value)
        elif path == "Winrs/MaxShellsPerUser":
            self.max_shells_per_user = int(value) or None  # 0: any number of shells (MS-WSMV 2.2.4.42)

    def is_admin(self, user: str) -> bool:
        """--admin-users: DOMAIN\\USER or USER@REALM match exactly, a bare USER matches the user in any domain."""
        if self.admin_users is None:
            return True
        bare = user.rsplit("\\", 1)[-1].split("@", 1)[0].lower()
        return user.lower() in self.admin_users or bare in self.admin_users

    def render(self, key: str) -> str:
        """The WS-Transfer Get answer for a CONFIG_RESOURCES URI (for …/config: the recorded layout)."""
        prefix, element, namespace = CONFIG_RESOURCES[key]
        with self.lock:
            items = [(p[len(prefix):], self.values[p], p in self.gpo) for p in SETTINGS if p.startswith(prefix)]
        out = [f'<cfg:{element} xmlns:cfg="{namespace}">']
        opened: typing.List[str] = []
        for path, value, by_policy in items:
            *containers, name = path.split("/")
            common = 0
            while common < min(len(opened), len(containers)) and opened[common] == containers[common]:
                common += 1
            out.extend(f"</cfg:{c}>" for c in reversed(opened[common:]))
            out.extend(f"<cfg:{c}>" for c in containers[common:])
            opened = containers
            source = ' Source="GPO"' if by_policy else ""  # as Windows marks a setting Group Policy controls
            out.append(f"<cfg:{name}{source}>{escape(value)}</cfg:{name}>")
        out.extend(f"</cfg:{c}>" for c in reversed(opened))
        out.append(f"</cfg:{element}>")
        return "".join(out)

    def put(self, key: str, item: typing.Optional[ET.Element], user: str) -> str:
        """A WS-Transfer Put of a CONFIG_RESOURCES URI: the elements present are set (a Get's whole answer, or only the
        ones to change), all or none; the answer is the resource as a Get now shows it."""
        prefix, element, namespace = CONFIG_RESOURCES[key]
        if item is None or item.tag not in (f"{{{namespace}}}{element}", f"{{{CONFIG_URI}}}{element}"):
            raise invalid_representation()
        wanted: typing.Dict[str, str] = {}
        self._read(item, item.tag[:item.tag.index("}") + 1], prefix, wanted)
        with self.lock:
            changes: typing.Dict[str, str] = {}
            for path, text in wanted.items():
                value = setting_value(SETTINGS[path], text)
                if value == self.values[path]:
                    continue  # repeating a read-only or policy-controlled value is not changing it
                if path in self.gpo:
                    raise gpo_controlled(path.rsplit("/", 1)[-1])
                if path in DEPRECATED:
                    raise deprecated_setting()
                changes[path] = value
            for path, value in changes.items():
                self.values[path] = value
                self.apply(path, value)
        log.info("%s changed %s: %s", user, key, ", ".join(f"{p}={v}" for p, v in changes.items()) or "nothing")
        return self.render(key)

    def _read(self, element: ET.Element, ns: str, prefix: str, wanted: typing.Dict[str, str]) -> None:
        for child in element:
            if not child.tag.startswith(ns):
                raise schema_invalid()
            path = prefix + child.tag[len(ns):]
            if path in SETTINGS and len(child) == 0:
                wanted[path] = child.text or ""
            elif path not in SETTINGS and any(p.startswith(path + "/") for p in SETTINGS):
                self._read(child, ns, path + "/", wanted)
            else:
                raise schema_invalid()

    def plugin(self, name: typing.Optional[str]) -> Plugin:
        plugin = self.plugins.get((name or "").lower())
        if plugin is None:
            raise resource_not_found()
        return plugin

    def plugin_xml(self, name: typing.Optional[str]) -> str:
        with self.lock:
            return self.plugin(name).xml()

    def put_plugin(self, name: typing.Optional[str], item: typing.Optional[ET.Element], user: str) -> str:
        """A WS-Transfer Put of …/config/plugin?Name=NAME. Windows stores it and answers as for any Put; the plugin's
        host reads it when it starts, so a change is effective after `Restart-Service WinRM` (nothing in the answer
        says so: PowerShell's WSMan provider warns by itself, Set-PSSessionConfiguration offers the restart). The peer
        keeps and shows the new values; it enforces no plugin quota either way."""
        with self.lock:
            plugin = self.plugin(name)
            attrs, quotas = plugin.changes(item)
            changed = [f"{k}={v}" for k, v in attrs.items() if plugin.attrs.get(k) != v]
            changed += [f"Quotas/{k}={v}" for k, v in quotas.items() if plugin.quotas.get(k) != v]
            plugin.attrs.update(attrs)
            plugin.quotas.update(quotas)
            answer = plugin.xml()
        log.info("%s changed plugin %s: %s (effective after a WinRM restart on Windows)", user, plugin.name,
                 ", ".join(changed) or "nothing")
        return answer


# ---------------------------------------------------------------------------------------------------------------------
# Shells: a runspace pool with per-destination output queues


class Unit:
    """One PSRP fragment on its way to the client, already in base64."""

    __slots__ = ("b64", "size", "oid", "start", "end", "mtype")

    def __init__(self, b64: str, size: int, oid: int, start: bool, end: bool, mtype: int) -> None:
        self.b64 = b64
        self.size = size
        self.oid = oid
        self.start = start
        self.end = end
        self.mtype = mtype


class WinRMPool(HostPool):
    """After Connect from a new client PowerShell answers RUNSPACEPOOL_INIT_DATA in connectResponseXml and sends
    APPLICATION_PRIVATE_DATA on the next Receive; it sends no RUNSPACEPOOL_STATE(Opened) (psrpcore does)."""

    def _process_ConnectRunspacePool(self, event: typing.Any) -> None:  # noqa: N802 - psrpcore's naming
        self._max_runspaces = event.max_runspaces or self.max_runspaces
        self._min_runspaces = event.min_runspaces or self.min_runspaces
        self.prepare_message(RunspacePoolInitData(MinRunspaces=self.min_runspaces, MaxRunspaces=self.max_runspaces))
        self._change_state(RunspacePoolState.Opened, emit=False)


class Command:
    """A WS-Management command: a pipeline and what is still to be received from it."""

    def __init__(self, command_id: str, run: Run) -> None:
        self.id = command_id
        self.run = run


class Shell(PsrpSession):
    """A WS-Management shell of the PowerShell plugin: one runspace pool (psrpcore's server role) and its commands."""

    def __init__(self, server: "WinRMServer", shell_id: str, resource_uri: str, owner: str, client_ip: str,
                 session_id: str, idle_timeout: float, profile: bool) -> None:
        super().__init__(fast=server.config.fast)
        self.pool = WinRMPool()
        self.server = server
        self.id = shell_id
        self.resource_uri = resource_uri
        self.owner = owner
        self.client_ip = client_ip
        self.session_id = session_id
        self.idle_timeout = idle_timeout
        self.profile = profile
        self.buffer_mode = "Block"
        self.state = "Connected"
        self.created = time.monotonic()
        self.last_activity = self.created
        self.disconnected_at = 0.0
        self.waiting = 0  # Receives in progress
        self.deleted = False
        self.changed = threading.Condition(self.lock)
        self.queues: typing.Dict[typing.Optional[uuid.UUID], typing.Deque[Unit]] = {None: collections.deque()}
        self.queued: typing.Dict[typing.Optional[uuid.UUID], int] = {None: 0}
        self.commands: typing.Dict[uuid.UUID, Command] = {}
        self._types: typing.Dict[int, int] = {}  # object id → message type, for continuation fragments

    # -- output (PsrpSession) --
    def flush(self) -> None:
        """Moves every message psrpcore queued into the pool's or the command's queue, one Unit per fragment."""
        with self.lock:
            moved = False
            while True:
                payload = self.pool.data_to_send(FRAGMENT_SIZE)
                if payload is None:
                    break
                dest = payload.pipeline_id
                for frag in fragments(payload.data):
                    oid, _fid, flags, length = struct.unpack_from(">QQBI", frag)
                    if flags & 1:
                        self._types[oid] = struct.unpack_from("<I", frag, 25)[0]
                        if self._types[oid] == PSRPMessageType.PipelineState.value and dest in self.commands:
                            log.info("command %s finished", self.commands[dest].id)
                    mtype = self._types.get(oid, 0)
                    if flags & 2:
                        self._types.pop(oid, None)
                    self._queue(dest, Unit(base64.b64encode(frag).decode(), len(frag), oid, bool(flags & 1), bool(flags & 2), mtype))
                    moved = True
            if moved:
                self.changed.notify_all()

    def _queue(self, dest: typing.Optional[uuid.UUID], unit: Unit) -> None:
        if dest is not None and dest not in self.commands:
            log.debug("output for released command %s dropped", dest)
            return
        self.queues.setdefault(dest, collections.deque()).append(unit)
        self.queued[dest] = self.queued.get(dest, 0) + unit.size

    def wait_for_room(self, run: Run) -> None:
        """Flow control: Block waits for the client to receive; Drop (disconnected only) discards the oldest output."""
        limit = self.server.config.buffer_bytes
        with self.lock:
            while self.queued.get(run.pid, 0) > limit and not self.deleted:
                if self.state == "Disconnected" and self.buffer_mode == "Drop" and self._drop_oldest(run.pid):
                    continue
                run.check()
                run.cond.wait(0.5)

    def _drop_oldest(self, dest: uuid.UUID) -> bool:
        queue = self.queues.get(dest)
        if not queue:
            return False
        for unit in queue:
            if unit.start and unit.mtype in DROPPABLE:
                victims = [u for u in queue if u.oid == unit.oid]
                if not victims[-1].end:
                    return False
                for u in victims:
                    queue.remove(u)
                    self.queued[dest] -= u.size
                log.debug("dropped message %d of %s", unit.oid, dest)
                return True
        return False

    def send_bulk(self, run: Run, count: int, size: str, fast: bool) -> None:
        """Get-Objects: outputs straight into the command's queue in batches, one serialized object reused if fast."""
        encode = output_encoder(self.pool.runspace_pool_id, run.pid, size, fast)
        batch = 64 if size == "large" else 512
        done = 0
        while done < count:
            n = min(batch, count - done)
            with self.lock:
                run.check()
                first_oid = self.pool._fragment_count
                self.pool._fragment_count += n
                for k in range(n):
                    oid = first_oid + k
                    for b64, length, first, last in encode(done + k, oid):
                        self._queue(run.pid, Unit(b64, length, oid, first, last, 0x00041004))
                self.changed.notify_all()
                self.wait_for_room(run)
            done += n

    # -- what the client asks --
    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def check_usable(self) -> None:
        if self.deleted:
            raise shell_not_found(self.id)
        if self.state != "Connected":
            raise shell_disconnected(self.id)

    def command(self, command_id: typing.Optional[str]) -> Command:
        try:
            pid = uuid.UUID(command_id or "")
        except ValueError:
            raise command_not_found() from None
        cmd = self.commands.get(pid)
        if cmd is None:
            raise command_not_found()
        return cmd

    def receive(self, command_id: typing.Optional[str], timeout: float, budget: int) -> typing.Tuple[typing.List[Unit], typing.Optional[str]]:
        """Waits for output (whole messages, as many as fit `budget` bytes of fragments) or the operation timeout.

        Returns the units and the command state to report (None, "Pending" or "Done")."""
        deadline = time.monotonic() + timeout
        with self.lock:
            self.waiting += 1
            try:
                while True:
                    self.check_usable()
                    cmd = self.command(command_id) if command_id is not None else None
                    dest = cmd.run.pid if cmd else None
                    queue = self.queues.setdefault(dest, collections.deque())
                    # Done is reported again to a client that asks after it was sent: a client that died between
                    # receiving Done and its Signal left the command in the shell, and the next client (a Connect)
                    # re-attaches it; its command state is Done, never a wait that cannot end.
                    finished = cmd is not None and cmd.run.pipeline.state in TERMINAL
                    if queue or finished:
                        units = self._take(dest, queue, budget)
                        if cmd is not None:
                            cmd.run.cond.notify_all()  # room for a blocked producer
                        state = None
                        if cmd is not None and not queue and cmd.run.pipeline.state in TERMINAL:
                            state = "Done"
                        elif cmd is not None and any(u.mtype == HOST_CALL for u in units):
                            state = "Pending"
                        return units, state
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise timed_out()
                    self.changed.wait(min(left, 1.0))
            finally:
                self.waiting -= 1
                self.touch()

    def _take(self, dest: typing.Optional[uuid.UUID], queue: typing.Deque[Unit], budget: int) -> typing.List[Unit]:
        units: typing.List[Unit] = []
        used = 0
        while queue:
            # the whole next message, or as much of it as fits when it alone is larger than the budget
            message = []
            size = 0
            for u in queue:
                if u.oid != queue[0].oid:
                    break
                message.append(u)
                size += len(u.b64) + 64
                if u.end:
                    break
            if used + size > budget:
                if units:
                    break
                fitting = []
                for u in message:
                    if used + len(u.b64) + 64 > budget and fitting:
                        break
                    fitting.append(u)
                    used += len(u.b64) + 64
                message = fitting
            else:
                used += size
            for u in message:
                queue.popleft()
                self.queued[dest] -= u.size
            units.extend(message)
            if used >= budget:
                break
        return units

    def shell_xml(self, full: bool) -> str:
        now = time.monotonic()
        inactive = now - (self.disconnected_at if self.state == "Disconnected" else self.last_activity)
        extra = "<rsp:MemoryUsed>46MB</rsp:MemoryUsed><rsp:ChildProcesses>0</rsp:ChildProcesses>" if full else ""
        return (
            f'<rsp:Shell xmlns:rsp="{SHELL}"><rsp:ShellId>{self.id}</rsp:ShellId><rsp:ResourceUri>{escape(self.resource_uri)}</rsp:ResourceUri>'
            f"<rsp:Owner>{escape(self.owner)}</rsp:Owner><rsp:ClientIP>{self.client_ip}</rsp:ClientIP><rsp:ProcessId>{os.getpid()}</rsp:ProcessId>"
            f"<rsp:IdleTimeOut>PT{self.idle_timeout:.3f}S</rsp:IdleTimeOut><rsp:InputStreams>stdin pr</rsp:InputStreams>"
            "<rsp:OutputStreams>stdout</rsp:OutputStreams><rsp:MaxIdleTimeOut>PT2147483.647S</rsp:MaxIdleTimeOut>"
            "<rsp:Locale>en-US</rsp:Locale><rsp:DataLocale>en-US</rsp:DataLocale><rsp:CompressionMode>NoCompression</rsp:CompressionMode>"
            f"<rsp:ProfileLoaded>{'Yes' if self.profile else 'No'}</rsp:ProfileLoaded><rsp:Encoding>UTF8</rsp:Encoding>"
            f"<rsp:BufferMode>{self.buffer_mode}</rsp:BufferMode><rsp:State>{self.state}</rsp:State>"
            f"<rsp:ShellRunTime>{run_time(now - self.created)}</rsp:ShellRunTime><rsp:ShellInactivity>{run_time(inactive)}</rsp:ShellInactivity>"
            f"{extra}</rsp:Shell>"
        )

    def delete(self) -> None:
        """Delete, idle timeout or server stop: every pipeline stopped, the pool closed, waiting Receives told."""
        with self.lock:
            if self.deleted:
                return
            self.deleted = True
            try:
                self.close_session()
            except Exception:
                log.exception("closing shell %s", self.id)
            for run in list(self.runs.values()):
                run.stopped = True
                run.cond.notify_all()
            for cmd in self.commands.values():
                cmd.run.stopped = True
                cmd.run.cond.notify_all()
            self.changed.notify_all()


# ---------------------------------------------------------------------------------------------------------------------
# The WS-Management operations


class Request:
    """The parts of a WS-Management request the operations use."""

    def __init__(self, xml: bytes, user: str, client_ip: str, machine: str) -> None:
        self.root = ET.fromstring(xml)
        header = self.root.find("s:Header", NS)
        self.body = self.root.find("s:Body", NS)
        if header is None or self.body is None:
            raise WSManFault(2150858791, "w:InvalidBody", "The WS-Management service cannot process the request because the request packet does not have a valid SOAP body. ")
        self.user = user
        self.client_ip = client_ip
        self.machine = machine
        self.action = (header.findtext("wsa:Action", "", NS) or "").strip()
        self.message_id = (header.findtext("wsa:MessageID", "", NS) or "").strip()
        self.to = (header.findtext("wsa:To", "", NS) or "").strip()
        self.resource_uri = (header.findtext("wsman:ResourceURI", "", NS) or "").strip()
        self.session_id = (header.findtext("wsmv:SessionId", "", NS) or "").strip().lower()
        self.max_envelope = int((header.findtext("wsman:MaxEnvelopeSize", "", NS) or "153600").strip() or 153600)
        timeout = header.findtext("wsman:OperationTimeout", None, NS)
        self.timeout = 60.0
        if timeout is not None:
            try:
                self.timeout = parse_duration(timeout)
            except ValueError:
                raise bad_timeout(timeout.strip()) from None
            if self.timeout <= 0:
                raise bad_timeout(timeout.strip())
        self.selectors = {s.get("Name", ""): (s.text or "").strip() for s in header.findall("wsman:SelectorSet/wsman:Selector", NS)}
        self.options = {o.get("Name", ""): (o.text or "").strip() for o in header.findall("wsman:OptionSet/wsman:Option", NS)}


def _child(parent: typing.Optional[ET.Element], local: str) -> typing.Optional[ET.Element]:
    """A child by local name, any namespace, any case (the casing of Disconnect's items is unverified)."""
    if parent is None:
        return None
    for c in parent:
        if c.tag.rsplit("}", 1)[-1].lower() == local.lower():
            return c
    return None


class WinRMServer:
    """The shells of every user and the WS-Management operations on them."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.lock = threading.RLock()
        self.shells: typing.Dict[str, Shell] = {}
        self.enumerations: typing.Dict[str, typing.List[str]] = {}
        self.stopping = threading.Event()
        self.reaper = threading.Thread(target=self._reap, name="idle-reaper", daemon=True)
        self.reaper.start()

    # -- bookkeeping --
    def _reap(self) -> None:
        while not self.stopping.wait(0.2):
            now = time.monotonic()
            with self.lock:
                shells = list(self.shells.values())
            for shell in shells:
                with shell.lock:
                    if shell.state == "Disconnected":
                        expired = now - shell.disconnected_at > shell.idle_timeout
                    else:
                        expired = shell.waiting == 0 and now - shell.last_activity > shell.idle_timeout
                if expired:
                    log.info("shell %s idle for %.1f s: deleted", shell.id, shell.idle_timeout)
                    self._remove(shell)

    def _remove(self, shell: Shell) -> None:
        with self.lock:
            self.shells.pop(shell.id, None)
        shell.delete()

    def stop(self) -> None:
        self.stopping.set()
        with self.lock:
            shells = list(self.shells.values())
        for shell in shells:
            self._remove(shell)

    def shell(self, req: Request, allow_disconnected: bool = False) -> Shell:
        shell_id = req.selectors.get("ShellId", "")
        with self.lock:
            shell = self.shells.get(shell_id.upper())
        if shell is None or shell.deleted or shell.owner.lower() != req.user.lower():
            raise shell_not_found(shell_id)
        if not allow_disconnected:
            shell.check_usable()
        shell.touch()
        return shell

    def check_configuration(self, uri: str) -> str:
        if not uri.lower().startswith(PS_URI_PREFIX.lower()) or uri[len(PS_URI_PREFIX):].lower() not in self.config.configurations:
            raise unknown_resource(uri)
        return uri

    def operations(self, user: str) -> int:
        with self.lock:
            mine = [s for s in self.shells.values() if s.owner.lower() == user.lower()]
        running = sum(1 for s in mine for r in list(s.runs.values()) if r.pipeline.state == PSInvocationState.Running)
        return len(mine) + running

    # -- dispatch --
    def handle(self, req: Request) -> typing.Tuple[str, str, str]:
        """(response action, namespace declarations, body) for a request; raises WSManFault."""
        action = req.action
        if action == TRANSFER + "Create":
            return action + "Response", "shell", self.create(req)
        if action == SHELL + "/Command":
            return action + "Response", "shell", self.command(req)
        if action == SHELL + "/Send":
            return action + "Response", "shell", self.send(req)
        if action == SHELL + "/Receive":
            return action + "Response", "receive", self.receive(req)
        if action == SHELL + "/Signal":
            return action + "Response", "shell", self.signal(req)
        if action == TRANSFER + "Delete":
            return action + "Response", "empty", self.delete(req)
        if action == SHELL + "/Disconnect":
            return action + "Response", "empty", self.disconnect(req)
        if action == SHELL + "/Reconnect":
            return action + "Response", "empty", self.reconnect(req)
        if action == SHELL + "/Connect":
            return action + "Response", "shell", self.connect(req)
        if action == ENUMERATION + "Enumerate":
            return action + "Response", "enumerate", self.enumerate(req)
        if action == ENUMERATION + "Pull":
            return action + "Response", "enumerate", self.pull(req)
        if action == TRANSFER + "Get":
            return action + "Response", "get", self.get(req)
        if action == TRANSFER + "Put":
            return action + "Response", "get", self.put(req)
        raise WSManFault(ACTION_NOT_SUPPORTED, "a:ActionNotSupported",
                         "The WS-Management service does not support the specified action. ")

    # -- operations --
    def create(self, req: Request) -> str:
        uri = self.check_configuration(req.resource_uri)
        shell_el = req.body.find("rsp:Shell", NS)
        if shell_el is None:
            raise WSManFault(2150858773, "w:InvalidRepresentation", "The WS-Management service cannot identify the format of the object passed to a Put or Create method. ")
        c = self.config
        with self.lock:
            mine = [s for s in self.shells.values() if s.owner.lower() == req.user.lower()]
            others = {s.owner.lower() for s in self.shells.values()} - {req.user.lower()}
            if c.max_concurrent_users is not None and not mine and len(others) >= c.max_concurrent_users:
                raise max_users(c.max_concurrent_users)
            if c.max_shells_per_user is not None and len(mine) >= c.max_shells_per_user:
                raise max_shells(c.max_shells_per_user)
            # Then the session configuration's own quotas (its plugin's Quotas), over the shells of that configuration.
            plugin = c.plugins.get(uri[len(PS_URI_PREFIX):].lower())
            if plugin is not None:
                same = [s for s in self.shells.values() if s.resource_uri.lower() == uri.lower()]
                users = {s.owner.lower() for s in same}
                count = {"MaxShells": len(same),
                         "MaxConcurrentUsers": len(users - {req.user.lower()}) if req.user.lower() not in users else -1,
                         "MaxShellsPerUser": sum(1 for s in same if s.owner.lower() == req.user.lower())}
                for quota, used in count.items():
                    limit = plugin.quotas.get(quota, "")
                    if limit.isdigit() and used >= int(limit):
                        raise plugin_quota(quota, int(limit))
        if c.max_operations_per_user is not None and self.operations(req.user) >= c.max_operations_per_user:
            raise max_operations(c.max_operations_per_user)
        shell_id = (shell_el.get("ShellId") or new_uuid()).upper()
        idle = c.idle_timeout
        idle_el = _child(shell_el, "IdleTimeOut")
        if idle_el is not None and (idle_el.text or "").strip():
            try:
                idle = parse_duration(idle_el.text or "")
            except ValueError:
                raise bad_timeout((idle_el.text or "").strip()) from None
        creation = shell_el.find("pwsh:creationXml", NS)
        profile = req.options.get("WINRS_NOPROFILE", "").upper() != "TRUE"
        shell = Shell(self, shell_id, uri, req.user, req.client_ip, req.session_id, idle, profile)
        if uri[len(PS_URI_PREFIX):].lower() in c.restricted:
            shell.set_language(NO_LANGUAGE, c.visible_commands)
        mode = _child(shell_el, "BufferMode")
        if mode is not None and (mode.text or "").strip().lower() in ("block", "drop"):
            shell.buffer_mode = (mode.text or "").strip().capitalize()
        with self.lock:
            if shell_id in self.shells:
                raise WSManFault(ALREADY_EXISTS, "w:AlreadyExists", "The WS-Management service cannot create the resource because it already exists. ")
            self.shells[shell_id] = shell
        if creation is not None and (creation.text or "").strip():
            with shell.lock:
                shell.feed(NULL_GUID, StreamType.default, base64.b64decode(creation.text or ""))
                shell.flush()
        log.info("shell %s created for %s (%s, %s)", shell_id, req.user, uri, shell.language_mode)
        address = escape(req.to or "")
        return (f"<x:ResourceCreated><a:Address>{address}</a:Address><a:ReferenceParameters><w:ResourceURI>{escape(uri)}</w:ResourceURI>"
                f'<w:SelectorSet><w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet></a:ReferenceParameters>'
                f"</x:ResourceCreated>{shell.shell_xml(full=False)}")

    def command(self, req: Request) -> str:
        shell = self.shell(req)
        line = req.body.find("rsp:CommandLine", NS)
        if line is None:
            raise WSManFault(2150858810, "w:InvalidParameter", "The WS-Management service cannot process the request because a parameter for the operation is not valid. ")
        c = self.config
        if c.max_operations_per_user is not None and self.operations(req.user) >= c.max_operations_per_user:
            raise max_operations(c.max_operations_per_user)
        command_id = (line.get("CommandId") or new_uuid()).upper()
        pid = uuid.UUID(command_id)
        with shell.lock:
            if pid in shell.commands:
                raise WSManFault(ALREADY_EXISTS, "w:AlreadyExists", "The WS-Management service cannot create the resource because it already exists. ")
            run = shell.new_run(pid)
            shell.commands[pid] = Command(command_id, run)
            shell.queues[pid] = collections.deque()
            shell.queued[pid] = 0
            for arg in line.findall("rsp:Arguments", NS):
                if (arg.text or "").strip():
                    shell.feed(pid, StreamType.default, base64.b64decode(arg.text or ""))
            shell.flush()
            shell.start_ready_runs()
        return f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId></rsp:CommandResponse>"

    def send(self, req: Request) -> str:
        shell = self.shell(req)
        with shell.lock:
            for stream in req.body.findall("rsp:Send/rsp:Stream", NS):
                command_id = stream.get("CommandId")
                guid = shell.command(command_id).run.pid if command_id else NULL_GUID
                kind = StreamType.prompt_response if stream.get("Name", "stdin") == "pr" else StreamType.default
                if (stream.text or "").strip():
                    shell.feed(guid, kind, base64.b64decode(stream.text or ""))
            shell.flush()
            shell.start_ready_runs()
        return "<rsp:SendResponse/>"

    def receive(self, req: Request) -> str:
        shell = self.shell(req)
        desired = req.body.find("rsp:Receive/rsp:DesiredStream", NS)
        command_id = desired.get("CommandId") if desired is not None else None
        timeout = min(req.timeout, self.config.max_timeout_ms / 1000)
        budget = min(req.max_envelope, self.config.max_envelope_kb * 1024) - 2048  # base64 characters, envelope aside
        units, state = shell.receive(command_id, timeout, max(budget, 4096))
        attr = f' CommandId="{command_id}"' if command_id else ""
        out = ["<rsp:ReceiveResponse>"]
        out.extend(f'<rsp:Stream Name="stdout"{attr}>{u.b64}</rsp:Stream>' for u in units)
        if state == "Done":
            out.append(f'<rsp:CommandState{attr} State="{COMMAND_STATE}Done"><rsp:ExitCode>0</rsp:ExitCode></rsp:CommandState>')
        elif state is not None:
            out.append(f'<rsp:CommandState{attr} State="{COMMAND_STATE}{state}"/>')
        out.append("</rsp:ReceiveResponse>")
        return "".join(out)

    def signal(self, req: Request) -> str:
        shell = self.shell(req)
        sig = req.body.find("rsp:Signal", NS)
        command_id = sig.get("CommandId") if sig is not None else None
        code = (sig.findtext("rsp:Code", "", NS) if sig is not None else "").strip()
        if command_id:
            with shell.lock:
                cmd = shell.command(command_id)
                if code.lower() in STOP_SIGNALS:
                    # pwsh stops the pipeline (PowerShell.Stop()) before the Signal is answered.
                    shell.stop_run(cmd.run)
                    shell.flush()
                else:
                    # …/signal/terminate, and any other code sent to a command, releases it (the PS plugin's rule).
                    shell.close_pipeline(cmd.run.pid)
                    shell.commands.pop(cmd.run.pid, None)
                    shell.queues.pop(cmd.run.pid, None)
                    shell.queued.pop(cmd.run.pid, None)
                    shell.changed.notify_all()
        return "<rsp:SignalResponse/>"

    def delete(self, req: Request) -> str:
        shell = self.shell(req, allow_disconnected=True)
        log.info("shell %s deleted", shell.id)
        self._remove(shell)
        return ""

    def disconnect(self, req: Request) -> str:
        shell = self.shell(req)
        item = req.body.find("rsp:Disconnect", NS)
        with shell.lock:
            idle = _child(item, "IdleTimeOut")
            if idle is not None and (idle.text or "").strip():
                try:
                    shell.idle_timeout = parse_duration(idle.text or "")
                except ValueError:
                    raise bad_timeout((idle.text or "").strip()) from None
            self._buffer_mode(shell, item)
            shell.state = "Disconnected"
            shell.disconnected_at = time.monotonic()
            shell.changed.notify_all()
            for cmd in shell.commands.values():
                cmd.run.cond.notify_all()
        log.info("shell %s disconnected (idle timeout %.1f s, %s)", shell.id, shell.idle_timeout, shell.buffer_mode)
        return ""

    @staticmethod
    def _buffer_mode(shell: Shell, item: typing.Optional[ET.Element]) -> None:
        mode = _child(item, "BufferMode")
        if mode is not None and (mode.text or "").strip().lower() in ("block", "drop"):
            shell.buffer_mode = (mode.text or "").strip().capitalize()

    def reconnect(self, req: Request) -> str:
        shell = self.shell(req, allow_disconnected=True)
        with shell.lock:
            if shell.state != "Disconnected":
                return ""  # already connected (a per-command Reconnect, or a repeat)
            if shell.session_id != req.session_id:
                raise WSManFault(SESSIONID_MISMATCH, "w:InvalidSelectors",
                                 "The shell was disconnected by a different client session (wsmv:SessionId); use Connect. ")
            self._buffer_mode(shell, req.body.find("rsp:Reconnect", NS))
            shell.state = "Connected"
            shell.touch()
            for cmd in shell.commands.values():
                cmd.run.cond.notify_all()
        log.info("shell %s reconnected", shell.id)
        return ""

    def connect(self, req: Request) -> str:
        shell = self.shell(req, allow_disconnected=True)
        item = req.body.find("rsp:Connect", NS)
        command_id = item.get("CommandId") if item is not None else None
        with shell.lock:
            if command_id:
                shell.check_usable()
                shell.command(command_id)
                return "<rsp:ConnectResponse/>"
            if shell.state != "Disconnected":
                raise WSManFault(CONNECTED_ELSEWHERE, "w:InvalidSelectors",
                                 f"The shell {shell.id} is connected to a different client. Disconnect it first. ")
            data = base64.b64decode((item.findtext("pwsh:connectXml", "", NS) if item is not None else "") or "")
            pool = shell.pool
            shell.flush()  # whatever the pool had queued stays for the pool's Receive
            counters = (pool._fragment_count, pool._ci_count)
            pool._change_state(RunspacePoolState.Disconnected, emit=False)
            pool.connect()  # psrpcore: Connecting; it restarts the object ids at 1, Windows continues them
            pool._fragment_count, pool._ci_count = counters
            pool._incoming_fragments.clear()
            pool._receive_buffer = bytearray()
            pool.prepare_message(pool.our_capability)  # psrpcore does not queue it for a connecting client
            shell.feed(NULL_GUID, StreamType.default, data)
            answer = bytearray()
            while True:
                payload = pool.data_to_send(FRAGMENT_SIZE)
                if payload is None:
                    break
                answer += payload.data
            # PowerShell's HandlePostConnect: the application private data follows on the pool's next Receive.
            pool.prepare_message(ApplicationPrivateData(ApplicationPrivateData={}))  # HostPool writes the real one
            shell.flush()
            shell.state = "Connected"
            shell.session_id = req.session_id
            shell.client_ip = req.client_ip
            shell.touch()
            for cmd in shell.commands.values():
                cmd.run.cond.notify_all()
        log.info("shell %s connected by a new client", shell.id)
        return ("<rsp:ConnectResponse><rsp:InputStreams>stdin pr</rsp:InputStreams><rsp:OutputStreams>stdout</rsp:OutputStreams>"
                f'<connectResponseXml xmlns="{NS["pwsh"]}">{base64.b64encode(bytes(answer)).decode()}</connectResponseXml></rsp:ConnectResponse>')

    def _items(self, req: Request) -> typing.List[str]:
        enum = req.body.find("wsen:Enumerate", NS)
        if req.resource_uri == SHELL:
            with self.lock:
                shells = [s for s in self.shells.values() if s.owner.lower() == req.user.lower() and not s.deleted]
            return [s.shell_xml(full=True) for s in shells]
        if req.resource_uri == SHELL + "/Command":
            wanted = {(s.text or "").strip().upper() for s in enum.findall("wsman:Filter/wsman:SelectorSet/wsman:Selector", NS)} if enum is not None else set()
            items = []
            with self.lock:
                shells = [s for s in self.shells.values() if s.owner.lower() == req.user.lower() and (not wanted or s.id in wanted)]
            for s in shells:
                with s.lock:
                    items += [f'<rsp:Command xmlns:rsp="{SHELL}"><rsp:ShellId>{s.id}</rsp:ShellId><rsp:CommandId>{c.id}</rsp:CommandId></rsp:Command>'
                              for c in s.commands.values()]
            return items
        raise unknown_resource(req.resource_uri)

    def enumerate(self, req: Request) -> str:
        items = self._items(req)
        enum = req.body.find("wsen:Enumerate", NS)
        if enum is not None and enum.find("wsman:OptimizeEnumeration", NS) is not None:
            inner = f"<w:Items>{''.join(items)}</w:Items>" if items else ""
            return f"<n:EnumerateResponse><n:EnumerationContext></n:EnumerationContext>{inner}<w:EndOfSequence/></n:EnumerateResponse>"
        context = "uuid:" + new_uuid()
        with self.lock:
            self.enumerations[context] = items
        return f"<n:EnumerateResponse><n:EnumerationContext>{context}</n:EnumerationContext></n:EnumerateResponse>"

    def pull(self, req: Request) -> str:
        context = (req.body.findtext("wsen:Pull/wsen:EnumerationContext", "", NS) or "").strip()
        with self.lock:
            items = self.enumerations.pop(context, None)
        if items is None:
            raise WSManFault(2150858779, "n:InvalidEnumerationContext",
                             "The WS-Enumeration context in the enumeration is not valid. ", sender=False)
        inner = f"<n:Items>{''.join(items)}</n:Items>" if items else ""
        return f"<n:PullResponse>{inner}<n:EndOfSequence/></n:PullResponse>"

    @staticmethod
    def _plugin_name(req: Request) -> typing.Optional[str]:
        return next((v for k, v in req.selectors.items() if k.lower() == "name"), None)

    def get(self, req: Request) -> str:
        key = config_resource(req.resource_uri)
        if key is not None:
            return self.config.render(key)
        if req.resource_uri.rstrip("/").lower() == PLUGIN_URI.lower():
            return self.config.plugin_xml(self._plugin_name(req))
        if req.resource_uri == SHELL:
            with self.lock:
                shell = self.shells.get(req.selectors.get("ShellId", "").upper())
            if shell is None or shell.deleted or shell.owner.lower() != req.user.lower():
                raise get_not_found()
            return shell.shell_xml(full=True)
        raise unknown_resource(req.resource_uri)

    def put(self, req: Request) -> str:
        """WS-Transfer Put of the configuration: …/config, …/config/service, …/config/winrs, …/config/plugin?Name=."""
        key = config_resource(req.resource_uri)
        plugin = req.resource_uri.rstrip("/").lower() == PLUGIN_URI.lower()
        if key is None and not plugin:
            if req.resource_uri.lower().startswith((SHELL.lower(), PS_URI_PREFIX.lower())):
                raise WSManFault(ACTION_NOT_SUPPORTED, "a:ActionNotSupported",
                                 "The WS-Management service does not support the specified action. ")
            raise unknown_resource(req.resource_uri)
        if not self.config.is_admin(req.user):
            log.info("%s may not change the configuration (not in --admin-users)", req.user)
            raise access_denied()
        item = next(iter(req.body), None)
        if key is not None:
            return self.config.put(key, item, req.user)
        return self.config.put_plugin(self._plugin_name(req), item, req.user)


def envelope(action: str, decls: str, relates_to: str, body: str, activity_id: bool = True) -> bytes:
    """A response envelope laid out as Windows writes it; no ActivityId for Get and Signal (as recorded)."""
    activity = f"<p:ActivityId>{new_uuid()}</p:ActivityId>" if activity_id else ""
    return (
        f'<s:Envelope xml:lang="en-US" {DECLS[decls]}><s:Header><a:Action>{action}</a:Action>'
        f"<a:MessageID>uuid:{new_uuid()}</a:MessageID>{activity}<a:To>{ANONYMOUS}</a:To>"
        f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo></s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode("utf-8")


# ---------------------------------------------------------------------------------------------------------------------
# HTTP: authentication (NTLM, Basic), MS-WSMV message encryption, keep-alive


def load_users(path: str) -> typing.List[typing.Tuple[str, str, str]]:
    """(domain, user, password) from an NTLM_USER_FILE in the `DOMAIN:USER:PASSWORD` form."""
    users = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\r\n").split(":", 2)
            if len(parts) == 3:
                users.append((parts[0], parts[1], parts[2]))
    return users


def _split_user(name: str) -> typing.Tuple[str, str]:
    if "\\" in name:
        domain, user = name.split("\\", 1)
        return domain, user
    if "@" in name:
        user, domain = name.split("@", 1)
        return domain, user
    return "", name


def ntlm_has_bindings(token: bytes) -> bool:
    """Whether an NTLM AUTHENTICATE message carries MsvAvChannelBindings (Relaxed hardening accepts it absent)."""
    from spnego._ntlm_raw.messages import Authenticate, AvId, NTClientChallengeV2

    try:
        auth = Authenticate.unpack(token)
        nt = auth.nt_challenge_response or b""
        if len(nt) <= 24:
            return False
        return AvId.channel_bindings in NTClientChallengeV2.unpack(nt[16:]).av_pairs
    except Exception:
        return True  # let the acceptor judge it


# The DER of the mechanism OIDs a GSS-API InitialContextToken (tag 0x60) starts with (RFC 2743 3.1).
SPNEGO_OID = bytes.fromhex("06062b0601050502")  # 1.3.6.1.5.5.2
def gss_channel_bound(ctx: typing.Any) -> bool:
    """Whether MIT's Kerberos acceptor found the channel binding it was given in the authenticator
    (GSS_C_CHANNEL_BOUND_FLAG in its context's flags): pyspnego's Kerberos context, or its SPNEGO context's chosen one,
    wraps a python-gssapi SecurityContext."""
    import gssapi

    inner = ctx
    for _ in range(3):
        if isinstance(inner, gssapi.SecurityContext):
            return bool(int(inner.actual_flags) & int(gssapi.RequirementFlag.channel_bound))
        inner = getattr(inner, "_context", None)
    return False


KRB5_OIDS = (bytes.fromhex("06092a864886f712010202"), bytes.fromhex("06092a864882f712010202"))  # krb5, MS krb5


def token_mech(token: bytes) -> typing.Optional[str]:
    """What starts a handshake: `ntlm` (a raw NEGOTIATE_MESSAGE), `spnego` (a NegTokenInit), `kerberos` (a raw AP-REQ
    in a GSS-API InitialContextToken), or None for a token that continues one."""
    if token[:8] == b"NTLMSSP\x00" and token[8:12] == b"\x01\x00\x00\x00":
        return "ntlm"
    if token[:1] != b"\x60" or len(token) < 2:
        return None
    at = 2
    if token[1] & 0x80:
        at += token[1] & 0x7F
    oid = token[at : at + 11]
    if oid.startswith(SPNEGO_OID):
        return "spnego"
    if oid in KRB5_OIDS:
        return "kerberos"
    return None


def wrap(ctx: typing.Any, data: bytes, protocol: str = SPNEGO_PROTOCOL) -> bytes:
    """MS-WSMV 2.2.9.1: one multipart/encrypted part, as pypsrp and Windows write it."""
    header, sealed, padding = ctx.wrap_winrm(data)
    return (f"--{BOUNDARY}\r\n\tContent-Type: {protocol}\r\n\tOriginalContent: type=application/soap+xml;"
            f"charset=UTF-8;Length={len(data) + padding}\r\n--{BOUNDARY}\r\n\tContent-Type: application/octet-stream\r\n"
            ).encode() + struct.pack("<i", len(header)) + header + sealed + f"--{BOUNDARY}--\r\n".encode()


def unwrap(ctx: typing.Any, body: bytes, boundary: str) -> bytes:
    parts = [p for p in re.split(rb"--\s*" + re.escape(boundary.encode()) + rb"(?:--)?\r\n", body) if p]
    out = b""
    for i in range(0, len(parts) - 1, 2):
        length = int(re.search(rb"Length=(\d+)", parts[i]).group(1))  # type: ignore[union-attr]
        blob = parts[i + 1].replace(b"\tContent-Type: application/octet-stream\r\n", b"", 1)
        hlen = struct.unpack("<i", blob[:4])[0]
        plain = ctx.unwrap_winrm(blob[4 : 4 + hlen], blob[4 + hlen :])
        if len(plain) != length:
            raise ValueError(f"decrypted {len(plain)} bytes, the part says {length}")
        out += plain
    return out


class Handler(http.server.BaseHTTPRequestHandler):
    """One TCP connection: its authentication (NTLM belongs to the connection) and its requests."""

    protocol_version = "HTTP/1.1"
    server: "HTTPServer"
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(30)
            self.request.do_handshake()  # here, in the connection's thread, not in the accept loop
            self.request.settimeout(None)
        super().setup()
        self.ctx: typing.Any = None  # an NTLM, SPNEGO or Kerberos acceptor in progress or complete
        self.scheme = "Negotiate"  # the HTTP scheme of its tokens: Negotiate, or Kerberos (then sealed as Kerberos)
        self.user: typing.Optional[str] = None  # who authenticated this connection (NTLM, Kerberos)
        self.final_token: typing.Optional[bytes] = None  # SPNEGO's last token or Kerberos' AP-REP, for the next reply

    def log_message(self, fmt: str, *args: typing.Any) -> None:
        log.debug("%s %s", self.address_string(), fmt % args)

    # -- replies --
    def reply(self, status: int, body: bytes = b"", headers: typing.Sequence[typing.Tuple[str, str]] = (),
              content_type: typing.Optional[str] = None) -> None:
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if self.final_token is not None:
            self.send_header("WWW-Authenticate", f"{self.scheme} {base64.b64encode(self.final_token).decode()}")
            self.final_token = None
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def unauthorized(self) -> None:
        cfg = self.server.winrm.config
        headers = []
        if "ntlm" in cfg.auth or "kerberos" in cfg.auth:
            headers.append(("WWW-Authenticate", "Negotiate"))
        if "kerberos" in cfg.auth:
            headers.append(("WWW-Authenticate", "Kerberos"))
        if "basic" in cfg.auth:
            headers.append(("WWW-Authenticate", 'Basic realm="WSMAN"'))
        self.ctx = None
        self.user = None
        self.reply(401, headers=headers)

    def _bindings(self, ntlm_token: typing.Optional[bytes] = None) -> typing.Any:
        """The channel binding the acceptor checks over HTTPS (None: not checked). NTLM under Relaxed hardening:
        only when the AUTHENTICATE message carries one; Kerberos: always (MIT's acceptor, like Windows' Relaxed, lets
        an initiator that sent none through and refuses a wrong one)."""
        cfg = self.server.winrm.config
        if self.server.cbt is None or cfg.cbt_hardening == "None":
            return None
        if ntlm_token is not None and cfg.cbt_hardening != "Strict" and not ntlm_has_bindings(ntlm_token):
            return None
        return spnego.channel_bindings.GssChannelBindings(application_data=self.server.cbt)

    def _accepted(self) -> typing.Optional[str]:
        """After the acceptor completed: the user, or None after a 401 if its mechanism is not enabled (or, under Strict
        hardening over HTTPS, if Kerberos came without the channel binding)."""
        cfg = self.server.winrm.config
        protocol = (self.ctx.negotiated_protocol or "").lower()
        name = "Kerberos" if protocol == "kerberos" else "NTLM"
        if name.lower() not in cfg.auth:
            log.info("%s authentication is not enabled", name)
            self.final_token = None
            self.drain()
            self.unauthorized()
            return None
        bound = ""
        if name == "Kerberos" and self.server.cbt is not None and cfg.cbt_hardening != "None":
            if gss_channel_bound(self.ctx):
                bound = " (channel-bound)"
            elif cfg.cbt_hardening == "Strict":
                # MIT let it through (no binding is not a wrong one); Windows' Strict level does not.
                log.info("Kerberos handshake refused: %s sent no channel binding (CbtHardeningLevel=Strict)",
                         self.ctx.client_principal)
                self.final_token = None
                self.drain()
                self.unauthorized()
                return None
        self.user = self.ctx.client_principal or "?"
        log.info("%s: %s authenticated%s", name, self.user, bound)
        return self.user

    # -- authentication --
    def authenticate(self) -> typing.Optional[str]:
        """The user of this request, or None after a 401 (or an NTLM challenge) was sent."""
        cfg = self.server.winrm.config
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "basic" and "basic" in cfg.auth:
            try:
                name, _, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
            except Exception:
                self.drain()
                self.unauthorized()
                return None
            domain, user = _split_user(name)
            for d, u, p in self.server.users:
                if u.lower() == user.lower() and (not domain or d.lower() == domain.lower()) and p == password:
                    return f"{d}\\{u}" if d else u
            log.info("Basic authentication failed for %r", name)
            self.drain()
            self.unauthorized()
            return None
        gss_schemes = ("negotiate", "ntlm") if "ntlm" in cfg.auth else ()
        gss_schemes += ("negotiate", "kerberos") if "kerberos" in cfg.auth else ()
        if scheme in gss_schemes and value.strip():
            try:
                token = base64.b64decode(value.strip())
            except Exception:
                token = b""
            mech = token_mech(token)
            # A new handshake on this connection: a raw NTLM NEGOTIATE, SPNEGO's NegTokenInit (NTLM or Kerberos inside,
            # which pyspnego's SPNEGO acceptor answers with that mechanism, mechListMIC included), or a raw Kerberos
            # AP-REQ (a GSS-API InitialContextToken, pypsrp's auth="kerberos").
            if mech is not None:
                allowed = {"ntlm": "ntlm", "spnego": "", "kerberos": "kerberos"}[mech]
                if allowed and allowed not in cfg.auth:
                    log.info("a %s handshake is refused: %s is not enabled", mech, allowed)
                    self.drain()
                    self.unauthorized()
                    return None
                self.ctx = spnego.server(protocol={"ntlm": "ntlm", "spnego": "negotiate", "kerberos": "kerberos"}[mech])
                self.scheme = "Kerberos" if scheme == "kerberos" else "Negotiate"
                self.user = None
                # NTLM's binding is in its AUTHENTICATE message (the next token); Kerberos' in this AP-REQ.
                bindings = self._bindings() if mech != "ntlm" and "kerberos" in cfg.auth else None
                try:
                    answer = self.ctx.step(token, channel_bindings=bindings) if bindings else self.ctx.step(token)
                except Exception as e:
                    log.info("%s handshake refused: %s", {"ntlm": "NTLM", "spnego": "SPNEGO", "kerberos": "Kerberos"}[mech], e, exc_info=log.isEnabledFor(logging.DEBUG))
                    self.drain()
                    self.unauthorized()
                    return None
                if not self.ctx.complete:
                    self.drain()
                    self.reply(401, headers=[("WWW-Authenticate", f"{self.scheme} {base64.b64encode(answer or b'').decode()}")])
                    return None
                # Kerberos completes at once: its AP-REP comes back with this request's answer.
                self.final_token = answer or None
                return self._accepted()
            if self.ctx is None or self.ctx.complete:
                self.drain()
                self.unauthorized()
                return None
            try:
                final = self.ctx.step(token, channel_bindings=self._bindings(token))
            except Exception as e:
                log.info("%s authentication failed: %s", "NTLM" if token.startswith(b"NTLMSSP\x00") else "SPNEGO", e)
                self.drain()
                self.unauthorized()
                return None
            if final:  # SPNEGO's last token (accept-completed, mechListMIC) goes back with this request's answer
                self.final_token = final
            if not self.ctx.complete:
                self.drain()
                self.final_token = None
                self.reply(401, headers=[("WWW-Authenticate", f"{self.scheme} {base64.b64encode(final or b'').decode()}")])
                return None
            return self._accepted()
        if self.user is not None and self.ctx is not None and self.ctx.complete:
            return self.user  # this connection is authenticated
        self.drain()
        self.unauthorized()
        return None

    def drain(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)

    # -- requests --
    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.split("?", 1)[0].rstrip("/").lower() != "/wsman":
            self.drain()
            self.reply(404)
            return
        user = self.authenticate()
        if user is None:
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        content_type = self.headers.get("Content-Type", "")
        encrypted = content_type.lower().startswith("multipart/encrypted")
        if encrypted:
            m = re.search(r'boundary="?([^";]+)"?', content_type)
            if self.ctx is None or not self.ctx.complete or m is None:
                self.unauthorized()
                return
            try:
                body = unwrap(self.ctx, body, m.group(1))
            except Exception as e:
                log.warning("cannot decrypt a request: %s", e)
                self.reply(400)
                return
        elif not body:
            self.reply(200)  # the empty POST that sets up the context before encrypted messages
            return
        elif not self.server.tls and not self.server.winrm.config.allow_unencrypted:
            log.info("unencrypted request over HTTP refused (AllowUnencrypted=false)")
            self.unauthorized()
            return
        status, answer = self.process(body, user)
        if encrypted:
            protocol = KERBEROS_PROTOCOL if self.scheme == "Kerberos" else SPNEGO_PROTOCOL
            self.reply(status, wrap(self.ctx, answer, protocol),
                       content_type=f'multipart/encrypted;protocol="{protocol}";boundary="{BOUNDARY}"')
        else:
            self.reply(status, answer, content_type="application/soap+xml;charset=UTF-8")

    def process(self, xml: bytes, user: str) -> typing.Tuple[int, bytes]:
        machine = (self.headers.get("Host") or "localhost").rsplit(":", 1)[0].strip("[]")
        relates = ""
        quiet = False
        try:
            try:
                root_id = re.search(rb"<(?:\w+:)?MessageID[^>]*>([^<]*)<", xml)
                relates = root_id.group(1).decode().strip() if root_id else ""
                req = Request(xml, user, self.client_address[0], machine)
            except ET.ParseError as e:
                log.warning("malformed request: %s", e)
                return 400, b""
            log.debug("<- %s %s %s", req.action.rsplit("/", 1)[-1], req.selectors, xml[:2000])
            limit = self.server.winrm.config.max_envelope_kb * 1024
            if len(xml) > limit:
                raise envelope_too_large(len(xml), limit)
            # Get and Signal are recorded without ActivityId (Put, unrecorded, is answered like Get)
            quiet = req.action in (TRANSFER + "Get", TRANSFER + "Put", SHELL + "/Signal")
            action, decls, body = self.server.winrm.handle(req)
            answer = envelope(action, decls, req.message_id, body, not quiet)
            log.debug("-> %s %s", action.rsplit("/", 1)[-1], answer[:2000])
            return 200, answer
        except WSManFault as fault:
            log.info("fault %d: %s", fault.code, fault.message)
            return 500, envelope(FAULT_ACTION, "fault", relates, fault.body(machine), not quiet)
        except Exception:
            log.exception("internal error")
            fault = WSManFault(1359, "w:InternalError", "The WS-Management service cannot process the request. An internal error occurred. ", sender=False)
            return 500, envelope(FAULT_ACTION, "fault", relates, fault.body(machine))


class HTTPServer(http.server.ThreadingHTTPServer):
    """Threads per connection; TLS handshakes happen in the connection's thread, not the accept loop."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: typing.Tuple[str, int], winrm: WinRMServer, users: typing.List[typing.Tuple[str, str, str]],
                 tls: typing.Optional[ssl.SSLContext], cbt: typing.Optional[bytes]) -> None:
        super().__init__(address, Handler)
        self.winrm = winrm
        self.users = users
        self.tls = tls
        self.cbt = cbt  # tls-server-end-point channel binding data

    def get_request(self) -> typing.Tuple[socket.socket, typing.Any]:
        sock, addr = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request: typing.Any, client_address: typing.Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


def self_signed(directory: str, host: str) -> typing.Tuple[str, str, bytes]:
    """A certificate for `host` made now: (cert path, key path, channel binding application data)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30)).add_extension(x509.SubjectAlternativeName([alt]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path = os.path.join(directory, "winrm_host.crt")
    key_path = os.path.join(directory, "winrm_host.key")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
    return cert_path, key_path, cbt_data(cert.public_bytes(serialization.Encoding.DER))


def cbt_data(der: bytes) -> bytes:
    """RFC 5929 tls-server-end-point: the certificate's hash (SHA-256 for MD5/SHA-1 signatures)."""
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    algorithm = cert.signature_hash_algorithm
    name = algorithm.name if algorithm is not None and algorithm.name not in ("md5", "sha1") else "sha256"
    return b"tls-server-end-point:" + hashlib.new(name, der).digest()


# ---------------------------------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: typing.Optional[typing.Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="psgate's WS-Management (WinRM) PowerShell Remoting test peer")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=5985, help="port (0: any free one; the ready line says which)")
    p.add_argument("--tls", action="store_true", help="HTTPS with a self-signed certificate made at start")
    p.add_argument("--cert", help="PEM certificate instead of a self-signed one (with --key)")
    p.add_argument("--key", help="PEM private key for --cert")
    p.add_argument("--cert-out", help="with --tls: also write the certificate served (PEM) to this file")
    p.add_argument("--auth", default="ntlm",
                   help="comma-separated: ntlm (offered as Negotiate), kerberos (offered as Negotiate and Kerberos; needs "
                        "--keytab), basic (default ntlm)")
    p.add_argument("--keytab", default=os.environ.get("KRB5_KTNAME"),
                   help="with --auth kerberos: the keytab of the HTTP/ and WSMAN/ services (default $KRB5_KTNAME)")
    p.add_argument("--krb5-config", default=os.environ.get("KRB5_CONFIG"),
                   help="with --auth kerberos: the krb5.conf of the realm (default $KRB5_CONFIG; see tests/peers/kdc.py)")
    p.add_argument("--user", action="append", default=[], help="DOMAIN\\USER:PASSWORD (repeatable)")
    p.add_argument("--user-file", default=os.environ.get("NTLM_USER_FILE"),
                   help="NTLM_USER_FILE with DOMAIN:USER:PASSWORD lines (default $NTLM_USER_FILE)")
    p.add_argument("--allow-unencrypted", action="store_true", help="accept plain SOAP over HTTP (AllowUnencrypted)")
    p.add_argument("--cbt-hardening", choices=["None", "Relaxed", "Strict"], default="Relaxed",
                   help="channel binding over HTTPS (default Relaxed, as Windows: a wrong one is refused, a missing "
                        "one passes); Strict: NTLM and Kerberos must carry it")
    p.add_argument("--configuration", action="append", help="session configuration names (default Microsoft.PowerShell, PowerShell.7)")
    p.add_argument("--restricted-configuration", action="append", metavar="NAME",
                   help="a NoLanguage session configuration, like JEA's RestrictedRemoteServer (repeatable): scripts "
                        "fail with ScriptsNotAllowed, only --visible-commands run")
    p.add_argument("--visible-commands", metavar="A,B,…",
                   help="the commands a --restricted-configuration exposes (default: Get-Command, Get-FormatData, "
                        "Clear-Host, Select-Object, Get-Help, Measure-Object, Out-Default, Exit-PSSession, Get-Service, "
                        "Get-Process); a module name (ActiveDirectory, BenchModule) stands for its commands, "
                        "RestrictedRemoteServer for that list; +NAME adds to the default list")
    p.add_argument("--idle-timeout", type=float, default=7200.0, help="default shell IdleTimeout in seconds (7200)")
    p.add_argument("--max-envelope-kb", type=int, default=500, help="MaxEnvelopeSizekb (500)")
    p.add_argument("--max-timeout-ms", type=int, default=60000, help="MaxTimeoutms (60000)")
    p.add_argument("--buffer-bytes", type=int, default=4 * 1024 * 1024, help="undelivered output per command before Block/Drop applies")
    p.add_argument("--max-shells-per-user", type=int,
                   help="Winrs/MaxShellsPerUser quota (default unlimited; a Put of winrm/config/winrs changes it)")
    p.add_argument("--max-concurrent-users", type=int,
                   help="Winrs/MaxConcurrentUsers quota (default unlimited; a Put of winrm/config/winrs changes it)")
    p.add_argument("--max-concurrent-operations-per-user", type=int,
                   help="Service/MaxConcurrentOperationsPerUser quota (Get shows 1500 by default, then not enforced; a "
                        "Put of winrm/config/service sets it)")
    p.add_argument("--admin-users", metavar="A,B",
                   help="the users who may change the configuration (WS-Transfer Put of winrm/config, …/service, "
                        "…/winrs, …/plugin?Name=); anyone else gets Access is denied (code 5). DOMAIN\\USER or "
                        "USER@REALM match exactly, USER in any domain (default: every authenticated user)")
    p.add_argument("--gpo-setting", action="append", metavar="PATH=VALUE",
                   help="a setting Group Policy controls (repeatable), its path under winrm/config, e.g. "
                        "Winrs/MaxShellsPerUser=5 or Service/Auth/Basic=false: the value is fixed and effective, Get "
                        'marks it Source="GPO", a Put that changes it is refused (2150858890)')
    p.add_argument("--fast", action="store_true", help="Get-Objects repeats one serialized object (benchmarks; also WINRM_HOST_FAST=1)")
    p.add_argument("--log", default=os.environ.get("WINRM_HOST_LOG"), help="log file (default none)")
    p.add_argument("--debug", action="store_true", help="log every request and response")
    return p.parse_args(argv)


def main(argv: typing.Optional[typing.Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.log:
        logging.basicConfig(filename=args.log, level=logging.DEBUG if args.debug else logging.INFO,
                            format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s")
    else:
        logging.getLogger().addHandler(logging.NullHandler())
    config = Config(args)
    workdir = tempfile.mkdtemp(prefix="winrm_host-")
    users: typing.List[typing.Tuple[str, str, str]] = []
    if args.user_file:
        users += load_users(args.user_file)
    for entry in args.user:
        name, _, password = entry.partition(":")
        domain, user = _split_user(name)
        users.append((domain, user, password))
    if not users and config.auth & {"ntlm", "basic"}:
        sys.stderr.write("winrm_host: no users (--user DOMAIN\\USER:PASSWORD or --user-file)\n")
        return 2
    user_file = os.path.join(workdir, "ntlm_users")
    with open(user_file, "w", encoding="utf-8") as f:
        f.write("".join(f"{d}:{u}:{p}\n" for d, u, p in users))
    os.environ["NTLM_USER_FILE"] = user_file  # pyspnego's NTLM acceptor reads its users from here
    if "kerberos" in config.auth:
        # pyspnego's Kerberos acceptor is MIT's GSSAPI (python-gssapi): any service principal of the keytab is accepted.
        if not args.keytab:
            sys.stderr.write("winrm_host: --auth kerberos needs --keytab (or KRB5_KTNAME)\n")
            return 2
        os.environ["KRB5_KTNAME"] = args.keytab if ":" in args.keytab else f"FILE:{args.keytab}"
        if args.krb5_config:
            os.environ["KRB5_CONFIG"] = args.krb5_config
        from spnego._gss import GSSAPI_IMP_ERR, HAS_GSSAPI, HAS_IOV

        if not HAS_GSSAPI or not HAS_IOV:
            sys.stderr.write(f"winrm_host: Kerberos needs python-gssapi with IOV and krb5 ({GSSAPI_IMP_ERR}; "
                             "scripts/setup.sh --test installs them)\n")
            return 2
        import gssapi

        # A refused AP-REQ raises at once with MIT's reason (a wrong channel binding, an unknown key version), rather
        # than hiding it behind a KRB-ERROR token: the log then says why, and the client gets a plain 401.
        gssapi.SecurityContext.__DEFER_STEP_ERRORS__ = False
    else:
        # No keytab: SPNEGO's acceptor cannot take Kerberos (its GSSAPI credential fails), so it picks NTLM even from a
        # client that lists Kerberos first, as a server outside a domain does.
        os.environ["KRB5_KTNAME"] = "FILE:" + os.path.join(workdir, "no.keytab")
    tls = None
    cbt = None
    if args.tls:
        if args.cert:
            cert_path, key_path = args.cert, args.key or args.cert
            with open(cert_path, "rb") as f:
                der = ssl.PEM_cert_to_DER_cert(f.read().decode())
            cbt = cbt_data(der)
        else:
            cert_path, key_path, cbt = self_signed(workdir, args.host)
        if args.cert_out:
            shutil.copyfile(cert_path, args.cert_out)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert_path, key_path)
    winrm = WinRMServer(config)
    httpd = HTTPServer((args.host, args.port), winrm, users, tls, cbt)
    port = httpd.server_address[1]
    scheme = "https" if tls else "http"
    log.info("winrm_host listening on %s://%s:%d/wsman (auth %s)", scheme, args.host, port, ",".join(sorted(config.auth)))
    print(f"winrm_host listening on {scheme}://{args.host}:{port}/wsman", flush=True)
    try:
        httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        winrm.stop()
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
