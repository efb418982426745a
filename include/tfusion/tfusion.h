/* tfusion.h - the whole C ABI of TransformerFusion (libtfusion), C99.
 *
 * Usage:
 *
 *   tfu_engine* eng; tfu_model* mdl; tfu_session* ses;
 *   tfu_engine_params ep = tfu_engine_params_default();
 *   if (tfu_engine_create(&ep, &eng) != TFU_STATUS_OK) { puts(tfu_last_error()); return 1; }
 *   tfu_model_params mp = tfu_model_params_default();
 *   if (tfu_model_load(eng, "model.gguf", &mp, &mdl) != TFU_STATUS_OK) { puts(tfu_last_error()); ... }
 *   tfu_session_params sp = tfu_session_params_default();
 *   sp.sampler.temperature = 0.0f;                       // greedy
 *   tfu_session_create(mdl, &sp, &ses);
 *   tfu_session_add_text(ses, "Once upon a time", true); // true: parse special tokens like <|im_start|>
 *   tfu_generate_params gp = tfu_generate_params_default();
 *   gp.max_tokens = 64; gp.on_token = my_callback; gp.user_data = my_state;
 *   tfu_session_generate(ses, &gp, NULL);
 *   tfu_session_destroy(ses); tfu_model_unload(mdl); tfu_engine_destroy(eng);
 *
 * Rules (they hold for every function below):
 * - Every fallible call returns tfu_status (0 = OK) and hands objects back through out-parameters. On failure
 *   tfu_last_error() gives a message for this thread naming what is wrong (file, tensor, field, argument).
 * - Params structs are passed by pointer and start with `struct_size`; fill them with tfu_*_params_default()
 *   and change the fields you need. Passing NULL means "defaults". New fields are only ever appended.
 * - A published function never changes; status values are only ever appended.
 * - Nothing here aborts, exits or prints. Log lines go to the callback set with tfu_set_log_callback.
 *
 * Threading:
 * - tfu_engine: create/destroy from one thread; destroy only after all its models and sessions are gone.
 * - tfu_model: load/unload may run concurrently with work on other models; unload only after its sessions are
 *   destroyed. Read-only model calls (info, tokenize, detokenize, chat template) may run from any thread at once.
 * - tfu_session: one thread at a time per session (a second concurrent call returns TFU_STATUS_BUSY). Different
 *   sessions, also of different models, may be used from different threads at once; the engine serialises
 *   device work internally. tfu_session_cancel() is safe from any thread at any time while the session exists.
 *   tfu_session_decode_batch() uses all its sessions at once: for each of them it counts as a call on it (BUSY if
 *   any is in use elsewhere; then none is taken).
 */
#ifndef TFUSION_H
#define TFUSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define TFU_API __declspec(dllexport)
#else
#define TFU_API __attribute__((visibility("default")))
#endif

/* ---- version ------------------------------------------------------------------------------------------- */

#define TFU_VERSION_MAJOR 0
#define TFU_VERSION_MINOR 1
#define TFU_VERSION_PATCH 0
#define TFU_VERSION_NUMBER (TFU_VERSION_MAJOR * 10000 + TFU_VERSION_MINOR * 100 + TFU_VERSION_PATCH)
#define TFU_VERSION_STRING "0.1.0"

/* The library's version as MAJOR*10000 + MINOR*100 + PATCH; compare with TFU_VERSION_NUMBER to check that the
 * header and the library agree (bindings do). */
TFU_API int32_t tfu_version(void);
/* The library's version string, e.g. "0.1.0"; static storage. */
TFU_API const char* tfu_version_string(void);

/* ---- status and errors --------------------------------------------------------------------------------- */

typedef enum tfu_status {
    TFU_STATUS_OK = 0,
    TFU_STATUS_INVALID_ARGUMENT = 1,    /* NULL handle, bad parameter value, struct_size too small */
    TFU_STATUS_NOT_FOUND = 2,           /* file does not exist or cannot be opened */
    TFU_STATUS_IO_ERROR = 3,            /* read/write/mmap failed */
    TFU_STATUS_INVALID_FILE = 4,        /* malformed or truncated file (GGUF, session file) */
    TFU_STATUS_UNSUPPORTED = 5,         /* valid but not supported: architecture, tensor type, tokenizer, op */
    TFU_STATUS_OUT_OF_MEMORY = 6,       /* allocation failed or the engine's memory budget is exceeded */
    TFU_STATUS_CONTEXT_FULL = 7,        /* the session's context cannot hold the tokens */
    TFU_STATUS_CANCELLED = 8,           /* tfu_session_cancel() stopped the call */
    TFU_STATUS_TEMPLATE_ERROR = 9,      /* chat template failed; the message is the template's own */
    TFU_STATUS_INVALID_UTF8 = 10,       /* text argument is not valid UTF-8 */
    TFU_STATUS_BUSY = 11,               /* the session is in use by another thread */
    TFU_STATUS_BACKEND_UNAVAILABLE = 12,/* the requested backend is not present on this machine */
    TFU_STATUS_BUFFER_TOO_SMALL = 13,   /* output buffer too small; the needed size was written to the size out */
    TFU_STATUS_INTERNAL = 14,           /* a bug in the library; the message says where */
    TFU_STATUS_DEVICE_ERROR = 15        /* the GPU driver failed a call (launch, copy, lost device); the message names it */
} tfu_status;

/* A short constant name for a status ("TFU_STATUS_OK", ...); static storage; never NULL. */
TFU_API const char* tfu_status_string(tfu_status status);
/* The message of this thread's last failed call ("" if none). Valid until this thread's next tfu_ call. */
TFU_API const char* tfu_last_error(void);

/* ---- logging ------------------------------------------------------------------------------------------- */

typedef enum tfu_log_level {
    TFU_LOG_DEBUG = 0,
    TFU_LOG_INFO = 1,
    TFU_LOG_WARN = 2,
    TFU_LOG_ERROR = 3
} tfu_log_level;

/* Receives one log line (no trailing newline). May be called from any library thread. */
typedef void (*tfu_log_callback)(tfu_log_level level, const char* message, void* user_data);

/* Sets the process-wide log callback and the lowest level passed to it; NULL silences the library (default).
 * Thread-safe; lines already being delivered finish on the old callback. */
TFU_API void tfu_set_log_callback(tfu_log_callback callback, tfu_log_level min_level, void* user_data);

/* ---- engine -------------------------------------------------------------------------------------------- */

typedef struct tfu_engine tfu_engine;
typedef struct tfu_model tfu_model;
typedef struct tfu_session tfu_session;

typedef enum tfu_backend_kind {
    TFU_BACKEND_AUTO = 0,    /* CUDA, then Vulkan, then CPU; the env var TFU_BACKEND=cpu|cuda|vulkan overrides */
    TFU_BACKEND_CPU = 1,     /* the fast CPU path (multithreaded, SIMD chosen at run time) */
    TFU_BACKEND_CPU_REF = 2, /* the scalar reference: slow, for testing */
    TFU_BACKEND_CUDA = 3,
    TFU_BACKEND_VULKAN = 4
} tfu_backend_kind;

/* Which idle session's KV cache moves to host memory when the memory budget is full (a new session, or an
 * offloaded one coming back, needs room). The moved cache leaves the budget; the session gets it back, bit for
 * bit, at its next call (or tfu_session_prefetch), moving another idle session out if need be. A session in a
 * call on another thread is never moved. */
typedef enum tfu_offload_policy {
    TFU_OFFLOAD_LRU = 0,  /* least recently used first (default) */
    TFU_OFFLOAD_LFU = 1,  /* least frequently used first (fewest calls), then least recently used */
    TFU_OFFLOAD_FIFO = 2, /* oldest session first */
    TFU_OFFLOAD_NONE = 3  /* never: a full budget gives TFU_STATUS_OUT_OF_MEMORY */
} tfu_offload_policy;

typedef struct tfu_engine_params {
    uint32_t struct_size;
    tfu_backend_kind backend; /* default TFU_BACKEND_AUTO */
    int32_t n_threads;        /* CPU worker threads; 0 = number of cores (default) */
    uint64_t memory_budget;   /* bytes for weights + KV cache of all models; 0 = no limit (default) */
    /* -- since 0.1 (append-only below) -- */
    tfu_offload_policy offload_policy; /* default TFU_OFFLOAD_LRU */
} tfu_engine_params;

TFU_API tfu_engine_params tfu_engine_params_default(void);
/* Creates an engine: picks the backend, starts the worker threads. Destroy with tfu_engine_destroy. */
TFU_API tfu_status tfu_engine_create(const tfu_engine_params* params, tfu_engine** out_engine);
/* Destroys the engine; its models and sessions must have been destroyed first (else TFU_STATUS_BUSY and
 * nothing is freed). NULL is a no-op returning OK. */
TFU_API tfu_status tfu_engine_destroy(tfu_engine* engine);
/* Name of the backend in use ("cpu", "cpu-ref", ...); static storage. */
TFU_API const char* tfu_engine_backend_name(const tfu_engine* engine);
/* Bytes of the memory budget in use now by all models' weights and KV caches. */
TFU_API uint64_t tfu_engine_memory_used(const tfu_engine* engine);

/* Engine statistics as a JSON object: {"backend", "memory_budget", "memory_used", "models": [{"path",
 * "architecture", "weights_bytes", "sessions", "kv_pools": [{"type_k", "type_v", "block_tokens", "block_bytes",
 * "bytes_reserved", "bytes_in_use", "bytes_cached", "blocks_total", "blocks_in_use", "blocks_cached",
 * "blocks_free", "prefix_hits", "prefix_misses", "prefix_bytes_saved", "cow_copies", "cached_reclaimed"}]}],
 * "offload": {"policy", "sessions", "sessions_offloaded", "host_bytes", "offloads", "prefetches"}}.
 * Keys are only ever added. Size protocol as tfu_tokenize. May run concurrently with any other call. */
TFU_API tfu_status tfu_engine_get_stats_json(const tfu_engine* engine, char* out_json, size_t capacity,
                                             size_t* out_len);

/* ---- model --------------------------------------------------------------------------------------------- */

typedef struct tfu_model_params {
    uint32_t struct_size;
    bool use_mmap; /* map the file instead of reading it (default true); weights then stay in the page cache */
} tfu_model_params;

TFU_API tfu_model_params tfu_model_params_default(void);
/* Loads a GGUF model file into the engine. Validates the whole file first; an unknown architecture, tensor type
 * or a tensor of the wrong shape is refused with a message naming it. Unload with tfu_model_unload. */
TFU_API tfu_status tfu_model_load(tfu_engine* engine, const char* path, const tfu_model_params* params,
                                  tfu_model** out_model);
/* Unloads the model; all its sessions must be destroyed first (else TFU_STATUS_BUSY). NULL is a no-op. */
TFU_API tfu_status tfu_model_unload(tfu_model* model);

typedef int32_t tfu_token;
#define TFU_TOKEN_NONE (-1)

typedef struct tfu_model_info {
    uint32_t struct_size;
    const char* architecture;  /* "llama", "qwen2", ...; valid while the model is loaded */
    const char* name;          /* general.name, or "" */
    uint64_t n_params;         /* number of weights */
    uint64_t size_bytes;       /* bytes of the weight tensors */
    int32_t n_ctx_train;       /* context length the model was trained with */
    int32_t n_vocab;
    int32_t n_layer;
    int32_t n_embd;
    int32_t n_head;
    int32_t n_head_kv;
    tfu_token bos;             /* TFU_TOKEN_NONE where the vocabulary has none */
    tfu_token eos;
    tfu_token eot;             /* end of turn (e.g. <|eot_id|>, <|im_end|>) */
    tfu_token pad;
    bool add_bos;              /* tokenize() adds BOS when asked to add specials */
    bool add_eos;
    bool has_chat_template;
    int32_t file_type;         /* general.file_type (llama.cpp's numbering, e.g. 15 = Q4_K_M), or -1 if absent */
    const char* weight_type;   /* the type holding most matrix weights: "q4_K", "f16", ...; static storage */
} tfu_model_info;

/* Fills *out_info (set its struct_size first, or zero the struct; fields beyond it are left alone). */
TFU_API tfu_status tfu_model_get_info(const tfu_model* model, tfu_model_info* out_info);
/* True if the token ends generation (EOS, EOT and other end-of-generation tokens of the vocabulary). */
TFU_API bool tfu_model_token_is_eog(const tfu_model* model, tfu_token token);

/* ---- tokens and text ----------------------------------------------------------------------------------- */

/* Tokenizes UTF-8 text. add_special: add BOS/EOS as the model's flags say; parse_special: text like
 * "<|im_start|>" becomes its special token. Writes at most `capacity` tokens and sets *out_count to the number
 * the text needs; if that exceeds capacity, returns TFU_STATUS_BUFFER_TOO_SMALL (call again with more room). */
TFU_API tfu_status tfu_tokenize(const tfu_model* model, const char* text, size_t text_len, bool add_special,
                                bool parse_special, tfu_token* out_tokens, size_t capacity, size_t* out_count);
/* Turns tokens back into UTF-8 text (not NUL-terminated inside the count, but a NUL is written when it fits).
 * render_special: include the text of control tokens such as </s>. Byte tokens that do not form whole
 * characters become U+FFFD (one per ill-formed sequence). Same size protocol as tfu_tokenize. */
TFU_API tfu_status tfu_detokenize(const tfu_model* model, const tfu_token* tokens, size_t n_tokens,
                                  bool render_special, char* out_text, size_t capacity, size_t* out_len);

/* ---- chat templates ------------------------------------------------------------------------------------ */

typedef struct tfu_chat_message {
    const char* role;    /* "system", "user", "assistant", ... */
    const char* content; /* UTF-8 */
} tfu_chat_message;

/* Renders messages with the model's chat template (or with `template_override` if not NULL) into text.
 * add_generation_prompt appends the assistant turn's opening. On a template error returns
 * TFU_STATUS_TEMPLATE_ERROR with the template's own message (e.g. "System role not supported"). Without a
 * template in the model and no override: TFU_STATUS_UNSUPPORTED. Size protocol as tfu_tokenize. */
TFU_API tfu_status tfu_chat_apply_template(const tfu_model* model, const char* template_override,
                                           const tfu_chat_message* messages, size_t n_messages,
                                           bool add_generation_prompt, char* out_text, size_t capacity,
                                           size_t* out_len);

/* ---- sessions ------------------------------------------------------------------------------------------ */

typedef struct tfu_sampler_params {
    uint32_t struct_size;
    float temperature;        /* 0 = greedy (argmax); default 0.8 */
    int32_t top_k;            /* 0 = off; default 40 */
    float top_p;              /* 1 = off; default 0.95 */
    float min_p;              /* 0 = off; default 0.05 */
    float repeat_penalty;     /* 1 = off; default 1.0 (divides positive logits of recent tokens) */
    float frequency_penalty;  /* 0 = off; subtracts count * this */
    float presence_penalty;   /* 0 = off; subtracts this once a token appeared */
    int32_t penalty_last_n;   /* how many recent tokens the penalties look at; default 64; -1 = whole context */
    uint64_t seed;            /* same seed + same inputs = same output; default 0xC0FFEE */
} tfu_sampler_params;

/* Formats of the paged KV cache, chosen per session for keys and values separately. Bytes per token and head
 * of head size d: f16/bf16 2d; q8 d + 2 (int8 with a scale per token and head); q4 about d/2 + 4 (keys: 4-bit
 * per channel over each block of 32 tokens, the newest partial block kept in f16; values: 4-bit per token in
 * groups of up to 32 channels). Every head size works (also stories260K's 8).
 * On a GPU: the CUDA backend keeps every pair but q4 keys in device memory; Vulkan takes f16/f16 and bf16/bf16.
 * A pair a backend cannot hold fails tfu_session_create with TFU_STATUS_UNSUPPORTED and the reason. */
typedef enum tfu_kv_type {
    TFU_KV_F16 = 0,
    TFU_KV_BF16 = 1,
    TFU_KV_Q8 = 2,
    TFU_KV_Q4 = 3
} tfu_kv_type;

/* What a session does when its KV cache is full (n_ctx tokens, or fewer if kv_cap_bytes says so).
 * Positions stay consistent under every policy: the tokens kept in the cache are at positions 0 .. n-1 in
 * order, and a key that moves down is re-rotated (RoPE) to its new position, as if it had been computed there.
 * Every policy but REFUSE frees a quarter of the cache at a time (so evictions are rare and a prefill batch is at
 * most a quarter of the cache), keeps the first kv_n_sink tokens ("attention sinks") and accepts input beyond
 * n_ctx without limit. docs/kv-cache.md says what each costs. On a GPU backend only REFUSE and (CUDA)
 * SLIDING_WINDOW are available; the others fail tfu_session_create with TFU_STATUS_UNSUPPORTED. */
typedef enum tfu_kv_policy {
    TFU_KV_POLICY_REFUSE = 0,         /* TFU_STATUS_CONTEXT_FULL when input does not fit (default) */
    TFU_KV_POLICY_SLIDING_WINDOW = 1, /* StreamingLLM (arXiv 2309.17453): drop the oldest whole 32-token blocks
                                         after the sinks (kv_n_sink is rounded up to whole blocks); the cheapest */
    TFU_KV_POLICY_H2O = 2,            /* relevance eviction (H2O, arXiv 2306.14048): each step adds every cached
                                         token's attention probability (over layers, heads, queries) to its score;
                                         drop the lowest-scored tokens, keeping the sinks and the kv_n_recent
                                         newest. Costs a second pass over the keys per step. */
    TFU_KV_POLICY_CHUNK_SUMMARY = 3   /* mean-pool the oldest chunks of kv_chunk tokens after the sinks (keys
                                         rotated to the slot's position first, values as they are) into one slot
                                         each, keeping the kv_n_recent newest; summaries may be pooled again */
} tfu_kv_policy;

typedef struct tfu_session_params {
    uint32_t struct_size;
    int32_t n_ctx;            /* context length in tokens; 0 = the model's training context (default 0) */
    int32_t n_batch;          /* prompt tokens per prefill step; default 256 */
    tfu_sampler_params sampler;
    tfu_kv_type kv_type_k;    /* KV cache format of keys; default TFU_KV_F16 */
    tfu_kv_type kv_type_v;    /* KV cache format of values; default TFU_KV_F16 (K q8 + V q4 is a good mix) */
    /* -- since 0.1 (append-only below) -- */
    tfu_kv_policy kv_policy;  /* default TFU_KV_POLICY_REFUSE */
    int32_t kv_n_sink;        /* eviction policies: tokens kept at the start; default 4 (the sliding window keeps
                                 whole 32-token blocks: one) */
    uint64_t kv_cap_bytes;    /* cap on this session's KV bytes; the cache then holds the whole blocks that fit
                                 (at most n_ctx tokens); 0 = no cap beyond n_ctx (default). The engine budget
                                 reserves the capped size when the session is created. */
    int32_t kv_n_recent;      /* H2O, chunk summary: newest tokens never dropped; 0 = a quarter of the cache */
    int32_t kv_chunk;         /* chunk summary: tokens pooled into one slot; default 8 (>= 2) */
} tfu_session_params;

TFU_API tfu_sampler_params tfu_sampler_params_default(void);
TFU_API tfu_session_params tfu_session_params_default(void);

/* Creates a conversation on a model: its KV cache and sampler state. Destroy with tfu_session_destroy. */
TFU_API tfu_status tfu_session_create(tfu_model* model, const tfu_session_params* params,
                                      tfu_session** out_session);
/* Destroys the session. Must not race with another call on the same session except tfu_session_cancel
 * finishing. NULL is a no-op. */
TFU_API tfu_status tfu_session_destroy(tfu_session* session);

/* Appends text to the pending prompt (tokenized now; prefilled lazily by the next generate or eval).
 * add_special: add BOS (per the model's flag) if the session is empty; specials in the text are parsed.
 * Invalid UTF-8 gives TFU_STATUS_INVALID_UTF8; more tokens than the context holds, TFU_STATUS_CONTEXT_FULL. */
TFU_API tfu_status tfu_session_add_text(tfu_session* session, const char* text, bool add_special);
/* Appends tokens to the pending prompt; ids out of the vocabulary give TFU_STATUS_INVALID_ARGUMENT. */
TFU_API tfu_status tfu_session_add_tokens(tfu_session* session, const tfu_token* tokens, size_t n_tokens);
/* Runs the model over the pending prompt now (prefill), so that logits are ready. Cancellable. */
TFU_API tfu_status tfu_session_eval(tfu_session* session);

/* Receives each generated piece of text: whole UTF-8 characters, never half of one (`len` bytes, not
 * NUL-terminated), and the token that completed it (pieces may hold text of several tokens). Return true to go
 * on, false to stop. Called on the thread that called tfu_session_generate. */
typedef bool (*tfu_token_callback)(const char* piece, size_t len, tfu_token token, void* user_data);

typedef enum tfu_stop_reason {
    TFU_STOP_NONE = 0,
    TFU_STOP_EOG = 1,        /* the model produced an end-of-generation token */
    TFU_STOP_MAX_TOKENS = 2, /* max_tokens reached */
    TFU_STOP_STRING = 3,     /* a stop string appeared (it is not passed to the callback) */
    TFU_STOP_CALLBACK = 4,   /* the callback returned false */
    TFU_STOP_CANCELLED = 5,  /* tfu_session_cancel() */
    TFU_STOP_CONTEXT_FULL = 6
} tfu_stop_reason;

typedef struct tfu_generate_params {
    uint32_t struct_size;
    int32_t max_tokens;             /* default 256; <0 = until EOG or context full */
    const char* const* stop_strings;/* generation stops before any of these; may be NULL */
    size_t n_stop_strings;
    bool render_special;            /* pass the text of special tokens to the callback (default false) */
    tfu_token_callback on_token;    /* may be NULL */
    void* user_data;
} tfu_generate_params;

typedef struct tfu_generate_result {
    uint32_t struct_size;
    int32_t n_prompt_tokens;   /* prompt tokens prefilled by this call */
    int32_t n_generated;       /* tokens sampled by this call */
    tfu_stop_reason stop_reason;
    double prefill_ms;         /* time spent on the prompt */
    double decode_ms;          /* time spent generating */
    double time_to_first_token_ms;
} tfu_generate_result;

TFU_API tfu_generate_params tfu_generate_params_default(void);
/* Prefills the pending prompt, then samples tokens and streams their text to on_token until a stop condition.
 * Generated tokens stay in the session (the next add_text continues the conversation). A cancel returns
 * TFU_STATUS_CANCELLED; the session stays usable and keeps what was processed. out_result may be NULL. */
TFU_API tfu_status tfu_session_generate(tfu_session* session, const tfu_generate_params* params,
                                        tfu_generate_result* out_result);
/* Asks the running (or next) prefill/generate of this session to stop at its next step (between layers).
 * Safe from any thread, and async-signal-safe for a valid session (one lock-free atomic store), so a SIGINT
 * handler may call it. The flag is cleared when a call returns TFU_STATUS_CANCELLED or on reset. */
TFU_API tfu_status tfu_session_cancel(tfu_session* session);
/* Forgets all tokens, the KV cache and the sampler history; the session can start a new conversation. */
TFU_API tfu_status tfu_session_reset(tfu_session* session);

/* The logits (n_vocab floats) of the last evaluated position, after tfu_session_eval or generate; valid until
 * the next call on the session. Returns TFU_STATUS_INVALID_ARGUMENT if nothing was evaluated yet. On a GPU
 * backend a plain-greedy session (temperature <= 0, no penalties) picks its tokens on the device and keeps the
 * logits there: this call copies them to the host first (docs/sampling.md). */
TFU_API tfu_status tfu_session_get_logits(tfu_session* session, const float** out_logits, size_t* out_n_vocab);
/* Evaluates `n_tokens` tokens (after any pending input) and writes the logits of every one of them to
 * out_logits: n_tokens * n_vocab floats, row i for tokens[i]. For perplexity and scoring; the tokens stay in the
 * session. Cancellable; more tokens than the context holds give TFU_STATUS_CONTEXT_FULL (nothing evaluated). */
TFU_API tfu_status tfu_session_eval_logits(tfu_session* session, const tfu_token* tokens, size_t n_tokens,
                                           float* out_logits);
/* Samples one token from the last logits with the session's sampler and appends it to the session's pending
 * input (the next eval/generate processes it); for callers that drive decoding themselves. */
TFU_API tfu_status tfu_session_sample(tfu_session* session, tfu_token* out_token);

/* Saves the session's whole state to `path`: the tokens in its cache and the pending ones, the KV cache bit for
 * bit in its formats, the sampler's history and random state, the last logits and the counters; a later
 * tfu_session_load continues exactly where this one stands (same next tokens). Written to PATH.tmp and then
 * renamed over PATH, so an existing file is replaced whole or not at all. Size: about the session's kv_bytes.
 * TFU_STATUS_IO_ERROR names the file when writing fails. */
TFU_API tfu_status tfu_session_save(tfu_session* session, const char* path);
/* Replaces the session's state with a saved one. The session must be on the same model file and use the same
 * kv_type_k / kv_type_v (else TFU_STATUS_INVALID_ARGUMENT saying which), and its cache must hold the saved
 * tokens (else TFU_STATUS_CONTEXT_FULL); the sampler settings and the policy are this session's. The file is
 * validated whole (magic, version, sizes, token ids, a checksum over every byte) before anything changes: a
 * truncated or corrupted file gives TFU_STATUS_INVALID_FILE (TFU_STATUS_NOT_FOUND if absent) and leaves the
 * session as it was. */
TFU_API tfu_status tfu_session_load(tfu_session* session, const char* path);

typedef struct tfu_session_stats {
    uint32_t struct_size;
    int32_t n_ctx;             /* context length */
    int32_t n_past;            /* tokens in the KV cache */
    int32_t n_pending;         /* tokens added but not evaluated yet */
    uint64_t kv_bytes;         /* bytes of the KV cache blocks this session holds (shared blocks counted in full) */
    uint64_t n_prompt_tokens;  /* totals since creation or reset */
    uint64_t n_generated;
    double prefill_ms;
    double decode_ms;
    uint64_t n_prefix_reused;  /* prompt tokens whose KV blocks were shared from another session (not prefilled) */
    uint32_t kv_blocks;        /* KV cache blocks held (32 tokens each) */
    uint32_t kv_shared_blocks; /* of which shared with other sessions (copy-on-write) */
    uint64_t last_used_unix_ms;/* when a call last used the session (milliseconds since 1970) */
    int32_t kv_capacity;       /* tokens the cache holds at most (n_ctx, or less under kv_cap_bytes) */
    uint64_t n_evictions;      /* times the policy dropped tokens from a full cache */
    uint64_t n_evicted_tokens; /* tokens dropped in all */
    bool kv_offloaded;         /* the cache is in host memory now (tfu_offload_policy); kv_bytes is then 0 */
    uint64_t kv_host_bytes;    /* bytes of the cache held in host memory while offloaded */
    uint64_t n_offloads;       /* times the cache was moved to host memory */
    uint64_t n_prefetches;     /* times it was brought back */
} tfu_session_stats;

TFU_API tfu_status tfu_session_get_stats(const tfu_session* session, tfu_session_stats* out_stats);

/* Brings the session's KV cache back from host memory now if the engine moved it out (see tfu_offload_policy),
 * so that its next step does not wait for the copy: call it when a conversation is about to resume (the window
 * gets focus, the user starts typing). Every call that needs the cache does the same on its own. OK if the cache
 * is already in place; TFU_STATUS_OUT_OF_MEMORY if no idle session can make room (the cache stays in host
 * memory, nothing is lost; try again when another session is idle or destroyed). */
TFU_API tfu_status tfu_session_prefetch(tfu_session* session);

/* ---- continuous batching ------------------------------------------------------------------------------- */

/* The most sessions one tfu_session_decode_batch call takes. */
#define TFU_DECODE_BATCH_MAX 64

/* One decode step of several sessions of the same model in ONE forward pass: every weight is read once for all
 * n tokens, so n sessions decode at nearly the cost of one where decoding is bound by memory bandwidth (see
 * docs/batching.md). Appends tokens[i] to sessions[i] and evaluates it; afterwards each session is exactly as
 * if tfu_session_add_tokens(sessions[i], &tokens[i], 1) + tfu_session_eval(sessions[i]) had been called on it
 * alone (tokens, cache, sampler history, tfu_session_get_logits, tfu_session_sample, prefix sharing), except
 * that the logits may differ in the last bits (float sums in another order).
 * tokens may be NULL: then every session must hold exactly one pending token (the one tfu_session_sample just
 * appended) and that token is the one evaluated, so a caller-driven loop is: sample each session, then one
 * decode_batch(sessions, NULL, n).
 * Rules, checked before anything changes (TFU_STATUS_INVALID_ARGUMENT): 1 <= n <= TFU_DECODE_BATCH_MAX; no NULL
 * and no repeated session; all of one model; token ids inside the vocabulary. Then all n sessions are taken for
 * this thread or none is (TFU_STATUS_BUSY if any is in a call on another thread), and offloaded caches are
 * brought back (TFU_STATUS_OUT_OF_MEMORY as for any call). A session under TFU_KV_POLICY_REFUSE whose cache
 * cannot take its pending input and the new token gives TFU_STATUS_CONTEXT_FULL for the whole call, with no
 * session changed. Then, in order: each session with pending input (added, not evaluated) is prefilled on its
 * own as tfu_session_eval does; each full cache makes room by its own policy; the batched step runs.
 * On an error in those later stages every session is left consistent: a prefill or a cache eviction that
 * finished stays (as tfu_session_eval would keep it), the step itself is all or nothing (no session gets its
 * token, the caches drop the rows written for it, tokens and logits stay those of before the step, a NULL-tokens
 * call keeps the pending tokens). tfu_session_cancel on any of the sessions stops the call with
 * TFU_STATUS_CANCELLED and clears the cancel flags of all n.
 * Threading: as every session call for each of the n sessions; other threads may batch other sessions of the
 * same model at the same time (their steps take turns). */
TFU_API tfu_status tfu_session_decode_batch(tfu_session* const* sessions, const tfu_token* tokens, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* TFUSION_H */
