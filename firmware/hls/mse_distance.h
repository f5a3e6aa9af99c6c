#ifndef NNET_MSE_DISTANCE_H_
#define NNET_MSE_DISTANCE_H_

// Mean squared difference of two arrays: res[0] = mean_i((reconstruction_i - reference_i)^2), each difference
// cast to diff_t, each square to square_t, the balanced-tree sum and the mean in accum_t.

#include "nnet_common.h"

namespace nnet {

struct mse_distance_config {
    static const unsigned n_in = 57;
    static const unsigned n_out = 1;
    typedef ap_fixed<18, 8> diff_t;
    typedef ap_fixed<18, 8> square_t;
    typedef ap_fixed<18, 8> accum_t;
};

template <class data1_T, class data2_T, class res_T, typename CONFIG_T>
void mse_distance(data1_T reference[CONFIG_T::n_in], data2_T reconstruction[CONFIG_T::n_in],
                  res_T res[CONFIG_T::n_out]) {
    #pragma HLS PIPELINE
    typedef typename CONFIG_T::accum_t accum_t;
    accum_t squares[CONFIG_T::n_in];
    #pragma HLS ARRAY_PARTITION variable=squares complete
    for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
        #pragma HLS UNROLL
        typename CONFIG_T::diff_t diff = reconstruction[i] - reference[i];
        typename CONFIG_T::square_t square = diff * diff;
        squares[i] = square;
    }
    Op_add<accum_t> op_add;
    accum_t sum = reduce<accum_t, CONFIG_T::n_in, Op_add<accum_t>>(squares, op_add);
    accum_t mean = sum * accum_t(1.0 / CONFIG_T::n_in);
    res[0] = mean;
}

} // namespace nnet

#endif
