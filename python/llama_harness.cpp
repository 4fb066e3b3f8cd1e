// Reference runs of the real llama.cpp library for sparkquant's GGUF tests (built by python/gguf_llama.py against the
// libraries of the npm package @node-llama-cpp/linux-x64 and the llama.cpp source it was built from).
//
//   llama_harness tokenize MODEL.gguf TEXT_FILE OUT_IDS      token ids (int32 LE) of the text, no special tokens added
//   llama_harness logits   MODEL.gguf IDS_FILE OUT_F32       logits of every position of one sequence (float32 LE)
//   llama_harness nll      MODEL.gguf IDS_FILE SEQ_LEN OUT   per window: sum of next-token NLL (GPTQ protocol, text)
//   llama_harness imatrix  FILE.imatrix                      prints what common_imatrix_load reads (text)
//   llama_harness meta     MODEL.gguf                        prints vocab size, bos/eos ids, add_bos, n_params
//
// Contexts use F32 K/V caches and one sequence per window, so logits are as close to an fp32 forward pass as the
// CPU kernels allow.

#include "llama.h"
#include "ggml-backend.h"
#include "imatrix-loader.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

static void quiet_log(ggml_log_level level, const char * text, void *) {
    if (level >= GGML_LOG_LEVEL_ERROR) {
        fputs(text, stderr);
    }
}

static std::vector<char> read_file(const char * path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(2);
    }
    return std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

static std::vector<llama_token> read_ids(const char * path) {
    std::vector<char> raw = read_file(path);
    std::vector<llama_token> ids(raw.size() / 4);
    memcpy(ids.data(), raw.data(), ids.size() * 4);
    return ids;
}

static llama_model * load(const char * path) {
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    llama_model * model = llama_model_load_from_file(path, mp);
    if (!model) {
        fprintf(stderr, "llama_model_load_from_file failed for %s\n", path);
        exit(3);
    }
    return model;
}

static llama_context * context(llama_model * model, int n_ctx) {
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_ctx;
    cp.n_ubatch = n_ctx;
    cp.n_seq_max = 1;
    cp.n_threads = 2;
    cp.n_threads_batch = 2;
    cp.type_k = GGML_TYPE_F32;
    cp.type_v = GGML_TYPE_F32;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        fprintf(stderr, "llama_init_from_model failed\n");
        exit(4);
    }
    return ctx;
}

// decodes ids[0..n) as one sequence from position 0 with logits for every position
static void decode_all(llama_context * ctx, const llama_token * ids, int n) {
    llama_memory_clear(llama_get_memory(ctx), true);
    llama_batch batch = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) {
        batch.token[i] = ids[i];
        batch.pos[i] = i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = 1;
    }
    batch.n_tokens = n;
    if (llama_decode(ctx, batch) != 0) {
        fprintf(stderr, "llama_decode failed\n");
        exit(5);
    }
    llama_batch_free(batch);
}

int main(int argc, char ** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: llama_harness tokenize|logits|nll|imatrix|meta ...\n");
        return 1;
    }
    std::string mode = argv[1];
    if (mode == "imatrix") {
        common_imatrix m;
        if (!common_imatrix_load(argv[2], m)) {
            printf("ok 0\n");
            return 0;
        }
        printf("ok 1\nlegacy %d\nmetadata %d\nchunk_count %d\nchunk_size %d\ndatasets %zu\n", m.is_legacy ? 1 : 0,
               m.has_metadata ? 1 : 0, m.chunk_count, m.chunk_size, m.datasets.size());
        for (const auto & d : m.datasets) {
            printf("dataset %s\n", d.c_str());
        }
        for (const auto & [name, e] : m.entries) {
            printf("entry %s %zu %zu", name.c_str(), e.sums.size(), e.counts.size());
            for (int64_t c : e.counts) {
                printf(" %lld", (long long) c);
            }
            double s = 0;
            for (float v : e.sums) {
                s += v;
            }
            printf(" sum %.9g first %.9g last %.9g\n", s, e.sums.empty() ? 0.0 : e.sums.front(),
                   e.sums.empty() ? 0.0 : e.sums.back());
        }
        return 0;
    }

    llama_log_set(quiet_log, nullptr);
    const char * libs = getenv("GGML_LIB_DIR"); // the CPU backends are loaded dynamically from the library directory
    if (libs) {
        ggml_backend_load_all_from_path(libs);
    } else {
        ggml_backend_load_all();
    }
    llama_backend_init();
    llama_model * model = load(argv[2]);
    const llama_vocab * vocab = llama_model_get_vocab(model);

    if (mode == "meta") {
        printf("n_vocab %d\nbos %d\neos %d\nadd_bos %d\nn_params %llu\n", llama_vocab_n_tokens(vocab),
               llama_vocab_bos(vocab), llama_vocab_eos(vocab), llama_vocab_get_add_bos(vocab) ? 1 : 0,
               (unsigned long long) llama_model_n_params(model));
    } else if (mode == "tokenize") {
        std::vector<char> text = read_file(argv[3]);
        std::vector<llama_token> ids(text.size() + 16);
        int n = llama_tokenize(vocab, text.data(), (int32_t) text.size(), ids.data(), (int32_t) ids.size(), false,
                               false);
        if (n < 0) {
            fprintf(stderr, "llama_tokenize failed (%d)\n", n);
            return 6;
        }
        std::ofstream out(argv[4], std::ios::binary);
        out.write((const char *) ids.data(), (std::streamsize) n * 4);
    } else if (mode == "logits") {
        std::vector<llama_token> ids = read_ids(argv[3]);
        llama_context * ctx = context(model, (int) ids.size());
        decode_all(ctx, ids.data(), (int) ids.size());
        const int nv = llama_vocab_n_tokens(vocab);
        std::ofstream out(argv[4], std::ios::binary);
        for (size_t i = 0; i < ids.size(); i++) {
            out.write((const char *) llama_get_logits_ith(ctx, (int32_t) i), (std::streamsize) nv * 4);
        }
        llama_free(ctx);
    } else if (mode == "nll") {
        std::vector<llama_token> ids = read_ids(argv[3]);
        const int seq = atoi(argv[4]);
        llama_context * ctx = context(model, seq);
        const int nv = llama_vocab_n_tokens(vocab);
        FILE * out = fopen(argv[5], "w");
        for (size_t w = 0; (w + 1) * seq <= ids.size(); w++) {
            const llama_token * win = ids.data() + w * seq;
            decode_all(ctx, win, seq);
            double nll = 0;
            for (int p = 0; p + 1 < seq; p++) {
                const float * l = llama_get_logits_ith(ctx, p);
                double mx = l[0];
                for (int j = 1; j < nv; j++) {
                    mx = l[j] > mx ? l[j] : mx;
                }
                double s = 0;
                for (int j = 0; j < nv; j++) {
                    s += exp(l[j] - mx);
                }
                nll += mx + log(s) - l[win[p + 1]];
            }
            fprintf(out, "%zu %.12g %d\n", w, nll, seq - 1);
        }
        fclose(out);
        llama_free(ctx);
    } else {
        fprintf(stderr, "unknown mode %s\n", mode.c_str());
        return 1;
    }
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
