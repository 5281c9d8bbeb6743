/* FULLY_CONNECTED int8 (TFLite FullyConnected / FullyConnectedPerChannel). */
#include "studio_nn.h"
#include "studio_nn_math.h"

void studio_fully_connected_s8(const studio_fc_params_t *p, const int8_t *in, int8_t *out)
{
    for (int b = 0; b < p->batches; ++b) {
        const int8_t *x = in + (long)b * p->in_depth;
        for (int o = 0; o < p->out_depth; ++o) {
            const int8_t *w = p->filter + (long)o * p->in_depth;
            int32_t acc = 0;
            for (int i = 0; i < p->in_depth; ++i) {
                acc += (int32_t)w[i] * ((int32_t)x[i] + p->in_offset);
            }
            if (p->bias) {
                acc += p->bias[o];
            }
            const int q = p->per_channel ? o : 0;
            if (p->scale) {
                out[(long)b * p->out_depth + o] =
                    (int8_t)studio_requant_f32(acc, p->scale[q], p->out_offset, p->act_min, p->act_max);
                continue;
            }
            acc = studio_mbqm(acc, p->mult[q], p->shift[q]);
            acc += p->out_offset;
            acc = studio_max_i32(acc, p->act_min);
            acc = studio_min_i32(acc, p->act_max);
            out[(long)b * p->out_depth + o] = (int8_t)acc;
        }
    }
}
