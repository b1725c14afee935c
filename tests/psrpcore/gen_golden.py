"""Writes the CLIXML golden cases in shared/test_data/golden/ with psrpcore (an independent implementation).

    $PSGATE_PYTHON tests/psrpcore/gen_golden.py

Each case is `<case>.xml` (what psrpcore 0.3.1 serializes: one PSRP message body, or an `<Objs>` document for
`doc_*` cases) and `<case>.json` (the expected canonical JSON, one line per object: what psrpcore reads back from
that XML, mapped by canon.py). The output is deterministic: same psrpcore, same files.

Values are built with explicit psrpcore types. Some psrpcore 0.3.1 serializer bugs are avoided on purpose (each
would write XML that means something else than the value built): TimeSpans with whole seconds that are a multiple
of 10 and no fraction (`PT30S` is written `PT3S`), years below 1000 (written without zero padding), decimals
that Python prints with an exponent (`1E-7`), Python ints beyond Int32 (written as `<I32>`), type names or
ToString text holding `_x` (psrpcore escapes neither `<T>` nor `<ToString>`), lone surrogates, an empty
progress-record field (read back as absent), a document without objects (psrpcore cannot read `<Objs … />`).
`check_intent` catches the first kind: every primitive in a checked case must read back as the value built.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import json
import sys
import typing
import uuid
from pathlib import Path
from xml.etree import ElementTree

sys.path.insert(0, str(Path(__file__).resolve().parent))

from psrpcore.types import (  # noqa: E402
    ClixmlStream,
    ConsoleColor,
    ErrorCategory,
    ErrorCategoryInfo,
    ErrorRecord,
    ProgressRecord,
    ProgressRecordType,
    PSByte,
    PSByteArray,
    PSChar,
    PSCredentialUIOptions,
    PSCustomObject,
    PSDateTime,
    PSDecimal,
    PSDict,
    PSDouble,
    PSDuration,
    PSEnumBase,
    PSFlagBase,
    PSGuid,
    PSIEnumerable,
    PSInt,
    PSInt16,
    PSInt64,
    PSList,
    PSNoteProperty,
    PSObject,
    PSQueue,
    PSSByte,
    PSScriptBlock,
    PSSecureString,
    PSSingle,
    PSStack,
    PSString,
    PSType,
    PSUInt,
    PSUInt16,
    PSUInt64,
    PSUri,
    PSVersion,
    PSXml,
    RemoteStreamOptions,
    add_note_property,
)
from psrpcore.types._serializer import serialize, serialize_clixml  # noqa: E402

import canon  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "shared" / "test_data" / "golden"

# psrpcore's own escaping vector (tests/conftest.py): a control char, `_x0000_` look-alikes in both x cases, a
# character outside the BMP (a surrogate pair in UTF-16) and non-ASCII text.
COMPLEX_STRING = "treble clef\n _x0000_ _X0000_ \U0001d11e café"

UTC = datetime.timezone.utc
IST = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
PST = datetime.timezone(datetime.timedelta(hours=-8))


# Types used only by the goldens (rehydrate=False keeps them out of psrpcore's type registry).
@PSType(["Psgate.Test.Level"], rehydrate=False)
class Level(PSEnumBase, base_type=PSUInt):
    Low = 1
    High = 0xFFFFFFFF


@PSType(["Psgate.Test.Access"], rehydrate=False)
class Access(PSFlagBase, base_type=PSInt64):
    none = 0
    Read = 1
    Write = 2
    Huge = 1 << 40


@PSType(
    ["Psgate.Test.Item", "Psgate.Test.ItemBase"],
    adapted_properties=[PSNoteProperty("Name"), PSNoteProperty("Length", ps_type=PSInt64)],
    extended_properties=[PSNoteProperty("Note")],
    rehydrate=False,
)
class Item(PSObject):
    pass


@PSType(
    ["System.Management.Automation.RuntimeException", "System.SystemException", "System.Exception"],
    adapted_properties=[
        PSNoteProperty("Message"),
        PSNoteProperty("HResult", ps_type=PSInt),
        PSNoteProperty("Data"),
        PSNoteProperty("InnerException"),
    ],
    rehydrate=False,
)
class RuntimeException(PSObject):
    pass


@dataclasses.dataclass
class Case:
    name: str
    build: typing.Callable[[], typing.Any]  # a value, or for a document a list of (value, ClixmlStream | None)
    document: bool = False
    clixml_header: bool = False
    # Every primitive at the top level or directly in a top-level list must read back as built.
    check_intent: bool = True


def obj(type_names: typing.Optional[list[str]] = None, to_string: typing.Optional[str] = None, **props: typing.Any) -> PSObject:
    o = PSObject()
    o.PSObject.type_names = list(type_names or [])
    if to_string is not None:
        o.PSObject.to_string = to_string
    for k, v in props.items():
        add_note_property(o, k, v)
    return o


def extended(value: PSObject, **notes: typing.Any) -> PSObject:
    for k, v in notes.items():
        add_note_property(value, k, v)
    return value


def progress(**kw: typing.Any) -> ProgressRecord:
    return ProgressRecord(**kw)


def strings() -> list[typing.Any]:
    c0 = "".join(chr(i) for i in range(0x20))
    c1 = "".join(chr(i) for i in range(0x7F, 0xA0))
    return [
        PSString(s)
        for s in [
            "",
            " ",
            "  padded  ",
            "\t\r\n",
            "\r\n\r\n",
            COMPLEX_STRING,
            c0,
            c1,
            "\xa0 no-break space, \u2028 line sep, \ufeff zero-width no-break",
            "<tag attr=\"v\">&amp; & ]]> '</tag>",
            "_",
            "x_",
            "_x",
            "_X",
            "_x0000_",
            "_X0000_",
            "_x005F_",
            "_x005f_x0041_",
            "__x0041__",
            "_x12_ _xZZZZ_ _x1234",
            "_xD83D_",
            "\U0001F600",
            "a\U0001F600b\U0010FFFF",
            "é ü 漢字 Ω",
            "C:\\a_x\r\n",
        ]
    ]


def cases() -> list[Case]:
    out = [
        # --- Each primitive alone, as a whole message (MS-PSRP 2.2.5.1 / protocol.md §2.1).
        Case("prim_nil", lambda: None),
        Case("prim_bool_true", lambda: True),
        Case("prim_bool_false", lambda: False),
        Case("prim_string", lambda: PSString(COMPLEX_STRING)),
        Case("prim_string_empty", lambda: PSString("")),
        Case("prim_char", lambda: PSChar("a")),
        Case("prim_byte", lambda: PSByte(255)),
        Case("prim_sbyte", lambda: PSSByte(-128)),
        Case("prim_uint16", lambda: PSUInt16(65535)),
        Case("prim_int16", lambda: PSInt16(-32768)),
        Case("prim_uint32", lambda: PSUInt(4294967295)),
        Case("prim_int32", lambda: PSInt(-2147483648)),
        Case("prim_uint64", lambda: PSUInt64(18446744073709551615)),
        Case("prim_int64", lambda: PSInt64(-9223372036854775808)),
        Case("prim_single", lambda: PSSingle(1.5)),
        Case("prim_double", lambda: PSDouble(0.1 + 0.2)),
        Case("prim_decimal", lambda: PSDecimal("1.10")),
        Case("prim_datetime", lambda: PSDateTime(2024, 5, 1, 10, 0, 0, 500000, tzinfo=UTC)),
        Case("prim_timespan", lambda: PSDuration(seconds=9, microseconds=26902, nanoseconds=600)),
        Case("prim_bytes", lambda: PSByteArray(b"\x01\x02\x03")),
        Case("prim_guid", lambda: PSGuid("0F0E0D0C-0B0A-0908-0706-050403020100")),
        Case("prim_version", lambda: PSVersion("1.1.0.1")),
        Case("prim_uri", lambda: PSUri("http://host:5985/wsman?a=1&b=_x")),
        Case("prim_xml", lambda: PSXml('<?xml version="1.0"?><a b="c">d &amp; e</a>')),
        Case("prim_scriptblock", lambda: PSScriptBlock("param($a)\r\n$a | % { \"_x$_\" }")),
        Case("prim_securestring", lambda: PSSecureString("P@ssw0rd \U0001F600")),
        Case(
            "prim_progress",
            lambda: progress(
                Activity="Copying <files> & _x0041_",
                ActivityId=1,
                StatusDescription="3 of 10\r\n",
                CurrentOperation="file_x.txt",
                ParentActivityId=0,
                PercentComplete=30,
                SecondsRemaining=12,
                RecordType=ProgressRecordType.Processing,
            ),
        ),
        Case(
            "prim_progress_completed",
            lambda: progress(Activity="Done", ActivityId=2147483647, StatusDescription=" ", RecordType=ProgressRecordType.Completed),
        ),
        # NaN on its own: psrpcore writes it `NAN` (Python's repr upper-cased); .NET Core reads any case.
        Case("prim_double_nan", lambda: PSDouble(float("nan"))),
        Case("prim_single_nan", lambda: PSSingle(float("nan"))),
        # --- Edge values, a list each.
        Case(
            "edge_integers",
            lambda: [
                PSSByte(-128), PSSByte(127), PSByte(0), PSByte(255),
                PSInt16(-32768), PSInt16(32767), PSUInt16(0), PSUInt16(65535),
                PSInt(-2147483648), PSInt(2147483647), PSInt(0), PSUInt(0), PSUInt(4294967295),
                PSInt64(-9223372036854775808), PSInt64(9223372036854775807), PSUInt64(0), PSUInt64(18446744073709551615),
            ],
        ),
        Case("edge_chars", lambda: [PSChar(c) for c in (0, 9, 10, 0x20, 0x5F, 0x78, 0x7F, 0xE9, 0xD83D, 0xDE00, 0xFFFE, 0xFFFF)]),
        Case(
            "edge_doubles",
            lambda: [
                PSDouble(x)
                for x in (
                    0.0, -0.0, 1.0, -2.0, 1.5, 0.1 + 0.2, 1e15, 1e16, 123456789.123, 1e-5, 1e-7,
                    1.7976931348623157e308, -1.7976931348623157e308, 2.2250738585072014e-308, 5e-324,
                    float("inf"), float("-inf"),
                )
            ],
        ),
        Case(
            "edge_singles",
            lambda: [
                PSSingle(x)
                for x in (
                    0.0, -0.0, 1.0, 0.1, 1.0 / 3.0, 16777217.0, 1e7, 1e-7, 3.4028234663852886e38,
                    -3.4028234663852886e38, 1.1754943508222875e-38, 1.401298464324817e-45, float("inf"), float("-inf"),
                )
            ],
        ),
        Case(
            "edge_decimals",
            lambda: [
                PSDecimal(d)
                for d in (
                    "0", "1", "-1.5", "1.10", "0.000001", "123456789.123456789",
                    "79228162514264337593543950335", "-79228162514264337593543950335",
                    "7.9228162514264337593543950335",
                )
            ],
        ),
        Case(
            "edge_datetimes",
            lambda: [
                PSDateTime(2024, 5, 1, 10, 0, 0, tzinfo=UTC),
                PSDateTime(2024, 5, 1, 10, 0, 0, 500000, tzinfo=UTC),
                PSDateTime(2008, 4, 11, 10, 42, 32, 273199, tzinfo=PST, nanosecond=300),
                PSDateTime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=IST, nanosecond=900),
                PSDateTime(2024, 5, 1, 10, 0, 0, 0, tzinfo=UTC, nanosecond=100),
                PSDateTime(2024, 5, 1, 10, 0, 0, 1),
                PSDateTime(2021, 1, 1),
                PSDateTime(1000, 1, 1),
                PSDateTime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC, nanosecond=900),
                PSDateTime(2024, 5, 1, 10, 0, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=14))),
                PSDateTime(2024, 5, 1, 10, 0, 0, tzinfo=datetime.timezone(-datetime.timedelta(hours=12))),
            ],
        ),
        Case(
            "edge_timespans",
            lambda: [
                PSDuration(0),
                PSDuration(nanoseconds=100),
                PSDuration(seconds=1),
                PSDuration(seconds=-1),
                PSDuration(minutes=1, seconds=31),
                PSDuration(hours=1),
                PSDuration(days=1),
                PSDuration(days=1, hours=2),
                PSDuration(days=-3, hours=-4, minutes=-5, seconds=-6, microseconds=-700000),
                PSDuration(days=400, seconds=59, microseconds=999999, nanoseconds=900),
                PSDuration(nanoseconds=922337203685477580700),  # TimeSpan.MaxValue
                PSDuration(nanoseconds=-922337203685477580800),  # TimeSpan.MinValue
            ],
        ),
        Case("edge_bytes", lambda: [PSByteArray(b""), PSByteArray(b"\x00"), PSByteArray(bytes(range(256)))]),
        Case(
            "edge_guids",
            lambda: [
                PSGuid(int=0),
                PSGuid(int=(1 << 128) - 1),
                PSGuid("00112233-4455-6677-8899-AABBCCDDEEFF"),
                PSGuid(uuid.UUID("76056a84-51dc-4f24-9262-ca2a55464b2b")),
            ],
        ),
        Case(
            "edge_versions",
            lambda: [PSVersion(v) for v in ("0.0", "2.3", "1.1.0.1", "10.0.17763", "2147483647.2147483647.2147483647.2147483647")],
        ),
        Case("edge_strings", strings),
        Case("edge_string_likes", lambda: [PSUri("https://h/p?q=_x0041_"), PSXml("<a>\u0001</a>"), PSScriptBlock(COMPLEX_STRING), PSUri(""), PSXml(""), PSScriptBlock("")]),
        Case(
            "edge_securestrings",
            lambda: [PSSecureString(""), PSSecureString("p"), PSSecureString("a longer secret, past one AES block: \U0001F600")],
        ),
        Case("edge_nil_bool_mix", lambda: [None, True, False, None, PSString("")]),
        # --- Enums and flags (type names, ToString, the underlying integer tag).
        Case(
            "enums",
            lambda: [
                ConsoleColor.Red,
                ConsoleColor.Blue,
                ConsoleColor.Red,  # the same enum value twice: psrpcore writes a <Ref>
                Level.High,
                PSCredentialUIOptions(0),
                RemoteStreamOptions(15),
                Access.Read | Access.Huge,
            ],
            check_intent=False,
        ),
        # --- Containers.
        Case("list_empty", lambda: PSList()),
        Case("list_nested", lambda: [PSInt(1), [PSString("a"), [PSString("b"), []]], None, PSDict()]),
        Case("ienumerable", lambda: PSIEnumerable([PSInt(1), PSString("two"), None])),
        Case("stack", lambda: PSStack([PSInt(3), PSInt(2), PSInt(1)])),
        Case("queue", lambda: _queue([PSString("first"), PSInt(2), PSString("last")])),
        Case("dict_string_keys", lambda: {"b": PSInt(1), "a": PSString("x"), "": None, "_x0041_": [PSInt(1)]}),
        Case(
            "dict_nonstring_keys",
            lambda: PSDict(
                {
                    PSInt(1): PSString("int"),
                    PSInt64(2): PSString("long"),
                    PSChar("k"): PSString("char"),
                    PSGuid(int=5): PSString("guid"),
                    PSDateTime(2024, 1, 2, tzinfo=UTC): PSString("date"),
                    PSDouble(1.5): PSString("double"),
                    ConsoleColor.Green: PSString("enum"),
                    obj(["Psgate.Test.Key"], Id=PSInt(7)): PSString("object"),
                }
            ),
            check_intent=False,
        ),
        Case("dict_nested", lambda: {"inner": {"deeper": {"list": [PSInt(1), {"x": None}]}}, "empty": {}}),
        # --- Objects.
        Case("obj_no_type_names", _session_capability),
        Case("obj_empty", lambda: obj()),
        Case("obj_custom", lambda: PSCustomObject(Name=PSString("n"), Count=PSInt(2), When=PSDateTime(2024, 5, 1, tzinfo=UTC), Nothing=None)),
        Case("obj_to_string", lambda: obj(["Psgate.Test.Named"], to_string="line1\nline2 <b> & \U0001F600", Value=PSInt(1))),
        Case("obj_property_names", _odd_property_names),
        Case("obj_adapted_and_extended", _adapted_and_extended),
        Case("obj_nested_type_names", _nested),
        Case("obj_tnref_reuse", lambda: [PSCustomObject(I=PSInt(i)) for i in range(3)] + [obj(["Psgate.Test.Other"], I=PSInt(9))]),
        Case("obj_same_twice", _same_twice),
        Case("obj_deserialized_names", _deserialized),
        Case("obj_progress_holder", _progress_holder),
        Case("obj_error_record", _error_record),
        Case("obj_error_record_deserialized", _error_record_deserialized),
        Case("obj_credential_like", lambda: PSCustomObject(UserName=PSString("DOMAIN\\user"), Password=PSSecureString("pw"))),
        # --- Extended primitives (a primitive wrapped in <Obj> with note properties).
        Case("ext_string", lambda: extended(PSString("hello"), Note=PSString("n"), Number=PSInt(1))),
        Case("ext_string_empty", lambda: extended(PSString(""), Empty=True)),
        Case(
            "ext_primitives",
            lambda: [
                extended(PSInt(5), Unit=PSString("items")),
                extended(PSInt64(-1), Big=True),
                extended(PSDateTime(2024, 5, 1, tzinfo=UTC), Zone=PSString("UTC")),
                extended(PSGuid(int=1), Kind=PSString("id")),
                extended(PSByteArray(b"ab"), Size=PSInt(2)),
                extended(PSDouble(2.5), Rounded=PSInt(3)),
                extended(PSVersion("5.1"), Edition=PSString("Desktop")),
                extended(PSDuration(seconds=5), Name=PSString("five")),
                extended(PSChar("z"), Code=PSInt(122)),
                extended(PSUri("http://x"), Host=PSString("x")),
            ],
            check_intent=False,
        ),
        # --- Documents (serialize_clixml): stream attributes, references across objects, the pwsh header.
        Case(
            "doc_streams",
            lambda: [
                (PSString("plain output"), None),
                (PSInt(42), ClixmlStream.OUTPUT),
                (PSString("an error\r\n"), ClixmlStream.ERROR),
                (PSString("debug"), ClixmlStream.DEBUG),
                (PSString("verbose"), ClixmlStream.VERBOSE),
                (PSString("warning"), ClixmlStream.WARNING),
                (progress(Activity="a", ActivityId=1, StatusDescription="s"), ClixmlStream.PROGRESS),
                (PSString("information"), ClixmlStream.INFORMATION),
                ([PSInt(1), PSInt(2)], None),
            ],
            document=True,
        ),
        Case("doc_shared_refs", _doc_shared_refs, document=True, check_intent=False),
        Case(
            "doc_clixml_header",
            lambda: [(PSCustomObject(SourceId=PSInt64(1), Record=progress(Activity="Preparing", ActivityId=0, StatusDescription="x")), ClixmlStream.PROGRESS), (PSString("err"), ClixmlStream.ERROR)],
            document=True,
            clixml_header=True,
            check_intent=False,
        ),
        Case("doc_empty", lambda: [], document=True),
    ]
    names = [c.name for c in out]
    assert len(names) == len(set(names)), "duplicate case names"
    return out


def _queue(items: list[typing.Any]) -> PSQueue:
    q = PSQueue()
    for i in items:
        q.put(i)
    return q


def _session_capability() -> PSObject:
    # A PSRP message payload: <Obj> without type names, fields in <MS> (MS-PSRP 2.2.2.1).
    return obj(
        protocolversion=PSVersion("2.3"),
        PSVersion=PSVersion("2.0"),
        SerializationVersion=PSVersion("1.1.0.1"),
        TimeZone=PSByteArray(b"\x00\x01\x00\x00\x00\xff\xff\xff\xff\x01\x00\x00\x00"),
    )


def _odd_property_names() -> PSObject:
    return obj(
        ["Psgate.Test.Odd"],
        **{
            "with space": PSInt(1),
            "tab\there": PSInt(2),
            'quote"amp&lt<gt>': PSInt(3),
            "_x0041_": PSInt(4),
            "\U0001F600": PSInt(5),
            "": PSInt(6),
            "Name": PSInt(7),
            "name": PSInt(8),
        },
    )


def _adapted_and_extended() -> Item:
    item = Item(Name=PSString("file.txt"), Length=PSInt64(12345), Note=PSString("class note"))
    add_note_property(item, "Added", PSString("instance note"))
    item.PSObject.to_string = "file.txt"
    return item


def _nested() -> PSObject:
    leaf = obj(["Psgate.Test.Leaf", "Psgate.Test.Node"], to_string="leaf", Depth=PSInt(2))
    mid = obj(["Psgate.Test.Mid", "Psgate.Test.Node"], Depth=PSInt(1), Child=leaf, Children=[leaf])
    return obj(["Psgate.Test.Root", "Psgate.Test.Node"], Depth=PSInt(0), Child=mid, Map={"leaf": leaf})


def _same_twice() -> list[typing.Any]:
    shared = PSCustomObject(Name=PSString("shared"), Inner=PSCustomObject(X=PSInt(1)))
    holder = obj(["Psgate.Test.Holder"], First=shared, Second=shared)
    return [shared, shared, holder, {"a": shared, "b": shared}]


def _deserialized() -> PSObject:
    o = obj(
        [
            "Deserialized.System.IO.FileInfo",
            "Deserialized.System.IO.FileSystemInfo",
            "Deserialized.System.MarshalByRefObject",
            "Deserialized.System.Object",
        ],
        to_string="C:\\temp\\a.txt",
        PSPath=PSString("Microsoft.PowerShell.Core\\FileSystem::C:\\temp\\a.txt"),
        PSIsContainer=False,
    )
    o.PSObject.adapted_properties.extend(
        [
            PSNoteProperty("Name", value=PSString("a.txt")),
            PSNoteProperty("Length", value=PSInt64(3)),
            PSNoteProperty("LastWriteTimeUtc", value=PSDateTime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC, nanosecond=700)),
            PSNoteProperty("Attributes", value=PSString("Archive")),
        ]
    )
    return o


def _progress_holder() -> PSObject:
    # As pwsh writes a progress record on stderr: a PSCustomObject with SourceId and the <PR>.
    return PSCustomObject(
        SourceId=PSInt64(1),
        Record=progress(Activity="Preparing modules for first use.", ActivityId=0, StatusDescription=" ", RecordType=ProgressRecordType.Completed),
    )


def _error_record() -> ErrorRecord:
    exc = RuntimeException(Message=PSString("Attempted to divide by zero."), HResult=PSInt(-2146233087), Data={}, InnerException=None)
    exc.PSObject.to_string = "System.Management.Automation.RuntimeException: Attempted to divide by zero."
    info = ErrorCategoryInfo(Category=ErrorCategory.NotSpecified, Activity="", Reason="RuntimeException", TargetName="", TargetType="")
    return ErrorRecord(Exception=exc, CategoryInfo=info, TargetObject=None, FullyQualifiedErrorId="RuntimeException")


def _error_record_deserialized() -> PSObject:
    # The shape a PowerShell server sends in ERROR_RECORD (MS-PSRP 2.2.3.15), with Deserialized.* names inside.
    exc = obj(
        ["Deserialized.System.Management.Automation.ItemNotFoundException", "Deserialized.System.Management.Automation.SessionStateException", "Deserialized.System.Exception", "Deserialized.System.Object"],
        to_string="Cannot find path 'C:\\missing' because it does not exist.",
    )
    exc.PSObject.adapted_properties.extend(
        [
            PSNoteProperty("Message", value=PSString("Cannot find path 'C:\\missing' because it does not exist.")),
            PSNoteProperty("HResult", value=PSInt(-2146233087)),
        ]
    )
    return obj(
        ["System.Management.Automation.ErrorRecord", "System.Object"],
        to_string="Cannot find path 'C:\\missing' because it does not exist.",
        Exception=exc,
        TargetObject=PSString("C:\\missing"),
        FullyQualifiedErrorId=PSString("PathNotFound,Microsoft.PowerShell.Commands.GetChildItemCommand"),
        InvocationInfo=None,
        ErrorCategory_Category=PSInt(13),
        ErrorCategory_Activity=PSString("Get-ChildItem"),
        ErrorCategory_Reason=PSString("ItemNotFoundException"),
        ErrorCategory_TargetName=PSString("C:\\missing"),
        ErrorCategory_TargetType=PSString("String"),
        ErrorCategory_Message=PSString("ObjectNotFound: (C:\\missing:String) [Get-ChildItem], ItemNotFoundException"),
        SerializeExtendedInfo=False,
        ErrorDetails_ScriptStackTrace=PSString("at <ScriptBlock>, <No file>: line 1"),
        PipelineIterationInfo=PSList([PSInt(0), PSInt(1)]),
    )


def _doc_shared_refs() -> list[tuple[typing.Any, typing.Optional[ClixmlStream]]]:
    shared = PSCustomObject(Name=PSString("shared"))
    return [
        (shared, None),
        (shared, None),  # a top-level <Ref> to the first object
        ([shared, PSCustomObject(Name=PSString("other"))], None),  # <Ref> inside, <TNRef> to the first line's <TN>
        (obj(["Psgate.Test.Holder"], Value=shared), ClixmlStream.OUTPUT),
    ]


def render(case: Case) -> tuple[str, str]:
    """The case's XML (as psrpcore writes it) and its expected JSON lines (as psrpcore reads that XML back)."""
    if case.document:
        items = case.build()
        xml = serialize_clixml([(v, s) if s is not None else v for v, s in items], canon.CIPHER)
        if case.clixml_header:
            xml = "#< CLIXML\r\n" + xml
        # psrpcore cannot read back a document without objects (it mangles `<Objs … />`): nothing to read.
        read = canon.read_document(xml) if items else []
        assert len(read) == len(items), case.name
        lines = []
        for (original, stream), (value, read_stream) in zip(items, read):
            assert read_stream == (stream or ClixmlStream.OUTPUT).value, (case.name, stream, read_stream)
            if case.check_intent:
                check_intent(case.name, original, value)
            value = canon.canon(value)
            lines.append({"stream": stream.value, "value": value} if stream is not None else value)
    else:
        xml = ElementTree.tostring(serialize(case.build(), canon.CIPHER), encoding="unicode")
        value = canon.read_message(xml)
        if case.check_intent:
            check_intent(case.name, case.build(), value)
        lines = [canon.canon(value)]
    text = "".join(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n" for line in lines)
    return xml + "\n", text


def check_intent(name: str, original: typing.Any, read: typing.Any) -> None:
    """Fails when psrpcore's XML for a primitive does not read back as the value built (a psrpcore writer bug)."""
    if isinstance(original, list) and isinstance(read, list):
        assert len(original) == len(read), name
        for i, (o, r) in enumerate(zip(original, read)):
            check_intent(f"{name}[{i}]", o, r)
        return
    if isinstance(original, PSSecureString):
        assert canon.CIPHER.decrypt(read._value) == original._value, name
        return
    if original is None or isinstance(original, bool) or canon._tag(original) is not None:
        if isinstance(original, PSObject) and (original.PSObject.extended_properties or original.PSObject.adapted_properties):
            return
        want, got = canon.canon(original), canon.canon(read)
        assert canon.same(want, got), f"{name}: psrpcore wrote {want!r} so that it reads back as {got!r}"


def generate() -> dict[str, str]:
    """Every golden file's name and content."""
    files = {}
    for case in cases():
        xml, lines = render(case)
        files[f"{case.name}.xml"] = xml
        files[f"{case.name}.json"] = lines
    return files


def main() -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    files = generate()
    for old in list(GOLDEN.glob("*.xml")) + list(GOLDEN.glob("*.json")):
        if old.name not in files:
            old.unlink()
    for name, content in files.items():
        (GOLDEN / name).write_text(content, encoding="utf-8", newline="")
    print(f"wrote {len(files) // 2} cases to {GOLDEN.relative_to(REPO)}")


if __name__ == "__main__":
    main()
