/* MAX_POOL_2D and AVERAGE_POOL_2D int8 (TFLite reference_integer_ops pooling). */
#include "studio_nn.h"
#include "studio_nn_math.h"

static void pool_window(const studio_pool_params_t *p, int oy, int ox, int *y0, int *y1, int *x0,
                        int *x1, int *iy0, int *ix0)
{
    *iy0 = oy * p->stride_h - p->pad_h;
    *ix0 = ox * p->stride_w - p->pad_w;
    *y0 = studio_max_i32(0, -*iy0);
    *y1 = studio_min_i32(p->f_h, p->in_h - *iy0);
    *x0 = studio_max_i32(0, -*ix0);
    *x1 = studio_min_i32(p->f_w, p->in_w - *ix0);
}

void studio_max_pool_s8(const studio_pool_params_t *p, const int8_t *in, int8_t *out)
{
    for (int b = 0; b < p->batches; ++b) {
        const int8_t *in_b = in + (long)b * p->in_h * p->in_w * p->channels;
        for (int oy = 0; oy < p->out_h; ++oy) {
            for (int ox = 0; ox < p->out_w; ++ox) {
                int y0, y1, x0, x1, iy0, ix0;
                pool_window(p, oy, ox, &y0, &y1, &x0, &x1, &iy0, &ix0);
                for (int c = 0; c < p->channels; ++c) {
                    int32_t m = -128;
                    for (int fy = y0; fy < y1; ++fy) {
                        for (int fx = x0; fx < x1; ++fx) {
                            const int32_t v =
                                in_b[((long)(iy0 + fy) * p->in_w + (ix0 + fx)) * p->channels + c];
                            m = studio_max_i32(m, v);
                        }
                    }
                    m = studio_max_i32(m, p->act_min);
                    m = studio_min_i32(m, p->act_max);
                    *out++ = (int8_t)m;
                }
            }
        }
    }
}

void studio_avg_pool_s8(const studio_pool_params_t *p, const int8_t *in, int8_t *out)
{
    for (int b = 0; b < p->batches; ++b) {
        const int8_t *in_b = in + (long)b * p->in_h * p->in_w * p->channels;
        for (int oy = 0; oy < p->out_h; ++oy) {
            for (int ox = 0; ox < p->out_w; ++ox) {
                int y0, y1, x0, x1, iy0, ix0;
                pool_window(p, oy, ox, &y0, &y1, &x0, &x1, &iy0, &ix0);
                for (int c = 0; c < p->channels; ++c) {
                    int32_t acc = 0;
                    int32_t count = 0;
                    for (int fy = y0; fy < y1; ++fy) {
                        for (int fx = x0; fx < x1; ++fx) {
                            acc += in_b[((long)(iy0 + fy) * p->in_w + (ix0 + fx)) * p->channels + c];
                            ++count;
                        }
                    }
                    if (count == 0) {
                        count = 1; /* TFLite rejects this case; keep the kernel total. */
                    }
                    /* Round half away from zero, as the reference kernel does. */
                    acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                    acc = studio_max_i32(acc, p->act_min);
                    acc = studio_min_i32(acc, p->act_max);
                    *out++ = (int8_t)acc;
                }
            }
        }
    }
}
