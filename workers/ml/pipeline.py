"""The impulse as an engine pipeline: spec parsing and checks, samples → windows → features, training and classifying.

Django-free on purpose: it takes the impulse spec as a dict and samples as `workers.ml.samples` payloads
(numpy inside), so it runs in a Celery task, in a benchmark and in a test alike.

The impulse spec (JSON, stored versioned on the project)::

    {"input": {"type": "time-series", "window_size_ms": 2000, "window_increase_ms": 500,
               "frequency_hz": 100, "zero_pad": true},
     "dsp": [{"id": "spectral", "block": "spectral-analysis", "axes": ["accX", "accY", "accZ"],
              "params": {"fft_length": 128}}],
     "learn": [{"id": "classifier", "block": "classifier", "inputs": ["spectral"],
                "arch": {"kind": "dense", "layers": [20, 10], "dropout": 0.1},
                "settings": {"epochs": 30, "learning_rate": 0.005}},
               {"id": "anomaly", "block": "anomaly", "inputs": ["spectral"], "clusters": 32}]}

An image impulse has ``{"type": "image", "width": 96, "height": 96, "resize_mode": "squash",
"color": "rgb"}`` as input, and its DSP blocks name no axes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workers.ml import dsp
from workers.ml.dsp.common import DspParamError
from workers.ml.samples import Image, Payload, TimeSeries
from workers.ml.windows import (
    ImageInput,
    InputBlockError,
    TimeSeriesInput,
    prepare_image,
    split_windows,
    window_length,
)

LEARN_BLOCKS = ("classifier", "regression", "transfer", "anomaly")
NN_BLOCKS = ("classifier", "regression", "transfer")
MAX_DSP_BLOCKS = 8
MAX_LEARN_BLOCKS = 4
ID_MAX = 40


class ImpulseError(ValueError):
    """An impulse spec (or the data given to it) that cannot work; `field` is the JSON path at fault."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class DspStep:
    id: str
    block: str
    axes: tuple[str, ...]
    params: Any

    @property
    def module(self):
        return dsp.get_block(self.block)


@dataclass(frozen=True)
class LearnStep:
    id: str
    block: str
    inputs: tuple[str, ...]
    arch: Any = None  # ArchSpec for classifier/regression, TransferSpec for transfer
    settings: Any = None  # TrainSettings of the neural network blocks
    from_scratch: bool = False  # transfer only: random backbone weights, chosen explicitly
    clusters: int = 32
    seed: int = 1


@dataclass(frozen=True)
class Impulse:
    input: TimeSeriesInput | ImageInput
    dsp: tuple[DspStep, ...]
    learn: tuple[LearnStep, ...]
    spec: dict = field(compare=False)  # the normalised JSON (defaults filled in)

    @property
    def is_image(self) -> bool:
        return isinstance(self.input, ImageInput)

    def dsp_step(self, step_id: str) -> DspStep:
        return next(s for s in self.dsp if s.id == step_id)

    @property
    def classifier(self) -> LearnStep | None:
        return next((s for s in self.learn if s.block in NN_BLOCKS), None)

    @property
    def anomaly(self) -> LearnStep | None:
        return next((s for s in self.learn if s.block == "anomaly"), None)


# --- parsing ------------------------------------------------------------------------------------


def _obj(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise ImpulseError(f"{where} must be an object", where)
    return value


def _known(d: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise ImpulseError(f"unknown key(s) in {where}: {', '.join(unknown)}", where)


def _ident(value: Any, where: str) -> str:
    if (
        not isinstance(value, str)
        or not value
        or len(value) > ID_MAX
        or not all(c.isalnum() or c in "-_" for c in value)
    ):
        raise ImpulseError(f"{where} must be 1..{ID_MAX} letters, digits, '-' or '_'", where)
    return value


def _dataclass_from(cls: type, data: Any, where: str, exclude: tuple[str, ...] = ()) -> Any:
    data = _obj(data if data is not None else {}, where)
    names = {f.name for f in dataclasses.fields(cls)} - set(exclude)
    _known(data, names, where)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        default = f.default
        if isinstance(default, tuple):
            if not isinstance(value, list):
                raise ImpulseError(f"{where}.{f.name} must be a list", f"{where}.{f.name}")
            value = tuple(value)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ImpulseError(f"{where}.{f.name} must be true or false", f"{where}.{f.name}")
        elif isinstance(default, int) and isinstance(value, float) and value == int(value):
            value = int(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def _parse_input(data: Any) -> TimeSeriesInput | ImageInput:
    data = dict(_obj(data, "input"))
    kind = data.pop("type", "time-series")
    try:
        if kind == "time-series":
            inp = _dataclass_from(TimeSeriesInput, data, "input")
        elif kind == "image":
            inp = _dataclass_from(ImageInput, data, "input")
        else:
            raise ImpulseError(
                f"input.type must be 'time-series' or 'image', got {kind!r}", "input.type"
            )
        inp.validate()
    except (InputBlockError, TypeError) as exc:
        raise ImpulseError(f"input: {exc}", "input") from None
    return inp


def input_shape(inp: TimeSeriesInput | ImageInput, n_axes: int) -> tuple[int, ...]:
    """The shape of one window as a DSP block sees it."""
    if isinstance(inp, ImageInput):
        return (inp.height, inp.width, 1 if inp.color == "grayscale" else 3)
    return (window_length(inp), n_axes)


def _frequency(inp: TimeSeriesInput | ImageInput) -> float:
    return float(inp.frequency_hz) if isinstance(inp, TimeSeriesInput) else 1.0


def parse_impulse(
    spec: Any, *, axes: Sequence[str] | None = None, data_hz: Sequence[float] = ()
) -> Impulse:
    """Check a spec dict against the engine's blocks; `axes` (the data's axis names, when known)
    makes wiring to an axis that does not exist an error, `data_hz` (the samples' rates) a frequency
    the data cannot give. Raises ImpulseError naming the field."""
    from workers.ml.learn.classifier import ArchSpec
    from workers.ml.learn.settings import LearnParamError, TrainSettings

    spec = _obj(spec, "impulse")
    _known(spec, {"input", "dsp", "learn"}, "impulse")
    inp = _parse_input(spec.get("input", {}))
    if not isinstance(inp, ImageInput) and data_hz:
        check_frequency({str(i): hz for i, hz in enumerate(data_hz)}, inp)
    norm: dict = {
        "input": {
            "type": "image" if isinstance(inp, ImageInput) else "time-series",
            **dataclasses.asdict(inp),
        }
    }

    raw_dsp = spec.get("dsp")
    if not isinstance(raw_dsp, list) or not raw_dsp:
        raise ImpulseError("dsp must be a list of one or more processing blocks", "dsp")
    if len(raw_dsp) > MAX_DSP_BLOCKS:
        raise ImpulseError(f"at most {MAX_DSP_BLOCKS} processing blocks", "dsp")
    steps: list[DspStep] = []
    norm["dsp"] = []
    for i, item in enumerate(raw_dsp):
        where = f"dsp[{i}]"
        item = _obj(item, where)
        _known(item, {"id", "block", "axes", "params"}, where)
        block = item.get("block")
        if block not in dsp.BLOCKS:
            raise ImpulseError(
                f"{where}.block: unknown processing block {block!r}; known: "
                f"{', '.join(sorted(dsp.BLOCKS))}",
                f"{where}.block",
            )
        step_id = _ident(item.get("id", block), f"{where}.id")
        if any(s.id == step_id for s in steps):
            raise ImpulseError(f"{where}.id {step_id!r} is used twice", f"{where}.id")
        if (block == "image") != isinstance(inp, ImageInput):
            raise ImpulseError(
                f"{where}: block {block!r} does not take "
                f"{'images' if isinstance(inp, ImageInput) else 'time series'}",
                f"{where}.block",
            )
        step_axes: tuple[str, ...] = ()
        if not isinstance(inp, ImageInput):
            raw_axes = item.get("axes")
            if raw_axes is None and axes:
                raw_axes = list(axes)
            if (
                not isinstance(raw_axes, list)
                or not raw_axes
                or not all(isinstance(a, str) for a in raw_axes)
            ):
                raise ImpulseError(
                    f"{where}.axes must be a non-empty list of axis names", f"{where}.axes"
                )
            if len(set(raw_axes)) != len(raw_axes):
                raise ImpulseError(f"{where}.axes names an axis twice", f"{where}.axes")
            if axes is not None:
                missing = [a for a in raw_axes if a not in axes]
                if missing:
                    raise ImpulseError(
                        f"{where}.axes: the data has no axis {', '.join(map(repr, missing))}; "
                        f"it has {', '.join(axes) or 'none'}",
                        f"{where}.axes",
                    )
            step_axes = tuple(raw_axes)
        try:
            params = dsp.params_from_dict(block, item.get("params") or {})
            dsp.get_block(block).validate(
                params,
                input_shape=input_shape(inp, max(1, len(step_axes))),
                frequency=_frequency(inp),
            )
        except DspParamError as exc:
            raise ImpulseError(f"{where}.params: {exc}", f"{where}.params") from None
        steps.append(DspStep(step_id, block, step_axes, params))
        norm["dsp"].append(
            {
                "id": step_id,
                "block": block,
                "axes": list(step_axes),
                "params": dsp.params_to_dict(params),
            }
        )

    raw_learn = spec.get("learn")
    if not isinstance(raw_learn, list) or not raw_learn:
        raise ImpulseError("learn must be a list of one or more learning blocks", "learn")
    if len(raw_learn) > MAX_LEARN_BLOCKS:
        raise ImpulseError(f"at most {MAX_LEARN_BLOCKS} learning blocks", "learn")
    learns: list[LearnStep] = []
    norm["learn"] = []
    for i, item in enumerate(raw_learn):
        where = f"learn[{i}]"
        item = _obj(item, where)
        block = item.get("block")
        if block not in LEARN_BLOCKS:
            raise ImpulseError(
                f"{where}.block: unknown learning block {block!r}; known: "
                f"{', '.join(LEARN_BLOCKS)}",
                f"{where}.block",
            )
        allowed = {"id", "block", "inputs"} | (
            {"clusters", "seed"} if block == "anomaly" else {"arch", "settings"}
        )
        if block == "transfer":
            allowed = {"id", "block", "inputs", "transfer", "settings", "from_scratch"}
        _known(item, allowed, where)
        step_id = _ident(item.get("id", block), f"{where}.id")
        if any(s.id == step_id for s in learns) or any(s.id == step_id for s in steps):
            raise ImpulseError(f"{where}.id {step_id!r} is used twice", f"{where}.id")
        inputs = item.get("inputs") or [s.id for s in steps]
        if not isinstance(inputs, list) or not all(isinstance(x, str) for x in inputs):
            raise ImpulseError(
                f"{where}.inputs must be a list of processing block ids", f"{where}.inputs"
            )
        unknown = [x for x in inputs if not any(s.id == x for s in steps)]
        if unknown:
            raise ImpulseError(
                f"{where}.inputs: no processing block {', '.join(map(repr, unknown))}",
                f"{where}.inputs",
            )
        n_features = sum(_output_size(s, inp) for s in steps if s.id in inputs)
        entry: dict = {"id": step_id, "block": block, "inputs": list(inputs)}
        if block == "anomaly":
            clusters = item.get("clusters", 32)
            if (
                isinstance(clusters, bool)
                or not isinstance(clusters, int)
                or not 1 <= clusters <= 1024
            ):
                raise ImpulseError(
                    f"{where}.clusters must be an integer in 1..1024, got {clusters!r}",
                    f"{where}.clusters",
                )
            seed = item.get("seed", 1)
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise ImpulseError(f"{where}.seed must be a non-negative integer", f"{where}.seed")
            learns.append(LearnStep(step_id, block, tuple(inputs), clusters=clusters, seed=seed))
            entry |= {"clusters": clusters, "seed": seed}
        elif block == "transfer":
            if any(s.block in NN_BLOCKS for s in learns):
                raise ImpulseError(
                    f"{where}: an impulse has at most one neural network block", f"{where}.block"
                )
            learns.append(_parse_transfer(item, where, step_id, inputs, steps, inp, n_features))
            entry |= {
                "transfer": dataclasses.asdict(learns[-1].arch),
                "settings": dataclasses.asdict(learns[-1].settings),
                "from_scratch": learns[-1].from_scratch,
            }
        else:
            if any(s.block in NN_BLOCKS for s in learns):
                raise ImpulseError(
                    f"{where}: an impulse has at most one neural network block", f"{where}.block"
                )
            try:
                arch = _dataclass_from(
                    ArchSpec, item.get("arch"), f"{where}.arch", exclude=("input_shape",)
                )
                if arch.kind != "dense":
                    if len(inputs) != 1:
                        raise ImpulseError(
                            f"{where}.arch: a {arch.kind} network takes exactly one processing "
                            "block as input",
                            f"{where}.arch.kind",
                        )
                    src = next(s for s in steps if s.id == inputs[0])
                    shape = _output_shape(src, inp)
                    arch = dataclasses.replace(arch, input_shape=tuple(shape))
                arch.validate(n_features)
                settings = _dataclass_from(TrainSettings, item.get("settings"), f"{where}.settings")
                settings.validate()
            except LearnParamError as exc:
                raise ImpulseError(f"{where}: {exc}", f"{where}") from None
            except TypeError as exc:
                raise ImpulseError(f"{where}: {exc}", f"{where}") from None
            learns.append(LearnStep(step_id, block, tuple(inputs), arch=arch, settings=settings))
            arch_dict = dataclasses.asdict(arch)
            arch_dict.pop("input_shape")
            arch_dict["layers"] = list(arch_dict["layers"])
            entry |= {"arch": arch_dict, "settings": dataclasses.asdict(settings)}
        norm["learn"].append(entry)
    if sum(1 for s in learns if s.block == "anomaly") > 1:
        raise ImpulseError("an impulse has at most one anomaly block", "learn")
    return Impulse(inp, tuple(steps), tuple(learns), norm)


def _parse_transfer(
    item: dict,
    where: str,
    step_id: str,
    inputs: list[str],
    steps: list[DspStep],
    inp: TimeSeriesInput | ImageInput,
    n_features: int,
) -> LearnStep:
    """A transfer-learning block: one image block (RGB, 0..1) of a square image the backbone's size."""
    from workers.ml.learn.settings import LearnParamError, TrainSettings
    from workers.ml.learn.transfer import TransferSpec

    try:
        spec = _dataclass_from(TransferSpec, item.get("transfer"), f"{where}.transfer")
        spec.validate()
        settings = _dataclass_from(TrainSettings, item.get("settings"), f"{where}.settings")
        settings.validate()
    except (LearnParamError, TypeError) as exc:
        raise ImpulseError(f"{where}: {exc}", where) from None
    from_scratch = item.get("from_scratch", False)
    if not isinstance(from_scratch, bool):
        raise ImpulseError(f"{where}.from_scratch must be true or false", f"{where}.from_scratch")
    src = [s for s in steps if s.id in inputs]
    if not isinstance(inp, ImageInput) or len(src) != 1 or src[0].block != "image":
        raise ImpulseError(
            f"{where}: transfer learning takes exactly one image processing block",
            f"{where}.inputs",
        )
    size = spec.image_size
    if (
        (inp.width, inp.height) != (size, size)
        or src[0].params.color != "rgb"
        or src[0].params.scale != "0-1"
    ):
        raise ImpulseError(
            f"{where}: {spec.backbone} {size}x{size} needs {size}x{size} RGB images scaled 0-1; "
            f"the impulse gives {inp.width}x{inp.height} {src[0].params.color} "
            f"{src[0].params.scale}",
            f"{where}.transfer.image_size",
        )
    return LearnStep(
        step_id, "transfer", tuple(inputs), arch=spec, settings=settings, from_scratch=from_scratch
    )


def transfer_weights_missing(impulse: Impulse, pretrained_dir: str | None) -> str | None:
    """Why the impulse's transfer block cannot train (weights not installed and not from scratch), or None."""
    from workers.ml.learn.transfer import available_backbones

    step = impulse.classifier
    if step is None or step.block != "transfer" or step.from_scratch:
        return None
    spec = step.arch
    for found in available_backbones(pretrained_dir):
        if (found["backbone"], found["alpha"], found["image_size"]) == (
            spec.backbone,
            spec.alpha,
            spec.image_size,
        ):
            return None
    from workers.ml.learn.transfer import _backbone

    name = _backbone(spec.backbone).weights_file(spec.alpha, spec.image_size)
    return (
        f"the pretrained weights for {spec.backbone} alpha {spec.alpha} {spec.image_size}x{spec.image_size} "
        f"are not installed ({name} in {pretrained_dir}); install them, or set from_scratch to train "
        "without them"
    )


def _output_shape(step: DspStep, inp: TimeSeriesInput | ImageInput) -> tuple:
    return tuple(
        step.module.output_shape(
            step.params,
            input_shape=input_shape(inp, max(1, len(step.axes))),
            frequency=_frequency(inp),
        )
    )


def _output_size(step: DspStep, inp: TimeSeriesInput | ImageInput) -> int:
    return int(math.prod(_output_shape(step, inp)))


def describe_blocks(pretrained_dir: str | None = None) -> dict:
    """Everything the impulse form shows: DSP blocks with their parameters, learning blocks' settings,
    and which pretrained backbones are installed."""
    from workers.ml.learn.classifier import KINDS
    from workers.ml.learn.settings import AUGMENTATIONS
    from workers.ml.learn.transfer import available_backbones

    return {
        "dsp": [dsp.describe(name) for name in dsp.BLOCKS],
        "learn": [
            {
                "name": "classifier",
                "title": "Classification (neural network)",
                "arch_kinds": list(KINDS),
                "augmentations": list(AUGMENTATIONS),
            },
            {
                "name": "regression",
                "title": "Regression (neural network, MSE)",
                "arch_kinds": list(KINDS),
            },
            {
                "name": "transfer",
                "title": "Transfer learning (images, MobileNetV2)",
                "alphas": [0.35, 0.1],
                "image_sizes": [96, 160],
                "installed": [
                    {k: v for k, v in b.items() if k != "path"}
                    for b in available_backbones(pretrained_dir)
                ],
            },
            {"name": "anomaly", "title": "Anomaly detection (k-means)"},
        ],
    }


# --- data → windows → features ------------------------------------------------------------------


def dsp_cache_key(
    step: DspStep, inp: TimeSeriesInput | ImageInput, sample_sha256: str, scope: str = ""
) -> str:
    """Features of one sample under one block depend on exactly these; a block version bump misses."""
    key = {
        "block": step.block,
        "version": step.module.IMPLEMENTATION_VERSION,
        "params": dsp.params_to_dict(step.params),
        "axes": list(step.axes),
        "input": dataclasses.asdict(inp),
        "sample": sample_sha256,
        "scope": scope,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def sample_windows(
    payload: Payload, impulse: Impulse, *, name: str = "sample"
) -> tuple[np.ndarray, np.ndarray]:
    """Windows of one sample ([n, len, axes] of all its axes, or [1, h, w, c] for an image) and their
    start times in ms. Raises ImpulseError naming the sample when the data does not fit the impulse."""
    if impulse.is_image:
        if not isinstance(payload, Image):
            raise ImpulseError(f"{name} is a time series but the impulse takes images", "input")
        return prepare_image(payload.pixels, impulse.input)[None], np.zeros(1)
    if not isinstance(payload, TimeSeries):
        raise ImpulseError(f"{name} is an image but the impulse takes time series", "input")
    if not np.isfinite(payload.values).all():
        raise ImpulseError(f"{name} holds NaN or infinite values", "data")
    try:
        return split_windows(payload.values, payload.interval_ms, impulse.input)
    except InputBlockError as exc:
        raise ImpulseError(f"{name}: {exc}", "input") from None


def step_features(
    windows: np.ndarray,
    axes: Sequence[str],
    step: DspStep,
    impulse: Impulse,
    *,
    name: str = "sample",
) -> np.ndarray:
    """[n_windows, n_features] of one DSP block over a sample's windows."""
    if impulse.is_image:
        chosen = windows
    else:
        missing = [a for a in step.axes if a not in axes]
        if missing:
            raise ImpulseError(
                f"{name} has no axis {', '.join(map(repr, missing))} (block {step.id} needs it; "
                f"the sample has {', '.join(axes)})",
                "data",
            )
        chosen = windows[:, :, [list(axes).index(a) for a in step.axes]]
    freq = _frequency(impulse.input)
    size = _output_size(step, impulse.input)
    out = np.empty((len(chosen), size), np.float32)
    for i, w in enumerate(chosen):
        out[i] = step.module.features(w, step.params, frequency=freq)
    if not np.isfinite(out).all():
        raise ImpulseError(f"block {step.id} gave NaN or infinite features on {name}", "data")
    return out


def sample_features(
    payload: Payload, impulse: Impulse, *, name: str = "sample"
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every DSP block's features of one sample (uncached): ({block id: [n, f]}, window starts ms)."""
    windows, starts = sample_windows(payload, impulse, name=name)
    axes = () if impulse.is_image else payload.axes
    return {s.id: step_features(windows, axes, s, impulse, name=name) for s in impulse.dsp}, starts


def learn_input(features: dict[str, np.ndarray], step: LearnStep) -> np.ndarray:
    """The feature matrix a learning block sees: its chosen DSP outputs side by side."""
    return np.concatenate([features[i] for i in step.inputs], axis=1).astype(np.float32)


def check_window_fit(durations_ms: dict[str, float], impulse: Impulse) -> None:
    """Without zero padding a sample shorter than the window gives no window: refuse when no sample
    fits, naming them."""
    if impulse.is_image or impulse.input.zero_pad or not durations_ms:
        return
    size = impulse.input.window_size_ms
    short = [n for n, d in durations_ms.items() if d < size]
    if len(short) == len(durations_ms):
        shown = ", ".join(short[:10]) + (f" and {len(short) - 10} more" if len(short) > 10 else "")
        raise ImpulseError(
            f"the window ({size} ms) is longer than every sample: {shown}; "
            "shorten the window or turn on zero padding",
            "input.window_size_ms",
        )


def check_frequency(frequencies_hz: dict[str, float], impulse: Impulse | TimeSeriesInput) -> None:
    """A frequency above every sample's own rate cannot be given by the data (it would be invented)."""
    inp = impulse if isinstance(impulse, TimeSeriesInput) else impulse.input
    if not isinstance(inp, TimeSeriesInput) or not frequencies_hz:
        return
    highest = max(frequencies_hz.values())
    if inp.frequency_hz > highest * 1.001:
        raise ImpulseError(
            f"frequency {inp.frequency_hz:g} Hz is above the data's highest sampling "
            f"rate ({highest:g} Hz)",
            "input.frequency_hz",
        )


def _standardise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)


def pca_2d(x: np.ndarray, *, return_explained: bool = False):
    """Project rows onto their first two principal components (standardised features); with
    return_explained also the share of the variance those two components hold."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0:
        out, explained = np.zeros((0, 2)), 1.0
    else:
        xs = _standardise(x)
        _, sv, vt = np.linalg.svd(xs, full_matrices=False)
        out = xs @ vt[:2].T
        if out.shape[1] < 2:
            out = np.pad(out, ((0, 0), (0, 2 - out.shape[1])))
        total = float((sv**2).sum())
        explained = float((sv[:2] ** 2).sum() / total) if total > 0 else 1.0
    return (out, explained) if return_explained else out


# A non-linear map helps when two linear axes hold little of the spread; it costs seconds per
# thousand points, so it is made only for explorer-sized sets.
NONLINEAR_BELOW_EXPLAINED = 0.6
NONLINEAR_MAX_POINTS = 2000


def tsne_2d(x: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """A t-SNE map of the standardised rows (neighbourhoods kept, distances between clusters not)."""
    from sklearn.manifold import TSNE

    xs = _standardise(x)
    if len(xs) < 5:
        return pca_2d(x)
    perplexity = float(min(30, max(2, (len(xs) - 1) // 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        xs
    )


# --- learning -----------------------------------------------------------------------------------


@dataclass
class ImpulseTrainResult:
    model: Any | None  # keras.Model of the classifier/regression block
    labels: list[str]
    history: dict
    metrics: dict
    validation_indices: np.ndarray
    validation_predictions: np.ndarray | None
    anomaly: dict | None = None


def train_impulse(
    features: dict[str, np.ndarray],
    y: Sequence[str],
    impulse: Impulse,
    *,
    on_epoch: Callable[[int, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    pretrained_dir: str | None = None,
) -> ImpulseTrainResult:
    """Train the impulse's learning blocks on window features ({dsp id: [n, f]}) and window labels."""
    from workers.ml.learn import anomaly as kmeans
    from workers.ml.learn.train import train

    y = np.asarray(list(y))
    result = ImpulseTrainResult(None, [], {}, {}, np.zeros(0, np.int64), None)
    step = impulse.classifier
    if step is not None:
        x = learn_input(features, step)
        task = "regression" if step.block == "regression" else "classification"
        if task == "classification":
            labels = sorted({str(v) for v in y})
            target = y
        else:
            labels = [step.id]
            try:
                target = y.astype(np.float32)
            except ValueError:
                raise ImpulseError("regression needs numeric labels", "learn") from None
        if step.block == "transfer":
            from workers.ml.learn.transfer import PretrainedWeightsMissing, train_transfer

            try:
                trained = train_transfer(
                    x,
                    target,
                    labels,
                    step.arch,
                    step.settings,
                    pretrained_dir=pretrained_dir,
                    from_scratch=step.from_scratch,
                    on_epoch=on_epoch,
                    should_stop=should_stop,
                )
            except PretrainedWeightsMissing as exc:
                raise ImpulseError(str(exc), "learn") from None
        else:
            trained = train(
                x,
                target,
                labels,
                step.arch,
                step.settings,
                task=task,
                on_epoch=on_epoch,
                should_stop=should_stop,
            )
        result.model, result.labels = trained.model, labels
        result.history, result.metrics = trained.history, trained.metrics
        result.validation_indices = trained.validation_indices
        result.validation_predictions = trained.validation_predictions
    if impulse.anomaly is not None:
        if should_stop is not None and should_stop():
            from workers.ml.learn.settings import TrainingCancelled

            raise TrainingCancelled("training cancelled")
        a = impulse.anomaly
        x = learn_input(features, a)
        model = kmeans.fit_kmeans(x, n_clusters=min(a.clusters, len(x)), seed=a.seed)
        result.anomaly = kmeans.to_dict(model) | {
            "inputs": list(a.inputs),
            "clusters": model.n_clusters,
        }
    return result


def classify(
    features: dict[str, np.ndarray], impulse: Impulse, model: Any | None, anomaly: dict | None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Scores [n, classes] of the classifier and anomaly scores [n] for window features."""
    from workers.ml.learn import anomaly as kmeans

    scores = None
    if model is not None and impulse.classifier is not None:
        x = learn_input(features, impulse.classifier)
        scores = (
            np.asarray(model.predict(x, verbose=0, batch_size=256)) if len(x) else np.zeros((0, 0))
        )
    anomaly_scores = None
    if anomaly is not None and impulse.anomaly is not None:
        x = learn_input(features, impulse.anomaly)
        anomaly_scores = kmeans.score(kmeans.from_dict(anomaly), x)
    return scores, anomaly_scores
