/* The raw block in C: workers/ml/dsp/raw.py. */
#include "studio_dsp.h"

int studio_dsp_raw_feature_count(int n_values, int n_axes, const studio_dsp_raw_params_t *p)
{
    if (!p || n_values <= 0 || n_axes <= 0) return STUDIO_DSP_ERR_ARGS;
    return n_values * n_axes;
}

int studio_dsp_raw_features(const float *window, int n_values, int n_axes, float frequency,
                            const studio_dsp_raw_params_t *p, float *out, int out_len)
{
    int count = studio_dsp_raw_feature_count(n_values, n_axes, p);
    (void)frequency;
    if (count < 0) return count;
    if (!window || !out) return STUDIO_DSP_ERR_ARGS;
    if (out_len < count) return STUDIO_DSP_ERR_OUT_TOO_SMALL;
    for (int i = 0; i < count; i++) out[i] = window[i] * p->scale_axes;
    return count;
}
