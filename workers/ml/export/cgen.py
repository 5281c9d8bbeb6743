"""Generates a self-contained int8 C inference engine (weights, plan, calls) from an int8 .tflite."""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workers.ml.export.tflite_reader import Graph, Operator, Tensor, read_tflite

KERNEL_DIR = Path(__file__).parent / "c" / "kernels"

# Ops whose outputs only ever feed RESHAPE's shape input: Keras 3 emits them for
# Flatten/Reshape, but the output shape is static, so they are dropped unevaluated.
SUPPORTED_OPS = (
    "FULLY_CONNECTED",
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "MAX_POOL_2D",
    "AVERAGE_POOL_2D",
    "ADD",
    "RESHAPE",
    "SOFTMAX",
    "QUANTIZE",
    "MEAN",
)

# The expf LiteRT calls when it fills its softmax table: the C library's, not numpy's.
_LIBM_PATH = ctypes.util.find_library("m")
_LIBM = ctypes.CDLL(_LIBM_PATH) if _LIBM_PATH else None
if _LIBM is not None:
    _LIBM.expf.restype = ctypes.c_float
    _LIBM.expf.argtypes = [ctypes.c_float]

# Which interpreter the generated arithmetic reproduces bit for bit:
#   "litert": LiteRT's Python interpreter (single rounding, lookup-table softmax);
#   "tflm":   TFLite Micro's reference kernels (double rounding, gemmlowp softmax).
MATCH_TARGETS = ("litert", "tflm")

# Ops whose kernels may write their output over one of their inputs.
IN_PLACE_OPS = ("ADD", "QUANTIZE")

ARENA_ALIGNMENT = 4  # bytes; keeps tensor starts word aligned for the M4's loads


class CGenError(ValueError):
    """The model cannot be turned into C (bad shape, type or quantization)."""


class UnsupportedOpError(CGenError):
    """The model holds an operator the C generator has no kernel for."""


@dataclass(frozen=True)
class CModel:
    """Generated C sources for one model plus the facts a caller needs to drive `<prefix>_invoke`."""

    prefix: str
    files: dict[str, str]  # file name -> text: <prefix>.c/.h, <prefix>_data.c/.h
    arena_size: int  # bytes of the single static activation buffer
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    weights_bytes: int  # constant data (weights, biases, multipliers) placed in flash
    ops: tuple[str, ...] = field(default=())  # the operators that run, in order
    match: str = "litert"

    @property
    def input_size(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def output_size(self) -> int:
        return int(np.prod(self.output_shape))

    def kernel_files(self) -> dict[str, str]:
        # studio_nn_config.h is generated per model; the packaged one is the default.
        return {
            p.name: p.read_text()
            for p in sorted(KERNEL_DIR.iterdir())
            if p.suffix in (".c", ".h") and p.name not in self.files
        }

    def all_files(self) -> dict[str, str]:
        return {**self.kernel_files(), **self.files}

    def write(self, directory: Path | str) -> list[Path]:
        """Write the generated files and the kernels into `directory` (flat)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name, text in self.all_files().items():
            path = out / name
            path.write_text(text)
            written.append(path)
        return written


# --- TFLite quantization arithmetic (tensorflow/lite/kernels/internal/quantization_util.cc) ---


def _round_half_away(x: float) -> int:
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


def quantize_multiplier(real: float, *, single_rounding: bool = True) -> tuple[int, int]:
    """TFLite QuantizeMultiplier: real = m * 2^(shift - 31) with m in [2^30, 2^31)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = _round_half_away(q * (1 << 31))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    if single_rounding and shift > 30:
        shift, q_fixed = 30, (1 << 31) - 1
    return int(q_fixed), int(shift)


def _expf(x: np.float32) -> np.float32:
    return np.float32(_LIBM.expf(float(x))) if _LIBM is not None else np.exp(np.float32(x))


def softmax_table(input_scale: float, beta: float) -> np.ndarray:
    """PopulateSoftmaxLookupTable: table[255 - v] = expf(-input_scale * beta * v), in float32."""
    scale = _f32(-_f32(input_scale) * _f32(beta))
    table = np.zeros(256, dtype=np.float32)
    for val in range(256):
        table[255 - val] = _expf(_f32(scale * _f32(val)))
    return table


def _f32(x: float) -> np.float32:
    return np.float32(x)


def activation_range(
    activation: str, scale: float, zero_point: int, tensor: str
) -> tuple[int, int]:
    """TFLite CalculateActivationRangeQuantized for int8 (f / scale in float32, rounded away)."""

    def quantize(f: float) -> int:
        return zero_point + _round_half_away(float(_f32(f) / _f32(scale)))

    qmin, qmax = -128, 127
    if activation == "NONE":
        return qmin, qmax
    if activation == "RELU":
        return max(qmin, quantize(0.0)), qmax
    if activation == "RELU6":
        return max(qmin, quantize(0.0)), min(qmax, quantize(6.0))
    if activation == "RELU_N1_TO_1":
        return max(qmin, quantize(-1.0)), min(qmax, quantize(1.0))
    raise UnsupportedOpError(
        f"fused activation {activation} on tensor {tensor} is not supported by the C generator"
    )


def _padding(
    padding: str, stride: int, dilation: int, in_size: int, filt: int, out_size: int
) -> int:
    if padding == "VALID":
        return 0
    effective = (filt - 1) * dilation + 1
    total = max((out_size - 1) * stride + effective - in_size, 0)
    return total // 2


# --- C text helpers ---


def _c_array(ctype: str, name: str, values: np.ndarray, per_line: int = 16) -> str:
    flat = [int(v) for v in np.asarray(values).reshape(-1)]
    if not flat:
        flat = [0]
    lines = []
    for i in range(0, len(flat), per_line):
        lines.append("    " + ", ".join(str(v) for v in flat[i : i + per_line]) + ",")
    return f"const {ctype} {name}[{len(flat)}] = {{\n" + "\n".join(lines) + "\n};\n"


def _identifier(prefix: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", prefix):
        raise CGenError(f"prefix {prefix!r} is not a C identifier")
    return prefix


# --- graph analysis ---


def _live_operators(graph: Graph) -> list[Operator]:
    """Operators that contribute to the outputs; RESHAPE depends only on its data input."""
    producer = {t: op for op in graph.operators for t in op.outputs}
    needed = set(graph.outputs)
    live: set[int] = set()
    stack = list(graph.outputs)
    while stack:
        t = stack.pop()
        op = producer.get(t)
        if op is None or op.index in live:
            continue
        live.add(op.index)
        deps = op.inputs[:1] if op.op == "RESHAPE" else op.inputs
        for d in deps:
            if d >= 0 and d not in needed and graph.tensors[d].data is None:
                needed.add(d)
                stack.append(d)
    return [op for op in graph.operators if op.index in live]


def _quant(t: Tensor) -> tuple[float, int]:
    if t.quantization is None:
        raise CGenError(f"tensor {t.index} ({t.name}) has no quantization parameters")
    return float(t.quantization.scale[0]), int(t.quantization.zero_point[0])


def _check_int8(t: Tensor, role: str) -> None:
    if t.dtype != "int8":
        raise CGenError(
            f"{role} tensor {t.index} ({t.name}) is {t.dtype}; the C generator needs a full-int8 "
            "model (convert with int8 input and output types)"
        )


@dataclass
class _Emitter:
    prefix: str
    graph: Graph
    data_decls: list[str] = field(default_factory=list)
    data_defs: list[str] = field(default_factory=list)
    params: list[str] = field(default_factory=list)
    weights_bytes: int = 0
    match: str = "litert"
    patch_size: int = 0  # int16 values of the largest convolution input patch
    acc_size: int = 0  # int32 accumulators of the widest depthwise convolution

    @property
    def single_rounding(self) -> bool:
        return self.match == "litert"

    def qm(self, real: float) -> tuple[int, int]:
        return quantize_multiplier(real, single_rounding=self.single_rounding)

    def const_array(self, ctype: str, tag: str, values: np.ndarray) -> str:
        name = f"{self.prefix}_{tag}"
        arr = np.asarray(values).reshape(-1)
        n = max(arr.size, 1)
        self.data_decls.append(f"extern const {ctype} {name}[{n}];")
        self.data_defs.append(_c_array(ctype, name, arr))
        self.weights_bytes += n * (1 if ctype == "int8_t" else 4)
        return name

    def const_array_f32(self, tag: str, values: np.ndarray) -> str:
        name = f"{self.prefix}_{tag}"
        arr = np.asarray(values, dtype=np.float32).reshape(-1)
        self.data_decls.append(f"extern const float {name}[{arr.size}];")
        # Nine significant digits round-trip every float32 exactly.
        body = ",\n".join(
            "    " + ", ".join(f"{float(v):.9e}f" for v in arr[i : i + 8])
            for i in range(0, arr.size, 8)
        )
        self.data_defs.append(f"const float {name}[{arr.size}] = {{\n{body}\n}};\n")
        self.weights_bytes += 4 * arr.size
        return name


def _requant_arrays(
    em: _Emitter, op: Operator, inp: Tensor, filt: Tensor, out: Tensor, channels: int, fc: bool
) -> tuple[str, str, str, bool]:
    fq = filt.quantization
    if fq is None:
        raise CGenError(f"filter tensor {filt.index} ({filt.name}) of {op.op} is not quantized")
    if np.any(fq.zero_point != 0):
        raise CGenError(f"filter tensor {filt.index} ({filt.name}) has a non-zero zero point")
    in_scale, _ = _quant(inp)
    out_scale, _ = _quant(out)
    per_channel = fq.scale.size > 1
    mults, shifts = [], []
    if per_channel:
        if fq.scale.size != channels:
            raise CGenError(
                f"filter tensor {filt.index} has {fq.scale.size} scales for {channels} channels"
            )
        for s in fq.scale:
            m, sh = em.qm(float(in_scale) * float(s) / float(out_scale))
            mults.append(m)
            shifts.append(sh)
    elif fc:
        # GetQuantizedConvolutionMultipler: the scale product is taken in float32.
        product = float(_f32(in_scale) * _f32(fq.scale[0]))
        m, sh = em.qm(product / float(out_scale))
        mults, shifts = [m], [sh]
    else:
        m, sh = em.qm(float(in_scale) * float(fq.scale[0]) / float(out_scale))
        mults, shifts = [m] * channels, [sh] * channels
    tag = f"op{op.index}"
    if em.match == "litert":
        # XNNPACK (LiteRT's default CPU path) requantizes with a float32 scale
        # (input_scale * filter_scale) / output_scale, rounded half to even.
        fscales = fq.scale if per_channel else fq.scale[:1]
        f32 = (_f32(in_scale) * fscales.astype(np.float32)) / _f32(out_scale)
        if not per_channel and not fc:
            f32 = np.repeat(f32, channels)
        fname = em.const_array_f32(f"{tag}_scale", f32.astype(np.float32))
        return "0", "0", fname, per_channel
    mname = em.const_array("int32_t", f"{tag}_mult", np.array(mults, dtype=np.int64))
    sname = em.const_array("int32_t", f"{tag}_shift", np.array(shifts, dtype=np.int64))
    return mname, sname, "0", per_channel


def _bias(em: _Emitter, op: Operator, channels: int) -> str:
    if len(op.inputs) < 3 or op.inputs[2] < 0:
        return "0"
    b = em.graph.tensors[op.inputs[2]]
    if b.data is None or b.dtype != "int32":
        raise CGenError(f"bias tensor {b.index} ({b.name}) of {op.op} must be a constant int32")
    if b.data.size != channels:
        raise CGenError(f"bias tensor {b.index} has {b.data.size} values for {channels} channels")
    return em.const_array("int32_t", f"op{op.index}_bias", b.data)


def _nhwc(t: Tensor, op: Operator) -> tuple[int, int, int, int]:
    if len(t.shape) != 4:
        raise CGenError(
            f"{op.op} (operator {op.index}) expects a 4-D tensor, tensor {t.index} is {t.shape}"
        )
    n, h, w, c = t.shape
    return n, h, w, c


def _emit_conv(em: _Emitter, op: Operator, depthwise: bool) -> tuple[str, str]:
    g = em.graph
    inp, filt, out = g.tensors[op.inputs[0]], g.tensors[op.inputs[1]], g.tensors[op.outputs[0]]
    n, ih, iw, ic = _nhwc(inp, op)
    _, oh, ow, oc = _nhwc(out, op)
    if filt.data is None:
        raise CGenError(f"filter tensor {filt.index} of {op.op} is not constant")
    if depthwise:
        _, kh, kw, _ = filt.shape
        depth_multiplier = oc // ic
    else:
        _, kh, kw, fic = filt.shape
        if fic != ic:
            raise UnsupportedOpError(
                f"grouped convolution in operator {op.index}: op CONV_2D with groups is not "
                "supported by the C generator"
            )
        depth_multiplier = 1
    o = op.options
    sh, sw = o.get("stride_h", 1), o.get("stride_w", 1)
    dh, dw = o.get("dilation_h_factor", 1), o.get("dilation_w_factor", 1)
    pad = o.get("padding", "VALID")
    _, in_zp = _quant(inp)
    out_scale, out_zp = _quant(out)
    amin, amax = activation_range(
        o.get("fused_activation_function", "NONE"), out_scale, out_zp, out.name
    )
    mult, shift, fscale, _ = _requant_arrays(em, op, inp, filt, out, oc, fc=False)
    filt_name = em.const_array("int8_t", f"op{op.index}_filter", filt.data)
    bias = _bias(em, op, oc)
    pname = f"op{op.index}_params"
    em.params.append(
        f"static const studio_conv_params_t {pname} = {{\n"
        f"    {n}, {ih}, {iw}, {ic}, {oh}, {ow}, {oc}, {kh}, {kw}, {sh}, {sw}, {dh}, {dw},\n"
        f"    {_padding(pad, sh, dh, ih, kh, oh)}, {_padding(pad, sw, dw, iw, kw, ow)}, {depth_multiplier},\n"
        f"    {-in_zp}, {out_zp}, {amin}, {amax},\n"
        f"    {filt_name}, {bias}, {mult}, {shift}, {fscale},\n"
        f"    {'0' if depthwise else 'conv_patch'}, {'dw_acc' if depthwise else '0'}}};\n"
    )
    if depthwise:
        em.acc_size = max(em.acc_size, oc)
    else:
        em.patch_size = max(em.patch_size, kh * kw * ic)
    fn = "studio_depthwise_conv2d_s8" if depthwise else "studio_conv2d_s8"
    return fn, pname


def _emit_fc(em: _Emitter, op: Operator) -> tuple[str, str]:
    g = em.graph
    inp, filt, out = g.tensors[op.inputs[0]], g.tensors[op.inputs[1]], g.tensors[op.outputs[0]]
    if filt.data is None or len(filt.shape) != 2:
        raise CGenError(
            f"filter tensor {filt.index} of FULLY_CONNECTED must be a constant 2-D tensor"
        )
    if filt.dtype != "int8":
        raise CGenError(f"filter tensor {filt.index} of FULLY_CONNECTED is {filt.dtype}, not int8")
    out_depth, in_depth = filt.shape
    if inp.size % in_depth:
        raise CGenError(
            f"FULLY_CONNECTED operator {op.index}: input size {inp.size} is not a multiple of {in_depth}"
        )
    batches = inp.size // in_depth
    _, in_zp = _quant(inp)
    out_scale, out_zp = _quant(out)
    o = op.options
    amin, amax = activation_range(
        o.get("fused_activation_function", "NONE"), out_scale, out_zp, out.name
    )
    mult, shift, fscale, per_channel = _requant_arrays(em, op, inp, filt, out, out_depth, fc=True)
    filt_name = em.const_array("int8_t", f"op{op.index}_filter", filt.data)
    bias = _bias(em, op, out_depth)
    pname = f"op{op.index}_params"
    em.params.append(
        f"static const studio_fc_params_t {pname} = {{\n"
        f"    {batches}, {in_depth}, {out_depth}, {-in_zp}, {out_zp}, {amin}, {amax}, {int(per_channel)},\n"
        f"    {filt_name}, {bias}, {mult}, {shift}, {fscale}}};\n"
    )
    return "studio_fully_connected_s8", pname


def _emit_pool(em: _Emitter, op: Operator) -> tuple[str, str]:
    g = em.graph
    inp, out = g.tensors[op.inputs[0]], g.tensors[op.outputs[0]]
    n, ih, iw, c = _nhwc(inp, op)
    _, oh, ow, _ = _nhwc(out, op)
    if _quant(inp) != _quant(out):
        raise CGenError(f"{op.op} operator {op.index}: input and output quantization differ")
    o = op.options
    fh, fw = o["filter_height"], o["filter_width"]
    sh, sw = o.get("stride_h", 1), o.get("stride_w", 1)
    pad = o.get("padding", "VALID")
    out_scale, out_zp = _quant(out)
    amin, amax = activation_range(
        o.get("fused_activation_function", "NONE"), out_scale, out_zp, out.name
    )
    pname = f"op{op.index}_params"
    em.params.append(
        f"static const studio_pool_params_t {pname} = {{\n"
        f"    {n}, {ih}, {iw}, {c}, {oh}, {ow}, {fh}, {fw}, {sh}, {sw},\n"
        f"    {_padding(pad, sh, 1, ih, fh, oh)}, {_padding(pad, sw, 1, iw, fw, ow)}, {amin}, {amax}}};\n"
    )
    fn = "studio_max_pool_s8" if op.op == "MAX_POOL_2D" else "studio_avg_pool_s8"
    return fn, pname


def _emit_add(em: _Emitter, op: Operator) -> tuple[str, str]:
    g = em.graph
    a, b, out = (g.tensors[i] for i in (*op.inputs[:2], op.outputs[0]))
    if a.shape != b.shape or a.shape != out.shape:
        raise UnsupportedOpError(
            f"operator {op.index}: op ADD with broadcasting ({a.shape} + {b.shape}) is not "
            "supported by the C generator"
        )
    for t in (a, b):
        if t.data is not None:
            raise UnsupportedOpError(
                f"operator {op.index}: op ADD with a constant operand is not supported by the C generator"
            )
    s1, z1 = _quant(a)
    s2, z2 = _quant(b)
    so, zo = _quant(out)
    left_shift = 20
    # add.cc Prepare: 2 * max(float scales) stays float, divisions are in double.
    twice_max = float(_f32(2.0) * _f32(max(_f32(s1), _f32(s2))))
    m1, sh1 = em.qm(float(s1) / twice_max)
    m2, sh2 = em.qm(float(s2) / twice_max)
    mo, sho = em.qm(twice_max / float(_f32(1 << left_shift) * _f32(so)))
    amin, amax = activation_range(
        op.options.get("fused_activation_function", "NONE"), so, zo, out.name
    )
    xnn = (0, 0, 0, 0)
    if em.match == "litert":
        xnn = _xnnpack_add_params(s1, z1, s2, z2, so)
    pname = f"op{op.index}_params"
    em.params.append(
        f"static const studio_add_params_t {pname} = {{\n"
        f"    {out.size}, {-z1}, {-z2}, {zo}, {left_shift},\n"
        f"    {m1}, {sh1}, {m2}, {sh2}, {mo}, {sho}, {amin}, {amax},\n"
        f"    {xnn[0]}, {xnn[1]}, {xnn[2]}, {xnn[3]}}};\n"
    )
    return "studio_add_s8", pname


def _xnnpack_add_params(
    s1: float, z1: int, s2: float, z2: int, so: float
) -> tuple[int, int, int, int]:
    """xnn_init_qs8_add_minmax_scalar_params: 21-bit multipliers from float32 scale ratios."""
    a_scale = _f32(_f32(s1) / _f32(so))
    b_scale = _f32(_f32(s2) / _f32(so))
    max_scale = max(a_scale, b_scale)
    exponent = int((np.array(max_scale, dtype=np.float32).view(np.uint32) >> 23) & 0xFF) - 127
    shift = 20 - exponent
    if not 12 <= shift <= 30:
        raise CGenError(
            f"ADD input/output scale ratio {float(max_scale)} is outside XNNPACK's range"
        )
    # Multiplying by 2^shift is exact in float32; np.rint rounds half to even like lrintf.
    a_mult = int(np.rint(np.float64(a_scale) * 2.0**shift))
    b_mult = int(np.rint(np.float64(b_scale) * 2.0**shift))
    bias = (1 << (shift - 1)) - a_mult * z1 - b_mult * z2
    return a_mult, b_mult, bias, shift


def _emit_softmax(em: _Emitter, op: Operator) -> tuple[str, str]:
    g = em.graph
    inp, out = g.tensors[op.inputs[0]], g.tensors[op.outputs[0]]
    in_scale, _ = _quant(inp)
    out_scale, out_zp = _quant(out)
    if out_zp != -128 or abs(out_scale - 1.0 / 256) > 1e-9:
        raise CGenError(
            f"SOFTMAX operator {op.index}: output quantization must be scale 1/256, zero point -128"
        )
    beta = float(_f32(op.options.get("beta", 1.0)))
    integer_bits = 5
    # PreprocessSoftmaxScaling and CalculateInputRadius (used by the fixed-point path).
    cap = (1 << 30) - 1.0 if em.single_rounding else (1 << 31) - 1.0
    real = min(beta * float(in_scale) * (1 << (31 - integer_bits)), cap)
    mult, left_shift = em.qm(real)
    radius = math.floor(
        1.0 * ((1 << integer_bits) - 1) * (1 << (31 - integer_bits)) / (1 << left_shift)
    )
    depth = inp.shape[-1]
    rows = inp.size // depth
    pname = f"op{op.index}_params"
    table = "0"
    if em.match == "litert":
        table = em.const_array_f32(f"op{op.index}_exp_table", softmax_table(in_scale, beta))
    em.params.append(
        f"static const studio_softmax_params_t {pname} = {{{rows}, {depth}, {mult}, {left_shift}, "
        f"{-radius}, {table}, {float(_f32(out_scale))!r}f, {out_zp}}};\n"
    )
    return "studio_softmax_s8", pname


def _emit_mean(em: _Emitter, op: Operator) -> tuple[str, str]:
    g = em.graph
    inp, axis, out = g.tensors[op.inputs[0]], g.tensors[op.inputs[1]], g.tensors[op.outputs[0]]
    if em.match != "litert":
        raise UnsupportedOpError(
            f"operator {op.index}: op MEAN is not supported by the C generator for match={em.match!r} "
            "(only for 'litert')"
        )
    n, h, w, c = _nhwc(inp, op)
    axes = (
        sorted(int(a) % 4 for a in np.asarray(axis.data).reshape(-1))
        if axis.data is not None
        else []
    )
    if axes != [1, 2]:
        raise UnsupportedOpError(
            f"operator {op.index}: op MEAN over axes {axes} is not supported by the C generator "
            "(only height and width, i.e. global average pooling)"
        )
    si, zi = _quant(inp)
    so, zo = _quant(out)
    # XNNPACK: (input_scale / output_scale) / element count, all in float32.
    scale = _f32(_f32(_f32(si) / _f32(so)) / _f32(h * w))
    pname = f"op{op.index}_params"
    em.params.append(
        f"static const studio_mean_params_t {pname} = {{{n}, {h}, {w}, {c}, {zi}, {zo}, "
        f"{float(scale):.9e}f}};\n"
    )
    return "studio_mean_hw_s8", pname


def _emit_quantize(em: _Emitter, op: Operator) -> tuple[str, str]:
    g = em.graph
    inp, out = g.tensors[op.inputs[0]], g.tensors[op.outputs[0]]
    if inp.dtype != "int8" or out.dtype != "int8":
        raise UnsupportedOpError(
            f"operator {op.index}: op QUANTIZE from {inp.dtype} to {out.dtype} is not supported by "
            "the C generator (only int8 -> int8 requantization)"
        )
    si, zi = _quant(inp)
    so, zo = _quant(out)
    m, sh = em.qm(float(si) / float(so))
    pname = f"op{op.index}_params"
    em.params.append(
        f"static const studio_requantize_params_t {pname} = {{{out.size}, {zi}, {zo}, {m}, {sh}}};\n"
    )
    return "studio_requantize_s8", pname


# --- memory planning ---


@dataclass
class _Buffer:
    group: int
    size: int
    first: int
    last: int
    offset: int = -1


def plan_arena(buffers: list[_Buffer], alignment: int = ARENA_ALIGNMENT) -> int:
    """Greedy-by-size offset assignment (as TFLite Micro's GreedyMemoryPlanner); returns the arena size."""
    order = sorted(buffers, key=lambda b: (-b.size, b.first))
    placed: list[_Buffer] = []
    for buf in order:
        overlapping = sorted(
            (p for p in placed if not (p.last < buf.first or buf.last < p.first)),
            key=lambda p: p.offset,
        )
        candidate = 0
        for p in overlapping:
            if candidate + buf.size <= p.offset:
                break
            end = p.offset + p.size
            candidate = max(candidate, -(-end // alignment) * alignment)
        buf.offset = candidate
        placed.append(buf)
    return max((b.offset + b.size for b in buffers), default=0)


def generate_c(model_bytes: bytes, *, prefix: str = "model", match: str = "litert") -> CModel:
    """Translate an int8 .tflite into C sources; see CModel. Raises UnsupportedOpError / CGenError.

    `match` picks the interpreter whose int8 outputs the C reproduces bit for bit (MATCH_TARGETS).
    """
    prefix = _identifier(prefix)
    if match not in MATCH_TARGETS:
        raise CGenError(f"match must be one of {MATCH_TARGETS}, not {match!r}")
    graph = read_tflite(model_bytes)
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise CGenError(
            f"the model has {len(graph.inputs)} inputs and {len(graph.outputs)} outputs; "
            "the C generator supports exactly one of each"
        )
    t_in, t_out = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    _check_int8(t_in, "input")
    _check_int8(t_out, "output")
    ops = _live_operators(graph)
    for op in ops:
        if op.op not in SUPPORTED_OPS:
            raise UnsupportedOpError(
                f"operator {op.index}: op {op.op} is not supported by the C generator "
                f"(supported: {', '.join(SUPPORTED_OPS)})"
            )
        if op.op == "RESHAPE":
            src, dst = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
            if src.size != dst.size:
                raise CGenError(
                    f"RESHAPE operator {op.index}: output tensor {dst.index} ({dst.name}) has "
                    f"static shape {list(dst.shape)} for {src.size} values; the model's shapes are "
                    "only known at run time (e.g. Dense on a 3-D input), which the C generator "
                    "cannot plan"
                )
        for i in op.inputs[:1] if op.op == "RESHAPE" else op.inputs[:2]:
            if i >= 0 and graph.tensors[i].data is None:
                _check_int8(graph.tensors[i], f"{op.op} input")

    em = _Emitter(prefix=prefix, graph=graph, match=match)

    # Storage groups: RESHAPE aliases its output to its input unless the output is
    # the model output (then it is a copy into the caller's buffer).
    group = {t: t for op in ops for t in (*op.inputs, *op.outputs) if t >= 0}
    group[t_in.index] = t_in.index
    group[t_out.index] = t_out.index

    def find(t: int) -> int:
        while group[t] != t:
            t = group[t]
        return t

    for op in ops:
        if op.op == "RESHAPE" and op.outputs[0] != t_out.index:
            group[find(op.outputs[0])] = find(op.inputs[0])

    external = {find(t_in.index): "input", find(t_out.index): "output"}

    # Element-wise ops write in place over an input that dies at that op: every
    # element is read before the same element is written.
    last_use: dict[int, int] = {}
    for step, op in enumerate(ops):
        for t in op.inputs[:1] if op.op == "RESHAPE" else op.inputs:
            if t >= 0 and graph.tensors[t].data is None:
                last_use[find(t)] = step
    for step, op in enumerate(ops):
        if op.op not in IN_PLACE_OPS:
            continue
        out_g = find(op.outputs[0])
        if out_g in external:
            continue
        for t in op.inputs:
            if t < 0 or graph.tensors[t].data is not None:
                continue
            g = find(t)
            if g in external or last_use.get(g) != step:
                continue
            if graph.tensors[t].nbytes != graph.tensors[op.outputs[0]].nbytes:
                continue
            group[out_g] = g
            last_use[g] = max(step, last_use.get(out_g, step))
            break
    spans: dict[int, list[int]] = {}
    for step, op in enumerate(ops):
        deps = op.inputs[:1] if op.op == "RESHAPE" else op.inputs
        for t in (*deps, *op.outputs):
            if t < 0 or graph.tensors[t].data is not None:
                continue
            g = find(t)
            if g in external:
                continue
            span = spans.setdefault(g, [step, step])
            span[0], span[1] = min(span[0], step), max(span[1], step)
    sizes: dict[int, int] = {}
    for t in group:
        g = find(t)
        if g in spans:
            sizes[g] = max(sizes.get(g, 0), graph.tensors[t].nbytes)
    buffers = [_Buffer(g, sizes[g], s[0], s[1]) for g, s in spans.items()]
    arena_size = plan_arena(buffers)
    offsets = {b.group: b.offset for b in buffers}

    def ptr(t: int, const: bool = False) -> str:
        g = find(t)
        if g in external:
            return external[g]
        return f"&arena[{offsets[g]}]"

    calls = []
    for op in ops:
        out_ptr = ptr(op.outputs[0])
        in_ptr = ptr(op.inputs[0])
        comment = f"    /* {op.index}: {op.op} -> {graph.tensors[op.outputs[0]].name[:60]} */"
        if op.op == "RESHAPE":
            if find(op.outputs[0]) != find(op.inputs[0]):
                n = graph.tensors[op.outputs[0]].nbytes
                calls.append(f"{comment}\n    memcpy({out_ptr}, {in_ptr}, {n});")
            continue
        if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            fn, pname = _emit_conv(em, op, depthwise=op.op == "DEPTHWISE_CONV_2D")
        elif op.op == "FULLY_CONNECTED":
            fn, pname = _emit_fc(em, op)
        elif op.op in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            fn, pname = _emit_pool(em, op)
        elif op.op == "SOFTMAX":
            fn, pname = _emit_softmax(em, op)
        elif op.op == "QUANTIZE":
            fn, pname = _emit_quantize(em, op)
        elif op.op == "MEAN":
            fn, pname = _emit_mean(em, op)
        else:  # ADD
            fn, pname = _emit_add(em, op)
            calls.append(
                f"{comment}\n    {fn}(&{pname}, {in_ptr}, {ptr(op.inputs[1])}, {out_ptr});"
            )
            continue
        calls.append(f"{comment}\n    {fn}(&{pname}, {in_ptr}, {out_ptr});")

    in_scale, in_zp = _quant(t_in)
    out_scale, out_zp = _quant(t_out)
    up = prefix.upper()
    guard = f"{up}_H"
    header = f"""/* Generated by Tiny Studio from an int8 .tflite: do not edit. */
#ifndef {guard}
#define {guard}

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

#define {up}_INPUT_SIZE {t_in.size}
#define {up}_OUTPUT_SIZE {t_out.size}
#define {up}_ARENA_SIZE {arena_size}
#define {up}_INPUT_SCALE {float(in_scale)!r}f
#define {up}_INPUT_ZERO_POINT {in_zp}
#define {up}_OUTPUT_SCALE {float(out_scale)!r}f
#define {up}_OUTPUT_ZERO_POINT {out_zp}

/* Runs the model on {up}_INPUT_SIZE int8 values (shape {list(t_in.shape)}) and writes
 * {up}_OUTPUT_SIZE int8 values (shape {list(t_out.shape)}). Returns 0. Not reentrant:
 * all activations live in one static arena of {up}_ARENA_SIZE bytes. */
int {prefix}_invoke(const int8_t *input, int8_t *output);

#ifdef __cplusplus
}}
#endif

#endif /* {guard} */
"""
    arena_decl = max(arena_size, 1)
    scratch = ""
    if em.patch_size:
        scratch += (
            f"static int16_t conv_patch[{em.patch_size}]; /* one convolution input patch */\n"
        )
    if em.acc_size:
        scratch += f"static int32_t dw_acc[{em.acc_size}]; /* depthwise accumulators */\n"
    source = f"""/* Generated by Tiny Studio from an int8 .tflite: do not edit. */
#include <string.h>

#include "studio_nn.h"
#include "{prefix}.h"
#include "{prefix}_data.h"

/* One activation buffer; tensor offsets were planned from tensor lifetimes. */
static int8_t arena[{arena_decl}];
{scratch}
{"".join(p + chr(10) for p in em.params)}
int {prefix}_invoke(const int8_t *input, int8_t *output)
{{
    (void)arena;
{chr(10).join(calls)}
    return 0;
}}
"""
    data_h = f"""/* Generated by Tiny Studio: model constants (weights, biases, requantization). */
#ifndef {up}_DATA_H
#define {up}_DATA_H

#include <stdint.h>

{chr(10).join(em.data_decls)}

#endif /* {up}_DATA_H */
"""
    data_c = (
        "/* Generated by Tiny Studio: model constants, kept in flash as const arrays. */\n"
        f'#include "{prefix}_data.h"\n\n' + "\n".join(em.data_defs)
    )
    return CModel(
        prefix=prefix,
        files={
            f"{prefix}.h": header,
            f"{prefix}.c": source,
            f"{prefix}_data.h": data_h,
            f"{prefix}_data.c": data_c,
            "studio_nn_config.h": (
                f"/* Generated by Tiny Studio: arithmetic that matches {match}. */\n"
                "#ifndef STUDIO_NN_CONFIG_H\n#define STUDIO_NN_CONFIG_H\n"
                f"#define STUDIO_NN_SINGLE_ROUNDING {int(em.single_rounding)}\n"
                "#endif\n"
            ),
        },
        arena_size=arena_size,
        input_shape=tuple(t_in.shape),
        output_shape=tuple(t_out.shape),
        input_scale=float(in_scale),
        input_zero_point=in_zp,
        output_scale=float(out_scale),
        output_zero_point=out_zp,
        weights_bytes=em.weights_bytes,
        ops=tuple(op.op for op in ops),
        match=match,
    )
