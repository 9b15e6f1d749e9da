"""Structural checks of model files before an engine loads them: what would crash an engine's process (or make it
read outside the file) is refused here with a :class:`~edgecart.runtime.errors.ModelLoadError`.

- ``.pte`` (ExecuTorch): the ``ET12`` file identifier, the ``eh00`` extended header (program size, segment base and
  size inside the file), the whole Program flatbuffer walked against ExecuTorch's ``program.fbs`` (every offset,
  vector and string in bounds, strings valid UTF-8 — ExecuTorch logs them through a Python callback that aborts the
  process on invalid UTF-8), and every segment, delegate and named-data reference inside the file.
- ``.tflite`` (LiteRT): the ``TFL3`` identifier and the root offset inside the file (LiteRT runs the FlatBuffers
  verifier itself and reports failures as exceptions).
- ``.onnx``: a protobuf, parsed by ONNX Runtime itself; parse failures come back as exceptions.
"""

from __future__ import annotations

import math
import struct

from ..errors import ModelLoadError
from ._flatbuffers import FlatbufferError, Verifier, field_target, read_scalar, vector_items

_KERNEL_TYPES = {1: "Null", 2: "Int", 3: "Bool", 4: "Double", 5: "Tensor", 6: "String", 7: "IntList",
                 8: "DoubleList", 9: "BoolList", 10: "TensorList", 11: "OptionalTensorList"}
_INSTRUCTIONS = {1: "KernelCall", 2: "DelegateCall", 3: "MoveCall", 4: "JumpFalseCall", 5: "FreeCall"}

#: executorch/schema/program.fbs (ExecuTorch 1.5), one tuple of slot types per table in field-id order.
PTE_SCHEMA: dict[str, tuple] = {
    "ContainerMetadata": ("str", "str"),
    "Null": (),
    "AllocationDetails": ("u32", "u32", "u32"),
    "ExtraTensorInfo": ("u64", "str", "i8", "i8", "i8"),
    "Tensor": ("i8", "i32", ("vec", "i32"), ("vec", "u8"), "bool", "u32", "AllocationDetails", "i8", "i8",
               "ExtraTensorInfo"),
    "Int": ("i64",),
    "Bool": ("bool",),
    "Double": ("f64",),
    "String": ("str",),
    "IntList": (("vec", "i64"),),
    "DoubleList": (("vec", "f64"),),
    "BoolList": (("vec", "bool"),),
    "TensorList": (("vec", "i32"),),
    "OptionalTensorList": (("vec", "i32"),),
    "EValue": ("utype", ("union", _KERNEL_TYPES)),
    "Operator": ("str", "str"),
    "KernelCall": ("i32", ("vec", "i32")),
    "DelegateCall": ("i32", ("vec", "i32")),
    "MoveCall": ("i32", "i32"),
    "JumpFalseCall": ("i32", "i32"),
    "FreeCall": ("i32",),
    "Instruction": ("utype", ("union", _INSTRUCTIONS)),
    "Frame": ("str", "i32", "str", "str"),
    "FrameList": (("vec", "Frame"),),
    "BackendDelegateDataReference": ("i8", "u32"),
    "CompileSpec": ("str", ("vec", "u8")),
    "BackendDelegate": ("str", "BackendDelegateDataReference", ("vec", "CompileSpec")),
    "Chain": (("vec", "i32"), ("vec", "i32"), ("vec", "Instruction"), ("vec", "FrameList")),
    "ExecutionPlan": ("str", "ContainerMetadata", ("vec", "EValue"), ("vec", "i32"), ("vec", "i32"),
                      ("vec", "Chain"), ("vec", "Operator"), ("vec", "BackendDelegate"), ("vec", "i64"),
                      ("vec", "NonConstBufferDevice")),
    "NonConstBufferDevice": ("i32", "i8", "i8"),
    "Buffer": (("vec", "u8"),),
    "BackendDelegateInlineData": (("vec", "u8"),),
    "DataSegment": ("u64", "u64"),
    "SubsegmentOffsets": ("u32", ("vec", "u64")),
    "NamedData": ("str", "u32"),
    "Program": ("u32", ("vec", "ExecutionPlan"), ("vec", "Buffer"), ("vec", "BackendDelegateInlineData"),
                ("vec", "DataSegment"), "SubsegmentOffsets", ("vec", "SubsegmentOffsets"), ("vec", "NamedData")),
}


_N1, _N2, _CONV, _POOL, _CAT = "_XNNNode1x1", "_XNNNode2x1", "_XNNNodeConv", "_XNNPooling2D", "_XNNCat"
#: XNodeUnion of executorch/backends/xnnpack/serialization/runtime_schema.fbs, type code = position (1-based).
_XNODES = (_N2, "XNNFullyConnected", _N1, _N1, "XNNStaticTranspose", _N1, _CONV, _N2, "XNNStaticResizeBilinear2D",
           "XNNStaticConstantPad", _POOL, _N2, _CONV, _POOL, _N2, _N2, _N1, _N1, _N1, "XNNStaticReshape",
           "XNNArgMaxPooling2d", _N1, _N1, _N1, "XNNLeakyReLU", _N2, _N1, _N1, "XNNELU", _N1, _N2, _CAT, _CAT, _CAT,
           "XNNStaticSlice", "XNNScaledDotProductAttention", _N2, _CAT, _CONV, _N1, _N1, _N1, _N1, _N1, _N1, _N1, _N1)
_U = "u32"
#: The XNNPACK delegate's graph (``XN00``/``XN01``), as ExecuTorch 1.5's XNNPACK runtime reads it.
XNN_SCHEMA: dict[str, tuple] = {
    "Buffer": (("vec", "u8"),),
    "PerChannelGroupQuant": (("vec", "f32"), "i32", "i32", ("vec", "u16"), _U, _U),
    "PerChannelQuant": (("vec", "f32"), "i32", _U, _U),
    "PerTokenDynamicQuant": ("i32",),
    "PerTensorQuant": ("f32", "i32"),
    "XNNTensorValue": ("i16", _U, ("vec", _U), _U, _U, _U, _U, "i16"),
    "XNNQuantizedTensorValue": ("XNNTensorValue", "utype", ("union", {1: "PerChannelQuant", 2: "PerTensorQuant",
                                                                      3: "PerTokenDynamicQuant",
                                                                      4: "PerChannelGroupQuant"})),
    "OutputMinMax": ("f32", "f32"),
    "XNode": ("utype", ("union", dict(enumerate(_XNODES, start=1))), _U, "OutputMinMax"),
    "XValue": ("utype", ("union", {1: "XNNTensorValue", 2: "XNNQuantizedTensorValue"})),
    "XNNStaticTranspose": (_U, ("vec", _U), _U, _U, _U),
    "XNNStaticResizeBilinear2D": (_U,) * 5,
    "XNNStaticConstantPad": (("vec", _U), ("vec", _U), "f32", _U, _U, _U),
    _N2: (_U,) * 4,
    _N1: (_U,) * 3,
    _CAT: (_U,) * 8,
    "XNNELU": ("f32", _U, _U, _U),
    "XNNFullyConnected": (_U,) * 5,
    _CONV: (_U,) * 20,
    _POOL: (_U,) * 13,
    "XNNStaticReshape": (_U, ("vec", _U), _U, _U, _U),
    "XNNStaticSlice": (_U, ("vec", _U), ("vec", _U), _U, _U, _U),
    "XNNScaledDotProductAttention": (_U,) * 7,
    "XNNArgMaxPooling2d": (_U,) * 10,
    "XNNLeakyReLU": ("f32", _U, _U, _U),
    "ConstantDataOffset": ("u64", "u64", "str"),
    "XNNGraph": ("str", ("vec", "XNode"), ("vec", "XValue"), _U, ("vec", _U), ("vec", _U), ("vec", "Buffer"),
                 ("vec", _U), ("vec", "ConstantDataOffset")),
}


def _refuse(name: str, fmt: str, why: str) -> ModelLoadError:
    return ModelLoadError(f"{name}: not a well-formed {fmt} file ({why}); the file is corrupt or was replaced — "
                          "re-export the bundle or copy it again")


def check_pte(data: bytes, name: str) -> None:
    """Refuse an ExecuTorch program that is malformed in any way the runtime could trip over."""
    try:
        _check_pte(memoryview(data))
    except FlatbufferError as exc:
        raise _refuse(name, "ExecuTorch .pte", str(exc)) from None


def _check_pte(buf: memoryview) -> None:
    size = len(buf)
    if size < 8 or bytes(buf[4:8]) != b"ET12":
        raise FlatbufferError(f"file identifier {bytes(buf[4:8])!r} is not b'ET12'" if size >= 8 else
                              f"{size} bytes is too short")
    program_size, seg_base, seg_size = size, 0, 0
    if size >= 32 and bytes(buf[8:12]) == b"eh00":
        length = struct.unpack_from("<I", buf, 12)[0]
        if length < 24 or 8 + length > size:
            raise FlatbufferError(f"extended header length {length} is malformed")
        program_size, seg_base = struct.unpack_from("<QQ", buf, 16)
        seg_size = struct.unpack_from("<Q", buf, 32)[0] if length >= 32 and size >= 40 else 0
        if not 8 <= program_size <= size:
            raise FlatbufferError(f"program size {program_size} does not fit the {size}-byte file")
        if seg_base and not program_size <= seg_base <= size:
            raise FlatbufferError(f"segment base {seg_base} lies outside the file")
        if seg_size and seg_base + seg_size > size:
            raise FlatbufferError(f"segment data ({seg_size} bytes at {seg_base}) runs past the end of the file")
        if seg_base and not seg_size:
            seg_size = size - seg_base
    Verifier(buf, PTE_SCHEMA, end=program_size).verify("Program", b"ET12")
    root = struct.unpack_from("<I", buf, 0)[0]
    segments = vector_items(buf, field_target(buf, root, 4))
    for k, seg in enumerate(segments):
        off, n = read_scalar(buf, seg, 0, "Q"), read_scalar(buf, seg, 1, "Q")
        if not seg_base or off + n > seg_size:
            raise FlatbufferError(f"segment {k} ({n} bytes at {off}) lies outside the file's segment data")
    n_inline = len(vector_items(buf, field_target(buf, root, 3)))
    constant = field_target(buf, root, 5)
    if constant is not None and len(vector_items(buf, field_target(buf, constant, 1))) > 0:
        idx = read_scalar(buf, constant, 0, "I")
        if idx >= len(segments):
            raise FlatbufferError(f"constant segment index {idx} but {len(segments)} segments")
        seg_len = read_scalar(buf, segments[idx], 1, "Q")
        offsets_at = field_target(buf, constant, 1)
        count = struct.unpack_from("<I", buf, offsets_at)[0] if offsets_at is not None else 0
        for j in range(count):
            o = struct.unpack_from("<Q", buf, offsets_at + 4 + 8 * j)[0]
            if o > seg_len:
                raise FlatbufferError(f"constant offset {j} ({o}) lies outside its {seg_len}-byte segment")
    named_sizes = {}
    for nd in vector_items(buf, field_target(buf, root, 7)):
        idx = read_scalar(buf, nd, 1, "I")
        if idx >= len(segments):
            raise FlatbufferError("named data points to a segment that does not exist")
        named_sizes[_string(buf, field_target(buf, nd, 0))] = read_scalar(buf, segments[idx], 1, "Q")
    for plan in vector_items(buf, field_target(buf, root, 1)):
        n_values = len(vector_items(buf, field_target(buf, plan, 2)))
        n_ops = len(vector_items(buf, field_target(buf, plan, 6)))
        delegates = vector_items(buf, field_target(buf, plan, 7))
        for slot in (3, 4):  # plan inputs and outputs are value indices
            _check_indices(buf, field_target(buf, plan, slot), n_values, "plan input/output")
        sizes_at = field_target(buf, plan, 8)  # memory-planned buffers: ExecuTorch allocates them at load
        n_sizes = struct.unpack_from("<I", buf, sizes_at)[0] if sizes_at is not None else 0
        for size in (struct.unpack_from(f"<{n_sizes}q", buf, sizes_at + 4) if n_sizes else ()):
            if not 0 <= size <= _MAX_PLANNED_BYTES:
                raise FlatbufferError(f"a memory-planned buffer of {size} bytes (at most {_MAX_PLANNED_BYTES})")
        for d in delegates:
            ref = field_target(buf, d, 1)
            if ref is None:
                raise FlatbufferError("a backend delegate has no data reference")
            location, index = read_scalar(buf, ref, 0, "b"), read_scalar(buf, ref, 1, "I")
            limit = len(segments) if location == 1 else n_inline
            if location not in (0, 1) or index >= limit:
                raise FlatbufferError(f"a backend delegate points to data {index} of {limit} (location {location})")
            if _string(buf, field_target(buf, d, 0)) == "XnnpackBackend":
                if location == 1:
                    seg = segments[index]
                    start = seg_base + read_scalar(buf, seg, 0, "Q")
                    blob = buf[start:start + read_scalar(buf, seg, 1, "Q")]
                else:
                    inline = vector_items(buf, field_target(buf, root, 3))[index]
                    data_at = field_target(buf, inline, 0)
                    n = struct.unpack_from("<I", buf, data_at)[0] if data_at is not None else 0
                    blob = buf[data_at + 4:data_at + 4 + n] if data_at is not None else buf[0:0]
                try:
                    _check_xnnpack(blob, named_sizes)
                except FlatbufferError as exc:
                    raise FlatbufferError(f"XNNPACK delegate {index}: {exc}") from None
        for chain in vector_items(buf, field_target(buf, plan, 5)):
            for slot in (0, 1):
                _check_indices(buf, field_target(buf, chain, slot), n_values, "chain input/output")
            for ins in vector_items(buf, field_target(buf, chain, 2)):
                kind = read_scalar(buf, ins, 0, "B")
                call = field_target(buf, ins, 1)
                if call is None or kind not in (1, 2):
                    continue
                target = read_scalar(buf, call, 0, "i")
                limit = n_ops if kind == 1 else len(delegates)
                if not 0 <= target < limit:
                    raise FlatbufferError(f"an instruction calls {'operator' if kind == 1 else 'delegate'} "
                                          f"{target} of {limit}")
                _check_indices(buf, field_target(buf, call, 1), n_values, "instruction argument")


def _string(buf: memoryview, start: int | None) -> str:
    if start is None:
        return ""
    n = struct.unpack_from("<I", buf, start)[0]
    return bytes(buf[start + 4:start + 4 + n]).decode("utf-8")


def _check_xnnpack(blob: memoryview, named_sizes: dict[str, int]) -> None:
    """The XNNPACK payload: optional ``XH00`` header, then the ``XN00``/``XN01`` graph and its constant data."""
    size = len(blob)
    fb, const_size = blob, 0
    if size >= 30 and bytes(blob[4:8]) == b"XH00":
        hlen = struct.unpack_from("<H", blob, 8)[0]
        fb_off, fb_size, cd_off = struct.unpack_from("<III", blob, 10)
        const_size = struct.unpack_from("<Q", blob, 22)[0]
        if hlen < 30 or fb_off < hlen or fb_off + fb_size > size or cd_off + const_size > size:
            raise FlatbufferError(f"header (graph {fb_size} bytes at {fb_off}, constants {const_size} bytes at "
                                  f"{cd_off}) does not fit the {size}-byte payload")
        fb = blob[fb_off:fb_off + fb_size]
    if len(fb) < 8 or bytes(fb[4:8]) not in (b"XN00", b"XN01"):
        raise FlatbufferError(f"graph identifier {bytes(fb[4:8])!r} is not b'XN00' or b'XN01'")
    Verifier(fb, XNN_SCHEMA).verify("XNNGraph")
    root = struct.unpack_from("<I", fb, 0)[0]
    const_sizes = []  # bytes available to each constant_data entry
    for k, entry in enumerate(vector_items(fb, field_target(fb, root, 8))):
        key = _string(fb, field_target(fb, entry, 2))
        off, n = read_scalar(fb, entry, 0, "Q"), read_scalar(fb, entry, 1, "Q")
        if key:  # named data: the whole segment the program's named data maps the key to
            if key not in named_sizes:
                raise FlatbufferError(f"constant {k} names data {key[:40]!r} that the program does not hold")
            const_sizes.append(named_sizes[key])
            continue
        if off + n > const_size:
            raise FlatbufferError(f"constant {k} ({n} bytes at {off}) lies outside the {const_size} bytes of "
                                  "constant data")
        const_sizes.append(n)
    ids, dims = set(), [64]
    for value in vector_items(fb, field_target(fb, root, 2)):
        kind = read_scalar(fb, value, 0, "B")
        tensor = field_target(fb, value, 1)
        if tensor is None:
            raise FlatbufferError("a value has no tensor")
        if kind == 2:  # quantised: the tensor is its first field
            tensor = field_target(fb, tensor, 0)
            if tensor is None:
                raise FlatbufferError("a quantised value has no tensor")
        ids.add(_check_xnn_tensor(fb, tensor, const_sizes, dims))
    # geometry (padding, kernel, stride, dilation, channels, shapes ...) larger than every tensor dimension in the
    # graph is nonsense, and XNNPACK would size its buffers from it (a flipped byte asked for 16 GB)
    bound = max(dims)
    for node in vector_items(fb, field_target(fb, root, 1)):
        kind = read_scalar(fb, node, 0, "B")
        args = field_target(fb, node, 1)
        if args is None:
            raise FlatbufferError("a node has no arguments")
        table = _XNODES[kind - 1]
        for slot in _XNODE_IDS[table]:
            v = read_scalar(fb, args, slot, "I")
            if v not in ids and v != _INVALID_ID:
                raise FlatbufferError(f"a node refers to value id {v}, which the graph does not define")
        scalars, vectors = _XNODE_PARAMS.get(table, ((), ()))
        values = [read_scalar(fb, args, slot, "I") for slot in scalars]
        for slot in vectors:
            at = field_target(fb, args, slot)
            n = struct.unpack_from("<I", fb, at)[0] if at is not None else 0
            values.extend(struct.unpack_from(f"<{n}I", fb, at + 4) if n else ())
        if any(v > bound for v in values):
            raise FlatbufferError(f"a {table.strip('_')} node has a parameter of {max(values)}, larger than any "
                                  f"tensor dimension in the graph ({bound})")
    for slot in (4, 5):
        at = field_target(fb, root, slot)
        n = struct.unpack_from("<I", fb, at)[0] if at is not None else 0
        for v in (struct.unpack_from(f"<{n}I", fb, at + 4) if n else ()):
            if v not in ids:
                raise FlatbufferError(f"graph input/output id {v} is not defined")


_INVALID_ID = 0xFFFFFFFF
_MAX_PLANNED_BYTES = 1 << 30  # one planned activation buffer: 1 GiB is beyond what an on-device model needs
_MAX_ELEMENTS = 1 << 28  # 1 GiB of float32 in one tensor: beyond what an on-device model holds
#: bytes per element of XNNDatatype codes (4-bit types count half a byte)
_XNN_BYTES = {1: 4, 2: 2, 3: 1, 4: 1, 5: 4, 6: 1, 7: 4, 8: 0.5, 9: 1, 10: 0.5, 11: 1, 12: 4, 13: 4, 14: 2}
#: which slots of each node table hold value ids
_XNODE_IDS = {
    _N2: (0, 1, 2), _N1: (0, 1), _CAT: (1, 2, 3, 4, 5, 7), "XNNFullyConnected": (0, 1, 2, 3),
    _CONV: (15, 16, 17, 18), _POOL: (10, 11), "XNNStaticTranspose": (2, 3), "XNNStaticResizeBilinear2D": (2, 3),
    "XNNStaticConstantPad": (3, 4), "XNNELU": (1, 2), "XNNStaticReshape": (2, 3), "XNNStaticSlice": (3, 4),
    "XNNScaledDotProductAttention": (0, 1, 2, 3, 4, 5), "XNNArgMaxPooling2d": (6, 7, 8), "XNNLeakyReLU": (1, 2),
}


#: per node table: (scalar slots, vector slots) holding geometry that must not exceed the graph's largest dimension
_XNODE_PARAMS = {
    _CAT: ((0,), ()), _CONV: (tuple(range(15)), ()), _POOL: (tuple(range(10)), ()),
    "XNNStaticTranspose": ((0,), (1,)), "XNNStaticResizeBilinear2D": ((0, 1), ()),
    "XNNStaticConstantPad": ((), (0, 1)), "XNNStaticReshape": ((0,), (1,)), "XNNStaticSlice": ((0,), (1, 2)),
    "XNNArgMaxPooling2d": (tuple(range(6)), ()),
}


def _check_xnn_tensor(fb: memoryview, tensor: int, const_sizes: list[int], dims_seen: list[int]) -> int:
    """Check one XNNTensorValue (rank, element count, constant data big enough); returns its id."""
    dtype = read_scalar(fb, tensor, 0, "h")
    num_dims = read_scalar(fb, tensor, 1, "I")
    dims_at = field_target(fb, tensor, 2)
    n = struct.unpack_from("<I", fb, dims_at)[0] if dims_at is not None else 0
    if n != num_dims:
        raise FlatbufferError(f"a tensor declares {num_dims} dimensions but lists {n}")
    numel = 1
    for d in (struct.unpack_from(f"<{n}I", fb, dims_at + 4) if n else ()):
        numel *= d
        dims_seen.append(d)
        if numel > _MAX_ELEMENTS:
            raise FlatbufferError(f"a tensor has more than {_MAX_ELEMENTS} elements")
    if dtype not in _XNN_BYTES:
        raise FlatbufferError(f"a tensor has unknown datatype {dtype}")
    idx = read_scalar(fb, tensor, 3, "I")
    if idx:
        if idx >= len(const_sizes):
            raise FlatbufferError(f"a tensor uses constant {idx} of {len(const_sizes)}")
        need = math.ceil(numel * _XNN_BYTES[dtype])
        if const_sizes[idx] < need:
            raise FlatbufferError(f"a constant tensor needs {need} bytes, its data holds {const_sizes[idx]}")
    return read_scalar(fb, tensor, 6, "I")


def _check_indices(buf: memoryview, start: int | None, limit: int, what: str) -> None:
    if start is None:
        return
    n = struct.unpack_from("<I", buf, start)[0]
    for v in struct.unpack_from(f"<{n}i", buf, start + 4):
        if not 0 <= v < limit:
            raise FlatbufferError(f"{what} {v} is not a value index (the plan has {limit})")


def check_tflite(data: bytes, name: str) -> None:
    """Refuse a buffer that is not a TFLite flatbuffer before LiteRT parses it."""
    size = len(data)
    if size < 8:
        raise _refuse(name, "TFLite .tflite", f"{size} bytes is too short")
    if data[4:8] != b"TFL3":
        raise _refuse(name, "TFLite .tflite", f"file identifier {data[4:8]!r} is not b'TFL3'")
    root = struct.unpack_from("<I", data, 0)[0]
    if root % 4 or root + 4 > size:
        raise _refuse(name, "TFLite .tflite", f"root offset {root} lies outside the {size}-byte file")


def check_onnx(data: bytes, name: str) -> None:
    """An ONNX model is a protobuf that ONNX Runtime parses itself; only an empty file is refused here."""
    if not data:
        raise _refuse(name, "ONNX .onnx", "the file is empty")
