/* Rounding mode of the requantization; 1 matches LiteRT. */
#define STUDIO_NN_SINGLE_ROUNDING 1
