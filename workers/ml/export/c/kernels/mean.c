/* MEAN int8 over the spatial axes (global average pooling) with float requantization. */
#include "studio_nn.h"
#include "studio_nn_math.h"

void studio_mean_hw_s8(const studio_mean_params_t *p, const int8_t *in, int8_t *out)
{
    const long n = (long)p->in_h * p->in_w;
    for (int b = 0; b < p->batches; ++b) {
        const int8_t *in_b = in + (long)b * n * p->channels;
        for (int c = 0; c < p->channels; ++c) {
            int32_t acc = 0;
            for (long i = 0; i < n; ++i) {
                acc += (int32_t)in_b[i * p->channels + c] - p->in_zero_point;
            }
            out[(long)b * p->channels + c] =
                (int8_t)studio_requant_f32(acc, p->scale, p->out_zero_point, -128, 127);
        }
    }
}
