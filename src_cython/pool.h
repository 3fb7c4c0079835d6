/* fastlstm's thread pool: the calling thread never waits for a helper that is not there.
 *
 * A job is a sequence of phases; phase p has count(ctx, p) units, and a unit of phase p
 * may only start once every unit of phase p - 1 is done (a time step of the recurrence is
 * a phase). The calling thread starts on the job at once and takes units; helper threads
 * join whenever they wake and take what is left. Each participant has a slot, and each
 * slot owns a contiguous range of every phase's units (the calling thread slot 0): a
 * participant takes its own units first, so a slice of the weights stays in one core's
 * cache step after step, then steals the units no one has claimed yet. A helper that is
 * asleep, late or absent costs nothing but its help: nothing waits for it. A helper that
 * wakes on the caller's own core moves to another one before it joins, or stays out
 * (taking turns on one core, each unit it claimed would hold the caller up for a time
 * slice); and whoever waits for a unit another thread runs hands its core over now and
 * then, should that thread be queued behind it.
 *
 * What a unit computes must depend only on (phase, index), never on which thread runs it
 * or how many took part: the kernels' results are then the same bit for bit whatever the
 * team did (the kernels split their work into units that are fixed by the call's shape).
 *
 * One job runs at a time with helpers; a job started while another runs (another Python
 * thread) runs on its calling thread alone. After fork() the child starts with no helpers
 * and makes new ones when a job first asks.
 */
#ifndef FASTLSTM_POOL_H
#define FASTLSTM_POOL_H

typedef struct {
    const void *ctx;
    int n_phases;
    int (*count)(const void *ctx, int phase);            /* units in phase p, >= 0 */
    void (*unit)(const void *ctx, int phase, int index); /* run one unit */
    int threads; /* participants wanted, calling thread included (1: no helpers) */
    int wake;    /* 0: helpers asleep are left asleep; only those still spinning join */
} fl_job;

/* Run `job` to completion. Every unit has run once when it returns. */
void fl_pool_run(const fl_job *job);

/* For the tests: a helper that sees a new job sleeps this long before it tries to join
 * (0: no delay), as a helper woken late on a busy machine would. */
void fl_pool_set_helper_delay_us(int us);

/* For the tests and the curious: units the calling threads and the helpers ran since the
 * last reset, and how long (us) after its job opened the last helper to join joined
 * (-1: none since the reset). */
void fl_pool_stats(long *by_caller, long *by_helpers, long *last_join_us);
void fl_pool_reset_stats(void);

/* How long a helper keeps looking for new work after a job before it sleeps (us). */
void fl_pool_set_spin_us(int us);
int fl_pool_spin_us(void);

/* Helper threads started so far (they persist; the pool grows to the largest team asked). */
int fl_pool_helpers(void);

#endif
