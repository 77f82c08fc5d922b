"""The ``.byoc`` package: its layout, and a loader that trusts nothing it reads.

A package is a zip whose manifest lists every other member with its sha256; constants
are stored once each, by content hash, and model.onnx points at them as external data.
Loading refuses tampered, truncated, escaping and future-format packages with a
PackageError naming what is wrong, and rebuilds a missing platform library from the
sources the package keeps.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from byoc_sdk import ByocError, CompiledModel, PackageError, build
from byoc_sdk import package as package_module
from byoc_sdk import vendor_runtime as vendor_runtime_module
from byoc_sdk.model_zoo import random_inputs
from byoc_sdk.package import FORMAT, FORMAT_VERSION, platform_tag
from byoc_sdk.testing import assert_outputs_close, run_onnxruntime

KINDS = ["c_source", "json", "binary"]


def read_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def rewrite(
    source: Path,
    target: Path,
    *,
    change: dict[str, Callable[[bytes], bytes]] | None = None,
    drop: Callable[[str], bool] = lambda name: False,
    add: dict[str, bytes] | None = None,
    manifest: Callable[[dict], None] | None = None,
) -> Path:
    """A copy of the package at ``source`` with members changed, dropped or added and the
    manifest edited — written afresh, as someone tampering with a package would."""
    members = read_members(source)
    for name, edit in (change or {}).items():
        members[name] = edit(members[name])
    if manifest is not None:
        data = json.loads(members["manifest.json"])
        manifest(data)
        members["manifest.json"] = json.dumps(data).encode()
    members.update(add or {})
    with zipfile.ZipFile(target, "w") as zf:
        for name, data in members.items():
            if not drop(name):
                zf.writestr(name, data)
    return target


def flip_byte(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1:]


@pytest.fixture
def saved(example_targets, example_model, tmp_path):
    """``saved(kind)``: (package path, original model, compiled model) for a kind."""

    def make(kind: str = "c_source"):
        model = example_model()
        compiled = build(model, [example_targets[kind].target])
        return compiled.save(tmp_path / f"{kind}.byoc"), model, compiled

    return make


# --- layout ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_layout(kind, saved):
    path, _model, compiled = saved(kind)
    members = read_members(path)
    manifest = json.loads(members["manifest.json"])

    assert manifest["format"] == FORMAT and manifest["format_version"] == FORMAT_VERSION
    assert manifest["byoc_version"]
    assert manifest["platform"]["tag"] == platform_tag()
    assert manifest["targets"] == {compiled.report.regions[0].target: "1.0.0"}
    assert [i["name"] for i in manifest["inputs"]] == ["x", "y"]
    assert manifest["inputs"][0]["shape"] == [4, 8]
    assert manifest["outputs"] == ["z", "r"]

    # Every member but the manifest is listed with its sha256, and nothing else is.
    listed = manifest["members"]
    assert set(listed) == set(members) - {"manifest.json"}
    for name, digest in listed.items():
        assert hashlib.sha256(members[name]).hexdigest() == digest, name
    assert {"model.onnx", "report.json"} <= set(listed)
    assert json.loads(members["report.json"])["regions"][0]["status"] == "compiled"

    # Constants: raw bytes under their content hash, dtype and shape in the manifest.
    for sha, info in manifest["constants"].items():
        data = members[f"constants/{sha}.bin"]
        assert len(data) == math.prod(info["shape"]) * np.dtype(info["dtype"]).itemsize

    for entry, region in zip(manifest["regions"], compiled.report.regions, strict=True):
        assert entry["name"] == region.name and entry["status"] == "compiled"
        assert entry["kind"] == kind
        assert [s["name"] for s in entry["inputs"]] == [s.name for s in region.signature.inputs]
        assert set(entry["constants"].values()) <= set(manifest["constants"])
        base = f"regions/{region.name}"
        artifact = region.artifact
        if kind == "c_source":
            for name, text in artifact.sources.items():
                assert members[f"{base}/src/{name}"].decode() == text
            library = members[f"{base}/lib/{platform_tag()}.so"]
            assert library[:4] == b"\x7fELF"
            assert entry["entry"] == artifact.entry
        elif kind == "json":
            assert json.loads(members[f"{base}/graph.json"]) == artifact.graph
            assert entry["runtime"] == "jsondemo"
        else:
            assert members[f"{base}/program.bin"] == artifact.data
            assert members[f"{base}/program.bin"][:4] == b"BYTD"
            assert entry["runtime"] == "bytedemo"


@pytest.mark.parametrize("kind", KINDS)
def test_load_in_process_runs_like_the_build(kind, saved):
    path, model, compiled = saved(kind)
    loaded = CompiledModel.load(path)
    assert [s.name for s in loaded.steps] == [s.name for s in compiled.steps]
    feeds = random_inputs(model, seed=5)
    assert_outputs_close(loaded.run(feeds), run_onnxruntime(model, feeds))


def test_equal_constants_are_stored_once(example_targets, tmp_path):
    from onnx import helper, numpy_helper

    weight = np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32)
    info = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]),
         helper.make_node("Softmax", ["h"], ["s"]),
         helper.make_node("MatMul", ["s", "w2"], ["y"])],
        "shared",
        [info("x", onnx.TensorProto.FLOAT, [2, 16])],
        [info("y", onnx.TensorProto.FLOAT, [2, 16])],
        # Two initializers, one content: both regions bind "the same" weight.
        [numpy_helper.from_array(weight, "w1"), numpy_helper.from_array(weight.copy(), "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)],
                              ir_version=10)
    compiled = build(model, [example_targets["c_source"].target])
    regions = compiled.report.regions
    assert len(regions) == 2 and not compiled.report.fallbacks
    path = compiled.save(tmp_path / "shared.byoc")

    members = read_members(path)
    manifest = json.loads(members["manifest.json"])
    shas = {sha for entry in manifest["regions"] for sha in entry["constants"].values()}
    assert len(shas) == 1  # both regions' weights have one content hash...
    (sha,) = shas
    stored = [name for name in members if name.startswith("constants/")]
    assert stored == [f"constants/{sha}.bin"]  # ...and it is stored once
    assert np.array_equal(np.frombuffer(members[stored[0]], np.float32).reshape(16, 16), weight)

    # model.onnx keeps no weight inline: its tensors point into constants/.
    proto = onnx.load_model_from_string(members["model.onnx"])
    locations = []
    for tensor in _tensors(proto):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            locations.append({e.key: e.value for e in tensor.external_data}["location"])
        else:
            assert len(tensor.raw_data) < 256, tensor.name
    assert locations and set(locations) == {f"constants/{sha}.bin"}

    feeds = {"x": np.random.default_rng(1).standard_normal((2, 16)).astype(np.float32)}
    assert_outputs_close(CompiledModel.load(path).run(feeds), run_onnxruntime(model, feeds))


def _tensors(proto: onnx.ModelProto):
    yield from proto.graph.initializer
    for node in [*proto.graph.node, *(n for f in proto.functions for n in f.node)]:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t


# --- a loader that trusts nothing -----------------------------------------------------------


def _some_member(members: dict[str, bytes], prefix: str) -> str:
    return next(name for name in sorted(members) if name.startswith(prefix))


@pytest.mark.parametrize("prefix", ["model.onnx", "constants/", "regions/", "report.json"])
def test_tampered_member_is_named(prefix, saved, tmp_path):
    path, _model, _compiled = saved("c_source")
    member = _some_member(read_members(path), prefix)
    tampered = rewrite(path, tmp_path / "tampered.byoc", change={member: flip_byte})
    with pytest.raises(PackageError) as raised:
        CompiledModel.load(tampered)
    message = str(raised.value)
    assert f"member '{member}'" in message and "checksum" in message
    assert str(tampered) in message


@pytest.mark.parametrize("keep", [0.5, 0.9, "all but 1 byte"])
def test_truncated_package(keep, saved, tmp_path):
    path, _model, _compiled = saved("json")
    data = path.read_bytes()
    size = len(data) - 1 if keep == "all but 1 byte" else int(len(data) * keep)
    cut = tmp_path / "cut.byoc"
    cut.write_bytes(data[:size])
    with pytest.raises(PackageError) as raised:
        CompiledModel.load(cut)
    assert str(cut) in str(raised.value)


@pytest.mark.parametrize("name", ["../evil", "/abs", "regions/../../evil", "C:/evil"])
def test_member_escaping_its_folder(name, saved, tmp_path):
    path, _model, _compiled = saved("json")
    evil = rewrite(path, tmp_path / "evil.byoc", add={name: b"owned"},
                   manifest=lambda m: m["members"].update({name: hashlib.sha256(
                       b"owned").hexdigest()}))
    with pytest.raises(PackageError, match="unsafe path"):
        CompiledModel.load(evil)
    assert not (tmp_path.parent / "evil").exists()


def test_unsafe_name_listed_only_in_the_manifest(saved, tmp_path):
    path, _model, _compiled = saved("json")
    evil = rewrite(path, tmp_path / "evil.byoc",
                   manifest=lambda m: m["members"].update({"../evil": "0" * 64}))
    with pytest.raises(PackageError, match=r"member '\.\./evil' has an unsafe path"):
        CompiledModel.load(evil)


def test_future_format_version(saved, tmp_path):
    path, _model, _compiled = saved("json")
    future = rewrite(path, tmp_path / "future.byoc",
                     manifest=lambda m: m.update(format_version=99))
    with pytest.raises(PackageError, match="format version 99 is not supported"):
        CompiledModel.load(future)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"drop": lambda name: name == "report.json"}, "member 'report.json' is missing"),
        ({"add": {"extra.txt": b"hi"}}, r"members not in the manifest: \['extra.txt'\]"),
        ({"drop": lambda name: name == "manifest.json"}, "no manifest.json"),
        ({"manifest": lambda m: m.update(format="zip")}, "wrong format field"),
        ({"change": {"manifest.json": lambda data: data[:-5]}}, "manifest.json is unreadable"),
    ],
    ids=["missing member", "unlisted member", "no manifest", "wrong format", "bad manifest"],
)
def test_malformed_package(edit, message, saved, tmp_path):
    path, _model, _compiled = saved("json")
    bad = rewrite(path, tmp_path / "bad.byoc", **edit)
    with pytest.raises(PackageError, match=message):
        CompiledModel.load(bad)


def test_manifest_schema_is_a_valid_json_schema():
    # Checked here once, not on every load, which trusts the schema it ships with.
    from jsonschema import Draft202012Validator

    from byoc_sdk.manifest import SCHEMA

    Draft202012Validator.check_schema(SCHEMA)


def test_manifest_fields_byoc_does_not_know_are_allowed(saved, tmp_path):
    # A newer byoc may add fields; this one reads the fields it knows and ignores the rest.
    path, model, _compiled = saved("json")

    def add_fields(m: dict) -> None:
        m["added_later"] = {"any": [1, "thing"]}
        m["platform"]["added_later"] = 1
        m["regions"][0]["added_later"] = None
        m["inputs"][0]["added_later"] = "x"

    newer = rewrite(path, tmp_path / "newer.byoc", manifest=add_fields)
    feeds = random_inputs(model, seed=3)
    assert_outputs_close(CompiledModel.load(newer).run(feeds), run_onnxruntime(model, feeds))


def test_not_a_package(tmp_path):
    onnx_file = tmp_path / "model.byoc"
    onnx_file.write_bytes(b"\x08\x07" + bytes(100))
    with pytest.raises(PackageError, match="not a readable zip"):
        CompiledModel.load(onnx_file)
    with pytest.raises(PackageError, match="no such package file"):
        CompiledModel.load(tmp_path / "absent.byoc")


# --- zip bombs: members refused before they inflate --------------------------------------

BOMB = 64 << 20  # bytes a bomb member inflates to: a few tens of kilobytes deflated


def repack(source: Path, target: Path, member: str, data: bytes,
           compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """``source`` with ``member`` holding ``data`` under a checksum that matches, so that
    only its size can give it away; ``member`` is written with ``compression``."""
    members = read_members(source)
    members[member] = data
    manifest = json.loads(members["manifest.json"])
    manifest["members"][member] = hashlib.sha256(data).hexdigest()
    if member != "manifest.json":
        members["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, content in members.items():
            zf.writestr(name, content, compress_type=compression if name == member else None)
    return target


def load_and_peak(path: Path) -> tuple[PackageError, int]:
    """The PackageError that loading ``path`` raises, and the most memory Python held
    meanwhile (zlib's output buffers are Python bytes, so an inflated member shows)."""
    tracemalloc.start()
    try:
        with pytest.raises(PackageError) as raised:
            CompiledModel.load(path)
        return raised.value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("member", ["report.json", "manifest.json", "constant"])
def test_a_member_too_large_for_what_it_holds_is_refused_unread(member, saved, tmp_path,
                                                                monkeypatch):
    path, _model, _compiled = saved("json")
    manifest = json.loads(read_members(path)["manifest.json"])
    sha, info = next(iter(manifest["constants"].items()))
    if member == "constant":  # bounded by the tensor the manifest says it holds
        member = f"constants/{sha}.bin"
        size = np.dtype(info["dtype"]).itemsize * math.prod(info["shape"])
        holds = f"the {size:,} bytes of the {info['dtype']}{tuple(info['shape'])} tensor"
        data = bytes(BOMB)
    else:  # bounded by MAX_MEMBER_BYTES, a gigabyte: too much to inflate in a test
        monkeypatch.setattr(package_module, "MAX_MEMBER_BYTES", 1 << 20)
        holds = "the 1,048,576 bytes a member other than a constant may hold"
        # Valid JSON either way: the size is all that is wrong with it.
        data = (json.dumps(manifest) if member == "manifest.json" else "{}").encode()
        data += b" " * (BOMB - len(data))
    bomb = repack(path, tmp_path / "bomb.byoc", member, data)
    assert bomb.stat().st_size < BOMB // 100

    error, peak = load_and_peak(bomb)
    assert f"member '{member}' inflates to {BOMB:,} bytes, more than {holds}" in str(error)
    assert str(bomb) in str(error)
    assert peak < BOMB // 4  # before: the whole member, and then some


def test_a_member_that_inflates_past_its_declared_size_is_not_inflated(saved, tmp_path):
    path, _model, _compiled = saved("json")
    bomb = repack(path, tmp_path / "bomb.byoc", "report.json", bytes(BOMB))
    # The central directory, which zipfile goes by, now says 1,000 bytes.
    data = bytearray(bomb.read_bytes())
    entry = data.index(b"PK\x01\x02")
    while data[entry + 46: entry + 46 + len(b"report.json")] != b"report.json":
        entry = data.index(b"PK\x01\x02", entry + 4)
    data[entry + 24: entry + 28] = (1000).to_bytes(4, "little")
    bomb.write_bytes(bytes(data))

    error, peak = load_and_peak(bomb)
    assert "member 'report.json' is unreadable: Bad CRC-32" in str(error)
    assert peak < BOMB // 4  # before: zipfile inflated up to a gigabyte, then cut it


def test_a_member_compressed_as_byoc_never_writes_is_refused(saved, tmp_path):
    # zipfile inflates a bzip2 or lzma member a whole read at a time, however little is
    # asked for: a small one could be gigabytes before any bound is checked.
    path, _model, _compiled = saved("json")
    report = read_members(path)["report.json"]
    other = repack(path, tmp_path / "bzip2.byoc", "report.json", report, zipfile.ZIP_BZIP2)
    with pytest.raises(PackageError, match=r"member 'report\.json' is compressed with method "
                                           r"12; byoc writes only stored and deflated members"):
        CompiledModel.load(other)


# --- what a package needs on the machine that loads it -----------------------------------


def test_missing_platform_library_is_rebuilt_from_sources(saved, tmp_path, monkeypatch):
    path, model, compiled = saved("c_source")
    libraries = [name for name in read_members(path) if "/lib/" in name]
    assert len(libraries) == 2
    sources_only = rewrite(
        path, tmp_path / "sources-only.byoc", drop=lambda name: name in libraries,
        manifest=lambda m: [m["members"].pop(name) for name in libraries],
    )
    del compiled
    # A fresh cache: the load must compile, not find the build's own modules.
    cache = tmp_path / "fresh-cache"
    monkeypatch.setenv("BYOC_CACHE_DIR", str(cache))
    loaded = CompiledModel.load(sources_only)
    rebuilt = sorted((cache / "modules").glob("*.so"))
    assert len(rebuilt) == 2
    assert {str(r.library) for r in loaded.package.regions} == {str(p) for p in rebuilt}
    feeds = random_inputs(model, seed=2)
    assert_outputs_close(loaded.run(feeds), run_onnxruntime(model, feeds))


def test_missing_vendor_runtime_is_a_clear_error(saved, monkeypatch):
    path, _model, _compiled = saved("json")
    monkeypatch.delitem(vendor_runtime_module._registered, "jsondemo")
    with pytest.raises(ByocError, match="no vendor runtime 'jsondemo' is installed"):
        CompiledModel.load(path)


def test_corrupt_program_fails_the_load_naming_the_region(saved, tmp_path):
    path, _model, _compiled = saved("binary")
    program = "regions/bytedemo_0/program.bin"
    members = read_members(path)
    bad_program = b"XXXX" + members[program][4:]
    bad = rewrite(path, tmp_path / "bad.byoc", change={program: lambda _: bad_program},
                  manifest=lambda m: m["members"].update(
                      {program: hashlib.sha256(bad_program).hexdigest()}))
    with pytest.raises(ByocError) as raised:
        CompiledModel.load(bad)
    error = raised.value
    assert error.context.region == "bytedemo_0" and error.context.file == str(bad)
    assert "not a bytedemo program" in str(error)


# --- round trips -------------------------------------------------------------------------------


def test_loaded_package_saves_again(saved, tmp_path):
    path, model, _compiled = saved("c_source")
    again = CompiledModel.load(path).save(tmp_path / "again.byoc")
    reloaded = CompiledModel.load(again)
    feeds = random_inputs(model, seed=4)
    assert_outputs_close(reloaded.run(feeds), run_onnxruntime(model, feeds))
    first = json.loads(read_members(path)["manifest.json"])
    second = json.loads(read_members(again)["manifest.json"])
    assert set(first["members"]) == set(second["members"])
    assert first["constants"] == second["constants"]


def test_package_with_a_fallback_region(example_targets, example_model, tmp_path):
    import dataclasses

    json_codegen = example_targets["json"].target.codegen

    def second_region_fails(region):
        if region.name.endswith("_1"):
            raise NotImplementedError("not today")
        return json_codegen(region)

    target = dataclasses.replace(example_targets["json"].target, codegen=second_region_fails)
    model = example_model()
    compiled = build(model, [target])
    assert [r.status for r in compiled.report.regions] == ["compiled", "fallback"]
    path = compiled.save(tmp_path / "partial.byoc")
    manifest = json.loads(read_members(path)["manifest.json"])
    assert manifest["regions"][1]["status"] == "fallback"
    assert "not today" in manifest["regions"][1]["reason"]
    assert not any(name.startswith("regions/jsondemo_1/") for name in manifest["members"])

    loaded = CompiledModel.load(path)
    assert [s.target for s in loaded.steps] == ["jsondemo", "host"]
    feeds = random_inputs(model, seed=6)
    assert_outputs_close(loaded.run(feeds), run_onnxruntime(model, feeds))


# --- known bugs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["constant shape", "constant dtype", "constant file",
                                    "source file"])
def test_inconsistent_manifest_is_a_package_error(damage, saved, tmp_path):
    path, _model, _compiled = saved("c_source")
    members = read_members(path)
    manifest = json.loads(members["manifest.json"])
    sha = next(iter(manifest["constants"]))
    constant = f"constants/{sha}.bin"
    source = next(name for name in members if "/src/" in name)
    drop: set[str] = set()

    def edit(m: dict) -> None:
        if damage == "constant shape":
            m["constants"][sha]["shape"] = [*m["constants"][sha]["shape"], 3]
        elif damage == "constant dtype":
            m["constants"][sha]["dtype"] = "float64"
        else:
            name = constant if damage == "constant file" else source
            m["members"].pop(name)
            drop.add(name)

    bad = rewrite(path, tmp_path / "bad.byoc", manifest=edit, drop=lambda n: n in drop)
    with pytest.raises(PackageError):
        CompiledModel.load(bad)


def test_a_scalar_constant_keeps_its_shape_through_save_and_load(tmp_path):
    """0-d constants must come back 0-d (numpy's ascontiguousarray would make them 1-d)."""
    from byoc_sdk.package import _constant, _little_endian

    scalar = np.array(2.5, np.float32)
    data = _little_endian(scalar)
    assert data.shape == ()
    info = {"dtype": "float32", "shape": []}
    loaded = _constant("abc", info, {"constants/abc.bin": data.tobytes()}, "test.byoc")
    assert loaded.shape == () and loaded == 2.5


# --- JSON members are standard JSON -------------------------------------------------------

#: Edits of a JSON member's text that Python's json module takes and RFC 8259 does not
#: (or that, repeated keys, parsers resolve differently), each as (edit, what the error
#: says). Each edit adds a field byoc does not read, so only the reading can refuse it.
NOT_JSON = {
    "NaN": (lambda text: text.replace("{", '{"added_later": NaN, ', 1), "NaN is not a JSON"),
    "Infinity": (lambda text: text.replace("{", '{"added_later": -Infinity, ', 1),
                 "-Infinity is not a JSON"),
    "overflow": (lambda text: text.replace("{", '{"added_later": 1e999, ', 1),
                 "1e999 is too large"),
    "repeated key": (lambda text: text.replace("{", '{"added_later": 1, "added_later": 2, ', 1),
                     'key "added_later" appears twice'),
    "deep": (lambda text: text.replace("{", '{"added_later": ' + "[" * 100_000
                                       + "]" * 100_000 + ", ", 1), "nested too deeply"),
}


@pytest.mark.parametrize("member", ["manifest.json", "regions/jsondemo_0/graph.json"])
@pytest.mark.parametrize("case", sorted(NOT_JSON))
def test_a_json_member_that_is_not_standard_json_is_refused(member, case, saved, tmp_path):
    path, _model, _compiled = saved("json")
    edit, message = NOT_JSON[case]
    data = edit(read_members(path)[member].decode()).encode()
    bad = tmp_path / "bad.byoc"
    if member == "manifest.json":  # the one member no checksum covers
        rewrite(path, bad, change={member: lambda _: data})
    else:
        repack(path, bad, member, data)
    with pytest.raises(PackageError, match=re.escape(message)) as raised:
        CompiledModel.load(bad)
    error = raised.value
    assert str(error).startswith(f"file {bad}: {member} is unreadable: not standard JSON")
    assert error.context.file == str(bad) and "\n" not in str(error)


@pytest.mark.parametrize("member", ["manifest.json", "regions/jsondemo_0/graph.json",
                                    "regions/cdemo_0/src/"])
def test_a_text_member_that_is_not_utf8_is_refused_naming_it(member, saved, tmp_path):
    path, _model, _compiled = saved("json" if member.endswith(".json") else "c_source")
    members = read_members(path)
    if member.endswith("/"):
        member = _some_member(members, member)
    # Latin-1 for "é" in a string: valid JSON and C, in the wrong encoding.
    data = members[member].replace(b'"', b'"\xe9', 1)
    bad = tmp_path / "bad.byoc"
    if member == "manifest.json":
        rewrite(path, bad, change={member: lambda _: data})
    else:
        repack(path, bad, member, data)
    with pytest.raises(PackageError) as raised:
        CompiledModel.load(bad)
    assert f"{member} is unreadable: not UTF-8 text" in str(raised.value)


def test_a_cli_inspect_of_a_manifest_with_nan_is_one_line(saved, tmp_path, capsys):
    from byoc_sdk.cli import main

    path, _model, _compiled = saved("json")
    text = NOT_JSON["NaN"][0](read_members(path)["manifest.json"].decode())
    bad = repack(path, tmp_path / "bad.byoc", "manifest.json", text.encode())
    assert main(["inspect", str(bad), "--json"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (f"byoc: error: file {bad}: manifest.json is unreadable: not "
                           "standard JSON (NaN is not a JSON value)")
