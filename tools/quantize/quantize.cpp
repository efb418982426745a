// tfusion-quantize's conversion driver: metadata copy, per-tensor type choice, streamed row-parallel quantization.
#include "quantize.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <cmath>
#include <memory>

#include "core/error.h"
#include "core/quant.h"
#include "core/threads.h"
#include "format/gguf.h"
#include "format/gguf_writer.h"
#include "mix.h"

namespace tfu::quantize {

namespace {

using clock_type = std::chrono::steady_clock;

double since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

// The model's block count and heads per KV head, from <arch>.block_count / attention.head_count(_kv).
void model_shape(const gguf::file& f, int* n_layer, int* n_gqa) {
    *n_layer = 0;
    *n_gqa = 1;
    const std::optional<std::string> arch = f.get_string("general.architecture");
    if (!arch) return;
    if (auto v = f.get_int(*arch + ".block_count")) *n_layer = int(*v);
    const gguf::kv* h = f.find(*arch + ".attention.head_count");
    const gguf::kv* hkv = f.find(*arch + ".attention.head_count_kv");
    // Either may be a per-layer array in some models; only scalars are used here.
    if (h && hkv && gguf::is_integer(h->type) && gguf::is_integer(hkv->type) && hkv->i > 0) *n_gqa = int(h->i / hkv->i);
}

// Converts rows [r0, r1) of a tensor of ne0 columns from src (type st) to dst (type dt); with stats adds the
// squared error and the squared source to *err / *ref.
void convert_rows(const uint8_t* src, dtype st, uint8_t* dst, dtype dt, int64_t ne0, int64_t r0, int64_t r1,
                  std::vector<float>& row, std::vector<float>& back, double* err, double* ref) {
    const size_t src_row = row_size(st, ne0), dst_row = row_size(dt, ne0);
    row.resize(size_t(ne0));
    back.resize(size_t(ne0));
    for (int64_t r = r0; r < r1; ++r) {
        dequantize_row(st, src + size_t(r) * src_row, row.data(), ne0);
        uint8_t* out = dst + size_t(r) * dst_row;
        quantize_row(dt, row.data(), out, ne0);
        if (err) {
            dequantize_row(dt, out, back.data(), ne0);
            for (int64_t j = 0; j < ne0; ++j) {
                const double e = double(back[size_t(j)]) - double(row[size_t(j)]);
                *err += e * e;
                *ref += double(row[size_t(j)]) * double(row[size_t(j)]);
            }
        }
    }
}

}  // namespace

double relative_rmse(const float* a, const float* b, int64_t n) {
    double err = 0.0, ref = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        const double e = double(a[i]) - double(b[i]);
        err += e * e;
        ref += double(b[i]) * double(b[i]);
    }
    if (ref == 0.0) return err == 0.0 ? 0.0 : INFINITY;
    return std::sqrt(err / ref);
}

report run(const options& opt) {
    const auto t0 = clock_type::now();
    const mix m = parse_mix(opt.type);
    if (opt.input.empty()) fail(TFU_STATUS_INVALID_ARGUMENT, "no input file given");
    if (opt.output.empty()) fail(TFU_STATUS_INVALID_ARGUMENT, "no output file given");
    std::unique_ptr<gguf::file> in = gguf::file::open(opt.input);

    // Metadata, with the file type and quantization version of the result.
    gguf::writer w;
    for (const gguf::kv& v : in->metadata()) w.set_kv(v);
    w.set_u32("general.quantization_version", 2);
    w.set_u32("general.file_type", m.ftype);

    std::vector<tensor_desc> descs;
    for (const gguf::tensor_info& t : in->tensors()) descs.push_back({std::string(t.name), t.type, t.n_dims, t.ne[0]});
    int n_layer = 0, n_gqa = 1;
    model_shape(*in, &n_layer, &n_gqa);
    const std::vector<dtype> types = choose_types(m, descs, n_layer, n_gqa);

    auto rep = std::make_shared<report>();
    auto pool = std::make_shared<thread_pool>(opt.threads);
    const size_t n_tensors = in->tensors().size();
    for (size_t i = 0; i < n_tensors; ++i) {
        const gguf::tensor_info& t = in->tensors()[i];
        dtype dt = types[i];
        // A source type this engine cannot convert (e.g. integer tensors) is copied unchanged.
        const bool convertible = traits(t.type).weight_type && traits(dt).weight_type;
        if (!convertible) dt = t.type;
        tensor_report tr;
        tr.name = std::string(t.name);
        tr.src_type = t.type;
        tr.dst_type = dt;
        tr.n_elements = t.nelements();
        tr.src_bytes = t.nbytes;
        tr.dst_bytes = row_size(dt, t.ne[0]) * size_t(t.nelements() / t.ne[0]);
        rep->tensors.push_back(tr);
        rep->src_bytes += tr.src_bytes;
        rep->dst_bytes += tr.dst_bytes;
        rep->n_elements += tr.n_elements;

        const gguf::tensor_info* ti = &t;
        w.add_tensor(t.name, dt, t.ne, t.n_dims, [&opt, rep, pool, ti, dt, convertible, i, n_tensors, t0](void* dst, size_t nbytes) {
            tensor_report& r = rep->tensors[i];
            if (opt.progress) opt.progress(i, n_tensors, r, since(t0));
            TFU_CHECK(nbytes == r.dst_bytes);
            if (ti->type == dt) {  // same type: the bytes are copied, lossless
                std::memcpy(dst, ti->data, nbytes);
                if (opt.stats) r.rel_rmse = 0.0;
                return;
            }
            if (!convertible) fail(TFU_STATUS_UNSUPPORTED, "tensor '" + r.name + "': cannot convert its type");
            const int64_t ne0 = ti->ne[0], rows = ti->nelements() / ne0;
            const int nt = pool->n_threads();
            const size_t nts = static_cast<size_t>(nt);
            std::vector<std::vector<float>> row(nts), back(nts);
            std::vector<double> err(nts, 0.0), ref(nts, 0.0);
            const auto* src = static_cast<const uint8_t*>(ti->data);
            auto* out = static_cast<uint8_t*>(dst);
            const int64_t min_chunk = std::max<int64_t>(1, 65536 / ne0);
            pool->parallel_for(
                rows,
                [&](int64_t b, int64_t e, int tid) {
                    const size_t k = size_t(tid);
                    convert_rows(src, ti->type, out, dt, ne0, b, e, row[k], back[k], opt.stats ? &err[k] : nullptr,
                                 opt.stats ? &ref[k] : nullptr);
                },
                min_chunk);
            if (opt.stats) {
                double se = 0.0, sr = 0.0;
                for (int k = 0; k < nt; ++k) {
                    se += err[size_t(k)];
                    sr += ref[size_t(k)];
                }
                r.rel_rmse = sr > 0.0 ? std::sqrt(se / sr) : (se == 0.0 ? 0.0 : INFINITY);
            }
        });
    }
    w.write(opt.output);
    rep->out_file_bytes = 0;
    if (auto check = gguf::file::open(opt.output)) rep->out_file_bytes = check->size();
    rep->seconds = since(t0);
    return *rep;
}

}  // namespace tfu::quantize
