"""A small CLIXML writer that lays objects out the way PowerShell's serializer does.

psrpcore's serializer is correct CLIXML but not PowerShell's layout, and the test host must look like the recorded
Windows traffic (`shared/fixtures/winrm-recorded`). What PowerShell does and psrpcore does not:

- element order inside `<Obj>`: `<TN>`/`<TNRef>`, `<ToString>`, the primitive or container (`<I32>`, `<LST>`, `<DCT>`…),
  `<Props>`, `<MS>` (psrpcore writes an enum's `<I32>` first and `<ToString>` last);
- attribute order `N` then `RefId`;
- an empty string is `<S N="x"></S>`, never `<S N="x" />` (no recorded server message has the short form);
- DateTime with 7 fraction digits and an offset (`2018-06-13T23:45:29.4583203+00:00`).

Values: Python `str` → S, `bool` → B, `int` → I32, `float` → Db, `None` → Nil, `datetime` → DT; the small wrapper
classes below give the other tags. `Obj` is a complex object. RefIds are numbered per message, TN RefIds separately,
and a repeated type list becomes `<TNRef>`, as PowerShell writes them.
"""

from __future__ import annotations

import base64
import datetime
import re
import typing
import uuid

__all__ = [
    "BA", "By", "Dbl", "Enum", "G", "I64", "Obj", "SS", "TS", "U32", "U64", "Ver", "encode_string", "to_clixml",
    "xml_text",
]


class I64(int):
    tag = "I64"


class U32(int):
    tag = "U32"


class U64(int):
    tag = "U64"


class By(int):
    tag = "By"


class Dbl(float):
    tag = "Db"


class Ver(str):
    """System.Version, written as its text (`2.3`, `7.4.6`)."""

    tag = "Version"


class SS(str):
    """SecureString: the base64 ciphertext (protocol.md §1.5)."""

    tag = "SS"


class TS(str):
    """TimeSpan as xs:duration text (`PT9.0269026S`)."""

    tag = "TS"


class G(str):
    tag = "G"


class BA(bytes):
    tag = "BA"


class Obj:
    """A complex object.

    types: type names, most derived first (an empty list writes no `<TN>`, like PSRP message bodies).
    to_string: `<ToString>` text, or None for none.
    value: the primitive or container this object wraps: a primitive value (extended primitive), or one of
        `("LST", [values])`, `("IE", [values])`, `("DCT", [(key, value), …])`.
    props: adapted properties `[(name, value)]` → `<Props>`; ms: extended/note properties → `<MS>`.
    """

    __slots__ = ("types", "to_string", "value", "props", "ms")

    def __init__(
        self,
        types: typing.Sequence[str] = (),
        to_string: typing.Optional[str] = None,
        value: typing.Any = None,
        props: typing.Optional[typing.List[typing.Tuple[str, typing.Any]]] = None,
        ms: typing.Optional[typing.List[typing.Tuple[str, typing.Any]]] = None,
    ) -> None:
        self.types = list(types)
        self.to_string = to_string
        self.value = value
        self.props = props
        self.ms = ms


def Enum(type_name: str, name: str, value: int, underlying: str = "I32") -> Obj:
    """An enum value as PowerShell writes it: TN (type, System.Enum, System.ValueType, System.Object), ToString, I32."""
    return Obj([type_name, "System.Enum", "System.ValueType", "System.Object"], name, _Tagged(underlying, value))


class _Tagged:
    __slots__ = ("tag", "value")

    def __init__(self, tag: str, value: typing.Any) -> None:
        self.tag = tag
        self.value = value


_NEEDS_ESCAPE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\U00010000-\U0010ffff]|_(?=[xX])")


def _escape(m: "re.Match[str]") -> str:
    c = m.group(0)
    if c == "_":
        return "_x005F_"
    o = ord(c)
    if o > 0xFFFF:  # a non-BMP character is two UTF-16 surrogates, each escaped
        o -= 0x10000
        return "_x%04X__x%04X_" % (0xD800 + (o >> 10), 0xDC00 + (o & 0x3FF))
    return "_x%04X_" % o


def encode_string(text: str) -> str:
    """PowerShell's EncodeString (protocol.md §2.2) then XML escaping."""
    return xml_text(_NEEDS_ESCAPE.sub(_escape, text))


def xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attr(text: str) -> str:
    return xml_text(text).replace('"', "&quot;")


def format_datetime(value: datetime.datetime) -> str:
    """XmlConvert RoundtripKind: 7 fraction digits; `Z` for UTC-kind is not used, local times carry their offset."""
    if value.tzinfo is None:
        value = value.astimezone()
    base = value.strftime("%Y-%m-%dT%H:%M:%S")
    ticks = value.microsecond * 10 + (getattr(value, "nanosecond", 0) or 0) // 100 % 10
    offset = value.utcoffset() or datetime.timedelta(0)
    sign = "-" if offset < datetime.timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{base}.{ticks:07d}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def format_double(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "INF" if value > 0 else "-INF"
    text = repr(float(value))
    if text.endswith(".0"):
        text = text[:-2]
    return text.replace("e+", "E+").replace("e-", "E-")


class _Writer:
    def __init__(self) -> None:
        self.ref_id = 0
        self.tn_ids: typing.Dict[typing.Tuple[str, ...], int] = {}

    def write(self, value: typing.Any, name: typing.Optional[str] = None) -> str:
        n = f' N="{_attr(name)}"' if name is not None else ""
        if value is None:
            return f"<Nil{n} />"
        if isinstance(value, Obj):
            return self._obj(value, n)
        if isinstance(value, _Tagged):
            return f"<{value.tag}{n}>{value.value}</{value.tag}>"
        if isinstance(value, bool):
            return f"<B{n}>{'true' if value else 'false'}</B>"
        tag = getattr(type(value), "tag", None)
        if tag is not None:
            if tag == "BA":
                text = base64.b64encode(bytes(value)).decode()
            elif tag == "Db":
                text = format_double(value)
            elif tag in ("Version", "SS", "TS", "G"):
                text = xml_text(str(value))
            else:
                text = str(int(value))
            return f"<{tag}{n}>{text}</{tag}>"
        if isinstance(value, str):
            return f"<S{n}>{encode_string(value)}</S>"
        if isinstance(value, int):
            return f"<I32{n}>{int(value)}</I32>"
        if isinstance(value, float):
            return f"<Db{n}>{format_double(value)}</Db>"
        if isinstance(value, datetime.datetime):
            return f"<DT{n}>{format_datetime(value)}</DT>"
        if isinstance(value, uuid.UUID):
            return f"<G{n}>{value}</G>"
        if isinstance(value, (list, tuple)):
            return self._obj(Obj(["System.Object[]", "System.Array", "System.Object"], value=("LST", list(value))), n)
        if isinstance(value, dict):
            return self._obj(
                Obj(["System.Collections.Hashtable", "System.Object"], value=("DCT", list(value.items()))), n
            )
        return f"<S{n}>{encode_string(str(value))}</S>"

    def _obj(self, obj: Obj, n: str) -> str:
        ref = self.ref_id
        self.ref_id += 1
        parts = [f'<Obj{n} RefId="{ref}">']
        if obj.types:
            key = tuple(obj.types)
            if key in self.tn_ids:
                parts.append(f'<TNRef RefId="{self.tn_ids[key]}" />')
            else:
                tn = len(self.tn_ids)
                self.tn_ids[key] = tn
                parts.append(f'<TN RefId="{tn}">' + "".join(f"<T>{xml_text(t)}</T>" for t in obj.types) + "</TN>")
        if obj.to_string is not None:
            parts.append(f"<ToString>{encode_string(obj.to_string)}</ToString>")
        value = obj.value
        if isinstance(value, tuple) and len(value) == 2 and value[0] in ("LST", "IE", "STK", "QUE"):
            items = value[1]
            if items:
                parts.append(f"<{value[0]}>" + "".join(self.write(v) for v in items) + f"</{value[0]}>")
            else:
                parts.append(f"<{value[0]} />")
        elif isinstance(value, tuple) and len(value) == 2 and value[0] == "DCT":
            entries = value[1]
            if entries:
                parts.append(
                    "<DCT>"
                    + "".join(f"<En>{self.write(k, 'Key')}{self.write(v, 'Value')}</En>" for k, v in entries)
                    + "</DCT>"
                )
            else:
                parts.append("<DCT />")
        elif value is not None:
            parts.append(self.write(value))
        for tag, members in (("Props", obj.props), ("MS", obj.ms)):
            if members is None:
                continue
            if members:
                parts.append(f"<{tag}>" + "".join(self.write(v, k) for k, v in members) + f"</{tag}>")
            else:
                parts.append(f"<{tag} />")
        parts.append("</Obj>")
        return "".join(parts)


def to_clixml(value: typing.Any) -> bytes:
    """One PSRP message body (no BOM, no root): RefIds start at 0."""
    return _Writer().write(value).encode("utf-8")
