// Teacher-forced logits from llama.cpp (libllama), for bench/peers/compat.sh.
//
//   teacher-forced MODEL.gguf TOKENS.txt OUT.f32
//   teacher-forced MODEL.gguf --tokenize TEXT.txt      (prints llama.cpp's ids: BOS as the vocabulary asks, no special parsing)
//
// TOKENS.txt holds token ids separated by white space. All of them run as one batch (positions
// 0..n-1, one sequence); OUT.f32 receives the logits of every position, float32 [n, n_vocab],
// row-major, little-endian. Exit status 1 with a message on any failure.
#include "llama.h"

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

int main(int argc, char ** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: %s MODEL.gguf TOKENS.txt OUT.f32 | %s MODEL.gguf --tokenize TEXT.txt\n", argv[0], argv[0]);
        return 1;
    }
    if (std::string(argv[2]) == "--tokenize") {
        std::ifstream in(argv[3], std::ios::binary);
        std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        llama_backend_init();
        llama_model_params vp = llama_model_default_params();
        vp.vocab_only = true;
        llama_model * vm = llama_model_load_from_file(argv[1], vp);
        if (vm == nullptr) {
            std::fprintf(stderr, "%s: llama.cpp could not load the vocabulary\n", argv[1]);
            return 1;
        }
        std::vector<llama_token> ids(text.size() + 8);
        int n = llama_tokenize(llama_model_get_vocab(vm), text.c_str(), (int32_t) text.size(), ids.data(), (int32_t) ids.size(), true, false);
        if (n < 0) {
            std::fprintf(stderr, "llama_tokenize failed (%d)\n", n);
            return 1;
        }
        for (int i = 0; i < n; i++) {
            std::printf(i ? " %d" : "%d", ids[i]);
        }
        std::printf("\n");
        llama_model_free(vm);
        return 0;
    }
    std::vector<llama_token> tokens;
    {
        std::ifstream in(argv[2]);
        long id;
        while (in >> id) {
            tokens.push_back((llama_token) id);
        }
    }
    if (tokens.empty()) {
        std::fprintf(stderr, "%s: no token ids\n", argv[2]);
        return 1;
    }
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (model == nullptr) {
        std::fprintf(stderr, "%s: llama.cpp could not load the model\n", argv[1]);
        return 1;
    }
    const int n = (int) tokens.size();
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n;
    cp.n_batch = n;
    cp.n_ubatch = n;
    cp.n_threads = 2;
    cp.n_threads_batch = 2;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (ctx == nullptr) {
        std::fprintf(stderr, "llama.cpp could not create a context of %d tokens\n", n);
        return 1;
    }
    const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    llama_batch batch = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= n_vocab) {
            std::fprintf(stderr, "token %d at position %d is outside the vocabulary of %d\n", tokens[i], i, n_vocab);
            return 1;
        }
        batch.token[i] = tokens[i];
        batch.pos[i] = i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = 1;
    }
    batch.n_tokens = n;
    if (llama_decode(ctx, batch) != 0) {
        std::fprintf(stderr, "llama_decode failed\n");
        return 1;
    }
    std::FILE * out = std::fopen(argv[3], "wb");
    if (out == nullptr) {
        std::fprintf(stderr, "%s: cannot write\n", argv[3]);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        const float * row = llama_get_logits_ith(ctx, i);
        if (std::fwrite(row, sizeof(float), n_vocab, out) != (size_t) n_vocab) {
            std::fprintf(stderr, "%s: short write\n", argv[3]);
            return 1;
        }
    }
    std::fclose(out);
    std::fprintf(stderr, "%d positions x %d logits -> %s\n", n, n_vocab, argv[3]);
    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
