// Named intermediates of the forward pass, written to files so that a golden mismatch can be
// located at a layer (docs/TRACE.md). Off by default and then one predictable branch per call.
//   OWL_TRACE=attn_norm,ffn_out   (or "all")   which names to write
//   OWL_TRACE_DIR=DIR                          where (default: owl-trace in the working folder)
// or `owl logits ... --dump DIR [--dump-names a,b]`. Each record is DIR/NNNNN-NAME-LAYER.f32
// (float32 rows x cols, row-major: one row per batch row) and one line of DIR/trace.txt:
//   NNNNN NAME-LAYER [cols, rows] sum = S  first: v0 v1 v2  last: ...
// a summary in the shape of llama.cpp's eval-callback output, so the two can be diffed by name.
// Names: attn_norm, q, k, v (after rope and q/k norms), attn_out (attention before the output
// projection), attn_proj (after it), ffn_inp (residual stream entering the FFN), ffn_norm,
// moe_logits (router), moe_experts (chosen expert ids, as floats), moe_weights, ffn_out, l_out
// (the layer's output); layer -1 for result_norm and logits.
#pragma once
#include <cstdint>
#include <string>

namespace owl::trace {

// Starts tracing (overrides OWL_TRACE): names is a comma list or "all". Clears nothing in dir.
void start(const std::string& dir, const std::string& names);
void stop();

// Whether `name` is being traced (reads OWL_TRACE once, on first use).
bool on(const char* name);

// Writes one record when `name` is traced.
void tensor(const char* name, int64_t layer, const float* data, int64_t rows, int64_t cols);
void ids(const char* name, int64_t layer, const int32_t* data, int64_t rows, int64_t cols);

}  // namespace owl::trace
