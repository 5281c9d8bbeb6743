/* The MFE block in C: workers/ml/dsp/mfe.py (needs fft.c). */
#include <math.h>

#include "studio_dsp.h"

static float s_frame[STUDIO_DSP_MAX_FFT];
static float s_power[STUDIO_DSP_MAX_FFT / 2 + 1];

static int frames(int n_values, const studio_dsp_mfe_params_t *p)
{
    if (n_values < p->frame_length) return 0;
    return 1 + (n_values - p->frame_length) / p->frame_stride;
}

static int check(int n_values, int n_axes, const studio_dsp_mfe_params_t *p)
{
    int n;
    if (!p || n_values <= 0 || n_axes != 1) return STUDIO_DSP_ERR_ARGS;
    n = p->fft_length;
    if (p->frame_length < 1 || p->frame_stride < 1 || n < 4 || (n & (n - 1))) return STUDIO_DSP_ERR_ARGS;
    if (p->num_filters < 1 || p->num_filters > STUDIO_DSP_MAX_FILTERS) return STUDIO_DSP_ERR_ARGS;
    if (n > STUDIO_DSP_MAX_FFT) return STUDIO_DSP_ERR_TOO_LONG;
    if (frames(n_values, p) < 1) return STUDIO_DSP_ERR_ARGS;
    return 0;
}

int studio_dsp_mel_frame(const float *x, int start, const studio_dsp_mfe_params_t *p,
                         float pre_emphasis, float *energies, float *total)
{
    int n = p->fft_length, half = n / 2;
    /* a frame longer than the FFT is truncated, as numpy's rfft(frame, n) */
    int used = p->frame_length < n ? p->frame_length : n;
    float inv_n = 1.0f / (float)n;
    for (int i = 0; i < n; i++) {
        int at = start + i;
        float v = 0.0f;
        if (i < used) {
            v = x[at];
            if (pre_emphasis != 0.0f && at > 0) v -= pre_emphasis * x[at - 1];
        }
        s_frame[i] = v;
    }
    studio_dsp_rfft_power(s_frame, n, s_power);
    if (total) {
        float t = 0.0f;
        for (int k = 0; k <= half; k++) t += s_power[k] * inv_n;
        *total = t;
    }
    for (int f = 0; f < p->num_filters; f++) {
        int left = p->filter_bins[f], centre = p->filter_bins[f + 1], right = p->filter_bins[f + 2];
        float e = 0.0f;
        for (int k = left; k < centre && k <= half; k++)
            e += s_power[k] * (float)(k - left) / (float)(centre - left);
        for (int k = centre; k < right && k <= half; k++)
            e += s_power[k] * (float)(right - k) / (float)(right - centre);
        energies[f] = e * inv_n;
    }
    return p->num_filters;
}

int studio_dsp_mfe_feature_count(int n_values, int n_axes, const studio_dsp_mfe_params_t *p)
{
    int err = check(n_values, n_axes, p);
    if (err) return err;
    return frames(n_values, p) * p->num_filters;
}

int studio_dsp_mfe_features(const float *window, int n_values, int n_axes, float frequency,
                            const studio_dsp_mfe_params_t *p, float *out, int out_len)
{
    int count = studio_dsp_mfe_feature_count(n_values, n_axes, p), nf;
    float range;
    (void)frequency;
    if (count < 0) return count;
    if (!window || !out) return STUDIO_DSP_ERR_ARGS;
    if (out_len < count) return STUDIO_DSP_ERR_OUT_TOO_SMALL;
    nf = frames(n_values, p);
    range = -p->noise_floor_db + 12.0f;
    for (int f = 0; f < nf; f++) {
        float *e = out + f * p->num_filters;
        studio_dsp_mel_frame(window, f * p->frame_stride, p, 0.0f, e, 0);
        for (int j = 0; j < p->num_filters; j++) {
            float db = 10.0f * log10f(e[j] > 1e-30f ? e[j] : 1e-30f);
            float v = (db - p->noise_floor_db) / range;
            e[j] = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
        }
    }
    return count;
}
