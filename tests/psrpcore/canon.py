"""psrpcore's deserialized objects as psgate's canonical CLIXML JSON.

The canonical form is the "expanded" JSON shape documented at the top of `shared/src/clixml/json.rs` (what
`json::Writer::new(WriteOptions { expand_refs: true })` writes): every value keeps its CLIXML tag, shared
objects are written in full each time, and there is no "RefId"/"Ref".

psrpcore is used through its generic path: while reading, its TypeRegistry is emptied so that no object is
rehydrated into one of psrpcore's Python classes (which would replace the type names written in the XML by the
class's own and run `FromPSObjectForRemoting` conversions). In that path psrpcore prefixes every type name that
came from the XML with `Deserialized.`, and leaves the type names of its own Python class (for example
`System.Collections.Hashtable` on a `<DCT>` without `<TN>`) unprefixed: that is how `canon` tells a `<TN>` that
was written from one psrpcore invented.

Everything that psrpcore's model and ours do not share is normalised in one place, `normalise` at the bottom.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import decimal
import enum
import math
import struct
import typing
from xml.etree import ElementTree

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from psrpcore.types import (
    ProgressRecord,
    PSByte,
    PSByteArray,
    PSChar,
    PSCryptoProvider,
    PSDateTime,
    PSDecimal,
    PSDictBase,
    PSDouble,
    PSDuration,
    PSGuid,
    PSIEnumerable,
    PSInt,
    PSInt16,
    PSInt64,
    PSObject,
    PSQueueBase,
    PSSByte,
    PSScriptBlock,
    PSSecureString,
    PSSingle,
    PSStackBase,
    PSString,
    PSUInt,
    PSUInt16,
    PSUInt64,
    PSUri,
    PSVersion,
    PSXml,

)
from psrpcore.types._base import TypeRegistry
from psrpcore.types._collection import _PSListBase
from psrpcore.types._primitive import _timedelta_total_nanoseconds
from psrpcore.types._serializer import _serialize_enum_to_string, deserialize, deserialize_clixml

DESERIALIZED = "Deserialized."

# The CLIXML tag of each psrpcore primitive class (most derived first: isinstance order matters).
_PRIMITIVE_TAGS: list[tuple[type, str]] = [
    (PSChar, "C"),
    (PSByte, "By"),
    (PSSByte, "SB"),
    (PSUInt16, "U16"),
    (PSInt16, "I16"),
    (PSUInt, "U32"),
    (PSInt, "I32"),
    (PSUInt64, "U64"),
    (PSInt64, "I64"),
    (PSSingle, "Sg"),
    (PSDouble, "Db"),
    (PSDecimal, "D"),
    (PSUri, "URI"),
    (PSXml, "XD"),
    (PSScriptBlock, "SBK"),
    (PSString, "S"),
    (PSDateTime, "DT"),
    (PSDuration, "TS"),
    (PSByteArray, "BA"),
    (PSGuid, "G"),
    (PSVersion, "Version"),
    (PSSecureString, "SS"),
]

STREAMS = ("output", "error", "debug", "verbose", "warning", "progress", "information")


class TestCipher(PSCryptoProvider):
    """A fixed-key PSRP SecureString cipher (MS-PSRP: AES-256-CBC, zero IV, PKCS7 over UTF-16LE, base64).

    Deterministic, so that generated goldens do not change from run to run.
    """

    KEY = bytes(range(32))

    def _cipher(self) -> Cipher:
        return Cipher(algorithms.AES(self.KEY), modes.CBC(b"\0" * 16))

    def encrypt(self, value: str) -> str:
        padder = padding.PKCS7(128).padder()
        data = padder.update(value.encode("utf-16-le")) + padder.finalize()
        enc = self._cipher().encryptor()
        return base64.b64encode(enc.update(data) + enc.finalize()).decode()

    def decrypt(self, value: str) -> str:
        dec = self._cipher().decryptor()
        data = dec.update(base64.b64decode(value)) + dec.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        return (unpadder.update(data) + unpadder.finalize()).decode("utf-16-le")


CIPHER = TestCipher()


@contextlib.contextmanager
def generic_types() -> typing.Iterator[None]:
    """psrpcore without rehydration: every `<Obj>` stays a plain PSObject/PSList/PSDict/... (see module doc)."""
    registry = TypeRegistry()
    saved = registry.type_registry
    registry.type_registry = {}
    try:
        yield
    finally:
        registry.type_registry = saved


def read_message(xml: typing.Union[str, bytes]) -> typing.Any:
    """A PSRP message body (one element) read by psrpcore."""
    with generic_types():
        return deserialize(ElementTree.fromstring(xml), CIPHER)


def read_document(xml: str) -> list[tuple[typing.Any, str]]:
    """An `<Objs>` document read by psrpcore: (value, stream name as psrpcore reports it) per object."""
    with generic_types():
        return [(v, s.value) for v, s in deserialize_clixml(xml, CIPHER, preserve_streams=True)]


def canon_message(xml: typing.Union[str, bytes]) -> typing.Any:
    """A PSRP message body as one canonical JSON value, as psrpcore reads it."""
    return canon(read_message(xml))


def canon_document(xml: str) -> list[typing.Any]:
    """A document as canonical JSON lines, as psrpcore reads it (every line wrapped with psrpcore's stream)."""
    return [{"stream": s, "value": canon(v)} for v, s in read_document(xml)]


def canon(value: typing.Any) -> typing.Any:
    """One psrpcore value as canonical JSON (Python data for `json.dumps`)."""
    return _canon(value, 0)


def _canon(value: typing.Any, depth: int) -> typing.Any:
    if depth > 200:
        raise ValueError("nested too deeply (a cycle?)")
    if value is None:
        return None
    if isinstance(value, bool):  # before int: bool is an int in Python
        return value
    if isinstance(value, ProgressRecord):
        return {"PR": _progress(value)}
    if isinstance(value, enum.Enum):
        # A psrpcore enum class instance (a value built in Python, or read without generic_types).
        return {
            "Obj": {
                "TN": _strip(list(value.PSObject.type_names)),
                "ToString": _serialize_enum_to_string(value),
                "value": {_tag(value.value): int(value.value)},
            }
        }
    tag = _tag(value)
    if tag is not None:
        prim = {tag: _primitive_text(tag, value)} if tag != "S" else str.__str__(value)
        obj = _object_parts(value, depth, content=("value", prim))
        # A primitive with nothing of its own (no type names from the XML, no ToString, no properties).
        return prim if list(obj) == ["value"] else {"Obj": obj}
    if isinstance(value, PSObject):
        if isinstance(value, PSDictBase):
            content = ("DCT", [[_canon(k, depth + 1), _canon(v, depth + 1)] for k, v in dict.items(value)])
        elif isinstance(value, PSQueueBase):
            content = ("QUE", [_canon(v, depth + 1) for v in list(value.queue)])
        elif isinstance(value, PSStackBase):
            content = ("STK", [_canon(v, depth + 1) for v in list.__iter__(value)])
        elif isinstance(value, PSIEnumerable):
            content = ("IE", [_canon(v, depth + 1) for v in list.__iter__(value)])
        elif isinstance(value, _PSListBase):
            content = ("LST", [_canon(v, depth + 1) for v in list.__iter__(value)])
        else:
            content = None
        return {"Obj": _object_parts(value, depth, content)}
    raise TypeError(f"no canonical form for {type(value).__name__}: {value!r}")


def _tag(value: typing.Any) -> typing.Optional[str]:
    for cls, tag in _PRIMITIVE_TAGS:
        if isinstance(value, cls):
            return tag
    return None


def _strip(type_names: list[str]) -> list[str]:
    return [t[len(DESERIALIZED) :] if t.startswith(DESERIALIZED) else t for t in type_names]


def _type_names(value: PSObject) -> typing.Optional[list[str]]:
    names = list(value.PSObject.type_names)
    if not names:
        return None
    if all(t.startswith(DESERIALIZED) for t in names):
        return _strip(names)  # written in the XML (generic path)
    if names == list(type(value).PSObject.type_names):
        return None  # psrpcore's own class, not written in the XML
    return names


def _object_parts(value: PSObject, depth: int, content: typing.Optional[tuple[str, typing.Any]]) -> dict:
    out: dict[str, typing.Any] = {}
    tn = _type_names(value)
    if tn is not None:
        out["TN"] = tn
    if value.PSObject._to_string is not None:  # explicit (read from <ToString>), not psrpcore's str() fallback
        out["ToString"] = str(value.PSObject._to_string)
    if content is not None:
        out[content[0]] = content[1]
    for key, props in (("Props", value.PSObject.adapted_properties), ("MS", value.PSObject.extended_properties)):
        if props:
            out[key] = {p.name: _canon(p.get_value(value), depth + 1) for p in props}
    return out


def _progress(pr: ProgressRecord) -> dict:
    def text(s: typing.Optional[str]) -> typing.Optional[str]:
        return None if s is None else str.__str__(s)

    return {
        "activity": text(pr.Activity),
        "activity_id": int(pr.ActivityId),
        "current_operation": text(pr.CurrentOperation),
        "parent_activity_id": int(pr.ParentActivityId),
        "percent_complete": int(pr.PercentComplete),
        "record_type": str(pr.RecordType.name),
        "seconds_remaining": int(pr.SecondsRemaining),
        "status_description": text(pr.StatusDescription),
    }


def _primitive_text(tag: str, value: typing.Any) -> typing.Any:
    if tag in ("C", "By", "SB", "U16", "I16", "U32", "I32", "U64", "I64"):
        return int(value)
    if tag == "Db":
        return _float(float(value))
    if tag == "Sg":
        return _float(_single(float(value)))
    if tag == "D":
        return format(decimal.Decimal(value), "f")  # keeps the scale ("1.10"), never an exponent
    if tag in ("URI", "XD", "SBK"):
        return str.__str__(value)
    if tag == "DT":
        return datetime_text(value)
    if tag == "TS":
        return timespan_text(_timedelta_total_nanoseconds(value) // 100)
    if tag == "BA":
        return base64.b64encode(bytes(value)).decode()
    if tag == "SS":
        return base64.b64encode(base64.b64decode(value._value)).decode()  # psrpcore keeps the element text
    if tag in ("G", "Version"):
        return str(value)
    raise AssertionError(tag)


def _float(x: float) -> typing.Union[float, str]:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "INF" if x > 0 else "-INF"
    return x


def _single(x: float) -> float:
    """`x` rounded to the nearest IEEE single, given by its shortest round-trip digits (like Rust's f32 Display)."""
    if math.isnan(x) or math.isinf(x):
        return x
    try:
        f = struct.unpack("<f", struct.pack("<f", x))[0]
    except OverflowError:
        return math.copysign(math.inf, x)
    for digits in range(1, 10):
        short = float(f"{f:.{digits}g}")
        try:
            if struct.unpack("<f", struct.pack("<f", short))[0] == f:
                return math.copysign(short, f)
        except OverflowError:
            continue  # rounded past the largest single
    return f


def datetime_text(dt: datetime.datetime) -> str:
    """XmlConvert round-trip text: fraction with trailing zeros dropped, `Z`, `±hh:mm` or nothing."""
    out = f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    ticks = dt.microsecond * 10 + (getattr(dt, "nanosecond", 0) or 0) // 100
    if ticks:
        out += "." + f"{ticks:07d}".rstrip("0")
    offset = dt.utcoffset()
    if offset is None:
        return out
    if offset == datetime.timedelta(0):
        return out + "Z"  # psrpcore reads "+00:00" as UTC too (see normalise)
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return f"{out}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def timespan_text(ticks: int) -> str:
    """xs:duration as psgate writes it: `-`, days, then H/M/S with a trimmed fraction; `PT0S` for zero."""
    out = "-" if ticks < 0 else ""
    ticks = abs(ticks)
    days, ticks = divmod(ticks, 864_000_000_000)
    out += "P"
    if days:
        out += f"{days}D"
    if ticks:
        hours, ticks = divmod(ticks, 36_000_000_000)
        minutes, ticks = divmod(ticks, 600_000_000)
        out += "T"
        if hours:
            out += f"{hours}H"
        if minutes:
            out += f"{minutes}M"
        if ticks:
            seconds, frac = divmod(ticks, 10_000_000)
            out += str(seconds)
            if frac:
                out += "." + f"{frac:07d}".rstrip("0")
            out += "S"
    elif not days:
        out += "T0S"
    return out


# ---------------------------------------------------------------------------------------------------------------
# The one place where psrpcore's model and psgate's are brought together. Apply to BOTH sides before comparing.
# Each rule is a piece of information one model keeps and the other cannot; nothing else may be normalised here.
# ---------------------------------------------------------------------------------------------------------------


def normalise_line(line: typing.Any) -> dict:
    """One canonical JSON line of a document, comparable across the two models.

    Stream: psrpcore lowercases the `S` attribute and reports a missing or unknown one as "output"
    (`ClixmlStream`); psgate keeps the attribute as written and wraps only lines that had one.
    """
    if isinstance(line, dict) and list(line) == ["stream", "value"]:
        stream = (line["stream"] or "output").lower()
        stream = stream if stream in STREAMS else "output"
        return {"stream": stream, "value": normalise(line["value"])}
    return {"stream": "output", "value": normalise(line)}


def normalise(value: typing.Any) -> typing.Any:
    """One canonical JSON value, comparable across the two models (see the rules inline)."""
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if not isinstance(value, dict):
        return value
    if list(value) == ["DT"] and isinstance(value["DT"], str) and value["DT"].endswith("+00:00"):
        # Python's datetime has one zero-offset timezone: psrpcore reads "+00:00" (local, offset 0) as "Z" (UTC).
        return {"DT": value["DT"][: -len("+00:00")] + "Z"}
    return {k: normalise(v) for k, v in value.items()}


def same(a: typing.Any, b: typing.Any) -> bool:
    """Equality of parsed JSON: object keys in order; numbers by value (JSON has one number type: Rust writes a
    double 1.0 as `1`, Python as `1.0`), with the sign of a zero kept."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        return float(a) == float(b) and math.copysign(1.0, float(a)) == math.copysign(1.0, float(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def expand_refs(lines: list[typing.Any]) -> list[typing.Any]:
    """psgate's non-expanded JSON lines (with "RefId"/"Ref", as `psgate clixml decode` prints) in expanded form.

    Reference ids are shared across the lines of one document, like the decoder's.
    """
    table: dict[int, typing.Any] = {}

    def walk(v: typing.Any) -> typing.Any:
        if isinstance(v, list):
            return [walk(x) for x in v]
        if not isinstance(v, dict):
            return v
        if list(v) == ["Ref"]:
            return table[v["Ref"]]
        if list(v) == ["Obj"]:
            body = {k: walk(x) for k, x in v["Obj"].items() if k != "RefId"}
            obj = {"Obj": body}
            if "RefId" in v["Obj"]:
                table[v["Obj"]["RefId"]] = obj
            return obj
        return {k: walk(x) for k, x in v.items()}

    return [walk(line) for line in lines]
