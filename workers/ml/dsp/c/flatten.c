/* The flatten block in C: workers/ml/dsp/flatten.py. */
#include <math.h>

#include "studio_dsp.h"

static int chosen(const studio_dsp_flatten_params_t *p)
{
    return !!p->average + !!p->minimum + !!p->maximum + !!p->rms + !!p->stdev + !!p->skewness +
           !!p->kurtosis;
}

int studio_dsp_flatten_feature_count(int n_values, int n_axes, const studio_dsp_flatten_params_t *p)
{
    if (!p || n_values <= 0 || n_axes <= 0 || chosen(p) == 0) return STUDIO_DSP_ERR_ARGS;
    return n_axes * chosen(p);
}

int studio_dsp_flatten_features(const float *window, int n_values, int n_axes, float frequency,
                                const studio_dsp_flatten_params_t *p, float *out, int out_len)
{
    int count = studio_dsp_flatten_feature_count(n_values, n_axes, p);
    int o = 0;
    (void)frequency;
    if (count < 0) return count;
    if (!window || !out) return STUDIO_DSP_ERR_ARGS;
    if (out_len < count) return STUDIO_DSP_ERR_OUT_TOO_SMALL;
    for (int a = 0; a < n_axes; a++) {
        float s = p->scale_axes, sum = 0.0f, sq = 0.0f, lo, hi;
        float m2 = 0.0f, m3 = 0.0f, m4 = 0.0f, mean, skew, kurt;
        lo = hi = window[a] * s;
        for (int i = 0; i < n_values; i++) {
            float v = window[i * n_axes + a] * s;
            sum += v;
            sq += v * v;
            if (v < lo) lo = v;
            if (v > hi) hi = v;
        }
        mean = sum / (float)n_values;
        /* central moments from deviations: sums of powers would cancel catastrophically */
        for (int i = 0; i < n_values; i++) {
            float d = window[i * n_axes + a] * s - mean, d2 = d * d;
            m2 += d2;
            m3 += d2 * d;
            m4 += d2 * d2;
        }
        m2 /= (float)n_values;
        m3 /= (float)n_values;
        m4 /= (float)n_values;
        /* a flat axis: skewness 0, kurtosis -3, as the Python block */
        if (m2 <= 1e-12f * (mean * mean > 1e-30f ? mean * mean : 1e-30f)) {
            skew = 0.0f;
            kurt = -3.0f;
        } else {
            skew = m3 / (m2 * sqrtf(m2));
            kurt = m4 / (m2 * m2) - 3.0f;
        }
        if (p->average) out[o++] = mean;
        if (p->minimum) out[o++] = lo;
        if (p->maximum) out[o++] = hi;
        if (p->rms) out[o++] = sqrtf(sq / (float)n_values);
        if (p->stdev) out[o++] = sqrtf(m2);
        if (p->skewness) out[o++] = skew;
        if (p->kurtosis) out[o++] = kurt;
    }
    return o;
}
