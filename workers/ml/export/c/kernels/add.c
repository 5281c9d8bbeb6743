/* ADD int8 of two same-shaped tensors (TFLite reference_integer_ops::Add, or XNNPACK's qs8 add). */
#include "studio_nn.h"
#include "studio_nn_math.h"

void studio_add_s8(const studio_add_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out)
{
    if (p->xnn_shift > 0) {
        for (int i = 0; i < p->size; ++i) {
            const int32_t acc = p->xnn_bias + (int32_t)in1[i] * p->xnn_a_mult + (int32_t)in2[i] * p->xnn_b_mult;
            int32_t r = acc >> p->xnn_shift; /* arithmetic shift, as XNNPACK's math_asr_s32 */
            r = studio_max_i32(r, p->act_min - p->out_offset);
            r = studio_min_i32(r, p->act_max - p->out_offset);
            out[i] = (int8_t)(r + p->out_offset);
        }
        return;
    }
    for (int i = 0; i < p->size; ++i) {
        const int32_t a = ((int32_t)in1[i] + p->in1_offset) * (1 << p->left_shift);
        const int32_t b = ((int32_t)in2[i] + p->in2_offset) * (1 << p->left_shift);
        const int32_t sa = studio_mbqm(a, p->in1_mult, p->in1_shift);
        const int32_t sb = studio_mbqm(b, p->in2_mult, p->in2_shift);
        int32_t r = studio_mbqm(sa + sb, p->out_mult, p->out_shift) + p->out_offset;
        r = studio_max_i32(r, p->act_min);
        r = studio_min_i32(r, p->act_max);
        out[i] = (int8_t)r;
    }
}
