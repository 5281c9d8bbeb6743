/* CONV_2D and DEPTHWISE_CONV_2D, int8 with per-channel requantization (TFLite ConvPerChannel). */
#include "studio_nn.h"
#include "studio_nn_math.h"

static inline int8_t requant(const studio_conv_params_t *p, int32_t acc, int oc)
{
    if (p->scale) {
        return (int8_t)studio_requant_f32(acc, p->scale[oc], p->out_offset, p->act_min, p->act_max);
    }
    acc = studio_mbqm(acc, p->mult[oc], p->shift[oc]);
    acc += p->out_offset;
    acc = studio_max_i32(acc, p->act_min);
    acc = studio_min_i32(acc, p->act_max);
    return (int8_t)acc;
}

/* Per output pixel, the input patch (plus the input offset, 0 where the window hangs over
 * the border, which the reference kernel skips) is gathered once, then every output channel
 * is one contiguous dot product with its filter. Integer sums are exact, so the order of the
 * additions does not change the result. */
void studio_conv2d_s8(const studio_conv_params_t *p, const int8_t *in, int8_t *out)
{
    const int k = p->k_h * p->k_w * p->in_c;
    int16_t *patch = p->patch;
    for (int b = 0; b < p->batches; ++b) {
        const int8_t *in_b = in + (long)b * p->in_h * p->in_w * p->in_c;
        for (int oy = 0; oy < p->out_h; ++oy) {
            const int iy0 = oy * p->stride_h - p->pad_h;
            for (int ox = 0; ox < p->out_w; ++ox) {
                const int ix0 = ox * p->stride_w - p->pad_w;
                int16_t *dst = patch;
                for (int ky = 0; ky < p->k_h; ++ky) {
                    const int iy = iy0 + p->dil_h * ky;
                    for (int kx = 0; kx < p->k_w; ++kx) {
                        const int ix = ix0 + p->dil_w * kx;
                        if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w) {
                            for (int ic = 0; ic < p->in_c; ++ic) {
                                *dst++ = 0;
                            }
                            continue;
                        }
                        const int8_t *src = in_b + ((long)iy * p->in_w + ix) * p->in_c;
                        for (int ic = 0; ic < p->in_c; ++ic) {
                            *dst++ = (int16_t)((int32_t)src[ic] + p->in_offset);
                        }
                    }
                }
                for (int oc = 0; oc < p->out_c; ++oc) {
                    const int8_t *w = p->filter + (long)oc * k;
                    int32_t acc = 0;
                    for (int i = 0; i < k; ++i) {
                        acc += (int32_t)w[i] * patch[i];
                    }
                    if (p->bias) {
                        acc += p->bias[oc];
                    }
                    *out++ = requant(p, acc, oc);
                }
            }
        }
    }
}

/* Per output pixel, all channels accumulate together (contiguous in input, filter and
 * accumulators), one filter tap at a time; taps over the border are skipped. */
void studio_depthwise_conv2d_s8(const studio_conv_params_t *p, const int8_t *in, int8_t *out)
{
    const int dm = p->depth_multiplier;
    int32_t *acc = p->acc;
    for (int b = 0; b < p->batches; ++b) {
        const int8_t *in_b = in + (long)b * p->in_h * p->in_w * p->in_c;
        for (int oy = 0; oy < p->out_h; ++oy) {
            const int iy0 = oy * p->stride_h - p->pad_h;
            for (int ox = 0; ox < p->out_w; ++ox) {
                const int ix0 = ox * p->stride_w - p->pad_w;
                for (int oc = 0; oc < p->out_c; ++oc) {
                    acc[oc] = p->bias ? p->bias[oc] : 0;
                }
                for (int ky = 0; ky < p->k_h; ++ky) {
                    const int iy = iy0 + p->dil_h * ky;
                    if (iy < 0 || iy >= p->in_h) {
                        continue;
                    }
                    for (int kx = 0; kx < p->k_w; ++kx) {
                        const int ix = ix0 + p->dil_w * kx;
                        if (ix < 0 || ix >= p->in_w) {
                            continue;
                        }
                        const int8_t *src = in_b + ((long)iy * p->in_w + ix) * p->in_c;
                        const int8_t *w = p->filter + ((long)ky * p->k_w + kx) * p->out_c;
                        if (dm == 1) {
                            for (int c = 0; c < p->in_c; ++c) {
                                acc[c] += (int32_t)w[c] * ((int32_t)src[c] + p->in_offset);
                            }
                        } else {
                            for (int ic = 0; ic < p->in_c; ++ic) {
                                const int32_t v = (int32_t)src[ic] + p->in_offset;
                                for (int m = 0; m < dm; ++m) {
                                    acc[ic * dm + m] += (int32_t)w[ic * dm + m] * v;
                                }
                            }
                        }
                    }
                }
                int8_t *dst = out + ((long)(b * p->out_h + oy) * p->out_w + ox) * p->out_c;
                for (int oc = 0; oc < p->out_c; ++oc) {
                    dst[oc] = requant(p, acc[oc], oc);
                }
            }
        }
    }
}
