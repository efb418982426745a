/* tfusion-chat: the sample chat program; plain C99 against tfusion.h only (one-shot completion or a chat loop). */
#define _POSIX_C_SOURCE 200809L /* readlink, sigaction: POSIX, not C99; the library is used through tfusion.h only */

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tfusion/tfusion.h>

#define DEFAULT_MODEL_NAME "stories260K.gguf"

/* ---- options ------------------------------------------------------------------------------------------ */

typedef struct options {
    const char* model;
    const char* prompt; /* one-shot mode when set */
    const char* system;
    int32_t n_predict;  /* -1: the mode's default (128 one-shot, 256 per reply) */
    int32_t n_ctx;
    int32_t n_threads;
    tfu_backend_kind backend;
    tfu_kv_type kv_type_k; /* -ctk */
    tfu_kv_type kv_type_v; /* -ctv */
    tfu_kv_policy kv_policy; /* --kv-policy */
    int32_t kv_n_sink;       /* --kv-sink */
    tfu_sampler_params sampler;
    bool chat;          /* one-shot: treat the prompt as a user message of the chat template */
    bool verbose;
} options;

static void usage(FILE* f) {
    fprintf(f,
            "usage: tfusion-chat [-m MODEL] [-p PROMPT] [-n N] [-c CTX] [--temp T] [--seed S] [--top-k K]\n"
            "                    [--top-p P] [--min-p P] [--repeat-penalty R] [-t THREADS]\n"
            "                    [--backend auto|cpu|cpu-ref|cuda|vulkan] [-ctk TYPE] [-ctv TYPE]\n"
            "                    [--kv-policy refuse|window|h2o|summary] [--kv-sink N] [-s SYSTEM] [--chat] [-v] [-h]\n"
            "\n"
            "  -m, --model FILE      GGUF model (default: $TFU_MODEL, else ../shared/models/" DEFAULT_MODEL_NAME ")\n"
            "  -p, --prompt TEXT     one-shot: print TEXT and its continuation, then exit\n"
            "      --chat            one-shot: send the prompt as a user message through the chat template\n"
            "  -n, --n-predict N     tokens to generate (default 128 one-shot, 256 per reply; -1 = until EOG)\n"
            "  -c, --ctx N           context length in tokens (default 0 = the model's)\n"
            "      --temp T          temperature (default 0.8; 0 = greedy)\n"
            "      --seed S          sampler seed (default 0xC0FFEE)\n"
            "      --top-k K         (default 40; 0 = off)   --top-p P (default 0.95)   --min-p P (default 0.05)\n"
            "      --repeat-penalty R  (default 1.0 = off)\n"
            "  -t, --threads N       CPU threads (default 0 = all cores)\n"
            "      --backend NAME    auto (default), cpu, cpu-ref, cuda, vulkan\n"
            "  -ctk, --cache-type-k TYPE  KV cache format of keys: f16 (default), bf16, q8, q4\n"
            "  -ctv, --cache-type-v TYPE  KV cache format of values: f16 (default), bf16, q8, q4\n"
            "      --kv-policy P     when the context is full: refuse (default: the reply stops), or free a\n"
            "                        quarter of it and go on: window (drop the oldest tokens after the first\n"
            "                        few), h2o (drop the least attended ones), summary (average old chunks)\n"
            "      --kv-sink N       with a policy: tokens always kept at the start (default 4)\n"
            "  -s, --system TEXT     system message for the chat\n"
            "  -v, --verbose         library log lines on stderr\n"
            "  -h, --help            this text\n"
            "\n"
            "Interactive mode (no -p): type a message and press Enter. Commands: /reset /stats /help /quit.\n"
            "Ctrl-C stops a reply; a second Ctrl-C (or one at the prompt) quits; Ctrl-D quits.\n");
}

static int bad_arg(const char* opt, const char* value, const char* want) {
    fprintf(stderr, "tfusion-chat: %s: '%s' is not %s\n", opt, value ? value : "", want);
    return 0;
}

static int parse_i32(const char* opt, const char* s, int32_t lo, int32_t hi, int32_t* out) {
    char* end = NULL;
    long v;
    errno = 0;
    v = strtol(s, &end, 0);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) return bad_arg(opt, s, "an integer in range");
    *out = (int32_t)v;
    return 1;
}

static int parse_u64(const char* opt, const char* s, uint64_t* out) {
    char* end = NULL;
    unsigned long long v;
    errno = 0;
    v = strtoull(s, &end, 0);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-') return bad_arg(opt, s, "an unsigned integer");
    *out = (uint64_t)v;
    return 1;
}

static int parse_f32(const char* opt, const char* s, float* out) {
    char* end = NULL;
    double v;
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || v != v) return bad_arg(opt, s, "a number");
    *out = (float)v;
    return 1;
}

/* The KV cache formats by their command-line names (llama.cpp's -ctk/-ctv take the same flags). */
static const struct {
    const char* name;
    tfu_kv_type type;
} k_kv_types[] = {{"f16", TFU_KV_F16}, {"bf16", TFU_KV_BF16}, {"q8", TFU_KV_Q8}, {"q4", TFU_KV_Q4}};

static const char* kv_type_name(tfu_kv_type t) {
    size_t i;
    for (i = 0; i < sizeof k_kv_types / sizeof k_kv_types[0]; ++i)
        if (k_kv_types[i].type == t) return k_kv_types[i].name;
    return "?";
}

static int parse_kv_type(const char* opt, const char* s, tfu_kv_type* out) {
    size_t i;
    for (i = 0; i < sizeof k_kv_types / sizeof k_kv_types[0]; ++i) {
        if (strcmp(s, k_kv_types[i].name) == 0) {
            *out = k_kv_types[i].type;
            return 1;
        }
    }
    return bad_arg(opt, s, "a KV cache type (f16, bf16, q8, q4)");
}

/* Returns 1 on success, 0 on a bad command line (message printed), -1 for --help. */
static int parse_args(int argc, char** argv, options* o) {
    int i;
    for (i = 1; i < argc; ++i) {
        const char* a = argv[i];
        const char* v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1;
#define IS(short_name, long_name) \
    ((short_name[0] != '\0' && strcmp(a, short_name) == 0) || strcmp(a, long_name) == 0)
        if (IS("-h", "--help")) return -1;
        if (IS("-v", "--verbose")) { o->verbose = true; continue; }
        if (IS("", "--chat")) { o->chat = true; continue; }
        if (v == NULL) {
            fprintf(stderr, "tfusion-chat: unknown option or missing value: %s\n", a);
            return 0;
        }
        if (IS("-m", "--model")) o->model = v;
        else if (IS("-p", "--prompt")) o->prompt = v;
        else if (IS("-s", "--system")) o->system = v;
        else if (IS("-n", "--n-predict")) ok = parse_i32(a, v, -1, INT32_MAX, &o->n_predict);
        else if (IS("-c", "--ctx")) ok = parse_i32(a, v, 0, INT32_MAX, &o->n_ctx);
        else if (IS("-t", "--threads")) ok = parse_i32(a, v, 0, 4096, &o->n_threads);
        else if (IS("", "--temp")) ok = parse_f32(a, v, &o->sampler.temperature);
        else if (IS("", "--seed")) ok = parse_u64(a, v, &o->sampler.seed);
        else if (IS("", "--top-k")) ok = parse_i32(a, v, 0, INT32_MAX, &o->sampler.top_k);
        else if (IS("", "--top-p")) ok = parse_f32(a, v, &o->sampler.top_p);
        else if (IS("", "--min-p")) ok = parse_f32(a, v, &o->sampler.min_p);
        else if (IS("", "--repeat-penalty")) ok = parse_f32(a, v, &o->sampler.repeat_penalty);
        else if (IS("-ctk", "--cache-type-k")) ok = parse_kv_type(a, v, &o->kv_type_k);
        else if (IS("-ctv", "--cache-type-v")) ok = parse_kv_type(a, v, &o->kv_type_v);
        else if (IS("", "--kv-policy")) {
            if (strcmp(v, "refuse") == 0) o->kv_policy = TFU_KV_POLICY_REFUSE;
            else if (strcmp(v, "window") == 0) o->kv_policy = TFU_KV_POLICY_SLIDING_WINDOW;
            else if (strcmp(v, "h2o") == 0) o->kv_policy = TFU_KV_POLICY_H2O;
            else if (strcmp(v, "summary") == 0) o->kv_policy = TFU_KV_POLICY_CHUNK_SUMMARY;
            else ok = bad_arg(a, v, "a KV cache policy (refuse, window, h2o, summary)");
        } else if (IS("", "--kv-sink")) ok = parse_i32(a, v, 0, INT32_MAX, &o->kv_n_sink);
        else if (IS("", "--backend")) {
            if (strcmp(v, "auto") == 0) o->backend = TFU_BACKEND_AUTO;
            else if (strcmp(v, "cpu") == 0) o->backend = TFU_BACKEND_CPU;
            else if (strcmp(v, "cpu-ref") == 0) o->backend = TFU_BACKEND_CPU_REF;
            else if (strcmp(v, "cuda") == 0) o->backend = TFU_BACKEND_CUDA;
            else if (strcmp(v, "vulkan") == 0) o->backend = TFU_BACKEND_VULKAN;
            else ok = bad_arg(a, v, "one of auto, cpu, cpu-ref, cuda, vulkan");
        } else {
            fprintf(stderr, "tfusion-chat: unknown option: %s\n", a);
            return 0;
        }
#undef IS
        if (!ok) return 0;
        ++i; /* the value */
    }
    return 1;
}

/* ---- finding the model -------------------------------------------------------------------------------- */

static bool file_exists(const char* path) {
    FILE* f = fopen(path, "rb");
    if (f == NULL) return false;
    fclose(f);
    return true;
}

/* The directory of the running executable (from /proc/self/exe, else argv[0]) into buf; false if unknown. */
static bool exe_dir(const char* argv0, char* buf, size_t size) {
    char* slash;
    ssize_t n = readlink("/proc/self/exe", buf, size - 1);
    if (n > 0) {
        buf[n] = '\0';
    } else {
        if (argv0 == NULL || strchr(argv0, '/') == NULL || strlen(argv0) >= size) return false;
        strcpy(buf, argv0);
    }
    slash = strrchr(buf, '/');
    if (slash == NULL) return false;
    *slash = '\0';
    return true;
}

/* -m, else $TFU_MODEL, else ../shared/models/stories260K.gguf from the current directory (the repository root),
 * else the same beside the repository seen from the executable: build/<preset>/samples/chat/ is five levels
 * below the folder that holds shared/. Returns NULL (after a message) if none exists. */
static const char* find_model(const options* o, const char* argv0, char* buf, size_t size) {
    const char* env = getenv("TFU_MODEL");
    char dir[PATH_MAX];
    if (o->model != NULL) return o->model; /* a missing file is reported by tfu_model_load */
    if (env != NULL && env[0] != '\0') return env;
    snprintf(buf, size, "../shared/models/%s", DEFAULT_MODEL_NAME);
    if (file_exists(buf)) return buf;
    if (exe_dir(argv0, dir, sizeof dir)) {
        snprintf(buf, size, "%s/../../../../../shared/models/%s", dir, DEFAULT_MODEL_NAME);
        if (file_exists(buf)) return buf;
    }
    fprintf(stderr,
            "tfusion-chat: no model given and %s not found (looked in ../shared/models/ and beside the repository).\n"
            "Get a GGUF model, for example any Llama or Qwen2 GGUF file from Hugging Face (Q4_K_M, Q8_0 or F16),\n"
            "then run: tfusion-chat -m path/to/model.gguf   (or set TFU_MODEL=path/to/model.gguf)\n",
            DEFAULT_MODEL_NAME);
    return NULL;
}

/* ---- Ctrl-C --------------------------------------------------------------------------------------------- */

/* The handler relies on tfu_session_cancel() being a single lock-free atomic store (no allocation, no lock,
 * no last-error message for a valid handle), which makes it async-signal-safe in practice; g_session is set
 * before the handler is installed and never changes while it is installed. At the prompt (not in a reply) a
 * Ctrl-C quits at once with _exit(), the one exit that is safe inside a handler. */
static tfu_session* g_session = NULL;
static volatile sig_atomic_t g_in_reply = 0;
static volatile sig_atomic_t g_interrupts = 0; /* Ctrl-C count during the current reply */
static volatile sig_atomic_t g_quit = 0;

static void on_sigint(int sig) {
    (void)sig;
    if (!g_in_reply) {
        static const char nl[] = "\n";
        ssize_t w = write(STDOUT_FILENO, nl, 1);
        (void)w;
        _exit(130);
    }
    if (g_interrupts > 0) g_quit = 1;
    g_interrupts = g_interrupts + 1;
    if (g_session != NULL) tfu_session_cancel(g_session);
}

static void install_sigint(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
}

/* ---- output ------------------------------------------------------------------------------------------- */

typedef struct text_buf {
    char* data;
    size_t len, cap;
} text_buf;

static bool buf_append(text_buf* b, const char* s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char* p;
        while (cap < b->len + n + 1) cap *= 2;
        p = (char*)realloc(b->data, cap);
        if (p == NULL) return false;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return true;
}

static bool on_token(const char* piece, size_t len, tfu_token token, void* user_data) {
    text_buf* reply = (text_buf*)user_data;
    (void)token;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    if (reply != NULL && !buf_append(reply, piece, len)) return false;
    return !g_quit;
}

static void on_log(tfu_log_level level, const char* message, void* user_data) {
    static const char* names[] = {"debug", "info", "warn", "error"};
    (void)user_data;
    fprintf(stderr, "[tfusion %s] %s\n", (unsigned)level < 4 ? names[level] : "?", message);
}

static void report(const char* what, tfu_status st) {
    fprintf(stderr, "tfusion-chat: %s: %s: %s\n", what, tfu_status_string(st), tfu_last_error());
}

/* ---- the conversation ----------------------------------------------------------------------------------- */

typedef struct chat_state {
    tfu_engine* engine;
    tfu_model* model;
    tfu_session* session;
    tfu_model_info info;
    const options* opt;
    tfu_chat_message* msgs; /* role and content strings are owned (strdup'ed) */
    size_t n_msgs, cap_msgs;
    text_buf rendered;      /* the conversation rendered by the template */
    size_t n_rendered;      /* how much of the rendering is in the session already */
    bool started;           /* something was added to the session since the last reset */
    tfu_generate_result last;
    bool have_last;
} chat_state;

static char* dup_str(const char* s, size_t n) {
    char* p = (char*)malloc(n + 1);
    if (p == NULL) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static bool push_message(chat_state* c, const char* role, const char* content, size_t len) {
    char *r, *t;
    if (c->n_msgs == c->cap_msgs) {
        size_t cap = c->cap_msgs ? 2 * c->cap_msgs : 8;
        tfu_chat_message* p = (tfu_chat_message*)realloc(c->msgs, cap * sizeof *p);
        if (p == NULL) return false;
        c->msgs = p;
        c->cap_msgs = cap;
    }
    r = dup_str(role, strlen(role));
    t = dup_str(content, len);
    if (r == NULL || t == NULL) {
        free(r);
        free(t);
        return false;
    }
    c->msgs[c->n_msgs].role = r;
    c->msgs[c->n_msgs].content = t;
    ++c->n_msgs;
    return true;
}

static void clear_messages(chat_state* c) {
    size_t i;
    for (i = 0; i < c->n_msgs; ++i) {
        free((void*)c->msgs[i].role);
        free((void*)c->msgs[i].content);
    }
    c->n_msgs = 0;
}

/* Renders all messages into c->rendered (the size protocol: retry with the size the library asks for). */
static tfu_status render(chat_state* c, bool add_generation_prompt) {
    size_t need = 0;
    tfu_status st;
    for (;;) {
        st = tfu_chat_apply_template(c->model, NULL, c->msgs, c->n_msgs, add_generation_prompt, c->rendered.data,
                                     c->rendered.cap, &need);
        if (st != TFU_STATUS_BUFFER_TOO_SMALL) break;
        {
            char* p = (char*)realloc(c->rendered.data, need + 1);
            if (p == NULL) return TFU_STATUS_OUT_OF_MEMORY;
            c->rendered.data = p;
            c->rendered.cap = need + 1;
        }
    }
    c->rendered.len = st == TFU_STATUS_OK ? need : 0;
    return st;
}

/* The text of the BOS token ("<s>", "<|begin_of_text|>"), or "" if none; templates usually write it themselves. */
static void bos_text(const chat_state* c, char* buf, size_t size) {
    size_t len = 0;
    buf[0] = '\0';
    if (c->info.bos == TFU_TOKEN_NONE) return;
    if (tfu_detokenize(c->model, &c->info.bos, 1, true, buf, size, &len) != TFU_STATUS_OK || len >= size)
        buf[0] = '\0';
}

/* Adds text to the session; BOS is added only at the very start and only if the text does not already begin
 * with the BOS text (chat templates usually render it). */
static tfu_status add_text(chat_state* c, const char* text) {
    bool add_special = false;
    tfu_status st;
    if (!c->started) {
        char bos[64];
        bos_text(c, bos, sizeof bos);
        add_special = bos[0] == '\0' || strncmp(text, bos, strlen(bos)) != 0;
    }
    st = tfu_session_add_text(c->session, text, add_special);
    if (st == TFU_STATUS_OK) c->started = true;
    return st;
}

static tfu_status generate(chat_state* c, int32_t max_tokens, text_buf* reply) {
    tfu_generate_params gp = tfu_generate_params_default();
    tfu_status st;
    gp.max_tokens = max_tokens;
    gp.on_token = on_token;
    gp.user_data = reply;
    memset(&c->last, 0, sizeof c->last);
    c->last.struct_size = sizeof c->last;
    g_interrupts = 0;
    g_in_reply = 1;
    st = tfu_session_generate(c->session, &gp, &c->last);
    g_in_reply = 0;
    c->have_last = true;
    return st;
}

static void print_stats(chat_state* c) {
    tfu_session_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    if (tfu_session_get_stats(c->session, &s) != TFU_STATUS_OK) {
        report("stats", TFU_STATUS_INTERNAL);
        return;
    }
    printf("session: %d / %d tokens in context, %d pending\n", s.n_past, s.n_ctx, s.n_pending);
    printf("kv:      K %s V %s, %llu bytes (%.1f KiB)", kv_type_name(c->opt->kv_type_k),
           kv_type_name(c->opt->kv_type_v), (unsigned long long)s.kv_bytes, (double)s.kv_bytes / 1024.0);
    if (s.n_past > 0) printf(", %.1f bytes/token", (double)s.kv_bytes / (double)s.n_past);
    if (s.n_evictions > 0)
        printf(", policy dropped %llu tokens (%llu times)", (unsigned long long)s.n_evicted_tokens,
               (unsigned long long)s.n_evictions);
    printf("\n");
    printf("totals:  %llu prompt tokens in %.1f ms, %llu generated in %.1f ms (%.1f t/s)\n",
           (unsigned long long)s.n_prompt_tokens, s.prefill_ms, (unsigned long long)s.n_generated, s.decode_ms,
           s.decode_ms > 0 ? 1000.0 * (double)s.n_generated / s.decode_ms : 0.0);
    if (c->have_last) {
        const tfu_generate_result* r = &c->last;
        printf("last:    %d prompt tokens (%.1f ms, %.1f t/s), %d generated (%.1f ms, %.1f t/s), TTFT %.1f ms\n",
               r->n_prompt_tokens, r->prefill_ms,
               r->prefill_ms > 0 ? 1000.0 * r->n_prompt_tokens / r->prefill_ms : 0.0, r->n_generated, r->decode_ms,
               r->decode_ms > 0 ? 1000.0 * r->n_generated / r->decode_ms : 0.0, r->time_to_first_token_ms);
    }
    fflush(stdout);
}

/* One turn with the chat template: only the part of the rendering that is new goes into the session. */
static tfu_status chat_turn(chat_state* c, const char* line, size_t len, int32_t max_tokens) {
    text_buf reply = {NULL, 0, 0};
    size_t prefix_len;
    tfu_status st, gen_st;
    if (!push_message(c, "user", line, len)) return TFU_STATUS_OUT_OF_MEMORY;
    st = render(c, true);
    if (st == TFU_STATUS_OK && c->rendered.len < c->n_rendered) st = TFU_STATUS_TEMPLATE_ERROR;
    if (st == TFU_STATUS_OK) st = add_text(c, c->rendered.data + c->n_rendered);
    if (st != TFU_STATUS_OK) {
        --c->n_msgs; /* forget the message that did not make it in */
        free((void*)c->msgs[c->n_msgs].role);
        free((void*)c->msgs[c->n_msgs].content);
        return st;
    }
    prefix_len = c->rendered.len;
    gen_st = generate(c, max_tokens, &reply);
    printf("\n");
    fflush(stdout);
    /* The reply becomes the assistant message. If it ended without an end-of-generation token (cut by -n or
     * Ctrl-C), the template's closing of the turn (e.g. "<|im_end|>\n") is added so the next turn is well formed;
     * after EOG the model's own end token is already in the session. */
    if (!push_message(c, "assistant", reply.data ? reply.data : "", reply.len)) {
        free(reply.data);
        return TFU_STATUS_OUT_OF_MEMORY;
    }
    {
        /* expected = what the session holds of this turn: the rendering up to the generation prompt + reply */
        text_buf expected = {NULL, 0, 0};
        bool ok = buf_append(&expected, c->rendered.data, prefix_len) &&
                  buf_append(&expected, reply.data ? reply.data : "", reply.len);
        st = render(c, false);
        if (st == TFU_STATUS_OK) {
            if (ok && c->last.stop_reason != TFU_STOP_EOG && c->rendered.len >= expected.len &&
                memcmp(c->rendered.data, expected.data, expected.len) == 0 && c->rendered.len > expected.len) {
                st = tfu_session_add_text(c->session, c->rendered.data + expected.len, false);
            }
            c->n_rendered = c->rendered.len;
        }
        free(expected.data);
    }
    free(reply.data);
    return gen_st != TFU_STATUS_OK ? gen_st : st;
}

/* One turn without a chat template: the line continues the text; the model continues it further. */
static tfu_status plain_turn(chat_state* c, const char* line, size_t len, int32_t max_tokens) {
    text_buf text = {NULL, 0, 0};
    tfu_status st;
    if ((c->started && !buf_append(&text, "\n", 1)) || !buf_append(&text, line, len)) {
        free(text.data);
        return TFU_STATUS_OUT_OF_MEMORY;
    }
    st = add_text(c, text.data);
    free(text.data);
    if (st != TFU_STATUS_OK) return st;
    st = generate(c, max_tokens, NULL);
    printf("\n");
    fflush(stdout);
    return st;
}

static void reset_chat(chat_state* c) {
    tfu_status st = tfu_session_reset(c->session);
    if (st != TFU_STATUS_OK) report("reset", st);
    clear_messages(c);
    c->n_rendered = 0;
    c->started = false;
    c->have_last = false;
    if (c->opt->system != NULL && c->info.has_chat_template)
        push_message(c, "system", c->opt->system, strlen(c->opt->system));
}

static int interactive(chat_state* c) {
    const int32_t max_tokens = c->opt->n_predict != -2 ? c->opt->n_predict : 256;
    char* line = NULL;
    size_t line_cap = 0;
    ssize_t n;
    fprintf(stderr, "tfusion-chat: %s (%s, backend %s). %s Type /help for commands.\n",
            c->info.name[0] ? c->info.name : "model", c->info.architecture, tfu_engine_backend_name(c->engine),
            c->info.has_chat_template ? "Chat template: yes." : "No chat template: plain text continuation.");
    reset_chat(c);
    for (;;) {
        size_t len;
        tfu_status st;
        printf("> ");
        fflush(stdout);
        errno = 0;
        n = getline(&line, &line_cap, stdin);
        if (n < 0) { /* EOF (Ctrl-D) or a read error */
            printf("\n");
            break;
        }
        len = (size_t)n;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (len == 0) continue;
        if (strcmp(line, "/quit") == 0 || strcmp(line, "/exit") == 0) break;
        if (strcmp(line, "/help") == 0) {
            printf("/reset  start a new conversation\n/stats  context, KV cache and speed figures\n"
                   "/quit   leave (also Ctrl-D; Ctrl-C stops a reply, a second one quits)\n");
            continue;
        }
        if (strcmp(line, "/reset") == 0) {
            reset_chat(c);
            printf("(conversation reset)\n");
            continue;
        }
        if (strcmp(line, "/stats") == 0) {
            print_stats(c);
            continue;
        }
        st = c->info.has_chat_template ? chat_turn(c, line, len, max_tokens) : plain_turn(c, line, len, max_tokens);
        if (st == TFU_STATUS_CANCELLED) {
            fprintf(stderr, "(reply stopped)\n");
        } else if (st == TFU_STATUS_CONTEXT_FULL) {
            fprintf(stderr, "tfusion-chat: the context is full (%s); /reset starts over\n", tfu_last_error());
        } else if (st != TFU_STATUS_OK) {
            report("generate", st);
        }
        if (g_quit) break;
    }
    free(line);
    return 0;
}

static int one_shot(chat_state* c) {
    const int32_t max_tokens = c->opt->n_predict != -2 ? c->opt->n_predict : 128;
    const char* prompt = c->opt->prompt;
    tfu_status st;
    if (c->opt->chat) {
        if (!c->info.has_chat_template) {
            fprintf(stderr, "tfusion-chat: --chat: the model has no chat template\n");
            return 1;
        }
        if ((c->opt->system != NULL && !push_message(c, "system", c->opt->system, strlen(c->opt->system))) ||
            !push_message(c, "user", prompt, strlen(prompt))) {
            fprintf(stderr, "tfusion-chat: out of memory\n");
            return 1;
        }
        st = render(c, true);
        if (st != TFU_STATUS_OK) {
            report("chat template", st);
            return 1;
        }
        st = add_text(c, c->rendered.data);
    } else {
        st = add_text(c, prompt);
        if (st == TFU_STATUS_OK) {
            fputs(prompt, stdout);
            fflush(stdout);
        }
    }
    if (st != TFU_STATUS_OK) {
        report("prompt", st);
        return 1;
    }
    st = generate(c, max_tokens, NULL);
    printf("\n");
    fflush(stdout);
    if (st == TFU_STATUS_CANCELLED) return 130;
    if (st != TFU_STATUS_OK) {
        report("generate", st);
        return 1;
    }
    if (c->opt->verbose) {
        const tfu_generate_result* r = &c->last;
        fprintf(stderr, "tfusion-chat: %d prompt tokens, %d generated, %.1f t/s, TTFT %.1f ms\n",
                r->n_prompt_tokens, r->n_generated,
                r->decode_ms > 0 ? 1000.0 * r->n_generated / r->decode_ms : 0.0, r->time_to_first_token_ms);
    }
    return 0;
}

int main(int argc, char** argv) {
    options o;
    char path_buf[PATH_MAX + 64];
    const char* model_path;
    tfu_engine_params ep;
    tfu_model_params mp;
    tfu_session_params sp;
    tfu_engine* engine = NULL;
    chat_state c;
    tfu_status st;
    int rc = 1, parsed;

    memset(&o, 0, sizeof o);
    o.n_predict = -2; /* not given */
    o.backend = TFU_BACKEND_AUTO;
    o.kv_type_k = TFU_KV_F16;
    o.kv_type_v = TFU_KV_F16;
    o.kv_policy = TFU_KV_POLICY_REFUSE;
    o.kv_n_sink = 4;
    o.sampler = tfu_sampler_params_default();
    parsed = parse_args(argc, argv, &o);
    if (parsed < 0) {
        usage(stdout);
        return 0;
    }
    if (parsed == 0) {
        usage(stderr);
        return 2;
    }
    model_path = find_model(&o, argc > 0 ? argv[0] : NULL, path_buf, sizeof path_buf);
    if (model_path == NULL) return 2;
    if (tfu_version() != TFU_VERSION_NUMBER)
        fprintf(stderr, "tfusion-chat: warning: built with tfusion %s, running with %s\n", TFU_VERSION_STRING,
                tfu_version_string());
    if (o.verbose) tfu_set_log_callback(on_log, TFU_LOG_INFO, NULL);

    memset(&c, 0, sizeof c);
    c.opt = &o;
    ep = tfu_engine_params_default();
    ep.backend = o.backend;
    ep.n_threads = o.n_threads;
    st = tfu_engine_create(&ep, &engine);
    if (st != TFU_STATUS_OK) {
        report("engine", st);
        return 1;
    }
    c.engine = engine;
    mp = tfu_model_params_default();
    st = tfu_model_load(engine, model_path, &mp, &c.model);
    if (st != TFU_STATUS_OK) {
        report(model_path, st);
        tfu_engine_destroy(engine);
        return st == TFU_STATUS_NOT_FOUND ? 2 : 1;
    }
    c.info.struct_size = sizeof c.info;
    tfu_model_get_info(c.model, &c.info);
    sp = tfu_session_params_default();
    sp.n_ctx = o.n_ctx;
    sp.sampler = o.sampler;
    sp.kv_type_k = o.kv_type_k;
    sp.kv_type_v = o.kv_type_v;
    sp.kv_policy = o.kv_policy;
    sp.kv_n_sink = o.kv_n_sink;
    st = tfu_session_create(c.model, &sp, &c.session);
    if (st != TFU_STATUS_OK) {
        report("session", st);
    } else {
        if (o.verbose)
            fprintf(stderr, "tfusion-chat: %s: %s, %d layers, n_embd %d, vocab %d, backend %s, KV cache K %s V %s\n",
                    model_path, c.info.architecture, c.info.n_layer, c.info.n_embd, c.info.n_vocab,
                    tfu_engine_backend_name(engine), kv_type_name(o.kv_type_k), kv_type_name(o.kv_type_v));
        g_session = c.session;
        install_sigint();
        rc = o.prompt != NULL ? one_shot(&c) : interactive(&c);
        signal(SIGINT, SIG_DFL);
        g_session = NULL;
        tfu_session_destroy(c.session);
    }
    clear_messages(&c);
    free(c.msgs);
    free(c.rendered.data);
    tfu_model_unload(c.model);
    tfu_engine_destroy(engine);
    return rc;
}
