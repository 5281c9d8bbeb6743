/* Tiny Studio int8 kernels in plain C99, bit-exact with one of two interpreters.
 *
 * The generator (workers/ml/export/cgen.py) picks the arithmetic per model:
 *  - match "litert" (default): what LiteRT's Python interpreter computes on its default CPU
 *    path: XNNPACK's float requantization for CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED /
 *    MEAN, XNNPACK's 21-bit fixed-point ADD, and TFLite's lookup-table int8 SOFTMAX;
 *  - match "tflm": TFLite's reference kernels as TFLite Micro runs them
 *    (MultiplyByQuantizedMultiplier with SaturatingRoundingDoublingHighMul and
 *    RoundingDivideByPOT, gemmlowp fixed-point softmax).
 * Float steps are single products and sums of values fixed at generation time, so with
 * FP contraction off (studio_nn_math.h) a Cortex-M4F gives the same bits as the host.
 * Shapes are NHWC, batch first.
 */
#ifndef STUDIO_NN_H
#define STUDIO_NN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Convolution (CONV_2D and DEPTHWISE_CONV_2D). Requantization is per output
 * channel: mult[c], shift[c] (shift > 0 is a left shift, as in TFLite), or, when
 * `scale` is set, XNNPACK's float requantization that LiteRT's default CPU path
 * runs: round-to-nearest-even(acc * scale[c]) + zero point. */
typedef struct {
    int batches;
    int in_h, in_w, in_c;
    int out_h, out_w, out_c;
    int k_h, k_w;
    int stride_h, stride_w;
    int dil_h, dil_w;
    int pad_h, pad_w;
    int depth_multiplier; /* depthwise only */
    int32_t in_offset;    /* -input zero point */
    int32_t out_offset;   /* output zero point */
    int32_t act_min, act_max;
    const int8_t *filter; /* conv: [out_c][k_h][k_w][in_c]; depthwise: [k_h][k_w][out_c] */
    const int32_t *bias;  /* [out_c] or NULL */
    const int32_t *mult;  /* [out_c] */
    const int32_t *shift; /* [out_c] */
    const float *scale;   /* [out_c] or NULL: float requantization instead of mult/shift */
    int16_t *patch;       /* conv scratch: k_h * k_w * in_c values of one input patch */
    int32_t *acc;         /* depthwise scratch: out_c accumulators */
} studio_conv_params_t;

void studio_conv2d_s8(const studio_conv_params_t *p, const int8_t *in, int8_t *out);
void studio_depthwise_conv2d_s8(const studio_conv_params_t *p, const int8_t *in, int8_t *out);

/* FULLY_CONNECTED: out[b][o] = requant(sum_i w[o][i] * (in[b][i] + in_offset) + bias[o]). */
typedef struct {
    int batches, in_depth, out_depth;
    int32_t in_offset, out_offset;
    int32_t act_min, act_max;
    int per_channel;      /* 0: mult[0]/shift[0] for every output */
    const int8_t *filter; /* [out_depth][in_depth] */
    const int32_t *bias;  /* [out_depth] or NULL */
    const int32_t *mult;
    const int32_t *shift;
    const float *scale; /* or NULL: float requantization instead of mult/shift */
} studio_fc_params_t;

void studio_fully_connected_s8(const studio_fc_params_t *p, const int8_t *in, int8_t *out);

/* MAX_POOL_2D / AVERAGE_POOL_2D (input and output share scale and zero point). */
typedef struct {
    int batches, in_h, in_w, channels, out_h, out_w;
    int f_h, f_w, stride_h, stride_w, pad_h, pad_w;
    int32_t act_min, act_max;
} studio_pool_params_t;

void studio_max_pool_s8(const studio_pool_params_t *p, const int8_t *in, int8_t *out);
void studio_avg_pool_s8(const studio_pool_params_t *p, const int8_t *in, int8_t *out);

/* ADD of two same-shaped tensors with TFLite's 20-bit left shift rescaling. */
typedef struct {
    int size;
    int32_t in1_offset, in2_offset, out_offset;
    int32_t left_shift;
    int32_t in1_mult, in1_shift, in2_mult, in2_shift, out_mult, out_shift;
    int32_t act_min, act_max;
    /* XNNPACK's qs8 add (LiteRT's default CPU path) when xnn_shift > 0:
     * out = (xnn_bias + a * xnn_a_mult + b * xnn_b_mult) >> xnn_shift, plus zero point. */
    int32_t xnn_a_mult, xnn_b_mult, xnn_bias, xnn_shift;
} studio_add_params_t;

void studio_add_s8(const studio_add_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out);

/* SOFTMAX over the last dimension. With `table` (256 floats, exp(-input_scale * beta * d)
 * for d = 255 .. 0) it is LiteRT's optimized lookup-table softmax; with table == NULL it is
 * the reference gemmlowp fixed-point softmax (Q5.26 input, Q12 sum) that TFLite Micro runs. */
typedef struct {
    int rows, depth;
    int32_t input_multiplier, input_left_shift, diff_min;
    const float *table;
    float out_scale;
    int32_t out_zero_point;
} studio_softmax_params_t;

void studio_softmax_s8(const studio_softmax_params_t *p, const int8_t *in, int8_t *out);

/* QUANTIZE int8 -> int8 (requantize) */
typedef struct {
    int size;
    int32_t in_zero_point, out_zero_point, mult, shift;
} studio_requantize_params_t;

void studio_requantize_s8(const studio_requantize_params_t *p, const int8_t *in, int8_t *out);

/* MEAN over height and width of an NHWC tensor (global average pooling), as XNNPACK's qs8
 * mean on LiteRT's default CPU path: round-half-even(sum(in - in_zp) * scale) + out_zp with
 * scale = (in_scale / out_scale) / (h * w) in float32. */
typedef struct {
    int batches, in_h, in_w, channels;
    int32_t in_zero_point, out_zero_point;
    float scale;
} studio_mean_params_t;

void studio_mean_hw_s8(const studio_mean_params_t *p, const int8_t *in, int8_t *out);

#ifdef __cplusplus
}
#endif

#endif /* STUDIO_NN_H */
