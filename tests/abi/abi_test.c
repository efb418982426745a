/* The C99 ABI test: uses only tfusion.h (and pthreads), built with -Wall -Wextra -Werror -pedantic. */
#define _POSIX_C_SOURCE 200809L /* pthreads, nanosleep */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tfusion/tfusion.h>

#ifndef TFU_SHARED_DIR
#error "TFU_SHARED_DIR must be defined (the path of the shared data folder)"
#endif

#define MODEL_PATH TFU_SHARED_DIR "/models/stories260K.gguf"
#define GOLDEN_PATH TFU_SHARED_DIR "/models/golden/stories260K_greedy_once_upon_a_time.txt"
#define PROMPT "Once upon a time"

static int g_passed = 0, g_failed = 0;

static float abs_diff(float a, float b) { return a > b ? a - b : b - a; } /* no libm needed */

#define CHECK(cond)                                                                                 \
    do {                                                                                            \
        if (cond) {                                                                                 \
            ++g_passed;                                                                             \
        } else {                                                                                    \
            ++g_failed;                                                                             \
            fprintf(stderr, "FAIL %s:%d: %s (last error: '%s')\n", __FILE__, __LINE__, #cond,       \
                    tfu_last_error());                                                              \
        }                                                                                           \
    } while (0)

/* A status check that also prints the status name on failure. */
#define CHECK_STATUS(call, expected)                                                                \
    do {                                                                                            \
        tfu_status st_ = (call);                                                                    \
        if (st_ == (expected)) {                                                                    \
            ++g_passed;                                                                             \
        } else {                                                                                    \
            ++g_failed;                                                                             \
            fprintf(stderr, "FAIL %s:%d: %s returned %s, expected %s (last error: '%s')\n", __FILE__, \
                    __LINE__, #call, tfu_status_string(st_), tfu_status_string(expected),           \
                    tfu_last_error());                                                              \
        }                                                                                           \
    } while (0)

/* A call on a NULL handle: INVALID_ARGUMENT and a message of its own (a successful call first, so that an older
 * message cannot pass for it: this library clears the message on success). */
#define CHECK_NULL_ARG(call)                                                                        \
    do {                                                                                            \
        tfu_engine_destroy(NULL);                                                                   \
        CHECK_STATUS(call, TFU_STATUS_INVALID_ARGUMENT);                                            \
        CHECK(tfu_last_error() != NULL && tfu_last_error()[0] != '\0');                             \
    } while (0)

/* ---- helpers -------------------------------------------------------------------------------------------- */

typedef struct text_acc {
    char text[8192];
    size_t len;
    int n_calls;
} text_acc;

static bool collect(const char* piece, size_t len, tfu_token token, void* user_data) {
    text_acc* acc = (text_acc*)user_data;
    (void)token;
    if (acc->len + len < sizeof acc->text) {
        memcpy(acc->text + acc->len, piece, len);
        acc->len += len;
        acc->text[acc->len] = '\0';
    }
    ++acc->n_calls;
    return true;
}

static char* read_file(const char* path) {
    FILE* f = fopen(path, "rb");
    char* buf;
    long n;
    if (f == NULL) return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = (char*)malloc((size_t)n + 1);
    if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf != NULL) buf[n] = '\0';
    fclose(f);
    return buf;
}

static tfu_session* new_session(tfu_model* model, int32_t n_ctx) {
    tfu_session_params sp = tfu_session_params_default();
    tfu_session* s = NULL;
    sp.n_ctx = n_ctx;
    sp.sampler.temperature = 0.0f; /* greedy */
    CHECK_STATUS(tfu_session_create(model, &sp, &s), TFU_STATUS_OK);
    return s;
}

/* Greedy continuation of PROMPT: `max_tokens` tokens into acc; returns the status. */
static tfu_status greedy(tfu_session* s, int32_t max_tokens, text_acc* acc, tfu_generate_result* res) {
    tfu_generate_params gp = tfu_generate_params_default();
    tfu_status st = tfu_session_add_text(s, PROMPT, true);
    if (st != TFU_STATUS_OK) return st;
    gp.max_tokens = max_tokens;
    gp.on_token = collect;
    gp.user_data = acc;
    return tfu_session_generate(s, &gp, res);
}

/* ---- no model needed ------------------------------------------------------------------------------------ */

static void test_version_and_defaults(void) {
    tfu_engine_params ep = tfu_engine_params_default();
    tfu_model_params mp = tfu_model_params_default();
    tfu_sampler_params smp = tfu_sampler_params_default();
    tfu_session_params sp = tfu_session_params_default();
    tfu_generate_params gp = tfu_generate_params_default();

    CHECK(tfu_version() == TFU_VERSION_NUMBER);
    CHECK(tfu_version_string() != NULL && strcmp(tfu_version_string(), TFU_VERSION_STRING) == 0);
    CHECK(TFU_VERSION_NUMBER == TFU_VERSION_MAJOR * 10000 + TFU_VERSION_MINOR * 100 + TFU_VERSION_PATCH);

    CHECK(ep.struct_size == sizeof ep);
    CHECK(ep.backend == TFU_BACKEND_AUTO && ep.n_threads == 0 && ep.memory_budget == 0);
    CHECK(ep.offload_policy == TFU_OFFLOAD_LRU);
    CHECK(mp.struct_size == sizeof mp);
    CHECK(mp.use_mmap);
    CHECK(smp.struct_size == sizeof smp);
    CHECK(abs_diff(smp.temperature, 0.8f) < 1e-6f && smp.top_k == 40 && abs_diff(smp.top_p, 0.95f) < 1e-6f);
    CHECK(abs_diff(smp.min_p, 0.05f) < 1e-6f && smp.repeat_penalty == 1.0f && smp.penalty_last_n == 64);
    CHECK(smp.frequency_penalty == 0.0f && smp.presence_penalty == 0.0f && smp.seed == 0xC0FFEE);
    CHECK(sp.struct_size == sizeof sp);
    CHECK(sp.sampler.struct_size == sizeof sp.sampler);
    CHECK(sp.n_ctx == 0 && sp.n_batch == 256);
    CHECK(sp.kv_policy == TFU_KV_POLICY_REFUSE && sp.kv_n_sink == 4 && sp.kv_cap_bytes == 0);
    CHECK(gp.struct_size == sizeof gp);
    CHECK(gp.max_tokens == 256 && gp.stop_strings == NULL && gp.n_stop_strings == 0 && gp.on_token == NULL);
}

static void test_status_strings(void) {
    int s;
    const char* unknown;
    for (s = TFU_STATUS_OK; s <= TFU_STATUS_DEVICE_ERROR; ++s) {
        const char* name = tfu_status_string((tfu_status)s);
        CHECK(name != NULL && strncmp(name, "TFU_STATUS_", 11) == 0 && strlen(name) > 11);
    }
    CHECK(strcmp(tfu_status_string(TFU_STATUS_OK), "TFU_STATUS_OK") == 0);
    CHECK(strcmp(tfu_status_string(TFU_STATUS_CONTEXT_FULL), "TFU_STATUS_CONTEXT_FULL") == 0);
    CHECK(strcmp(tfu_status_string(TFU_STATUS_INTERNAL), "TFU_STATUS_INTERNAL") == 0);
    unknown = tfu_status_string((tfu_status)9999);
    CHECK(unknown != NULL); /* never NULL, even for a value this library does not know */
}

static void test_null_handles(void) {
    tfu_token tok[4];
    char text[16];
    size_t n = 0;
    const float* logits = NULL;
    tfu_model_info info;
    tfu_session_stats stats;
    tfu_session* ses = NULL;
    tfu_model* mdl = NULL;
    tfu_chat_message msg;
    msg.role = "user";
    msg.content = "hi";
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    memset(&stats, 0, sizeof stats);
    stats.struct_size = sizeof stats;

    CHECK_NULL_ARG(tfu_engine_create(NULL, NULL));
    CHECK_NULL_ARG(tfu_model_load(NULL, MODEL_PATH, NULL, &mdl));
    CHECK(mdl == NULL);
    CHECK_NULL_ARG(tfu_model_get_info(NULL, &info));
    CHECK_NULL_ARG(tfu_tokenize(NULL, "a", 1, true, false, tok, 4, &n));
    CHECK_NULL_ARG(tfu_detokenize(NULL, tok, 0, false, text, sizeof text, &n));
    CHECK_NULL_ARG(tfu_chat_apply_template(NULL, NULL, &msg, 1, true, text, sizeof text, &n));
    CHECK_NULL_ARG(tfu_session_create(NULL, NULL, &ses));
    CHECK(ses == NULL);
    CHECK_NULL_ARG(tfu_session_add_text(NULL, "a", true));
    CHECK_NULL_ARG(tfu_session_add_tokens(NULL, tok, 0));
    CHECK_NULL_ARG(tfu_session_eval(NULL));
    CHECK_NULL_ARG(tfu_session_generate(NULL, NULL, NULL));
    CHECK_NULL_ARG(tfu_session_cancel(NULL));
    CHECK_NULL_ARG(tfu_session_reset(NULL));
    CHECK_NULL_ARG(tfu_session_get_logits(NULL, &logits, &n));
    CHECK_NULL_ARG(tfu_session_sample(NULL, tok));
    CHECK_NULL_ARG(tfu_session_get_stats(NULL, &stats));
    CHECK_NULL_ARG(tfu_session_save(NULL, "/tmp/x.tfs"));
    CHECK_NULL_ARG(tfu_session_load(NULL, "/tmp/x.tfs"));
    CHECK_NULL_ARG(tfu_session_prefetch(NULL));
    CHECK(!tfu_model_token_is_eog(NULL, 2));
    /* Destroying NULL is a no-op. */
    CHECK_STATUS(tfu_session_destroy(NULL), TFU_STATUS_OK);
    CHECK_STATUS(tfu_model_unload(NULL), TFU_STATUS_OK);
    CHECK_STATUS(tfu_engine_destroy(NULL), TFU_STATUS_OK);
}

/* ---- with the model ------------------------------------------------------------------------------------- */

static void test_model_info_and_tokens(tfu_model* model) {
    static const tfu_token expected[5] = {1, 403, 407, 261, 378};
    tfu_model_info info;
    tfu_token tok[16];
    size_t n = 0, i;
    char text[64];
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    CHECK_STATUS(tfu_model_get_info(model, &info), TFU_STATUS_OK);
    CHECK(info.architecture != NULL && strcmp(info.architecture, "llama") == 0);
    CHECK(info.name != NULL);
    CHECK(info.n_vocab == 512);
    CHECK(info.n_layer == 5);
    CHECK(info.n_embd == 64);
    CHECK(info.n_head == 8 && info.n_head_kv == 4);
    CHECK(info.bos == 1 && info.eos == 2);
    CHECK(info.n_params > 0 && info.size_bytes >= 4 * info.n_params); /* all F32 */
    CHECK(tfu_model_token_is_eog(model, info.eos));
    CHECK(!tfu_model_token_is_eog(model, 403));

    CHECK_STATUS(tfu_tokenize(model, PROMPT, strlen(PROMPT), true, false, tok, 16, &n), TFU_STATUS_OK);
    CHECK(n == 5);
    for (i = 0; i < 5 && i < n; ++i) CHECK(tok[i] == expected[i]);
    /* The size protocol: too small a buffer says how much is needed. */
    CHECK_STATUS(tfu_tokenize(model, PROMPT, strlen(PROMPT), true, false, tok, 2, &n),
                 TFU_STATUS_BUFFER_TOO_SMALL);
    CHECK(n == 5);
    CHECK_STATUS(tfu_detokenize(model, expected + 1, 4, false, text, sizeof text, &n), TFU_STATUS_OK);
    CHECK(n < sizeof text && strstr(text, PROMPT) != NULL);
    CHECK_STATUS(tfu_detokenize(model, expected + 1, 4, false, text, 3, &n), TFU_STATUS_BUFFER_TOO_SMALL);
    CHECK(n >= strlen(PROMPT));
}

static void test_chat_template(tfu_model* model) {
    tfu_chat_message msgs[2];
    char out[256];
    size_t n = 0;
    msgs[0].role = "user";
    msgs[0].content = "Hello";
    msgs[1].role = "assistant";
    msgs[1].content = "Hi";
    /* stories260K has no chat template: UNSUPPORTED, unless one is given. */
    CHECK_STATUS(tfu_chat_apply_template(model, NULL, msgs, 2, true, out, sizeof out, &n), TFU_STATUS_UNSUPPORTED);
    CHECK_STATUS(tfu_chat_apply_template(model, "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}",
                                         msgs, 2, false, out, sizeof out, &n),
                 TFU_STATUS_OK);
    CHECK(n == strlen("[user]Hello[assistant]Hi") && strcmp(out, "[user]Hello[assistant]Hi") == 0);
}

static void test_greedy_golden(tfu_model* model) {
    char* golden = read_file(GOLDEN_PATH);
    tfu_session* s = new_session(model, 0);
    text_acc acc;
    tfu_generate_result res;
    const float* logits = NULL;
    size_t n_vocab = 0;
    tfu_session_stats stats;
    memset(&acc, 0, sizeof acc);
    memset(&res, 0, sizeof res);
    res.struct_size = sizeof res;
    CHECK(golden != NULL);
    if (s == NULL || golden == NULL) {
        free(golden);
        tfu_session_destroy(s);
        return;
    }
    CHECK_STATUS(tfu_session_get_logits(s, &logits, &n_vocab), TFU_STATUS_INVALID_ARGUMENT); /* nothing yet */
    CHECK_STATUS(greedy(s, 20, &acc, &res), TFU_STATUS_OK);
    CHECK(res.n_prompt_tokens == 5);
    CHECK(res.n_generated == 20 || res.stop_reason == TFU_STOP_EOG);
    CHECK(res.stop_reason == TFU_STOP_MAX_TOKENS || res.stop_reason == TFU_STOP_EOG);
    CHECK(res.time_to_first_token_ms >= 0.0 && res.prefill_ms >= 0.0 && res.decode_ms >= 0.0);
    CHECK(acc.len > 0 && acc.n_calls > 0);
    /* The golden file is the prompt followed by the continuation. */
    CHECK(strncmp(golden, PROMPT, strlen(PROMPT)) == 0);
    {
        const char* cont = golden + strlen(PROMPT);
        const int same = strlen(cont) >= acc.len && memcmp(cont, acc.text, acc.len) == 0;
        CHECK(same);
        if (!same) fprintf(stderr, "  generated: '%s'\n  golden:    '%.*s'\n", acc.text, (int)acc.len, cont);
    }
    CHECK_STATUS(tfu_session_get_logits(s, &logits, &n_vocab), TFU_STATUS_OK);
    CHECK(logits != NULL && n_vocab == 512);
    if (logits != NULL && n_vocab == 512) {
        size_t i;
        int finite = 1;
        for (i = 0; i < n_vocab; ++i) finite &= logits[i] == logits[i] && logits[i] > -3.0e38f && logits[i] < 3.0e38f;
        CHECK(finite);
    }
    memset(&stats, 0, sizeof stats);
    stats.struct_size = sizeof stats;
    CHECK_STATUS(tfu_session_get_stats(s, &stats), TFU_STATUS_OK);
    CHECK(stats.n_ctx > 0 && stats.n_past + stats.n_pending == 5 + res.n_generated);
    CHECK(stats.n_generated == (uint64_t)res.n_generated && stats.kv_bytes > 0);

    /* Reset, then the same prompt gives the same text again. */
    {
        text_acc again;
        memset(&again, 0, sizeof again);
        CHECK_STATUS(tfu_session_reset(s), TFU_STATUS_OK);
        CHECK_STATUS(greedy(s, 20, &again, NULL), TFU_STATUS_OK);
        CHECK(again.len == acc.len && memcmp(again.text, acc.text, acc.len) == 0);
    }
    /* Driving decoding by hand: sample appends to the pending input. */
    {
        tfu_token t = TFU_TOKEN_NONE;
        CHECK_STATUS(tfu_session_sample(s, &t), TFU_STATUS_OK);
        CHECK(t >= 0 && t < 512);
        CHECK_STATUS(tfu_session_eval(s), TFU_STATUS_OK);
    }
    free(golden);
    CHECK_STATUS(tfu_session_destroy(s), TFU_STATUS_OK);
}

/* Cancel from a second thread: the token callback (generation thread) hands over to the canceller and waits
 * until it has called tfu_session_cancel, so the cancel lands in the middle of a long generate for sure. */
typedef struct cancel_ctx {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    tfu_session* session;
    int stage; /* 0: generating, 1: first token seen, 2: cancel called */
    int n_tokens;
} cancel_ctx;

static bool cancel_cb(const char* piece, size_t len, tfu_token token, void* user_data) {
    cancel_ctx* c = (cancel_ctx*)user_data;
    (void)piece;
    (void)len;
    (void)token;
    pthread_mutex_lock(&c->mu);
    ++c->n_tokens;
    if (c->stage == 0) {
        c->stage = 1;
        pthread_cond_broadcast(&c->cv);
        while (c->stage != 2) pthread_cond_wait(&c->cv, &c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return true;
}

static void* canceller(void* arg) {
    cancel_ctx* c = (cancel_ctx*)arg;
    pthread_mutex_lock(&c->mu);
    while (c->stage != 1) pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
    tfu_session_cancel(c->session);
    pthread_mutex_lock(&c->mu);
    c->stage = 2;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static void test_cancel(tfu_model* model) {
    cancel_ctx c;
    pthread_t th;
    tfu_generate_params gp = tfu_generate_params_default();
    tfu_generate_result res;
    text_acc acc;
    tfu_session* s = new_session(model, 512);
    if (s == NULL) return;
    memset(&c, 0, sizeof c);
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    c.session = s;
    memset(&res, 0, sizeof res);
    res.struct_size = sizeof res;
    CHECK_STATUS(tfu_session_add_text(s, PROMPT, true), TFU_STATUS_OK);
    gp.max_tokens = -1; /* until EOG or the context is full: long */
    gp.on_token = cancel_cb;
    gp.user_data = &c;
    CHECK(pthread_create(&th, NULL, canceller, &c) == 0);
    CHECK_STATUS(tfu_session_generate(s, &gp, &res), TFU_STATUS_CANCELLED);
    pthread_join(th, NULL);
    CHECK(res.stop_reason == TFU_STOP_CANCELLED);
    CHECK(c.n_tokens >= 1 && res.n_generated >= 1 && res.n_generated < 500);
    /* The flag is cleared and the session stays usable. */
    memset(&acc, 0, sizeof acc);
    gp = tfu_generate_params_default();
    gp.max_tokens = 4;
    gp.on_token = collect;
    gp.user_data = &acc;
    CHECK_STATUS(tfu_session_generate(s, &gp, NULL), TFU_STATUS_OK);
    /* Cancel before a prefill: the next eval stops (the "next" call of the header). */
    CHECK_STATUS(tfu_session_add_text(s, " The end.", false), TFU_STATUS_OK);
    CHECK_STATUS(tfu_session_cancel(s), TFU_STATUS_OK);
    CHECK_STATUS(tfu_session_eval(s), TFU_STATUS_CANCELLED);
    CHECK_STATUS(tfu_session_eval(s), TFU_STATUS_OK);
    pthread_cond_destroy(&c.cv);
    pthread_mutex_destroy(&c.mu);
    CHECK_STATUS(tfu_session_destroy(s), TFU_STATUS_OK);
}

/* Two sessions of one model, each driven by its own thread at the same time, give the single-thread text. */
typedef struct thread_job {
    tfu_session* session;
    text_acc acc;
    tfu_status status;
} thread_job;

static void* run_job(void* arg) {
    thread_job* j = (thread_job*)arg;
    int round;
    j->status = TFU_STATUS_OK;
    for (round = 0; round < 3 && j->status == TFU_STATUS_OK; ++round) { /* several rounds to overlap */
        memset(&j->acc, 0, sizeof j->acc);
        j->status = tfu_session_reset(j->session);
        if (j->status == TFU_STATUS_OK) j->status = greedy(j->session, 20, &j->acc, NULL);
    }
    return NULL;
}

static void test_two_threads(tfu_model* model) {
    thread_job jobs[2];
    pthread_t th[2];
    text_acc ref;
    int i;
    tfu_session* s = new_session(model, 0);
    if (s == NULL) return;
    memset(&ref, 0, sizeof ref);
    CHECK_STATUS(greedy(s, 20, &ref, NULL), TFU_STATUS_OK);
    CHECK_STATUS(tfu_session_destroy(s), TFU_STATUS_OK);
    memset(jobs, 0, sizeof jobs);
    for (i = 0; i < 2; ++i) {
        jobs[i].session = new_session(model, 0);
        if (jobs[i].session == NULL) return;
    }
    for (i = 0; i < 2; ++i) CHECK(pthread_create(&th[i], NULL, run_job, &jobs[i]) == 0);
    for (i = 0; i < 2; ++i) pthread_join(th[i], NULL);
    for (i = 0; i < 2; ++i) {
        CHECK_STATUS(jobs[i].status, TFU_STATUS_OK);
        CHECK(jobs[i].acc.len == ref.len && memcmp(jobs[i].acc.text, ref.text, ref.len) == 0);
        CHECK_STATUS(tfu_session_destroy(jobs[i].session), TFU_STATUS_OK);
    }
}

static void test_bad_input(tfu_model* model) {
    tfu_session* s = new_session(model, 16);
    tfu_token bad_tokens[2] = {5, 512};
    char long_text[4096];
    size_t i;
    if (s == NULL) return;
    CHECK_STATUS(tfu_session_add_text(s, "caf\xC3(", true), TFU_STATUS_INVALID_UTF8);
    CHECK(tfu_last_error()[0] != '\0');
    CHECK_STATUS(tfu_session_add_text(s, "\xFF", true), TFU_STATUS_INVALID_UTF8);
    CHECK_STATUS(tfu_session_add_text(s, "\xED\xA0\x80", true), TFU_STATUS_INVALID_UTF8); /* a surrogate */
    CHECK_STATUS(tfu_session_add_tokens(s, bad_tokens, 2), TFU_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tfu_last_error(), "512") != NULL);
    /* A prompt longer than the context (16 tokens). */
    long_text[0] = '\0';
    for (i = 0; i < 40; ++i) strcat(long_text, "Once upon a time ");
    CHECK_STATUS(tfu_session_add_text(s, long_text, true), TFU_STATUS_CONTEXT_FULL);
    CHECK(tfu_last_error()[0] != '\0');
    /* Bad sampler parameters are refused when the session is created. */
    {
        tfu_session_params sp = tfu_session_params_default();
        tfu_session* bad = NULL;
        sp.sampler.top_p = 2.0f;
        CHECK_STATUS(tfu_session_create(model, &sp, &bad), TFU_STATUS_INVALID_ARGUMENT);
        CHECK(bad == NULL && strstr(tfu_last_error(), "top_p") != NULL);
        /* Enum fields holding values no enumerator has (a C caller can store any int there). */
        sp = tfu_session_params_default();
        sp.kv_policy = (tfu_kv_policy)7;
        CHECK_STATUS(tfu_session_create(model, &sp, &bad), TFU_STATUS_INVALID_ARGUMENT);
        CHECK(bad == NULL && strstr(tfu_last_error(), "kv_policy") != NULL);
        sp = tfu_session_params_default();
        sp.kv_type_v = (tfu_kv_type)-3;
        CHECK_STATUS(tfu_session_create(model, &sp, &bad), TFU_STATUS_INVALID_ARGUMENT);
        CHECK(bad == NULL && strstr(tfu_last_error(), "kv_type_v") != NULL);
    }
    {
        tfu_engine_params ep = tfu_engine_params_default();
        tfu_engine* e = NULL;
        ep.offload_policy = (tfu_offload_policy)9;
        CHECK_STATUS(tfu_engine_create(&ep, &e), TFU_STATUS_INVALID_ARGUMENT);
        CHECK(e == NULL && strstr(tfu_last_error(), "offload_policy") != NULL);
        ep = tfu_engine_params_default();
        ep.backend = (tfu_backend_kind)42;
        CHECK_STATUS(tfu_engine_create(&ep, &e), TFU_STATUS_INVALID_ARGUMENT);
        CHECK(e == NULL && strstr(tfu_last_error(), "backend") != NULL);
    }
    /* The session is still fine. */
    CHECK_STATUS(tfu_session_add_text(s, PROMPT, true), TFU_STATUS_OK);
    CHECK_STATUS(tfu_session_eval(s), TFU_STATUS_OK);
    CHECK_STATUS(tfu_session_destroy(s), TFU_STATUS_OK);
}

/* Save a session, load it into another: the same logits and the same next token; bad paths give statuses. */
static void test_session_file(tfu_model* model) {
    const char* path = "/tmp/tfusion_abi_test_session.tfs";
    tfu_session_params sp = tfu_session_params_default();
    tfu_session* a = NULL;
    tfu_session* b = NULL;
    const float* la = NULL;
    const float* lb = NULL;
    size_t na = 0, nb = 0;
    tfu_token ta = 0, tb = 0;
    sp.n_ctx = 128;
    sp.kv_type_k = TFU_KV_Q8;
    sp.kv_type_v = TFU_KV_Q4;
    CHECK_STATUS(tfu_session_create(model, &sp, &a), TFU_STATUS_OK);
    CHECK_STATUS(tfu_session_create(model, &sp, &b), TFU_STATUS_OK);
    if (a == NULL || b == NULL) return;
    CHECK_STATUS(tfu_session_add_text(a, PROMPT, true), TFU_STATUS_OK);
    CHECK_STATUS(tfu_session_eval(a), TFU_STATUS_OK);
    CHECK_STATUS(tfu_session_save(a, path), TFU_STATUS_OK);
    CHECK_STATUS(tfu_session_load(b, path), TFU_STATUS_OK);
    CHECK_STATUS(tfu_session_prefetch(b), TFU_STATUS_OK); /* resident already: nothing to do */
    CHECK_STATUS(tfu_session_get_logits(a, &la, &na), TFU_STATUS_OK);
    CHECK_STATUS(tfu_session_get_logits(b, &lb, &nb), TFU_STATUS_OK);
    CHECK(na == nb && na > 0 && memcmp(la, lb, na * sizeof(float)) == 0);
    CHECK_STATUS(tfu_session_sample(a, &ta), TFU_STATUS_OK);
    CHECK_STATUS(tfu_session_sample(b, &tb), TFU_STATUS_OK);
    CHECK(ta == tb);
    CHECK_STATUS(tfu_session_load(b, "/tmp/tfusion_abi_no_such_file.tfs"), TFU_STATUS_NOT_FOUND);
    CHECK_STATUS(tfu_session_load(b, MODEL_PATH), TFU_STATUS_INVALID_FILE);
    CHECK_STATUS(tfu_session_save(a, "/no-such-dir/x.tfs"), TFU_STATUS_IO_ERROR);
    CHECK(strstr(tfu_last_error(), "/no-such-dir/x.tfs") != NULL);
    remove(path);
    CHECK_STATUS(tfu_session_destroy(a), TFU_STATUS_OK);
    CHECK_STATUS(tfu_session_destroy(b), TFU_STATUS_OK);
}

static void on_log(tfu_log_level level, const char* message, void* user_data) {
    (void)level;
    (void)message;
    ++*(int*)user_data;
}

int main(void) {
    tfu_engine* engine = NULL;
    tfu_model* model = NULL;
    tfu_engine_params ep;
    int n_logs = 0;

    test_version_and_defaults();
    test_status_strings();
    test_null_handles();

    tfu_set_log_callback(on_log, TFU_LOG_DEBUG, &n_logs);
    ep = tfu_engine_params_default();
    ep.backend = TFU_BACKEND_CPU;
    CHECK_STATUS(tfu_engine_create(&ep, &engine), TFU_STATUS_OK);
    if (engine == NULL) {
        printf("%d passed, %d failed\n", g_passed, g_failed);
        return 1;
    }
    CHECK(tfu_engine_backend_name(engine) != NULL && tfu_engine_backend_name(engine)[0] != '\0');
    CHECK_STATUS(tfu_model_load(engine, TFU_SHARED_DIR "/models/no-such-model.gguf", NULL, &model),
                 TFU_STATUS_NOT_FOUND);
    CHECK(model == NULL && strstr(tfu_last_error(), "no-such-model.gguf") != NULL);

    CHECK_STATUS(tfu_model_load(engine, MODEL_PATH, NULL, &model), TFU_STATUS_OK);
    if (model != NULL) {
        CHECK(tfu_engine_memory_used(engine) > 0);
        test_model_info_and_tokens(model);
        test_chat_template(model);
        test_greedy_golden(model);
        test_cancel(model);
        test_two_threads(model);
        test_bad_input(model);
        test_session_file(model);

        /* Teardown order is enforced: BUSY, and nothing freed, while dependants exist. */
        {
            tfu_session* s = new_session(model, 32);
            CHECK_STATUS(tfu_model_unload(model), TFU_STATUS_BUSY);
            CHECK_STATUS(tfu_engine_destroy(engine), TFU_STATUS_BUSY);
            CHECK_STATUS(tfu_session_destroy(s), TFU_STATUS_OK);
        }
        CHECK_STATUS(tfu_model_unload(model), TFU_STATUS_OK);
    }
    CHECK_STATUS(tfu_engine_destroy(engine), TFU_STATUS_OK);
    tfu_set_log_callback(NULL, TFU_LOG_DEBUG, NULL);

    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
