/* fastlstm's thread pool (pool.h says what it promises). Compiled once, with the baseline
 * flags, and linked into the kernel extension beside the instruction-set variants.
 *
 * The pool's one word of shared state says which job is open and who has joined it:
 *   bits 32..63 generation (one per job), bit 31 open, bits 8..15 helpers wanted,
 *   bits 0..7 helpers joined.
 * A helper joins with a compare-and-swap that succeeds only while that same job is open
 * and not full; the caller closes the job when every unit is done and returns once the
 * helpers that joined have left, so a helper never touches a job that has returned.
 * Inside a job, each slot has a (phase, next unit) word that participants claim units
 * from, and one counter of units done orders the phases. */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* sched_getcpu, before any system header */
#endif
#include "pool.h"

#include <stdatomic.h>
#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FL_PAUSE() _mm_pause()
#define FL_X86 1
#elif defined(__aarch64__)
#define FL_PAUSE() __asm__ __volatile__("yield")
#else
#define FL_PAUSE() ((void)0)
#endif

#if defined(_WIN32)
#define FL_THREADS 0 /* no pthreads: every job runs on its calling thread */
#else
#define FL_THREADS 1
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>
#endif

#define FL_MAX_SLOTS 64 /* participants per job, the calling thread included */

/* Waiting for another thread, the n-th time round: a pause, and every FL_YIELD_EVERY-th
 * time the core handed over. The thread waited for may share this core (a helper woken on
 * a busy or virtual machine is often queued on its waker's core until the balancer moves
 * it): pausing alone would keep it off the core for a whole time slice (~10 ms seen on a
 * 2-core VM, for a unit of microseconds). */
#define FL_YIELD_EVERY 256

static void relax(unsigned n) {
    FL_PAUSE();
#if FL_THREADS
    if (n % FL_YIELD_EVERY == 0) sched_yield();
#else
    (void)n;
#endif
}

typedef struct {
    /* ((phase + 1) << 32) | next unit of the slot's range; 0 before the first phase */
    _Alignas(64) _Atomic uint64_t word;
} fl_slot;

typedef struct {
    const fl_job *job;
    int nslots;
    double opened_us; /* when the caller opened the job (monotonic clock) */
    _Alignas(64) _Atomic long done; /* units done, over all phases */
    fl_slot slots[FL_MAX_SLOTS];
} fl_run_state;

/* Units run with denormals flushed (FTZ + DAZ): they can slow a recurrence tenfold. */
static unsigned flush_denormals(void) {
#ifdef FL_X86
    unsigned old = _mm_getcsr();
    _mm_setcsr(old | 0x8040u);
    return old;
#else
    return 0;
#endif
}

static void restore_fp(unsigned old) {
#ifdef FL_X86
    _mm_setcsr(old);
#else
    (void)old;
#endif
}

static _Atomic long stat_caller, stat_helpers;
static _Atomic long stat_join_us = -1; /* the last join's delay after the job opened */
static _Atomic int helper_delay_us, spin_us = 2000;

/* Slot s's units of a phase of n: [n s / ns, n (s+1) / ns) */
static inline uint32_t range_at(int n, int s, int ns) { return (uint32_t)((long)n * s / ns); }

/* The next unclaimed unit of slot s in phase p (of n units), or -1. Phase p is open: every
 * unit of the phases before it is done, so a slot word still in an earlier phase is
 * simply behind (its range there was empty or is finished). */
static int claim(fl_run_state *rs, int s, int p, int n) {
    const uint32_t lo = range_at(n, s, rs->nslots), hi = range_at(n, s + 1, rs->nslots);
    if (lo >= hi) return -1;
    uint64_t w = atomic_load_explicit(&rs->slots[s].word, memory_order_relaxed);
    for (;;) {
        const uint32_t ph = (uint32_t)(w >> 32), i = (uint32_t)w, here = (uint32_t)p + 1;
        uint32_t take;
        if (ph < here)
            take = lo;
        else if (ph == here && i < hi)
            take = i;
        else
            return -1;
        const uint64_t next = ((uint64_t)here << 32) | (take + 1);
        if (atomic_compare_exchange_weak_explicit(&rs->slots[s].word, &w, next,
                                                  memory_order_relaxed, memory_order_relaxed))
            return (int)take;
    }
}

/* Until `target` units are done: those of the phases before, or a unit another thread
 * claimed and is still running. */
static void wait_done(fl_run_state *rs, long target) {
    for (unsigned n = 1; atomic_load_explicit(&rs->done, memory_order_acquire) < target; n++)
        relax(n);
}

/* Walk every phase; in each, once it is open, run own units, then anyone's unclaimed.
 * Returns the units this participant ran; *total gets the job's units. */
static long participate(fl_run_state *rs, int me, long *total) {
    const fl_job *job = rs->job;
    long start = 0, ran = 0;
    for (int p = 0; p < job->n_phases; p++) {
        const int n = job->count(job->ctx, p);
        if (n <= 0) continue;
        wait_done(rs, start);
        for (int k = 0; k < rs->nslots; k++) {
            const int s = (me + k) % rs->nslots;
            int idx;
            while ((idx = claim(rs, s, p, n)) >= 0) {
                job->unit(job->ctx, p, idx);
                atomic_fetch_add_explicit(&rs->done, 1, memory_order_release);
                ran++;
            }
        }
        start += n;
    }
    *total = start;
    return ran;
}

static void run_alone(const fl_job *job) {
    long ran = 0;
    for (int p = 0; p < job->n_phases; p++) {
        const int n = job->count(job->ctx, p);
        for (int i = 0; i < n; i++) job->unit(job->ctx, p, i);
        ran += n > 0 ? n : 0;
    }
    atomic_fetch_add_explicit(&stat_caller, ran, memory_order_relaxed);
}

#if FL_THREADS

#define ST_OPEN ((uint64_t)1 << 31)
#define ST_GEN(s) ((uint32_t)((s) >> 32))
#define ST_WANTED(s) ((int)(((s) >> 8) & 0xff))
#define ST_JOINED(s) ((int)((s)&0xff))

static struct {
    _Alignas(64) _Atomic uint64_t state;
    _Atomic(fl_run_state *) rs; /* the open job's, published before the state word */
    _Alignas(64) _Atomic int busy;   /* a caller is running a job with helpers */
    _Atomic int sleepers;            /* helpers waiting on cv */
    _Atomic int nhelpers;            /* helpers started */
    _Atomic int caller_cpu;          /* the open job's caller's core when it opened, or -1 */
    pthread_mutex_t mu;              /* cv's, and starting helpers */
    pthread_cond_t cv;
} P = {.caller_cpu = -1, .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/* This thread's core now, or -1 where the system does not say */
static int current_cpu(void) {
#if defined(__linux__)
    return sched_getcpu();
#else
    return -1;
#endif
}

/* Whether this helper is queued on the core of the job's caller: joining there only
 * takes turns with the caller on one core, and every unit it claims then holds the
 * caller up until the scheduler hands the core over. */
static int on_callers_cpu(void) {
    const int cpu = atomic_load_explicit(&P.caller_cpu, memory_order_relaxed);
    return cpu >= 0 && cpu == current_cpu();
}

/* Move this thread off core `cpu` now (the scheduler picks another of its allowed ones),
 * leaving its affinity as it was. Returns 0 where that cannot be done. */
static int move_off(int cpu) {
#if defined(__linux__)
    cpu_set_t allowed, others;
    const pthread_t self = pthread_self();
    if (pthread_getaffinity_np(self, sizeof allowed, &allowed) != 0 || cpu < 0 ||
        cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &allowed) || CPU_COUNT(&allowed) < 2)
        return 0;
    others = allowed;
    CPU_CLR(cpu, &others);
    const int moved = pthread_setaffinity_np(self, sizeof others, &others) == 0;
    if (moved) pthread_setaffinity_np(self, sizeof allowed, &allowed);
    return moved;
#else
    (void)cpu;
    return 0;
#endif
}

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}

/* The state once the generation differs from `last`: spinning for spin_us, then asleep. */
static uint64_t next_job(uint32_t last) {
    uint64_t s = atomic_load_explicit(&P.state, memory_order_acquire);
    const double until = now_us() + atomic_load_explicit(&spin_us, memory_order_relaxed);
    for (unsigned n = 1; ST_GEN(s) == last; n++) {
        FL_PAUSE();
        s = atomic_load_explicit(&P.state, memory_order_acquire);
        /* a spinning helper must not hold a core another thread is waiting for: on a busy
         * machine that is the caller's own core half the time */
        if ((n & 63) == 0) sched_yield();
        if (ST_GEN(s) == last && (n & 255) == 0 && now_us() > until) {
            pthread_mutex_lock(&P.mu);
            atomic_fetch_add(&P.sleepers, 1); /* seq_cst: pairs with fl_pool_run's wake */
            while (ST_GEN(s = atomic_load(&P.state)) == last) pthread_cond_wait(&P.cv, &P.mu);
            atomic_fetch_sub(&P.sleepers, 1);
            pthread_mutex_unlock(&P.mu);
        }
    }
    return s;
}

static void *helper_main(void *arg) {
    (void)arg;
    uint32_t last = ST_GEN(atomic_load(&P.state));
    for (;;) {
        uint64_t s = next_job(last);
        const uint32_t gen = ST_GEN(s);
        last = gen;
        const int delay = atomic_load_explicit(&helper_delay_us, memory_order_relaxed);
        if (delay > 0) { /* the tests' late helper: as if it woke only now */
            usleep((useconds_t)delay);
            s = atomic_load_explicit(&P.state, memory_order_acquire);
        }
        int joined = 0, tried_move = 0;
        while (ST_GEN(s) == gen && (s & ST_OPEN) && ST_JOINED(s) < ST_WANTED(s)) {
            if (on_callers_cpu()) { /* go to another core, or let the caller on */
                if (!tried_move) {
                    tried_move = 1;
                    move_off(current_cpu());
                } else {
                    sched_yield();
                }
                s = atomic_load_explicit(&P.state, memory_order_acquire);
                continue;
            }
            if (atomic_compare_exchange_weak_explicit(&P.state, &s, s + 1, memory_order_acq_rel,
                                                      memory_order_acquire)) {
                joined = 1;
                break;
            }
        }
        if (!joined) continue;
        fl_run_state *rs = atomic_load_explicit(&P.rs, memory_order_relaxed);
        atomic_store_explicit(&stat_join_us, (long)(now_us() - rs->opened_us),
                              memory_order_relaxed);
        const unsigned fp = flush_denormals();
        long total;
        const long ran = participate(rs, ST_JOINED(s) + 1, &total);
        restore_fp(fp);
        atomic_fetch_add_explicit(&stat_helpers, ran, memory_order_relaxed);
        atomic_fetch_sub_explicit(&P.state, 1, memory_order_release); /* leave */
    }
    return NULL;
}

static void after_fork_in_child(void) {
    /* the helpers did not come along: start afresh, as a process that has run no job */
    atomic_store(&P.state, 0);
    atomic_store(&P.rs, NULL);
    atomic_store(&P.busy, 0);
    atomic_store(&P.sleepers, 0);
    atomic_store(&P.nhelpers, 0);
    atomic_store(&P.caller_cpu, -1);
    pthread_mutex_init(&P.mu, NULL);
    pthread_cond_init(&P.cv, NULL);
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void register_atfork(void) { pthread_atfork(NULL, NULL, after_fork_in_child); }

/* At least n helpers, as far as the system lets us start them; returns how many run. */
static int ensure_helpers(int n) {
    if (atomic_load_explicit(&P.nhelpers, memory_order_acquire) >= n) return n;
    pthread_once(&atfork_once, register_atfork);
    pthread_mutex_lock(&P.mu);
    int have = atomic_load(&P.nhelpers);
    while (have < n) {
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        const int failed = pthread_create(&th, &attr, helper_main, NULL);
        pthread_attr_destroy(&attr);
        if (failed) break;
        have++;
    }
    atomic_store(&P.nhelpers, have);
    pthread_mutex_unlock(&P.mu);
    return have;
}

void fl_pool_run(const fl_job *job) {
    int helpers = job->threads - 1;
    if (helpers > FL_MAX_SLOTS - 1) helpers = FL_MAX_SLOTS - 1;
    if (helpers > 0) helpers = ensure_helpers(helpers);
    int idle = 0;
    if (helpers <= 0 ||
        !atomic_compare_exchange_strong(&P.busy, &idle, 1)) { /* alone, or another job runs */
        const unsigned fp = flush_denormals();
        run_alone(job);
        restore_fp(fp);
        return;
    }
    fl_run_state rs;
    rs.job = job;
    rs.nslots = helpers + 1;
    atomic_init(&rs.done, 0);
    for (int s = 0; s < rs.nslots; s++) atomic_init(&rs.slots[s].word, 0);
    rs.opened_us = now_us();
    atomic_store_explicit(&P.caller_cpu, current_cpu(), memory_order_relaxed);
    atomic_store_explicit(&P.rs, &rs, memory_order_relaxed);
    const uint64_t old = atomic_load(&P.state);
    atomic_store(&P.state, ((uint64_t)(ST_GEN(old) + 1) << 32) | ST_OPEN |
                               ((uint64_t)helpers << 8)); /* seq_cst: pairs with next_job */
    if (job->wake && atomic_load(&P.sleepers) > 0) {
        pthread_mutex_lock(&P.mu);
        pthread_cond_broadcast(&P.cv);
        pthread_mutex_unlock(&P.mu);
    }
    const unsigned fp = flush_denormals();
    long total;
    const long ran = participate(&rs, 0, &total);
    wait_done(&rs, total); /* units a helper claimed and is still running */
    restore_fp(fp);
    atomic_fetch_add_explicit(&stat_caller, ran, memory_order_relaxed);
    atomic_fetch_and(&P.state, ~ST_OPEN); /* close: no one joins from now on */
    for (unsigned n = 1; ST_JOINED(atomic_load_explicit(&P.state, memory_order_acquire)) > 0; n++)
        relax(n);
    atomic_store_explicit(&P.busy, 0, memory_order_release);
}

int fl_pool_helpers(void) { return atomic_load(&P.nhelpers); }

#else /* no threads */

void fl_pool_run(const fl_job *job) {
    const unsigned fp = flush_denormals();
    run_alone(job);
    restore_fp(fp);
}

int fl_pool_helpers(void) { return 0; }

#endif

void fl_pool_set_helper_delay_us(int us) { atomic_store(&helper_delay_us, us < 0 ? 0 : us); }

void fl_pool_stats(long *by_caller, long *by_helpers, long *last_join_us) {
    *by_caller = atomic_load(&stat_caller);
    *by_helpers = atomic_load(&stat_helpers);
    *last_join_us = atomic_load(&stat_join_us);
}

void fl_pool_reset_stats(void) {
    atomic_store(&stat_caller, 0);
    atomic_store(&stat_helpers, 0);
    atomic_store(&stat_join_us, -1);
}

void fl_pool_set_spin_us(int us) { atomic_store(&spin_us, us < 0 ? 0 : us); }

int fl_pool_spin_us(void) { return atomic_load(&spin_us); }
