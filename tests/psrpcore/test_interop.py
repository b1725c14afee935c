"""psgate's CLIXML codec against psrpcore 0.3.1 and against recorded real-Windows PSRP traffic.

    $PSGATE_PYTHON -m pytest tests/psrpcore -q

Needs the psgate binary (`cargo build -p psgate-relay`, or set PSGATE_BIN) and the read-only fixtures in
`../shared/fixtures` beside the repository.

- goldens: gen_golden.py still writes exactly the committed shared/test_data/golden files (the Rust test
  `cargo test -p psgate-shared --test golden` checks that our decoder gives each .json);
- our encoder read by psrpcore: each golden .json through `psgate clixml encode` reads back in psrpcore as itself;
- real traffic: every PSRP message in every winrm-recorded file and every fixtures/clixml document goes through
  `psgate clixml roundtrip`, and psrpcore reads the original and our re-encoding as the same value; our decoder
  (`psgate clixml decode`) also gives the value psrpcore reads from the original.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import struct
import subprocess
import typing
from pathlib import Path
from xml.etree import ElementTree

import pytest
import yaml

import canon
import gen_golden

REPO = Path(__file__).resolve().parents[2]
GOLDEN = gen_golden.GOLDEN
FIXTURES = Path(os.environ.get("PSGATE_SHARED") or REPO.parent / "shared") / "fixtures"
PSGATE_BIN = Path(os.environ.get("PSGATE_BIN", REPO / "target" / "debug" / "psgate"))


@pytest.fixture(scope="session")
def psgate() -> Path:
    if not PSGATE_BIN.is_file():
        pytest.fail(f"{PSGATE_BIN} is missing: run `cargo build -p psgate-relay` or set PSGATE_BIN")
    return PSGATE_BIN


def run(binary: Path, *args: str, path: typing.Optional[Path] = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), "clixml", *args, *([str(path)] if path else [])], capture_output=True, timeout=60)


def run_all(binary: Path, command: str, paths: list[Path]) -> list[subprocess.CompletedProcess]:
    """`psgate clixml <command> <path>` for each path, in parallel (one process each; they are tiny)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return list(pool.map(lambda p: run(binary, command, path=p), paths))


def report(capsys: pytest.CaptureFixture, text: str) -> None:
    """A line on the terminal even under -q and output capture: how much a test checked."""
    with capsys.disabled():
        print(f"\n[psrpcore interop] {text}")


def assert_same(label: str, ours: typing.Any, theirs: typing.Any) -> None:
    if not canon.same(ours, theirs):
        pytest.fail(
            f"{label} differs\n  ours:     {json.dumps(ours, ensure_ascii=False)}\n"
            f"  psrpcore: {json.dumps(theirs, ensure_ascii=False)}",
            pytrace=False,
        )


def golden_cases() -> list[str]:
    return sorted(p.stem for p in GOLDEN.glob("*.xml"))


def read_lines(text: str) -> list[typing.Any]:
    # Not splitlines(): JSON text may hold U+2028, U+0085 and other characters it treats as line breaks.
    return [json.loads(line) for line in text.split("\n") if line.strip()]


# --- (a) the committed goldens are what the generator writes ---------------------------------------------------


def test_goldens_are_current(capsys: pytest.CaptureFixture) -> None:
    want = gen_golden.generate()
    have = {p.name: p.read_bytes().decode("utf-8") for p in GOLDEN.iterdir() if p.suffix in (".xml", ".json")}
    report(capsys, f"{len(want) // 2} golden cases regenerated and compared")
    assert len(want) >= 100, "the generator builds suspiciously few cases"
    stale = sorted(n for n in want if have.get(n) != want[n])
    extra = sorted(set(have) - set(want))
    assert not stale and not extra, (
        f"shared/test_data/golden is stale (changed or missing: {stale}; not generated: {extra}); "
        "run `$PSGATE_PYTHON tests/psrpcore/gen_golden.py`"
    )


# --- (b) our encoder, read by psrpcore --------------------------------------------------------------------------


@pytest.mark.parametrize("case", golden_cases())
def test_psrpcore_reads_our_encoding(psgate: Path, case: str) -> None:
    expected = read_lines((GOLDEN / f"{case}.json").read_text(encoding="utf-8"))
    out = run(psgate, "encode", path=GOLDEN / f"{case}.json")
    assert out.returncode == 0, f"psgate clixml encode failed: {out.stderr.decode(errors='replace')}"
    xml = out.stdout.decode("utf-8")
    theirs = [canon.normalise_line(line) for line in canon.canon_document(xml)]
    ours = [canon.normalise_line(line) for line in expected]
    assert len(ours) == len(theirs), f"{len(theirs)} objects read back, {len(ours)} expected\n{xml}"
    for i, (o, t) in enumerate(zip(ours, theirs)):
        assert_same(f"{case} line {i + 1}", o, t)


# --- (c) recorded Windows traffic -------------------------------------------------------------------------------

PSRP_FIELDS = {"creationXml", "Arguments", "Stream", "connectXml", "connectResponseXml"}
POWERSHELL_URI = "http://schemas.microsoft.com/powershell/"
BOM = b"\xef\xbb\xbf"


def recorded_messages() -> tuple[list[tuple[str, bytes]], int]:
    """Every PSRP message body in fixtures/winrm-recorded (label, CLIXML bytes) and the number of empty ones.

    Per file and direction, fragments (MS-PSRP 2.2.4, protocol.md §1.4: big-endian ObjectId, FragmentId, flags
    Start=1/End=2, length) are joined by ObjectId; each message loses its 40-byte header and its UTF-8 BOM. Only
    exchanges on a PowerShell resource URI carry PSRP (the WinRS cmd.exe shells carry raw console output).
    """
    messages: list[tuple[str, bytes]] = []
    empty = 0
    files = sorted((FIXTURES / "winrm-recorded").glob("*.yml"))
    assert files, f"no recorded traffic in {FIXTURES / 'winrm-recorded'}"
    for path in files:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        pending: dict[tuple[str, int], tuple[int, bytearray]] = {}
        for n, exchange in enumerate(doc["messages"]):
            request = ElementTree.fromstring(exchange["request"])
            uris = [e.text or "" for e in request.iter() if e.tag.endswith("}ResourceURI")]
            if not any(u.startswith(POWERSHELL_URI) for u in uris):
                continue
            for direction, soap in (("client", exchange["request"]), ("server", exchange.get("response"))):
                if not soap:
                    continue
                root = request if direction == "client" else ElementTree.fromstring(soap)
                for element in root.iter():
                    if element.tag.rsplit("}", 1)[-1] not in PSRP_FIELDS or not (element.text or "").strip():
                        continue
                    data = base64.b64decode(element.text)
                    pos = 0
                    while pos < len(data):
                        object_id, fragment_id, flags, length = struct.unpack_from(">QQBI", data, pos)
                        blob = data[pos + 21 : pos + 21 + length]
                        assert len(blob) == length, f"{path.name}: truncated fragment"
                        pos += 21 + length
                        key = (direction, object_id)
                        if flags & 1:
                            pending[key] = (0, bytearray())
                        expect, buf = pending[key]
                        assert fragment_id == expect, f"{path.name}: fragment {fragment_id} of {object_id}, wanted {expect}"
                        buf += blob
                        pending[key] = (expect + 1, buf)
                        if flags & 2:
                            del pending[key]
                            message_type = struct.unpack_from("<I", buf, 4)[0]
                            body = bytes(buf[40:])
                            body = body[len(BOM) :] if body.startswith(BOM) else body
                            if not body.strip():
                                empty += 1
                                continue
                            label = f"{path.name} #{n} {direction} 0x{message_type:08X} object {object_id}"
                            messages.append((label, body))
        assert not pending, f"{path.name}: unfinished messages {list(pending)}"
    return messages, empty


def recorded_documents() -> list[tuple[str, bytes]]:
    files = sorted((FIXTURES / "clixml").glob("*.xml"))
    assert files, f"no documents in {FIXTURES / 'clixml'}"
    return [(p.name, p.read_bytes()) for p in files]


def test_recorded_traffic(psgate: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    messages, empty = recorded_messages()
    documents = recorded_documents()
    items = [(label, body, False) for label, body in messages] + [(label, body, True) for label, body in documents]
    paths = []
    for i, (_, body, _) in enumerate(items):
        paths.append(tmp_path / f"{i:05d}.xml")
        paths[-1].write_bytes(body)
    roundtrips = run_all(psgate, "roundtrip", paths)
    decodes = run_all(psgate, "decode", paths)

    failures: list[str] = []
    for (label, body, is_document), rt, dec in zip(items, roundtrips, decodes):
        if rt.returncode != 0 or dec.returncode != 0:
            failures.append(f"{label}: psgate failed: {(rt.stderr or dec.stderr).decode(errors='replace').strip()}")
            continue
        ours_xml = rt.stdout.decode("utf-8")
        try:
            if is_document:
                original = [canon.normalise_line(line) for line in canon.canon_document(body.decode("utf-8"))]
                reencoded = [canon.normalise_line(line) for line in canon.canon_document(ours_xml)]
            else:
                original = [canon.normalise_line({"stream": "output", "value": canon.canon_message(body)})]
                reencoded = [canon.normalise_line({"stream": "output", "value": canon.canon_message(ours_xml)})]
        except Exception as e:  # noqa: BLE001 (reported with the input's name)
            failures.append(f"{label}: psrpcore cannot read it or our re-encoding: {type(e).__name__}: {e}")
            continue
        decoded = [canon.normalise_line(line) for line in canon.expand_refs(read_lines(dec.stdout.decode("utf-8")))]
        for what, lines in (("our re-encoding", reencoded), ("our decoding", decoded)):
            if not canon.same(lines, original):
                failures.append(
                    f"{label}: {what} differs from the original, as psrpcore reads it\n"
                    f"  ours:     {json.dumps(lines, ensure_ascii=False)[:4000]}\n"
                    f"  original: {json.dumps(original, ensure_ascii=False)[:4000]}"
                )

    report(capsys, f"{len(messages)} recorded PSRP messages ({empty} empty bodies skipped) and {len(documents)} documents checked")
    assert not failures, f"{len(failures)} of {len(items)} recorded inputs failed:\n\n" + "\n\n".join(failures[:20])
    assert len(messages) >= 500, f"only {len(messages)} PSRP messages found in the recorded traffic"


# --- (d) member sets: a nested <MS N="…"> -----------------------------------------------------------------------

# A [pscustomobject] with a PSStandardMembers member set, as PowerShell's serializer writes it (WriteMemberSet): the
# set's note members as properties, its PSPropertySet (DefaultDisplayPropertySet) not at all, a nested set as <MS N>.
MEMBER_SET_DOCUMENT = (
    '<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
    '<Obj RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject</T><T>System.Object</T></TN><MS>'
    '<S N="Name">svc1</S><I32 N="Id">42</I32>'
    '<MS N="PSStandardMembers"><S N="DefaultDisplayProperty">Name</S><MS N="Inner" /></MS>'
    "</MS></Obj></Objs>"
)


def test_member_sets(psgate: Path, tmp_path: Path) -> None:
    """psgate reads a member set and writes it back byte for byte; psrpcore 0.3.1 cannot read one (its deserializer
    knows no <MS> among an <MS>'s members), so it is compared on the same object without the set."""
    path = tmp_path / "member-set.xml"
    path.write_text(MEMBER_SET_DOCUMENT, encoding="utf-8")
    rt = run(psgate, "roundtrip", path=path)
    assert rt.returncode == 0, rt.stderr.decode(errors="replace")
    assert rt.stdout.decode("utf-8").rstrip("\n") == MEMBER_SET_DOCUMENT
    dec = run(psgate, "decode", path=path)
    assert dec.returncode == 0, dec.stderr.decode(errors="replace")
    [line] = read_lines(dec.stdout.decode("utf-8"))
    members = line["Obj"]["MS"]
    assert members["PSStandardMembers"] == {"MS": {"DefaultDisplayProperty": "Name", "Inner": {"MS": {}}}}
    # Our JSON shape encodes back to the same document.
    json_path = tmp_path / "member-set.json"
    json_path.write_text(dec.stdout.decode("utf-8"), encoding="utf-8")
    enc = run(psgate, "encode", path=json_path)
    assert enc.returncode == 0, enc.stderr.decode(errors="replace")
    assert enc.stdout.decode("utf-8").rstrip("\n") == MEMBER_SET_DOCUMENT

    with pytest.raises(ValueError, match="Unknown element found: MS"):
        canon.canon_document(MEMBER_SET_DOCUMENT)
    without = MEMBER_SET_DOCUMENT.replace('<MS N="PSStandardMembers"><S N="DefaultDisplayProperty">Name</S><MS N="Inner" /></MS>', "")
    del members["PSStandardMembers"]
    assert_same("the object beside its member set", canon.normalise_line(line), canon.normalise_line(canon.canon_document(without)[0]))
