/* Radix-2 real FFT (power spectrum) shared by the spectral, MFE and MFCC blocks. */
#include <math.h>

#include "studio_dsp.h"

#define PI_F 3.14159265358979323846f

static float s_re[STUDIO_DSP_MAX_FFT / 2];
static float s_im[STUDIO_DSP_MAX_FFT / 2];

/* In-place iterative decimation-in-time FFT of n complex values. */
static void fft_complex(float *re, float *im, int n)
{
    for (int i = 1, j = 0; i < n; i++) {
        int bit = n >> 1;
        for (; j & bit; bit >>= 1) j ^= bit;
        j ^= bit;
        if (i < j) {
            float t = re[i];
            re[i] = re[j];
            re[j] = t;
            t = im[i];
            im[i] = im[j];
            im[j] = t;
        }
    }
    for (int len = 2; len <= n; len <<= 1) {
        int half = len >> 1;
        for (int k = 0; k < half; k++) {
            /* direct cos/sin rather than a recurrence: no drift at large n */
            float ang = -2.0f * PI_F * (float)k / (float)len;
            float wr = cosf(ang), wi = sinf(ang);
            for (int i = k; i < n; i += len) {
                int j = i + half;
                float tr = re[j] * wr - im[j] * wi;
                float ti = re[j] * wi + im[j] * wr;
                re[j] = re[i] - tr;
                im[j] = im[i] - ti;
                re[i] += tr;
                im[i] += ti;
            }
        }
    }
}

int studio_dsp_rfft_power(const float *x, int n, float *power)
{
    int m = n / 2;
    if (!x || !power || n < 4 || n > STUDIO_DSP_MAX_FFT || (n & (n - 1))) return STUDIO_DSP_ERR_ARGS;
    /* pack the real sequence as n/2 complex values: half the work of a complex FFT */
    for (int i = 0; i < m; i++) {
        s_re[i] = x[2 * i];
        s_im[i] = x[2 * i + 1];
    }
    fft_complex(s_re, s_im, m);
    for (int k = 0; k <= m; k++) {
        int a = k % m, b = (m - k) % m;
        float ar = s_re[a], ai = s_im[a], br = s_re[b], bi = -s_im[b];
        float er = 0.5f * (ar + br), ei = 0.5f * (ai + bi);
        float orr = 0.5f * (ai - bi), oi = -0.5f * (ar - br);
        float ang = -2.0f * PI_F * (float)k / (float)n;
        float c = cosf(ang), s = sinf(ang);
        float xr = er + c * orr - s * oi;
        float xi = ei + c * oi + s * orr;
        power[k] = xr * xr + xi * xi;
    }
    return m + 1;
}
