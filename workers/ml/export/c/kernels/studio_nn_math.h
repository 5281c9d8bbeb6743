/* Fixed-point helpers with TFLite's (gemmlowp's) rounding, shared by the kernels. */
#ifndef STUDIO_NN_MATH_H
#define STUDIO_NN_MATH_H

#include <stdint.h>

#include "studio_nn_config.h"

/* Bit-exactness needs every float product rounded before it is used: no FMA. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#elif defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* LiteRT's Python wheels are built with TFLITE_SINGLE_ROUNDING: requantization
 * rounds once, half up. TFLite Micro's default build rounds twice (gemmlowp
 * SaturatingRoundingDoublingHighMul, then RoundingDivideByPOT). */
#ifndef STUDIO_NN_SINGLE_ROUNDING
#define STUDIO_NN_SINGLE_ROUNDING 1
#endif

static inline int32_t studio_min_i32(int32_t a, int32_t b) { return a < b ? a : b; }
static inline int32_t studio_max_i32(int32_t a, int32_t b) { return a > b ? a : b; }

/* gemmlowp SaturatingRoundingDoublingHighMul: (a * b * 2) >> 32, rounded half away from zero. */
static inline int32_t studio_srdhm(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? (1LL << 30) : (1 - (1LL << 30));
    /* C99 division truncates toward zero, like the C++ reference. */
    return (int32_t)((ab + nudge) / (1LL << 31));
}

/* gemmlowp RoundingDivideByPOT: x / 2^exponent, rounded half away from zero. */
static inline int32_t studio_rdbpot(int32_t x, int exponent)
{
    const int32_t mask = (int32_t)((1LL << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* TFLite MultiplyByQuantizedMultiplier: x * multiplier * 2^(shift - 31), rounded. */
static inline int32_t studio_mbqm(int32_t x, int32_t multiplier, int32_t shift)
{
#if STUDIO_NN_SINGLE_ROUNDING
    const int total_shift = 31 - shift;
    const int64_t round = (int64_t)1 << (total_shift - 1);
    return (int32_t)(((int64_t)x * multiplier + round) >> total_shift);
#else
    const int left_shift = shift > 0 ? shift : 0;
    const int right_shift = shift > 0 ? 0 : -shift;
    return studio_rdbpot(studio_srdhm((int32_t)((uint32_t)x << left_shift), multiplier), right_shift);
#endif
}

/* TFLite MultiplyByQuantizedMultiplierGreaterThanOne (softmax input scaling). */
static inline int32_t studio_mbqm_gt_one(int32_t x, int32_t multiplier, int32_t left_shift)
{
#if STUDIO_NN_SINGLE_ROUNDING
    return studio_mbqm(x, multiplier, left_shift);
#else
    return studio_srdhm((int32_t)((uint32_t)x << left_shift), multiplier);
#endif
}

/* XNNPACK "fp32" requantization: clamp(acc * scale) rounded half to even, plus zero
 * point. The magic-number add rounds in the default FP mode without libm. */
static inline int32_t studio_requant_f32(int32_t acc, float scale, int32_t zero_point,
                                         int32_t act_min, int32_t act_max)
{
    union {
        float f;
        int32_t i;
    } u;
    float f = (float)acc * scale;
    const float lo = (float)(act_min - zero_point);
    const float hi = (float)(act_max - zero_point);
    f = f < lo ? lo : f;
    f = f > hi ? hi : f;
    u.f = f + 12582912.0f; /* 1.5 * 2^23 */
    return u.i - 0x4B400000 + zero_point;
}

#endif /* STUDIO_NN_MATH_H */
