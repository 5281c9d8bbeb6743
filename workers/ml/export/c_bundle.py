"""The C sources shared by the Arduino and C++ deployments: impulse glue, test vectors, build files."""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workers.ml.export.cgen import CModel, generate_c
from workers.ml.learn import anomaly as kmeans
from workers.ml.learn.anomaly import KMeansModel

EXPORT_C_DIR = Path(__file__).parent / "c"
ARDUINO_STUB_DIR = EXPORT_C_DIR / "arduino_stub"
QEMU_DIR = EXPORT_C_DIR / "qemu"

# Compiler flags every build of the bundle uses. -ffp-contract=off keeps float
# products unfused so the softmax and requantization round exactly as on the host.
C_FLAGS = "-std=c99 -O2 -Wall -Wextra -ffp-contract=off"
ARM_FLAGS = "-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -Os -ffp-contract=off"
# The C anomaly score (float32) against the Python engine's (float64): |C - Python| must stay
# within ANOMALY_ATOL + ANOMALY_RTOL * |Python| on the test windows.
ANOMALY_ATOL = 1e-4
ANOMALY_RTOL = 1e-4


class BundleError(ValueError):
    """The deployment cannot be built from these arguments (names the argument)."""


@dataclass(frozen=True)
class ImpulseSpec:
    """Everything the C glue needs besides the model: DSP block, window and labels."""

    name: str  # C identifier used for <name>_inferencing.h
    labels: tuple[str, ...]
    dsp_block: str
    dsp_init: str  # C initializer of the block's params struct
    dsp_prefix: str  # studio_dsp_<block>
    dsp_sources: tuple[Path, ...]
    frequency: float
    window_len: int
    axes: tuple[str, ...]
    feature_count: int
    feature_mean: np.ndarray | None
    feature_scale: np.ndarray | None
    anomaly: AnomalySpec | None = None


@dataclass(frozen=True)
class AnomalySpec:
    """The k-means anomaly block as the C glue scores it (workers.ml.learn.anomaly.score).

    feature_index picks the block's inputs from the DSP features (pipeline.learn_input concatenates
    the DSP outputs the block names); mean/scale standardise them; the score is the Euclidean
    distance to the nearest centroid in that scaled space.
    """

    model: KMeansModel  # float64, the reference the C score is checked against
    feature_index: np.ndarray  # int, one per k-means input, into the DSP features
    mean: np.ndarray  # float32 [d]
    scale: np.ndarray  # float32 [d]
    centroids: np.ndarray  # float32 [k, d]
    threshold: float

    @property
    def clusters(self) -> int:
        return len(self.centroids)

    def scores(self, features: np.ndarray) -> np.ndarray:
        """The Python engine's anomaly score of DSP feature rows [n, feature_count]."""
        x = np.asarray(features, dtype=np.float32).reshape(len(features), -1)
        return kmeans.score(self.model, x[:, self.feature_index])


def anomaly_spec(
    anomaly: dict | KMeansModel, *, feature_count: int, feature_index=None
) -> AnomalySpec:
    """Check a k-means block (to_dict form as stored with the model, or a KMeansModel) against the
    DSP block's feature count. feature_index defaults to every feature in order."""
    if isinstance(anomaly, dict):
        try:
            model = kmeans.from_dict(anomaly)
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"anomaly is not a k-means model: {exc}") from None
    elif isinstance(anomaly, KMeansModel):
        model = anomaly
    else:
        raise BundleError(f"anomaly must be a k-means model dict, got {type(anomaly).__name__}")
    if feature_index is None:
        feature_index = np.arange(feature_count)
    index = np.asarray(feature_index)
    if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
        raise BundleError("anomaly feature_index must be a list of integers")
    if len(index) and (index.min() < 0 or index.max() >= feature_count):
        raise BundleError(
            f"anomaly feature_index must lie in 0..{feature_count - 1} (the DSP block's features)"
        )
    centroids = np.asarray(model.centroids, dtype=np.float64)
    d = len(index)
    if (
        centroids.ndim != 2
        or not 1 <= len(centroids)
        or centroids.shape[1] != d
        or np.asarray(model.mean).shape != (d,)
        or np.asarray(model.scale).shape != (d,)
    ):
        raise BundleError(
            f"the anomaly block's centroids {centroids.shape}, mean and scale do not fit its "
            f"{d} input features"
        )
    if not (np.isfinite(centroids).all() and np.isfinite(model.mean).all()):
        raise BundleError("the anomaly block's centroids or mean are NaN or infinite")
    if not (np.isfinite(model.scale).all() and (np.asarray(model.scale) > 0).all()):
        raise BundleError("the anomaly block's scale must be finite and positive")
    return AnomalySpec(
        model=model,
        feature_index=index.astype(np.int64),
        mean=np.asarray(model.mean, np.float32),
        scale=np.asarray(model.scale, np.float32),
        centroids=centroids.astype(np.float32),
        threshold=float(model.threshold),
    )


def anomaly_readme_text(spec: ImpulseSpec) -> str:
    """What a library's README says of the anomaly block (Arduino and C++ alike)."""
    a = spec.anomaly
    if a is None:
        return "No anomaly block: `result.anomaly` is 0 (`STUDIO_HAS_ANOMALY` 0)."
    return (
        f"The k-means anomaly block ({a.clusters} clusters over {len(a.feature_index)} features) is "
        "included: `run_classifier` sets `result.anomaly` to the distance to the nearest cluster\n"
        f"(the studio's score); above `STUDIO_ANOMALY_THRESHOLD` ({a.threshold:.4g}) the window is "
        "unlike the training data (`STUDIO_HAS_ANOMALY` 1)."
    )


def library_name(project_name: str) -> str:
    """A C identifier / Arduino library name from a project name ("My gestures!" -> My_gestures)."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", project_name).strip("_")
    if not name:
        raise BundleError(f"project_name {project_name!r} has no letters or digits")
    if name[0].isdigit():
        name = "p_" + name
    return name


def _c_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _c_float(v: float) -> str:
    return f"{float(np.float32(v)):.9e}f"


def quantize_features(
    features: np.ndarray,
    *,
    scale: float,
    zero_point: int,
    feature_mean: np.ndarray | None = None,
    feature_scale: np.ndarray | None = None,
) -> np.ndarray:
    """The int8 model input exactly as the C glue computes it (float32, round half away)."""
    x = np.asarray(features, dtype=np.float32)
    if feature_mean is not None:
        x = (x - np.asarray(feature_mean, dtype=np.float32)).astype(np.float32)
    if feature_scale is not None:
        x = (x / np.asarray(feature_scale, dtype=np.float32)).astype(np.float32)
    y = (x / np.float32(scale)).astype(np.float32)
    a = np.abs(y)
    whole = np.floor(a)
    # a - floor(a) is exact in float32, as in the C helper (no float add of 0.5).
    r = np.where(a - whole >= 0.5, whole + 1, whole) * np.sign(y)
    q = r.astype(np.int64) + int(zero_point)
    return np.clip(q, -128, 127).astype(np.int8)


def dsp_spec(
    dsp_block: str, dsp_params: dict, *, frequency: float, axes: list[str], window_len: int
) -> tuple[str, str, tuple[Path, ...], int]:
    """(C initializer, C prefix, sources, feature count) of a processing block, via workers.ml.dsp.c."""
    from workers.ml import dsp
    from workers.ml.dsp import c as dsp_c

    if dsp_block not in dsp_c.C_SOURCES:
        raise BundleError(
            f"dsp_block {dsp_block!r} has no C implementation; C blocks: {sorted(dsp_c.C_SOURCES)}"
        )
    params = dsp.params_from_dict(dsp_block, dsp_params or {})
    init = dsp_c.c_params_initializer(dsp_block, params, frequency=frequency, n_axes=len(axes))
    block = dsp.get_block(dsp_block)
    shape = block.output_shape(params, input_shape=(window_len, len(axes)), frequency=frequency)
    count = int(np.prod(shape))
    return init, dsp_c.C_PREFIX[dsp_block], tuple(dsp_c.C_SOURCES[dsp_block]), count


def python_features(
    dsp_block: str, dsp_params: dict, windows: np.ndarray, *, frequency: float
) -> np.ndarray:
    """Features of each raw window [n][window_len][axes] computed by the Python block."""
    from workers.ml import dsp

    params = dsp.params_from_dict(dsp_block, dsp_params or {})
    block = dsp.get_block(dsp_block)
    return np.stack([block.features(w, params, frequency=frequency) for w in windows]).astype(
        np.float32
    )


def _array_init(values: np.ndarray) -> str:
    return "{" + ", ".join(_c_float(v) for v in np.asarray(values).reshape(-1)) + "}"


def _anomaly_defines(a: AnomalySpec | None) -> str:
    if a is None:
        return """/* This impulse has no anomaly block: result->anomaly is always 0. */
#define STUDIO_HAS_ANOMALY 0
#define EI_CLASSIFIER_HAS_ANOMALY 0
"""
    return f"""/* The k-means anomaly block: result->anomaly is the Euclidean distance of the window's
 * standardised features to the nearest of STUDIO_ANOMALY_CLUSTERS cluster centres of the
 * training windows (the Python engine's score). Above STUDIO_ANOMALY_THRESHOLD (the studio's
 * threshold: a percentile of the training windows' scores) the window is unlike the training data. */
#define STUDIO_HAS_ANOMALY 1
#define STUDIO_ANOMALY_CLUSTERS {a.clusters}
#define STUDIO_ANOMALY_FEATURE_COUNT {len(a.feature_index)}
#define STUDIO_ANOMALY_THRESHOLD {_c_float(a.threshold)}
/* Edge Impulse's names, for sketches written against its SDK */
#define EI_CLASSIFIER_HAS_ANOMALY 1
#define EI_CLASSIFIER_ANOMALY_THRESHOLD STUDIO_ANOMALY_THRESHOLD
"""


def header_text(spec: ImpulseSpec, model: CModel) -> str:
    up = "STUDIO"
    labels = ", ".join(_c_string(lbl) for lbl in spec.labels)
    axes = ", ".join(_c_string(a) for a in spec.axes)
    blocks = "int8 model" + (" + k-means anomaly block" if spec.anomaly is not None else "")
    return f"""/* {spec.name} impulse, generated by Tiny Studio: DSP block "{spec.dsp_block}" + {blocks}.
 *
 * run_classifier() takes one raw window, row-major [STUDIO_WINDOW_LEN][STUDIO_AXIS_COUNT]
 * (value 0 of every axis, then value 1, ...), computes the features with the C DSP block,
 * quantizes them to the model's int8 input, runs the generated engine and dequantizes the
 * scores; with an anomaly block it also scores the features against the k-means clusters.
 * No heap; one static arena of {model.arena_size} bytes. Not reentrant.
 */
#ifndef {spec.name.upper()}_INFERENCING_H
#define {spec.name.upper()}_INFERENCING_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

#define {up}_LABEL_COUNT {len(spec.labels)}
#define {up}_LABELS {{ {labels} }}
#define {up}_AXIS_COUNT {len(spec.axes)}
#define {up}_AXES {{ {axes} }}
#define {up}_WINDOW_LEN {spec.window_len}
#define {up}_FREQUENCY {_c_float(spec.frequency)}
#define {up}_FEATURE_COUNT {spec.feature_count}
#define {up}_DSP_BLOCK {_c_string(spec.dsp_block)}
#define {up}_ARENA_SIZE {model.arena_size}

{_anomaly_defines(spec.anomaly)}
#define STUDIO_OK 0
#define STUDIO_ERR_DSP (-10)   /* the DSP block failed or returned an unexpected count */
#define STUDIO_ERR_ARGS (-11)  /* a NULL argument */

typedef struct {{
    float classification[{up}_LABEL_COUNT]; /* dequantized model outputs, one per label */
    int label_index;                         /* index of the highest score */
    float anomaly;                           /* k-means anomaly score; 0 without an anomaly block */
}} studio_result_t;

extern const char *const studio_labels[{up}_LABEL_COUNT];
extern const char *const studio_axes[{up}_AXIS_COUNT];

/* Classify one raw window; returns STUDIO_OK or a negative STUDIO_ERR_*. */
int run_classifier(const float *signal, studio_result_t *result);

/* The steps of run_classifier, for tests and for custom pipelines. */
int studio_extract_features(const float *signal, float *features /* [STUDIO_FEATURE_COUNT] */);
void studio_quantize_features(const float *features, int8_t *input /* model input size */);
int studio_classify_int8(const int8_t *input, studio_result_t *result,
                         int8_t *scores /* [STUDIO_LABEL_COUNT] or NULL */);
/* The anomaly score of DSP features (what run_classifier puts in result->anomaly;
 * studio_classify_int8 alone leaves it 0); 0 when STUDIO_HAS_ANOMALY is 0. */
float studio_anomaly_score(const float *features /* [STUDIO_FEATURE_COUNT] */);
/* How far apart two feature vectors are in the anomaly block's scaled space: a bound on how much
 * their scores differ (0 when STUDIO_HAS_ANOMALY is 0). */
float studio_anomaly_shift(const float *a, const float *b);

#ifdef __cplusplus
}}
#endif

#endif
"""


def _anomaly_source(a: AnomalySpec | None) -> str:
    if a is None:
        return """
float studio_anomaly_score(const float *features)
{
    (void)features;
    return 0.0f;
}

float studio_anomaly_shift(const float *a, const float *b)
{
    (void)a;
    (void)b;
    return 0.0f;
}
"""
    d, k = len(a.feature_index), a.clusters
    index = ", ".join(str(int(i)) for i in a.feature_index)
    rows = ",\n".join("    " + _array_init(c) for c in a.centroids)
    return f"""
/* The k-means anomaly block (workers/ml/learn/anomaly.py): which DSP features it reads, their
 * standardisation (x - mean) / scale, and the cluster centres in that scaled space. */
static const uint32_t anomaly_feature_index[STUDIO_ANOMALY_FEATURE_COUNT] = {{ {index} }};
static const float anomaly_mean[STUDIO_ANOMALY_FEATURE_COUNT] = {_array_init(a.mean)};
static const float anomaly_scale[STUDIO_ANOMALY_FEATURE_COUNT] = {_array_init(a.scale)};
static const float anomaly_centroids[STUDIO_ANOMALY_CLUSTERS][STUDIO_ANOMALY_FEATURE_COUNT] = {{
{rows}
}};
static float anomaly_x[STUDIO_ANOMALY_FEATURE_COUNT];

#if STUDIO_ANOMALY_CLUSTERS != {k} || STUDIO_ANOMALY_FEATURE_COUNT != {d}
#error "the anomaly block's arrays differ from the header"
#endif

/* Distance to the nearest centre, as anomaly.score computes it. The squares of the differences
 * are summed directly: the |x|^2 - 2x.c + |c|^2 expansion the Python side uses in float64 would
 * cancel badly in float32 for windows close to a centre. */
float studio_anomaly_score(const float *features)
{{
    float best = 0.0f;
    if (!features) {{
        return 0.0f;
    }}
    for (int j = 0; j < STUDIO_ANOMALY_FEATURE_COUNT; ++j) {{
        anomaly_x[j] = (features[anomaly_feature_index[j]] - anomaly_mean[j]) / anomaly_scale[j];
    }}
    for (int c = 0; c < STUDIO_ANOMALY_CLUSTERS; ++c) {{
        float d2 = 0.0f;
        for (int j = 0; j < STUDIO_ANOMALY_FEATURE_COUNT; ++j) {{
            float t = anomaly_x[j] - anomaly_centroids[c][j];
            d2 += t * t;
        }}
        if (c == 0 || d2 < best) {{
            best = d2;
        }}
    }}
    return sqrtf(best);
}}

/* The score is a distance, so it moves by at most the distance between the two feature vectors
 * in the same scaled space: the bound the self-test allows between C and Python features. */
float studio_anomaly_shift(const float *a, const float *b)
{{
    float d2 = 0.0f;
    if (!a || !b) {{
        return 0.0f;
    }}
    for (int j = 0; j < STUDIO_ANOMALY_FEATURE_COUNT; ++j) {{
        float t = (a[anomaly_feature_index[j]] - b[anomaly_feature_index[j]]) / anomaly_scale[j];
        d2 += t * t;
    }}
    return sqrtf(d2);
}}
"""


def impulse_source(spec: ImpulseSpec, model: CModel) -> str:
    p = model.prefix
    norm = []
    if spec.feature_mean is not None:
        norm.append(
            f"static const float feature_mean[{spec.feature_count}] = {_array_init(spec.feature_mean)};"
        )
    if spec.feature_scale is not None:
        norm.append(
            f"static const float feature_scale[{spec.feature_count}] = {_array_init(spec.feature_scale)};"
        )
    mean_line = "        x = x - feature_mean[i];\n" if spec.feature_mean is not None else ""
    scale_line = "        x = x / feature_scale[i];\n" if spec.feature_scale is not None else ""
    labels = ", ".join(_c_string(lbl) for lbl in spec.labels)
    axes = ", ".join(_c_string(a) for a in spec.axes)
    return f"""/* {spec.name} impulse glue, generated by Tiny Studio: DSP -> int8 -> model -> scores. */
#include <math.h>
#include <stddef.h>

#include "{spec.name}_inferencing.h"
#include "studio_dsp.h"
#include "{p}.h"

#if {p.upper()}_OUTPUT_SIZE != STUDIO_LABEL_COUNT
#error "the model's output size differs from the label count"
#endif
#if {p.upper()}_INPUT_SIZE != STUDIO_FEATURE_COUNT
#error "the model's input size differs from the DSP block's feature count"
#endif

const char *const studio_labels[STUDIO_LABEL_COUNT] = {{ {labels} }};
const char *const studio_axes[STUDIO_AXIS_COUNT] = {{ {axes} }};

static const {spec.dsp_prefix}_params_t dsp_params = {spec.dsp_init};
{chr(10).join(norm)}

static float features[STUDIO_FEATURE_COUNT];
static int8_t model_input[{p.upper()}_INPUT_SIZE];
static int8_t model_output[{p.upper()}_OUTPUT_SIZE];

int studio_extract_features(const float *signal, float *out)
{{
    int n;
    if (!signal || !out) {{
        return STUDIO_ERR_ARGS;
    }}
    n = {spec.dsp_prefix}_features(signal, STUDIO_WINDOW_LEN, STUDIO_AXIS_COUNT, STUDIO_FREQUENCY,
                       &dsp_params, out, STUDIO_FEATURE_COUNT);
    return n == STUDIO_FEATURE_COUNT ? STUDIO_OK : STUDIO_ERR_DSP;
}}

/* TFLite's AffineQuantize: round(x / scale) half away from zero, plus the zero point.
 * Subtracting the integer part of a float below 2^23 is exact, so no libm is needed. */
static int32_t round_half_away(float y)
{{
    float a = y < 0.0f ? -y : y;
    int32_t i;
    if (a >= 8388608.0f) {{
        return y < 0.0f ? INT32_MIN / 2 : INT32_MAX / 2;
    }}
    i = (int32_t)a;
    if (a - (float)i >= 0.5f) {{
        ++i;
    }}
    return y < 0.0f ? -i : i;
}}

void studio_quantize_features(const float *in, int8_t *q)
{{
    for (int i = 0; i < STUDIO_FEATURE_COUNT; ++i) {{
        float x = in[i];
{mean_line}{scale_line}        int32_t v = round_half_away(x / {p.upper()}_INPUT_SCALE) + {p.upper()}_INPUT_ZERO_POINT;
        q[i] = (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
    }}
}}

int studio_classify_int8(const int8_t *input, studio_result_t *result, int8_t *scores)
{{
    if (!input || !result) {{
        return STUDIO_ERR_ARGS;
    }}
    {p}_invoke(input, model_output);
    result->label_index = 0;
    for (int i = 0; i < STUDIO_LABEL_COUNT; ++i) {{
        result->classification[i] =
            (float)((int32_t)model_output[i] - {p.upper()}_OUTPUT_ZERO_POINT) * {p.upper()}_OUTPUT_SCALE;
        if (model_output[i] > model_output[result->label_index]) {{
            result->label_index = i;
        }}
        if (scores) {{
            scores[i] = model_output[i];
        }}
    }}
    result->anomaly = 0.0f;
    return STUDIO_OK;
}}

int run_classifier(const float *signal, studio_result_t *result)
{{
    int rc = studio_extract_features(signal, features);
    if (rc != STUDIO_OK) {{
        return rc;
    }}
    studio_quantize_features(features, model_input);
    rc = studio_classify_int8(model_input, result, NULL);
    if (rc == STUDIO_OK) {{
        result->anomaly = studio_anomaly_score(features);
    }}
    return rc;
}}
{_anomaly_source(spec.anomaly)}"""


def test_vectors_header(
    windows: np.ndarray,
    features: np.ndarray,
    outputs_q: np.ndarray,
    *,
    feature_atol: float,
    feature_rtol: float,
    anomaly: np.ndarray | None = None,
    anomaly_atol: float = ANOMALY_ATOL,
    anomaly_rtol: float = ANOMALY_RTOL,
) -> str:
    """anomaly: the Python engine's anomaly score of each window's features (None: not checked)."""
    n = len(windows)
    has_anomaly = anomaly is not None
    scores = np.zeros(n) if anomaly is None else np.asarray(anomaly, np.float64).reshape(-1)
    if len(scores) != n:
        raise BundleError(f"anomaly has {len(scores)} scores for {n} test windows")
    rows_w = ",\n".join("    " + _array_init(w) for w in windows)
    rows_f = ",\n".join("    " + _array_init(f) for f in features)
    rows_o = ",\n".join(
        "    {" + ", ".join(str(int(v)) for v in q.reshape(-1)) + "}" for q in outputs_q
    )
    return f"""/* Test vectors written by Tiny Studio: raw windows, Python features, LiteRT int8 outputs.
 * Expected outputs are LiteRT's on the Python features quantized as studio_quantize_features does. */
#ifndef STUDIO_TEST_VECTORS_H
#define STUDIO_TEST_VECTORS_H

#define STUDIO_TEST_COUNT {n}
#define STUDIO_TEST_FEATURE_ATOL {_c_float(feature_atol)}
#define STUDIO_TEST_FEATURE_RTOL {_c_float(feature_rtol)}

static const float studio_test_windows[{max(n, 1)}][STUDIO_WINDOW_LEN * STUDIO_AXIS_COUNT] = {{
{rows_w if n else "    {0}"}
}};
static const float studio_test_features[{max(n, 1)}][STUDIO_FEATURE_COUNT] = {{
{rows_f if n else "    {0}"}
}};
static const int8_t studio_test_outputs[{max(n, 1)}][STUDIO_LABEL_COUNT] = {{
{rows_o if n else "    {0}"}
}};

/* The Python engine's k-means anomaly score of each window's Python features; the C score of
 * the same features must lie within ATOL + RTOL * |expected|, run_classifier's (C features) within
 * that plus studio_anomaly_shift(C features, Python features). */
#define STUDIO_TEST_HAS_ANOMALY {int(has_anomaly)}
#define STUDIO_TEST_ANOMALY_ATOL {_c_float(anomaly_atol)}
#define STUDIO_TEST_ANOMALY_RTOL {_c_float(anomaly_rtol)}
static const float studio_test_anomaly[{max(n, 1)}] = {_array_init(scores) if n else "{0}"};

#endif
"""


SELFTEST_C = r"""/* Runs the bundled test vectors: raw window -> C DSP -> C engine, against Python and LiteRT.
 * With an anomaly block, also the k-means score against the Python engine's.
 * Prints one line per window and a summary; returns the number of failed windows. */
#include <stdio.h>

#include "@NAME@_inferencing.h"
#include "test_vectors.h"

#define CHECK_ANOMALY (STUDIO_HAS_ANOMALY && STUDIO_TEST_HAS_ANOMALY)

int main(void)
{
    static float features[STUDIO_FEATURE_COUNT];
    static int8_t input[STUDIO_FEATURE_COUNT];
    int failures = 0, top1 = 0, engine_exact = 0, pipeline_exact = 0;
    float worst = 0.0f;
#if CHECK_ANOMALY
    int anomaly_engine_ok = 0, anomaly_pipeline_ok = 0, above = 0, expected_above = 0;
    float worst_engine = 0.0f, worst_pipeline = 0.0f;
#endif
    for (int t = 0; t < STUDIO_TEST_COUNT; ++t) {
        studio_result_t r, r_engine;
        int8_t scores[STUDIO_LABEL_COUNT], engine_scores[STUDIO_LABEL_COUNT];
        int feat_ok = 1, out_ok = 1, engine_ok = 1, expected_top = 0, anomaly_bad = 0;
        if (studio_extract_features(studio_test_windows[t], features) != STUDIO_OK) {
            printf("window %d: DSP failed\n", t);
            ++failures;
            continue;
        }
        for (int i = 0; i < STUDIO_FEATURE_COUNT; ++i) {
            float e = studio_test_features[t][i], d = features[i] - e;
            float tol = STUDIO_TEST_FEATURE_ATOL + STUDIO_TEST_FEATURE_RTOL * (e < 0 ? -e : e);
            d = d < 0 ? -d : d;
            if (d > worst) worst = d;
            if (d > tol) feat_ok = 0;
        }
        studio_quantize_features(features, input);
        studio_classify_int8(input, &r, scores);
        /* The engine alone: the Python features, quantized by the same C code. */
        studio_quantize_features(studio_test_features[t], input);
        studio_classify_int8(input, &r_engine, engine_scores);
        for (int i = 0; i < STUDIO_LABEL_COUNT; ++i) {
            if (scores[i] != studio_test_outputs[t][i]) out_ok = 0;
            if (engine_scores[i] != studio_test_outputs[t][i]) engine_ok = 0;
            if (studio_test_outputs[t][i] > studio_test_outputs[t][expected_top]) expected_top = i;
        }
        top1 += r.label_index == expected_top;
        engine_exact += engine_ok;
        pipeline_exact += out_ok;
        printf("window %d: label %d expected %d features %s int8 %s engine %s scores", t, r.label_index,
               expected_top, feat_ok ? "ok" : "DIFF", out_ok ? "ok" : "DIFF", engine_ok ? "ok" : "DIFF");
        for (int i = 0; i < STUDIO_LABEL_COUNT; ++i) printf(" %d", scores[i]);
        printf("\n");
#if CHECK_ANOMALY
        {
            /* The C score of the Python features (the k-means code alone) must match the Python
             * engine's within the tolerance; the score run_classifier gives on the raw window (C
             * features) within the tolerance plus how far the C features lie from Python's. */
            studio_result_t full;
            float e = studio_test_anomaly[t];
            float tol = STUDIO_TEST_ANOMALY_ATOL + STUDIO_TEST_ANOMALY_RTOL * (e < 0 ? -e : e);
            float a_engine = studio_anomaly_score(studio_test_features[t]);
            float shift = studio_anomaly_shift(features, studio_test_features[t]);
            float de, dp;
            int a_ok, p_ok;
            if (run_classifier(studio_test_windows[t], &full) != STUDIO_OK) {
                printf("window %d: run_classifier failed\n", t);
                ++failures;
                continue;
            }
            de = a_engine - e;
            dp = full.anomaly - e;
            de = de < 0 ? -de : de;
            dp = dp < 0 ? -dp : dp;
            a_ok = de <= tol;
            p_ok = dp <= tol + shift;
            if (de > worst_engine) worst_engine = de;
            if (dp > worst_pipeline) worst_pipeline = dp;
            anomaly_engine_ok += a_ok;
            anomaly_pipeline_ok += p_ok;
            above += full.anomaly > STUDIO_ANOMALY_THRESHOLD;
            expected_above += e > STUDIO_ANOMALY_THRESHOLD;
            printf("window %d anomaly %.9g engine %.9g expected %.9g shift %.9g engine %s pipeline %s\n",
                   t, (double)full.anomaly, (double)a_engine, (double)e, (double)shift,
                   a_ok ? "ok" : "DIFF", p_ok ? "ok" : "DIFF");
            anomaly_bad = !a_ok || !p_ok || full.label_index != r.label_index;
        }
#endif
        if (!feat_ok || !engine_ok || r.label_index != expected_top || anomaly_bad) ++failures;
    }
#if CHECK_ANOMALY
    printf("anomaly summary: windows %d engine_within %d pipeline_within %d worst_engine_error %.9g "
           "worst_pipeline_error %.9g above_threshold %d expected_above %d threshold %.9g\n",
           STUDIO_TEST_COUNT, anomaly_engine_ok, anomaly_pipeline_ok, (double)worst_engine,
           (double)worst_pipeline, above, expected_above, (double)STUDIO_ANOMALY_THRESHOLD);
#endif
    printf("summary: windows %d top1 %d engine_exact %d pipeline_exact %d worst_feature_error %.9g failures %d\n",
           STUDIO_TEST_COUNT, top1, engine_exact, pipeline_exact, (double)worst, failures);
    return failures;
}
"""


ARM_SIZE_C = r"""/* Sizing program for `make arm`: with STUDIO_SIZE_WITH_IMPULSE it calls run_classifier
 * (through a volatile pointer so nothing is folded away); without, it is the baseline. */
#ifdef STUDIO_SIZE_WITH_IMPULSE
#include "@NAME@_inferencing.h"

const float *volatile studio_size_window;
volatile int studio_size_sink;

int main(void)
{
    studio_result_t result;
    studio_size_sink = run_classifier(studio_size_window, &result) + result.label_index;
    return 0;
}
#else
volatile int studio_size_sink;

int main(void)
{
    studio_size_sink = 0;
    return 0;
}
#endif
"""


def makefile_text(name: str, sources_dir: str, *, example: str | None, stub_dir: str | None) -> str:
    """GNU make: host selftest/example, Cortex-M4 cross build and size, QEMU run, Arduino stub build."""
    lines = [
        f"# Builds the {name} impulse. Targets: all (host), test (host selftest), arm (Cortex-M4",
        "# objects + size), qemu (selftest on an emulated Cortex-M4), arduino-stub (examples",
        "# compiled against a minimal Arduino API stub). Override CC/ARM_CC/QEMU as needed.",
        "CC ?= gcc",
        "CXX ?= g++",
        "ARM_CC ?= arm-none-eabi-gcc",
        "ARM_SIZE ?= arm-none-eabi-size",
        "QEMU ?= qemu-system-arm",
        f"CFLAGS ?= {C_FLAGS}",
        f"ARM_FLAGS ?= {ARM_FLAGS}",
        f"SRC_DIR := {sources_dir}",
        "SRCS := $(wildcard $(SRC_DIR)/*.c)",
        "BUILD := build",
        "",
        ".PHONY: all test arm qemu arduino-stub clean",
        "",
    ]
    if example:
        lines += [
            f"all: $(BUILD)/{name}_classify",
            "",
            f"$(BUILD)/{name}_classify: {example} $(SRCS)",
            "\tmkdir -p $(BUILD)",
            "\t$(CC) $(CFLAGS) -I$(SRC_DIR) -o $@ $^ -lm",
            "",
        ]
    else:
        lines += ["all: $(BUILD)/selftest", ""]
    lines += [
        "test: $(BUILD)/selftest",
        "\t./$(BUILD)/selftest",
        "",
        "$(BUILD)/selftest: extras/selftest.c $(SRCS)",
        "\tmkdir -p $(BUILD)",
        "\t$(CC) $(CFLAGS) -I$(SRC_DIR) -Iextras -o $@ $^ -lm",
        "",
        "# arm: the impulse linked into a do-nothing Cortex-M4 program, minus that program alone:",
        "# what the impulse adds to flash (text+data) and static RAM (data+bss).",
        "arm: $(BUILD)/arm/baseline.elf $(BUILD)/arm/impulse.elf",
        "\t$(ARM_SIZE) $(BUILD)/arm/baseline.elf $(BUILD)/arm/impulse.elf",
        "",
        "$(BUILD)/arm/impulse.elf: extras/arm_size.c $(SRCS)",
        "\tmkdir -p $(BUILD)/arm",
        (
            "\t$(ARM_CC) $(ARM_FLAGS) -DSTUDIO_SIZE_WITH_IMPULSE -I$(SRC_DIR) -ffunction-sections "
            "-fdata-sections --specs=nano.specs --specs=nosys.specs -Wl,--gc-sections -o $@ $^ -lm"
        ),
        "",
        "$(BUILD)/arm/baseline.elf: extras/arm_size.c",
        "\tmkdir -p $(BUILD)/arm",
        (
            "\t$(ARM_CC) $(ARM_FLAGS) -I$(SRC_DIR) -ffunction-sections -fdata-sections "
            "--specs=nano.specs --specs=nosys.specs -Wl,--gc-sections -o $@ $^ -lm"
        ),
        "",
        "$(BUILD)/selftest.elf: extras/selftest.c extras/qemu/startup.c $(SRCS)",
        "\tmkdir -p $(BUILD)",
        (
            "\t$(ARM_CC) $(ARM_FLAGS) -I$(SRC_DIR) -Iextras -ffunction-sections -fdata-sections "
            "--specs=nano.specs --specs=rdimon.specs -T extras/qemu/mps2_an386.ld "
            "-Wl,--gc-sections -u _printf_float -o $@ $^ -lm"
        ),
        "\t$(ARM_SIZE) $@",
        "",
        "qemu: $(BUILD)/selftest.elf",
        "\ttimeout 120 $(QEMU) -M mps2-an386 -nographic -semihosting -kernel $<",
        "",
    ]
    if stub_dir:
        lines += [
            "arduino-stub: $(SRCS)",
            "\tmkdir -p $(BUILD)/stub",
            (
                "\tfor f in $(SRCS); do $(CC) $(CFLAGS) -I$(SRC_DIR) -c $$f -o $(BUILD)/stub/$$(basename $$f .c).o "
                "|| exit 1; done"
            ),
            (
                f"\tfor ex in examples/*/*.ino; do n=$$(basename $$ex .ino); $(CXX) -std=c++11 -O2 -Wall "
                f"-I{stub_dir} -I$(SRC_DIR) -include Arduino.h -x c++ $$ex -x none {stub_dir}/arduino_stub.cpp "
                "$(BUILD)/stub/*.o -o $(BUILD)/stub/$$n -lm || exit 1; done"
            ),
            "",
        ]
    lines += ["clean:", "\trm -rf $(BUILD)", ""]
    return "\n".join(lines)


def impulse_files(
    *,
    model_bytes: bytes,
    project_name: str,
    labels: list[str],
    dsp_block: str,
    dsp_params: dict,
    frequency: float,
    window_len: int,
    axes: list[str],
    feature_mean: np.ndarray | None = None,
    feature_scale: np.ndarray | None = None,
    test_windows: np.ndarray | None = None,
    feature_atol: float = 1e-4,
    feature_rtol: float = 1e-3,
    anomaly: dict | KMeansModel | None = None,
    anomaly_feature_index=None,
) -> tuple[ImpulseSpec, CModel, dict[str, str], np.ndarray | None]:
    """Sources of the impulse under src/ and extras/, keyed by path in the bundle.

    Returns (spec, model, files, test features). With test_windows the bundle carries test
    vectors (Python features and LiteRT int8 outputs) that `make test` / `make qemu` check.
    anomaly: the impulse's k-means block (anomaly.to_dict form, as stored with the model) that
    run_classifier scores into result->anomaly; anomaly_feature_index picks its inputs from the
    DSP features (default: all of them, in order). Its test vectors carry the Python scores.
    """
    if not labels:
        raise BundleError("labels must not be empty")
    if not axes:
        raise BundleError("axes must not be empty")
    if window_len <= 0:
        raise BundleError(f"window_len must be positive, got {window_len}")
    if frequency <= 0:
        raise BundleError(f"frequency must be positive, got {frequency}")
    name = library_name(project_name)
    model = generate_c(model_bytes, prefix="model")
    init, prefix, sources, count = dsp_spec(
        dsp_block, dsp_params, frequency=frequency, axes=axes, window_len=window_len
    )
    if model.input_size != count:
        raise BundleError(
            f"the DSP block {dsp_block} makes {count} features but the model takes {model.input_size}"
        )
    if model.output_size != len(labels):
        raise BundleError(f"the model has {model.output_size} outputs for {len(labels)} labels")
    for arr_name, arr in (("feature_mean", feature_mean), ("feature_scale", feature_scale)):
        if arr is not None and np.asarray(arr).size != count:
            raise BundleError(f"{arr_name} has {np.asarray(arr).size} values for {count} features")
    spec = ImpulseSpec(
        name=name,
        labels=tuple(labels),
        dsp_block=dsp_block,
        dsp_init=init,
        dsp_prefix=prefix,
        dsp_sources=sources,
        frequency=float(frequency),
        window_len=int(window_len),
        axes=tuple(axes),
        feature_count=count,
        feature_mean=None
        if feature_mean is None
        else np.asarray(feature_mean, np.float32).reshape(-1),
        feature_scale=None
        if feature_scale is None
        else np.asarray(feature_scale, np.float32).reshape(-1),
        anomaly=None
        if anomaly is None
        else anomaly_spec(anomaly, feature_count=count, feature_index=anomaly_feature_index),
    )
    from workers.ml.dsp import c as dsp_c

    files: dict[str, str] = {f"src/{k}": v for k, v in model.all_files().items()}
    files[f"src/{dsp_c.HEADER.name}"] = dsp_c.HEADER.read_text()
    for src in sources:
        files[f"src/{src.name}"] = src.read_text()
    files[f"src/{name}_inferencing.h"] = header_text(spec, model)
    files["src/studio_impulse.c"] = impulse_source(spec, model)
    files["extras/selftest.c"] = SELFTEST_C.replace("@NAME@", name)
    files["extras/arm_size.c"] = ARM_SIZE_C.replace("@NAME@", name)
    for p in sorted(QEMU_DIR.iterdir()):
        files[f"extras/qemu/{p.name}"] = p.read_text()

    test_features = None
    windows = np.zeros((0, window_len, len(axes)), np.float32)
    outputs_q = np.zeros((0, 1), np.int8)
    feats = np.zeros((0, count), np.float32)
    anomaly_scores = None
    if test_windows is not None:
        windows = np.asarray(test_windows, dtype=np.float32).reshape(-1, window_len, len(axes))
        feats = python_features(dsp_block, dsp_params, windows, frequency=frequency)
        inputs_q = quantize_features(
            feats,
            scale=model.input_scale,
            zero_point=model.input_zero_point,
            feature_mean=spec.feature_mean,
            feature_scale=spec.feature_scale,
        )
        outputs_q = litert_outputs(model_bytes, inputs_q)
        test_features = feats
        if spec.anomaly is not None:
            anomaly_scores = spec.anomaly.scores(feats)
    files["extras/test_vectors.h"] = test_vectors_header(
        windows,
        feats,
        outputs_q,
        feature_atol=feature_atol,
        feature_rtol=feature_rtol,
        anomaly=anomaly_scores,
    )
    return spec, model, files, test_features


def reference_outputs(
    model_bytes: bytes,
    *,
    dsp_block: str,
    dsp_params: dict,
    windows: np.ndarray,
    frequency: float,
    feature_mean: np.ndarray | None = None,
    feature_scale: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(Python features, LiteRT int8 outputs) of raw windows: what verify_c_bundle expects."""
    model = generate_c(model_bytes)
    feats = python_features(dsp_block, dsp_params, np.asarray(windows), frequency=frequency)
    q = quantize_features(
        feats,
        scale=model.input_scale,
        zero_point=model.input_zero_point,
        feature_mean=feature_mean,
        feature_scale=feature_scale,
    )
    return feats, litert_outputs(model_bytes, q)


def reference_anomaly(
    anomaly: dict | KMeansModel, features: np.ndarray, *, feature_index=None
) -> np.ndarray:
    """The Python engine's anomaly score of DSP feature rows: what the C anomaly score must match."""
    feats = np.asarray(features, dtype=np.float32)
    spec = anomaly_spec(anomaly, feature_count=feats.shape[1], feature_index=feature_index)
    return spec.scores(feats)


def litert_outputs(model_bytes: bytes, inputs_q: np.ndarray) -> np.ndarray:
    """int8 outputs of the LiteRT interpreter (default CPU path) for each int8 input row."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model_bytes)
    it.allocate_tensors()
    din, dout = it.get_input_details()[0], it.get_output_details()[0]
    outs = []
    for q in inputs_q:
        it.set_tensor(din["index"], np.asarray(q, dtype=np.int8).reshape(din["shape"]))
        it.invoke()
        outs.append(it.get_tensor(dout["index"]).reshape(-1).copy())
    return np.array(outs, dtype=np.int8).reshape(len(inputs_q), -1)


def zip_files(root: str, files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, text in sorted(files.items()):
            zf.writestr(f"{root}/{path}", text)
    return buf.getvalue()
