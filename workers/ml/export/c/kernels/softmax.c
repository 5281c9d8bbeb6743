/* SOFTMAX int8 -> int8: LiteRT's exp lookup table, or gemmlowp fixed-point exp (reference). */
#include "studio_nn.h"
#include "studio_nn_math.h"

/* Fixed-point helpers of gemmlowp/fixedpoint.h, specialised to the Q5.26 input
 * (kScaledDiffIntegerBits = 5) and Q12 accumulator the reference kernel uses. */

static inline int32_t mask_if_non_zero(int32_t a) { return a ? ~0 : 0; }
static inline int32_t mask_if_zero(int32_t a) { return a ? 0 : ~0; }
static inline int32_t select_using_mask(int32_t mask, int32_t a, int32_t b)
{
    return (mask & a) ^ (~mask & b);
}

/* SaturatingRoundingMultiplyByPOT with a positive exponent. */
static inline int32_t mul_by_pot(int32_t x, int exponent)
{
    const int32_t threshold = (int32_t)((1LL << (31 - exponent)) - 1);
    const int32_t positive = mask_if_non_zero(x > threshold);
    const int32_t negative = mask_if_non_zero(x < -threshold);
    int32_t r = (int32_t)((uint32_t)x << exponent);
    r = select_using_mask(positive, INT32_MAX, r);
    r = select_using_mask(negative, INT32_MIN, r);
    return r;
}

/* exp(x) for x in [-1/4, 0) (Q0.31), Taylor series around -1/8. */
static int32_t exp_on_interval_between_negative_one_quarter_and_0_excl(int32_t a)
{
    const int32_t constant_term = 1895147668;        /* exp(-1/8) */
    const int32_t constant_1_over_3 = 715827883;
    const int32_t x = a + (1 << 28);                  /* a + 1/8 */
    const int32_t x2 = studio_srdhm(x, x);
    const int32_t x3 = studio_srdhm(x2, x);
    const int32_t x4 = studio_srdhm(x2, x2);
    const int32_t x4_over_4 = studio_rdbpot(x4, 2);
    const int32_t x4_over_24_plus_x3_over_6_plus_x2_over_2 =
        studio_rdbpot(studio_srdhm(x4_over_4 + x3, constant_1_over_3) + x2, 1);
    return constant_term +
           studio_srdhm(constant_term, x + x4_over_24_plus_x3_over_6_plus_x2_over_2);
}

/* exp(a) for a <= 0; a in Q5.26, result in Q0.31. */
static int32_t exp_on_negative_values(int32_t a)
{
    const int k_fractional_bits = 26; /* 31 - 5 integer bits */
    const int32_t one_quarter = 1 << (k_fractional_bits - 2);
    const int32_t mask = one_quarter - 1;
    const int32_t a_mod_quarter_minus_one_quarter = (a & mask) - one_quarter;
    /* Rescale from Q5.26 to Q0.31 */
    int32_t result = exp_on_interval_between_negative_one_quarter_and_0_excl(
        (int32_t)((uint32_t)a_mod_quarter_minus_one_quarter << 5));
    const int32_t remainder = a_mod_quarter_minus_one_quarter - a;

    /* exp(-2^k) for k = -2 .. 4, in Q0.31 */
    static const int32_t multipliers[7] = {1672461947, 1302514674, 790015084, 290630308,
                                           39332535,   720401,     242};
    for (int k = 0; k < 7; ++k) {
        const int shift = k_fractional_bits - 2 + k;
        if (shift < 31) {
            const int32_t m = mask_if_non_zero(remainder & (1 << shift));
            result = select_using_mask(m, studio_srdhm(result, multipliers[k]), result);
        }
    }
    /* 5 integer bits: the last multiplier (k = 4, 2^4 = 16 < 32) is in range. */
    return select_using_mask(mask_if_zero(a), INT32_MAX, result);
}

/* 1 / (1 + x) for x in [0, 1) (Q0.31), Newton-Raphson; result in Q2.29 scaled to Q0.31 by the caller. */
static int32_t one_over_one_plus_x_for_x_in_0_1(int32_t a)
{
    const int64_t sum = (int64_t)a + (int64_t)INT32_MAX;
    const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
    const int32_t constant_48_over_17 = 1515870810;
    const int32_t constant_neg_32_over_17 = -1010580540;
    int32_t x = constant_48_over_17 + studio_srdhm(half_denominator, constant_neg_32_over_17);
    const int32_t one_q2_29 = 1 << 29;
    for (int i = 0; i < 3; ++i) {
        const int32_t half_denominator_times_x = studio_srdhm(half_denominator, x);
        const int32_t one_minus = one_q2_29 - half_denominator_times_x;
        x = x + mul_by_pot(studio_srdhm(x, one_minus), 2);
    }
    return mul_by_pot(x, 1);
}

static inline int count_leading_zeros(uint32_t x)
{
    int n = 0;
    if (x == 0) {
        return 32;
    }
    while (!(x & 0x80000000u)) {
        x <<= 1;
        ++n;
    }
    return n;
}

/* std::round for the non-negative probabilities, without pulling in libm:
 * subtracting the integer part of a float below 2^23 is exact. */
static inline int32_t round_non_negative(float x)
{
    int32_t i = (int32_t)x;
    if (x - (float)i >= 0.5f) {
        ++i;
    }
    return i;
}

/* optimized_ops::Softmax with PopulateSoftmaxLookupTable: float sums of a table
 * computed at generation time, so every target adds the same float values. */
static void softmax_lut(const studio_softmax_params_t *p, const int8_t *in, int8_t *out)
{
    for (int r = 0; r < p->rows; ++r) {
        const int8_t *x = in + (long)r * p->depth;
        int8_t *y = out + (long)r * p->depth;
        int32_t max_val = -128;
        for (int c = 0; c < p->depth; ++c) {
            max_val = studio_max_i32(max_val, x[c]);
        }
        const float *table_offset = &p->table[255 - max_val];
        float sum_exp = 0.0f;
        for (int c = 0; c < p->depth; ++c) {
            sum_exp += table_offset[x[c]];
        }
        const float inv_sum_exp = 1.0f / (sum_exp * p->out_scale);
        for (int c = 0; c < p->depth; ++c) {
            const float prob_rescaled = table_offset[x[c]] * inv_sum_exp;
            int32_t q = round_non_negative(prob_rescaled) + p->out_zero_point;
            q = studio_max_i32(q, -128);
            q = studio_min_i32(q, 127);
            y[c] = (int8_t)q;
        }
    }
}

void studio_softmax_s8(const studio_softmax_params_t *p, const int8_t *in, int8_t *out)
{
    const int accum_bits = 12;
    if (p->table) {
        softmax_lut(p, in, out);
        return;
    }
    for (int r = 0; r < p->rows; ++r) {
        const int8_t *x = in + (long)r * p->depth;
        int8_t *y = out + (long)r * p->depth;
        int32_t max_in_row = -128;
        for (int c = 0; c < p->depth; ++c) {
            max_in_row = studio_max_i32(max_in_row, x[c]);
        }
        int32_t sum_of_exps = 0; /* Q12.19 */
        for (int c = 0; c < p->depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_in_row;
            if (diff >= p->diff_min) {
                const int32_t scaled =
                    studio_mbqm_gt_one(diff, p->input_multiplier, p->input_left_shift);
                sum_of_exps += studio_rdbpot(exp_on_negative_values(scaled), accum_bits);
            }
        }
        /* GetReciprocal(sum_of_exps, 12) */
        const int headroom_plus_one = count_leading_zeros((uint32_t)sum_of_exps);
        const int num_bits_over_unit = accum_bits - headroom_plus_one;
        const int32_t shifted_sum_minus_one =
            (int32_t)(((uint32_t)sum_of_exps << headroom_plus_one) - (1u << 31));
        const int32_t shifted_scale = one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one);

        for (int c = 0; c < p->depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_in_row;
            if (diff >= p->diff_min) {
                const int32_t scaled =
                    studio_mbqm_gt_one(diff, p->input_multiplier, p->input_left_shift);
                const int32_t e = exp_on_negative_values(scaled);
                const int32_t unsat =
                    studio_rdbpot(studio_srdhm(shifted_scale, e), num_bits_over_unit + 31 - 8);
                int32_t v = unsat - 128;
                v = studio_max_i32(v, -128);
                v = studio_min_i32(v, 127);
                y[c] = (int8_t)v;
            } else {
                y[c] = -128;
            }
        }
    }
}
