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

void studio_conv2d_s8(const studio_conv_params_t *p, const int8_t *in, int8_t *out)
{
    for (int b = 0; b < p->batches; ++b) {
        const int8_t *in_b = in + (long)b * p->in_h * p->in_w * p->in_c;
        for (int oy = 0; oy < p->out_h; ++oy) {
            const int iy0 = oy * p->stride_h - p->pad_h;
            for (int ox = 0; ox < p->out_w; ++ox) {
                const int ix0 = ox * p->stride_w - p->pad_w;
                for (int oc = 0; oc < p->out_c; ++oc) {
                    const int8_t *w = p->filter + (long)oc * p->k_h * p->k_w * p->in_c;
                    int32_t acc = 0;
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
                            const int8_t *wk = w + ((long)ky * p->k_w + kx) * p->in_c;
                            for (int ic = 0; ic < p->in_c; ++ic) {
                                acc += (int32_t)wk[ic] * ((int32_t)src[ic] + p->in_offset);
                            }
                        }
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

void studio_depthwise_conv2d_s8(const studio_conv_params_t *p, const int8_t *in, int8_t *out)
{
    for (int b = 0; b < p->batches; ++b) {
        const int8_t *in_b = in + (long)b * p->in_h * p->in_w * p->in_c;
        for (int oy = 0; oy < p->out_h; ++oy) {
            const int iy0 = oy * p->stride_h - p->pad_h;
            for (int ox = 0; ox < p->out_w; ++ox) {
                const int ix0 = ox * p->stride_w - p->pad_w;
                for (int ic = 0; ic < p->in_c; ++ic) {
                    for (int m = 0; m < p->depth_multiplier; ++m) {
                        const int oc = ic * p->depth_multiplier + m;
                        int32_t acc = 0;
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
                                const int32_t v = in_b[((long)iy * p->in_w + ix) * p->in_c + ic];
                                const int32_t w = p->filter[((long)ky * p->k_w + kx) * p->out_c + oc];
                                acc += w * (v + p->in_offset);
                            }
                        }
                        if (p->bias) {
                            acc += p->bias[oc];
                        }
                        out[((long)(b * p->out_h + oy) * p->out_w + ox) * p->out_c + oc] =
                            requant(p, acc, oc);
                    }
                }
            }
        }
    }
}
