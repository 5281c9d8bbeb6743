/* QUANTIZE int8 -> int8: requantization between two int8 scales. */
#include "studio_nn.h"
#include "studio_nn_math.h"

void studio_requantize_s8(const studio_requantize_params_t *p, const int8_t *in, int8_t *out)
{
    for (int i = 0; i < p->size; ++i) {
        int32_t v = studio_mbqm((int32_t)in[i] - p->in_zero_point, p->mult, p->shift);
        v += p->out_zero_point;
        v = studio_max_i32(v, -128);
        v = studio_min_i32(v, 127);
        out[i] = (int8_t)v;
    }
}
