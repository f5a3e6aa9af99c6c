#ifndef NNET_KL_DIVERGENCE_H_
#define NNET_KL_DIVERGENCE_H_

// KL divergence of N(mean, exp(log_var)) from N(0, 1), averaged over the latent dimensions:
// res[0] = -0.5 * mean_i(1 + log_var_i - mean_i^2 - exp(log_var_i)), with exp from a lookup table over
// [-exp_range, exp_range). The rounding points are those of hls4ml's contrib/kl_layer (see the project's
// arithmetic contract); every intermediate is accum_t.

#include "nnet_common.h"
#include <cmath>

namespace nnet {

struct kl_divergence_config {
    static const unsigned n_in = 3;
    static const unsigned n_out = 1;
    static const unsigned table_size = 1024;
    static const unsigned exp_range = 8;
    typedef ap_fixed<18, 8> accum_t;
    typedef ap_fixed<18, 8, AP_RND, AP_SAT> exp_table_t;
};

// table[ii] = exp(x) for x = 2 * exp_range * (ii - table_size / 2) / table_size, computed in float.
template <typename CONFIG_T> void init_kl_exp_table(typename CONFIG_T::exp_table_t table[CONFIG_T::table_size]) {
    for (unsigned ii = 0; ii < CONFIG_T::table_size; ii++) {
        float x = 2.0 * CONFIG_T::exp_range * (ii - CONFIG_T::table_size / 2.0) / CONFIG_T::table_size;
        table[ii] = typename CONFIG_T::exp_table_t(std::exp(x));
    }
}

// Table index of log_var: floor(log_var * table_size / (2 * exp_range) + table_size / 2), clamped to the table.
template <class data_T, typename CONFIG_T> unsigned kl_exp_index(data_T log_var) {
    static const unsigned table_scale = CONFIG_T::table_size / (2 * CONFIG_T::exp_range);
    static const unsigned index_shift = CONFIG_T::table_size / 2;
    auto position = log_var * table_scale + index_shift;
    if (position < 0)
        return 0;
    if (position >= CONFIG_T::table_size - 1)
        return CONFIG_T::table_size - 1;
    return position.to_uint();
}

template <class data1_T, class data2_T, class res_T, typename CONFIG_T>
void kl_divergence(data1_T mean[CONFIG_T::n_in], data2_T log_var[CONFIG_T::n_in], res_T res[CONFIG_T::n_out]) {
    #pragma HLS PIPELINE
    typedef typename CONFIG_T::accum_t accum_t;
#ifdef __HLS_SYN__
    bool initialized = false;
    typename CONFIG_T::exp_table_t exp_table[CONFIG_T::table_size];
#else
    static bool initialized = false;
    static typename CONFIG_T::exp_table_t exp_table[CONFIG_T::table_size];
#endif
    if (!initialized) {
        init_kl_exp_table<CONFIG_T>(exp_table);
        initialized = true;
    }

    accum_t kl[CONFIG_T::n_in];
    #pragma HLS ARRAY_PARTITION variable=kl complete
    for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
        #pragma HLS UNROLL
        accum_t mean_sq = mean[i] * mean[i];
        kl[i] = data2_T(1.0) + log_var[i];
        kl[i] = kl[i] - exp_table[kl_exp_index<data2_T, CONFIG_T>(log_var[i])];
        kl[i] = kl[i] - mean_sq;
    }
    Op_add<accum_t> op_add;
    accum_t kl_sum = reduce<accum_t, CONFIG_T::n_in, Op_add<accum_t>>(kl, op_add);
    kl_sum = kl_sum * accum_t(1.0 / CONFIG_T::n_in);
    res[0] = res_T(-0.5) * kl_sum;
}

} // namespace nnet

#endif
