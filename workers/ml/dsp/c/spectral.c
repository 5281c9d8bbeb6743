/* The spectral analysis block in C: workers/ml/dsp/spectral.py (needs fft.c). */
#include <math.h>
#include <string.h>

#include "studio_dsp.h"

#define PI_F 3.14159265358979323846f
#define LOG_FLOOR 1e-10f

static float s_signal[STUDIO_DSP_MAX_VALUES > STUDIO_DSP_MAX_FFT ? STUDIO_DSP_MAX_VALUES
                                                                   : STUDIO_DSP_MAX_FFT];
static float s_segment[STUDIO_DSP_MAX_FFT];
static float s_power[STUDIO_DSP_MAX_FFT / 2 + 1];
static float s_psd[STUDIO_DSP_MAX_FFT / 2 + 1];

static int check(int n_values, int n_axes, const studio_dsp_spectral_params_t *p)
{
    int n = p->fft_length;
    if (n_values <= 0 || n_axes <= 0 || n < 4 || (n & (n - 1))) return STUDIO_DSP_ERR_ARGS;
    if (p->n_sections < 0 || p->n_sections > STUDIO_DSP_MAX_SOS) return STUDIO_DSP_ERR_ARGS;
    if (p->peaks_count < 0 || p->peaks_count > STUDIO_DSP_MAX_PEAKS) return STUDIO_DSP_ERR_ARGS;
    if (p->n_bands < 1 || p->n_bands > STUDIO_DSP_MAX_BANDS) return STUDIO_DSP_ERR_ARGS;
    for (int b = 0; b < p->n_bands; b++)
        if (p->band_bins[b][0] < 0 || p->band_bins[b][1] > n / 2 + 1) return STUDIO_DSP_ERR_ARGS;
    if (n > STUDIO_DSP_MAX_FFT || n_values > STUDIO_DSP_MAX_VALUES) return STUDIO_DSP_ERR_TOO_LONG;
    return 0;
}

int studio_dsp_spectral_feature_count(int n_values, int n_axes,
                                      const studio_dsp_spectral_params_t *p)
{
    if (!p) return STUDIO_DSP_ERR_ARGS;
    int err = check(n_values, n_axes, p);
    if (err) return err;
    return n_axes * (3 + 2 * p->peaks_count + p->n_bands);
}

/* Welch: periodic Hann segments of n with 50 % overlap, mean of |X|^2, density scaling. */
static void welch(int len, int n, float frequency)
{
    int half = n / 2, step = n / 2, segments = 1 + (len - n) / step;
    float wsum2 = 0.0f, scale;
    memset(s_psd, 0, sizeof(float) * (size_t)(half + 1));
    for (int i = 0; i < n; i++) {
        float w = 0.5f - 0.5f * cosf(2.0f * PI_F * (float)i / (float)n);
        wsum2 += w * w;
    }
    for (int s = 0; s < segments; s++) {
        for (int i = 0; i < n; i++) {
            float w = 0.5f - 0.5f * cosf(2.0f * PI_F * (float)i / (float)n);
            s_segment[i] = s_signal[s * step + i] * w;
        }
        studio_dsp_rfft_power(s_segment, n, s_power);
        for (int k = 0; k <= half; k++) s_psd[k] += s_power[k];
    }
    scale = 1.0f / ((float)segments * frequency * wsum2);
    for (int k = 0; k <= half; k++) s_psd[k] *= (k == 0 || k == half) ? scale : 2.0f * scale;
}

int studio_dsp_spectral_features(const float *window, int n_values, int n_axes, float frequency,
                                 const studio_dsp_spectral_params_t *p, float *out, int out_len)
{
    int count, o = 0, n;
    float df;
    if (!p || !window || !out || !(frequency > 0.0f)) return STUDIO_DSP_ERR_ARGS;
    count = studio_dsp_spectral_feature_count(n_values, n_axes, p);
    if (count < 0) return count;
    if (out_len < count) return STUDIO_DSP_ERR_OUT_TOO_SMALL;
    n = p->fft_length;
    df = frequency / (float)n;

    for (int a = 0; a < n_axes; a++) {
        int len = n_values > n ? n_values : n;
        float mean = 0.0f, sq = 0.0f, m2 = 0.0f, m3 = 0.0f, m4 = 0.0f, fmean = 0.0f;
        float pk_f[STUDIO_DSP_MAX_PEAKS], pk_h[STUDIO_DSP_MAX_PEAKS];
        int found = 0;

        for (int i = 0; i < n_values; i++) {
            s_signal[i] = window[i * n_axes + a] * p->scale_axes;
            mean += s_signal[i];
        }
        mean /= (float)n_values;
        for (int i = 0; i < n_values; i++) s_signal[i] -= mean;

        /* Butterworth as cascaded biquads, transposed direct form II, zero initial state
         * (scipy.signal.sosfilt) */
        for (int sec = 0; sec < p->n_sections; sec++) {
            const float *c = p->sos[sec];
            float z1 = 0.0f, z2 = 0.0f;
            for (int i = 0; i < n_values; i++) {
                float x = s_signal[i], y = c[0] * x + z1;
                z1 = c[1] * x - c[4] * y + z2;
                z2 = c[2] * x - c[5] * y;
                s_signal[i] = y;
            }
        }

        for (int i = 0; i < n_values; i++) fmean += s_signal[i];
        fmean /= (float)n_values;
        for (int i = 0; i < n_values; i++) {
            float d = s_signal[i] - fmean, d2 = d * d;
            sq += s_signal[i] * s_signal[i];
            m2 += d2;
            m3 += d2 * d;
            m4 += d2 * d2;
        }
        m2 /= (float)n_values;
        m3 /= (float)n_values;
        m4 /= (float)n_values;
        out[o++] = sqrtf(sq / (float)n_values);
        if (m2 <= 1e-12f * (fmean * fmean > 1e-30f ? fmean * fmean : 1e-30f)) {
            out[o++] = 0.0f;
            out[o++] = -3.0f;
        } else {
            out[o++] = m3 / (m2 * sqrtf(m2));
            out[o++] = m4 / (m2 * m2) - 3.0f;
        }

        for (int i = n_values; i < len; i++) s_signal[i] = 0.0f; /* zero-pad up to fft_length */
        welch(len, n, frequency);

        /* highest local maxima first; equal heights keep the lower frequency first */
        for (int k = 1; k < n / 2; k++) {
            float h = s_psd[k];
            int at;
            if (!(h > s_psd[k - 1] && h >= s_psd[k + 1] && h > p->peaks_threshold)) continue;
            for (at = 0; at < found && pk_h[at] >= h; at++) {
            }
            if (at >= p->peaks_count) continue;
            if (found < p->peaks_count) found++;
            for (int j = found - 1; j > at; j--) {
                pk_f[j] = pk_f[j - 1];
                pk_h[j] = pk_h[j - 1];
            }
            pk_f[at] = (float)k * df;
            pk_h[at] = h;
        }
        for (int j = 0; j < p->peaks_count; j++) {
            float h = j < found ? pk_h[j] : 0.0f;
            out[o++] = j < found ? pk_f[j] : 0.0f;
            out[o++] = p->do_log ? log10f(h > LOG_FLOOR ? h : LOG_FLOOR) : h;
        }
        for (int b = 0; b < p->n_bands; b++) {
            float power = 0.0f;
            for (int k = p->band_bins[b][0]; k < p->band_bins[b][1]; k++) power += s_psd[k];
            power *= df;
            out[o++] = p->do_log ? log10f(power > LOG_FLOOR ? power : LOG_FLOOR) : power;
        }
    }
    return o;
}
