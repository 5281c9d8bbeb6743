/* The MFCC block in C: workers/ml/dsp/mfcc.py (needs mfe.c and fft.c). */
#include <math.h>

#include "studio_dsp.h"

#define PI_F 3.14159265358979323846f

static float s_log[STUDIO_DSP_MAX_FILTERS];

int studio_dsp_mfcc_feature_count(int n_values, int n_axes, const studio_dsp_mfcc_params_t *p)
{
    int per;
    if (!p) return STUDIO_DSP_ERR_ARGS;
    per = studio_dsp_mfe_feature_count(n_values, n_axes, &p->mel);
    if (per < 0) return per;
    if (p->num_cepstral < 1 || p->num_cepstral > p->mel.num_filters || p->cepstral_lifter < 0)
        return STUDIO_DSP_ERR_ARGS;
    return per / p->mel.num_filters * p->num_cepstral;
}

int studio_dsp_mfcc_features(const float *window, int n_values, int n_axes, float frequency,
                             const studio_dsp_mfcc_params_t *p, float *out, int out_len)
{
    int count = studio_dsp_mfcc_feature_count(n_values, n_axes, p), nf, nfilt;
    (void)frequency;
    if (count < 0) return count;
    if (!window || !out) return STUDIO_DSP_ERR_ARGS;
    if (out_len < count) return STUDIO_DSP_ERR_OUT_TOO_SMALL;
    nfilt = p->mel.num_filters;
    nf = count / p->num_cepstral;
    for (int f = 0; f < nf; f++) {
        float total, *c = out + f * p->num_cepstral;
        studio_dsp_mel_frame(window, f * p->mel.frame_stride, &p->mel, p->pre_emphasis, s_log, &total);
        for (int j = 0; j < nfilt; j++) s_log[j] = logf(s_log[j] > 1e-30f ? s_log[j] : 1e-30f);
        /* orthonormal DCT-II, only the kept coefficients */
        for (int k = 0; k < p->num_cepstral; k++) {
            float acc = 0.0f;
            for (int j = 0; j < nfilt; j++)
                acc += s_log[j] * cosf(PI_F * (float)k * (2.0f * (float)j + 1.0f) / (2.0f * (float)nfilt));
            c[k] = acc * sqrtf((k == 0 ? 1.0f : 2.0f) / (float)nfilt);
            if (p->cepstral_lifter > 0) {
                float l = (float)p->cepstral_lifter;
                c[k] *= 1.0f + 0.5f * l * sinf(PI_F * (float)k / l);
            }
        }
        if (p->append_energy) c[0] = logf(total > 1e-30f ? total : 1e-30f);
    }
    return count;
}
