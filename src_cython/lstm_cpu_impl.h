/* Template body of lstm_cpu.h, included once per element type R (float, double) with
 * SUF(name) giving the type-suffixed name and SUF(vec) a FL_VBYTES-wide vector of R; it
 * undefines R, SUF and the FL_EXP_* / FL_MANT_BITS parameters at its end. */

#define V SUF(vec)
#define IV SUF(ivec)
#define UV SUF(uvec)
#define VL ((int)(FL_VBYTES / sizeof(R)))

/* every lane = a. (0 + a would cost an add: it is not a for a = -0; a - 0 is, so it folds
 * away and a load + broadcast is all that is left.) */
FL_INLINE V SUF(vset1)(R a) { return a - (V){0}; }

FL_INLINE V SUF(vload)(const R *p) {
    V v;
    memcpy(&v, p, sizeof v);
    return v;
}

FL_INLINE void SUF(vstore)(R *p, V v) { memcpy(p, &v, sizeof v); }

/* n <= VL lanes; the last unit block of an H that is not a multiple of VL is partial */
FL_INLINE V SUF(vload_n)(const R *p, int n) {
    if (n == VL) return SUF(vload)(p);
    V v = {0};
    memcpy(&v, p, (size_t)n * sizeof(R));
    return v;
}

FL_INLINE void SUF(vstore_n)(R *p, V v, int n) {
    if (n == VL)
        SUF(vstore)(p, v);
    else
        memcpy(p, &v, (size_t)n * sizeof(R));
}

FL_INLINE V SUF(vselect)(IV mask, V a, V b) { return (V)((mask & (IV)a) | (~mask & (IV)b)); }

/* e^x - 1 and its scale for every lane: Cody-Waite range reduction x = n ln2 + r,
 * |r| <= ln2/2, and e^r - 1 = r (1 + r/2! + r^2/3! + ...) in Horner form (one FMA per
 * term) without its leading 1, so it keeps its relative accuracy near 0; *scale = 2^n,
 * built from its exponent bits. n is rounded to nearest by adding and subtracting
 * 1.5 * 2^mantissa-bits: the integer then sits in the low bits of the sum, so no
 * float-to-int conversion is needed (AVX2 has none for doubles). NaN stays NaN (it fails
 * every comparison below, so the clamps pass it through, and NaN times anything is NaN). */
FL_INLINE V SUF(vexp_parts)(V x, V *scale) {
    const V hi = SUF(vset1)(FL_EXP_HI), lo = SUF(vset1)(FL_EXP_LO);
    const V magic = SUF(vset1)(FL_ROUND_MAGIC);
    x = SUF(vselect)(x > hi, hi, x);
    x = SUF(vselect)(x < lo, lo, x);
    const V sum = x * (R)1.4426950408889634 + magic; /* log2(e) x, rounded by the add */
    const V nf = sum - magic;
    const IV n = (IV)sum - (IV)magic;
    V r = x - nf * (R)0.693145751953125 - nf * (R)1.428606820309417232e-06; /* ln2 hi + lo */
    V p = SUF(vset1)((R)fl_inv_factorial[FL_EXP_TERMS]);
    for (int k = FL_EXP_TERMS - 1; k >= 1; k--) p = p * r + (R)fl_inv_factorial[k];
    *scale = (V)((UV)(n + FL_EXP_BIAS) << FL_MANT_BITS);
    return p * r;
}

/* e^x = 2^n (1 + (e^r - 1)): the same operations as a plain Taylor series of e^r */
FL_INLINE V SUF(vexp)(V x) {
    V scale;
    const V em1 = SUF(vexp_parts)(x, &scale);
    return (em1 + (R)1) * scale;
}

FL_INLINE V SUF(vsigmoid)(V x) { return (R)1 / ((R)1 + SUF(vexp)(-x)); }

/* tanh|x| = -(e^{-2|x|} - 1) / (2 + e^{-2|x|} - 1), with e^{-2|x|} - 1 = 2^n em1 + (2^n - 1)
 * accurate to a few ulp relative for every |x| (2/(1 + e^{-2x}) - 1 cancels near 0: 12%
 * off at |x| ~ 1e-6 in float32), and the sign of x put back. Branch-free; NaN stays NaN. */
FL_INLINE V SUF(vtanh)(V x) {
    const IV sign = (IV)SUF(vset1)((R)-0.0);
    const V ax = (V)((IV)x & ~sign);
    V scale;
    const V em1 = SUF(vexp_parts)(ax * (R)-2, &scale);
    const V e = em1 * scale + (scale - (R)1); /* e^{-2|x|} - 1, in (-1, 0] */
    const V t = -e / ((R)2 + e);
    return (V)((IV)t | ((IV)x & sign));
}

typedef SUF(fl_gemm) SUF(gemm_fn); /* Fortran BLAS ?gemm (kernels.h) */

/* Row-major C[m,n] = op(A)[m,k] op(B)[k,n] + beta C: the column-major call with the operands
 * swapped, so nothing is copied. Called by each thread on its own slice, with the BLAS kept
 * single-threaded: one level of parallelism at a time. */
static inline void SUF(gemm_rm)(SUF(gemm_fn) gemm, char ta, char tb, int m, int n, int k,
                                const R *a, int lda, const R *b, int ldb, R beta, R *c, int ldc) {
    if (m <= 0 || n <= 0) return;
    R one = 1;
    gemm(&tb, &ta, &n, &m, &k, &one, (R *)b, &ldb, (R *)a, &lda, &beta, c, &ldc);
}

typedef struct {
    int T, B, H, NI;
    const R *xr;          /* [M][NI] x rows in packed order */
    const R *xw;          /* [M][G] x W_ih^T of those rows, or NULL: fused into each step */
    const R *wfi;         /* packed W_ih, laid out like wf */
    const int *bs;        /* [T] active rows at each step, or NULL: all B */
    const ptrdiff_t *off; /* [T+1] packed row of step t's first row, or NULL: t*B */
    const int *perm;      /* [B] sorted row -> batch row, or NULL: identity */
    const R *wf, *bf;     /* packed W_hh and bias, see lstm_cpu.h */
    R *hbuf;              /* [2][B][H] h_{t-1} and h_t, sorted rows (hbuf[0] = h0) */
    R *cbuf;              /* [B][H] c, sorted rows (c0 on entry, c_n on exit) */
    R *y;                 /* [T][B][H] out */
    R *gates, *tc, *th;   /* tape: [T][B][G], [T+1][B][H], [T+1][B][H] out, or NULL */
} SUF(fwd_args);

/* acc[m][g0 + g] += sum_k src[m * ld + k] w[k][g0 + g][:] for MB rows and the NG gates
 * from g0, w one unit block's packed [4/GP][K][GP][VL] weights (lstm_cpu.h): each weight
 * vector loaded once serves MB rows. */
FL_INLINE void SUF(fwd_terms)(V acc[][4], const R *src, size_t ld, const int MB, const R *w,
                              int K, const int g0, const int NG) {
    for (int k = 0; k < K; k++) {
        V wv[4];
        for (int g = 0; g < NG; g++)
            wv[g] = SUF(vload)(w + ((size_t)((g0 + g) / FL_GP) * K * FL_GP + (size_t)k * FL_GP +
                                    (g0 + g) % FL_GP) * VL);
        for (int m = 0; m < MB; m++) {
            const V b = SUF(vset1)(src[m * ld + k]);
            for (int g = 0; g < NG; g++) acc[m][g0 + g] += b * wv[g];
        }
    }
}

/* MB sorted rows starting at r, all active at step t, unit block ub: z = x W_ih^T +
 * h W_hh^T + b accumulated in registers (FL_SUMS_PER_ROW(MB) gates per pass over the
 * weights: all four when their 4*MB sums fit FL_MAX_ACC registers), then the gate math,
 * the state update and every store. x W_ih^T is fused here (a->xw NULL) unless the
 * adapter hoisted it into one GEMM before the loop: for small inputs writing the projection
 * out and reading it back each step costs more than BLAS saves (mid, I = 64: 20%). */
FL_INLINE void SUF(fwd_block)(const SUF(fwd_args) *a, int t, int r, const int MB, int ub,
                              const R *hp, R *hn) {
    const int H = a->H, G = 4 * H, B = a->B, NI = a->NI;
    const int NG = FL_SUMS_PER_ROW(MB);
    const ptrdiff_t off = a->off ? a->off[t] : (ptrdiff_t)t * B;
    V acc[FL_MAX_ROWS][4];
    for (int m = 0; m < MB; m++)
        for (int g = 0; g < 4; g++) acc[m][g] = SUF(vset1)(0);
    const int u0 = ub * VL, nu = H - u0 < VL ? H - u0 : VL;
    if (a->xw) /* the input projection, computed for every step before the loop */
        for (int m = 0; m < MB; m++)
            for (int g = 0; g < 4; g++)
                acc[m][g] = SUF(vload_n)(a->xw + (size_t)(off + r + m) * G + g * H + u0, nu);
#pragma GCC unroll 4
    for (int g0 = 0; g0 < 4; g0 += NG) {
        if (!a->xw)
            SUF(fwd_terms)(acc, a->xr + (size_t)(off + r) * NI, NI, MB,
                           a->wfi + (size_t)ub * NI * 4 * VL, NI, g0, NG);
        SUF(fwd_terms)(acc, hp + (size_t)r * H, H, MB, a->wf + (size_t)ub * H * 4 * VL, H, g0,
                       NG);
    }
    const R *bb = a->bf + (size_t)ub * 4 * VL;
    for (int m = 0; m < MB; m++) {
        const int row = r + m, orig = a->perm ? a->perm[row] : row;
        FL_CHECK(orig >= 0 && orig < B &&
                 off + row < (a->off ? a->off[t + 1] : (ptrdiff_t)(t + 1) * B));
        const V i = SUF(vsigmoid)(acc[m][0] + SUF(vload)(bb));
        const V f = SUF(vsigmoid)(acc[m][1] + SUF(vload)(bb + VL));
        const V g = SUF(vtanh)(acc[m][2] + SUF(vload)(bb + 2 * VL));
        const V o = SUF(vsigmoid)(acc[m][3] + SUF(vload)(bb + 3 * VL));
        R *cp = a->cbuf + (size_t)row * H + u0;
        const V c = f * SUF(vload_n)(cp, nu) + i * g;
        const V h = o * SUF(vtanh)(c);
        SUF(vstore_n)(cp, c, nu);
        SUF(vstore_n)(hn + (size_t)row * H + u0, h, nu);
        const size_t at = (size_t)t * B + orig;
        SUF(vstore_n)(a->y + at * H + u0, h, nu);
        if (a->gates) {
            R *gt = a->gates + at * G + u0;
            SUF(vstore_n)(gt, i, nu);
            SUF(vstore_n)(gt + H, f, nu);
            SUF(vstore_n)(gt + 2 * H, g, nu);
            SUF(vstore_n)(gt + 3 * H, o, nu);
            SUF(vstore_n)(a->tc + (at + B) * H + u0, c, nu);
            SUF(vstore_n)(a->th + (at + B) * H + u0, h, nu);
        }
    }
}

static void SUF(fwd_step)(const SUF(fwd_args) *a, int t, fl_share s, const R *hp, R *hn) {
    const int H = a->H, active = a->bs ? a->bs[t] : a->B;
    const int r1 = s.r1 < active ? s.r1 : active;
    for (int ub = s.ub0; ub < s.ub1; ub++) {
        int r = s.r0;
        for (; r + FL_MAX_ROWS <= r1; r += FL_MAX_ROWS)
            SUF(fwd_block)(a, t, r, FL_MAX_ROWS, ub, hp, hn);
        switch (r1 - r) { /* the rest, with the block height fixed at compile time */
#if FL_MAX_ROWS > 5
        case 5: SUF(fwd_block)(a, t, r, 5, ub, hp, hn); break;
#endif
#if FL_MAX_ROWS > 4
        case 4: SUF(fwd_block)(a, t, r, 4, ub, hp, hn); break;
#endif
#if FL_MAX_ROWS > 3
        case 3: SUF(fwd_block)(a, t, r, 3, ub, hp, hn); break;
#endif
#if FL_MAX_ROWS > 2
        case 2: SUF(fwd_block)(a, t, r, 2, ub, hp, hn); break;
#endif
#if FL_MAX_ROWS > 1
        case 1: SUF(fwd_block)(a, t, r, 1, ub, hp, hn); break;
#endif
        default: break;
        }
        /* rows past their length: y = 0, state untouched, no work */
        const int u0 = ub * VL, nu = H - u0 < VL ? H - u0 : VL;
        for (int row = s.r0 > r1 ? s.r0 : r1; row < s.r1; row++) {
            const int orig = a->perm ? a->perm[row] : row;
            memset(a->y + ((size_t)t * a->B + orig) * H + u0, 0, (size_t)nu * sizeof(R));
        }
    }
}

/* One forward call as a pool job: phase 0 the hoisted input projection (when xw is set:
 * FL_M_CHUNKS GEMMs over slices of the rows), then FL_MODE_ROWS' one phase of row chunks
 * or FL_MODE_STEPS' phase per step (see lstm_cpu.h). */
typedef struct {
    SUF(fwd_args) a;
    int mode, nchunks, nub, G;
    long M;
    const R *w_ih;
    SUF(gemm_fn) gemm;
} SUF(fwd_job);

/* The hoisted projection's units: FL_M_CHUNKS slices of its rows, or, for fewer than
 * FL_HOIST_ROW_SPLIT rows (one sequence), of its G columns: a slice of few rows would read
 * all of W_ih for a handful of rows, a slice of columns reads its part once. */
static int SUF(hoist_units)(const SUF(fwd_job) *j) {
    const long n = j->M >= FL_HOIST_ROW_SPLIT ? j->M : j->G;
    return n < FL_M_CHUNKS ? (int)n : FL_M_CHUNKS;
}

static int SUF(fwd_count)(const void *ctx, int phase) {
    const SUF(fwd_job) *j = ctx;
    if (j->a.xw) {
        if (phase == 0) return SUF(hoist_units)(j);
        phase--;
    }
    if (j->mode == FL_MODE_ROWS) return phase == 0 ? j->nchunks : 0;
    return j->nub * j->nchunks;
}

static void SUF(fwd_unit)(const void *ctx, int phase, int index) {
    const SUF(fwd_job) *j = ctx;
    const SUF(fwd_args) *a = &j->a;
    const int B = a->B, H = a->H;
    if (a->xw) {
        if (phase == 0) {
            const int n = SUF(hoist_units)(j);
            if (j->M >= FL_HOIST_ROW_SPLIT) {
                const long m0 = fl_part(j->M, n, index), m1 = fl_part(j->M, n, index + 1);
                SUF(gemm_rm)(j->gemm, 'N', 'T', (int)(m1 - m0), j->G, a->NI,
                             a->xr + m0 * a->NI, a->NI, j->w_ih, a->NI, 0,
                             (R *)a->xw + m0 * j->G, j->G);
            } else {
                const long n0 = fl_part(j->G, n, index), n1 = fl_part(j->G, n, index + 1);
                SUF(gemm_rm)(j->gemm, 'N', 'T', (int)j->M, (int)(n1 - n0), a->NI, a->xr,
                             a->NI, j->w_ih + n0 * a->NI, a->NI, 0, (R *)a->xw + n0, j->G);
            }
            return;
        }
        phase--;
    }
    if (j->mode == FL_MODE_ROWS) { /* a chunk of rows, the whole sequence */
        const fl_share s = {fl_chunk_row(B, j->nchunks, index, j->mode),
                            fl_chunk_row(B, j->nchunks, index + 1, j->mode), 0, j->nub};
        for (int t = 0; t < a->T; t++)
            SUF(fwd_step)(a, t, s, a->hbuf + (size_t)(t & 1) * B * H,
                          a->hbuf + (size_t)((t + 1) & 1) * B * H);
        return;
    }
    const int t = phase, ub = index / j->nchunks, c = index % j->nchunks;
    const fl_share s = {fl_chunk_row(B, j->nchunks, c, j->mode),
                        fl_chunk_row(B, j->nchunks, c + 1, j->mode), ub, ub + 1};
    SUF(fwd_step)(a, t, s, a->hbuf + (size_t)(t & 1) * B * H,
                  a->hbuf + (size_t)((t + 1) & 1) * B * H);
}

/* xw: NULL (x W_ih^T fused into each step's block) or [M][G] scratch, filled first (w_ih
 * [G][NI], gemm: BLAS). how: FL_MODE_ROWS or FL_MODE_STEPS, plus FL_NO_WAKE; nthreads: the
 * team asked for. */
static void SUF(lstm_forward)(int T, int B, int NI, int H, const int *bs, const ptrdiff_t *off,
                              const int *perm, const R *xr, const R *wfi, const R *wf,
                              const R *bf, R *hbuf, R *cbuf, R *y, R *gates, R *tc, R *th,
                              const R *w_ih, SUF(gemm_fn) gemm, R *xw, int how, int nthreads) {
    const int nub = (H + VL - 1) / VL, mode = how & FL_MODE_MASK;
    const SUF(fwd_job) j = {{T, B, H, NI, xr, xw, wfi, bs, off, perm, wf, bf, hbuf, cbuf, y,
                             gates, tc, th},
                            mode, fl_row_chunks(B, mode), nub, 4 * H,
                            off ? (long)off[T] : (long)T * B, w_ih, gemm};
    const int n_phases = (xw ? 1 : 0) + (mode == FL_MODE_ROWS ? 1 : T);
    const fl_job job = {&j, n_phases, SUF(fwd_count), SUF(fwd_unit), nthreads,
                        !(how & FL_NO_WAKE)};
    fl_pool_run(&job);
}

/* ---------------------------------- backward --------------------------------- */

typedef struct {
    int T, B, H;
    const int *bs;
    const ptrdiff_t *off;
    const int *perm;
    const R *wb;         /* packed W_hh for dh = dz W_hh, see lstm_cpu.h */
    const R *gates, *tc; /* the forward's tape */
    const R *dy;         /* [T][B][H] */
    R *dh, *dc;          /* [B][H] sorted rows: dL/dh, dL/dc flowing back (dh_n, dc_n on entry) */
    R *dz;               /* [M][LZ] out: dL/dz for every real (step, row) */
    int LZ;              /* dz's row length, FL_DZ_LD(G) */
} SUF(bwd_args);

/* dz for the thread's active rows and unit blocks at step t, from dh, dc and the tape */
static void SUF(bwd_gates)(const SUF(bwd_args) *a, int t, fl_share s) {
    const int H = a->H, G = 4 * H, B = a->B, active = a->bs ? a->bs[t] : B;
    const int r1 = s.r1 < active ? s.r1 : active;
    const ptrdiff_t off = a->off ? a->off[t] : (ptrdiff_t)t * B;
    const V one = SUF(vset1)(1);
    for (int ub = s.ub0; ub < s.ub1; ub++) {
        const int u0 = ub * VL, nu = H - u0 < VL ? H - u0 : VL;
        for (int row = s.r0; row < r1; row++) {
            const int orig = a->perm ? a->perm[row] : row;
            const size_t at = (size_t)t * B + orig;
            const R *gt = a->gates + at * G + u0;
            const V i = SUF(vload_n)(gt, nu), f = SUF(vload_n)(gt + H, nu);
            const V g = SUF(vload_n)(gt + 2 * H, nu), o = SUF(vload_n)(gt + 3 * H, nu);
            const V c_prev = SUF(vload_n)(a->tc + at * H + u0, nu);
            const V tanh_c = SUF(vtanh)(SUF(vload_n)(a->tc + (at + B) * H + u0, nu));
            R *dhp = a->dh + (size_t)row * H + u0, *dcp = a->dc + (size_t)row * H + u0;
            const V dh = SUF(vload_n)(dhp, nu) + SUF(vload_n)(a->dy + at * H + u0, nu);
            const V dc = SUF(vload_n)(dcp, nu) + dh * o * (one - tanh_c * tanh_c);
            R *dz = a->dz + (size_t)(off + row) * a->LZ + u0;
            SUF(vstore_n)(dz, dc * g * i * (one - i), nu);
            SUF(vstore_n)(dz + H, dc * c_prev * f * (one - f), nu);
            SUF(vstore_n)(dz + 2 * H, dc * i * (one - g * g), nu);
            SUF(vstore_n)(dz + 3 * H, dh * tanh_c * o * (one - o), nu);
            SUF(vstore_n)(dcp, dc * f, nu);
        }
    }
}

/* dh[rows, NV unit blocks from ub] = dz[rows, :] W_hh[:, units]. MB rows x NV vectors of
 * units, each sum split KC ways over k: MB*NV*KC = MB*ACC accumulators, ACC =
 * FL_SUMS_PER_ROW(MB) (4, 2 or 1: what fits FL_MAX_ACC registers). With NV = ACC every W
 * load feeds MB FMAs and every broadcast NV; with fewer blocks the KC interleaved sums
 * hide the FMA latency. */
FL_INLINE void SUF(bwd_block)(const SUF(bwd_args) *a, int t, int r, const int MB, int ub,
                              const int NV) {
    const int H = a->H, G = 4 * H, ACC = FL_SUMS_PER_ROW(MB), KC = ACC / NV;
    const R *w = a->wb + (size_t)ub * G * VL;
    const ptrdiff_t off = a->off ? a->off[t] : (ptrdiff_t)t * a->B;
    const R *dz[FL_MAX_ROWS];
    V acc[FL_MAX_ROWS][4];
    for (int m = 0; m < MB; m++) {
        dz[m] = a->dz + (size_t)(off + r + m) * a->LZ;
        for (int j = 0; j < 4; j++) acc[m][j] = SUF(vset1)(0);
    }
    for (int k = 0; k < G; k += KC) { /* G = 4H is a multiple of 4 */
        for (int c = 0; c < KC; c++) {
            /* the weight vectors first, then one broadcast at a time used at once: 6 rows
             * broadcast up front would not fit AVX2's 16 registers beside 12 sums */
            V wv[4];
            for (int v = 0; v < NV; v++) wv[v] = SUF(vload)(w + ((size_t)v * G + k + c) * VL);
            for (int m = 0; m < MB; m++) {
                const V b = SUF(vset1)(dz[m][k + c]);
                for (int v = 0; v < NV; v++) acc[m][v * KC + c] += b * wv[v];
            }
        }
    }
    for (int v = 0; v < NV; v++) {
        const int u0 = (ub + v) * VL, nu = H - u0 < VL ? H - u0 : VL;
        for (int m = 0; m < MB; m++) {
            V sum = acc[m][v * KC];
            for (int c = 1; c < KC; c++) sum += acc[m][v * KC + c];
            SUF(vstore_n)(a->dh + (size_t)(r + m) * H + u0, sum, nu);
        }
    }
}

/* One out-of-line function per block height, each with its register block alone: inlined
 * into one function, GCC 12 left AVX-512 zmm16-31 unused there and kept sums of the
 * smaller blocks on the stack (a store and a reload per FMA chain). */
#define FL_BWD_FIXED(MBv)                                                                 \
    static __attribute__((noinline)) void SUF(bwd_block_##MBv)(const SUF(bwd_args) *a, int t, \
                                                             int r, int ub, int NV) {     \
        if (NV == 4 && FL_SUMS_PER_ROW(FL_MAX_ROWS) == 4)                                 \
            SUF(bwd_block)(a, t, r, MBv, ub, 4);                                          \
        else if (NV == 2 && FL_SUMS_PER_ROW(FL_MAX_ROWS) >= 2)                            \
            SUF(bwd_block)(a, t, r, MBv, ub, 2);                                          \
        else                                                                              \
            SUF(bwd_block)(a, t, r, MBv, ub, 1);                                          \
    }
FL_BWD_FIXED(1)
#if FL_MAX_ROWS > 1
FL_BWD_FIXED(2)
#endif
#if FL_MAX_ROWS > 2
FL_BWD_FIXED(3)
#endif
#if FL_MAX_ROWS > 3
FL_BWD_FIXED(4)
#endif
#if FL_MAX_ROWS > 4
FL_BWD_FIXED(5)
#endif
#if FL_MAX_ROWS > 5
FL_BWD_FIXED(6)
#endif
#undef FL_BWD_FIXED

/* dh for sorted rows [r0, r1) and unit blocks [ub, ub + NV) */
static void SUF(bwd_rows)(const SUF(bwd_args) *a, int t, int r0, int r1, int ub, int NV) {
    for (int r = r0; r < r1;) {
        const int mb = r1 - r < FL_MAX_ROWS ? r1 - r : FL_MAX_ROWS;
        switch (mb) { /* the block height fixed at compile time in each */
#if FL_MAX_ROWS > 5
        case 6: SUF(bwd_block_6)(a, t, r, ub, NV); break;
#endif
#if FL_MAX_ROWS > 4
        case 5: SUF(bwd_block_5)(a, t, r, ub, NV); break;
#endif
#if FL_MAX_ROWS > 3
        case 4: SUF(bwd_block_4)(a, t, r, ub, NV); break;
#endif
#if FL_MAX_ROWS > 2
        case 3: SUF(bwd_block_3)(a, t, r, ub, NV); break;
#endif
#if FL_MAX_ROWS > 1
        case 2: SUF(bwd_block_2)(a, t, r, ub, NV); break;
#endif
        default: SUF(bwd_block_1)(a, t, r, ub, NV); break;
        }
        r += mb;
    }
}

/* Backward's dh works on groups of unit blocks as wide as a full row block's sums (4, 2
 * or 1: FL_SUMS_PER_ROW(FL_MAX_ROWS)), then the rest in groups of 2 and 1: group g of nub
 * blocks starts at block *ub and holds *nv of them. Every mode uses the same groups. */
static int SUF(bwd_groups)(int nub) {
    const int w = FL_SUMS_PER_ROW(FL_MAX_ROWS), rest = nub % w;
    return nub / w + (w == 4 ? rest / 2 + rest % 2 : rest);
}

static void SUF(bwd_group)(int nub, int g, int *ub, int *nv) {
    const int w = FL_SUMS_PER_ROW(FL_MAX_ROWS), full = nub / w;
    if (g < full) {
        *ub = g * w, *nv = w;
        return;
    }
    int at = full * w;
    g -= full;
    if (w == 4 && nub - at >= 2) { /* 2 or 3 blocks left: a pair first */
        if (g == 0) {
            *ub = at, *nv = 2;
            return;
        }
        at += 2, g--;
    }
    *ub = at + g, *nv = 1;
}

/* dh for sorted rows [s.r0, s.r1) (those active at step t) and every unit block of the
 * groups [g0, g1) */
static void SUF(bwd_recurrent)(const SUF(bwd_args) *a, int t, fl_share s, int nub, int g0,
                               int g1) {
    const int active = a->bs ? a->bs[t] : a->B;
    const int r1 = s.r1 < active ? s.r1 : active;
    for (int g = g0; g < g1; g++) {
        int ub, nv;
        SUF(bwd_group)(nub, g, &ub, &nv);
        SUF(bwd_rows)(a, t, s.r0, r1, ub, nv);
    }
}

/* One backward call as a pool job:
 *   FL_MODE_ROWS   phase 0: a unit per chunk of rows, every step from T-1 down to 0;
 *   FL_MODE_STEPS  phases 0..T: phase k runs, per (group of unit blocks, row block), dh of
 *                  step T-k (from dz of that step; not in phase 0) and then dz of step
 *                  T-1-k for the same units (not in phase T): dh's units are the gate
 *                  math's next inputs, so one phase per step suffices;
 * then one phase for the gradients shared by every step: FL_G_CHUNKS units of dW_ih,
 * dW_hh and db rows, and FL_M_CHUNKS of dx rows. */
typedef struct {
    SUF(bwd_args) a;
    int mode, nchunks, nub, ngroups, NI, nm;
    long M;
    const R *xr, *hr, *w_ih;
    R *dxr, *dw_ih, *dw_hh, *db;
    SUF(gemm_fn) gemm;
} SUF(bwd_job);

static int SUF(bwd_count)(const void *ctx, int phase) {
    const SUF(bwd_job) *j = ctx;
    const int last = j->mode == FL_MODE_ROWS ? 1 : j->a.T + 1;
    if (phase == last) return FL_G_CHUNKS + j->nm;
    return j->mode == FL_MODE_ROWS ? j->nchunks : j->ngroups * j->nchunks;
}

static void SUF(bwd_shared)(const SUF(bwd_job) *j, int index) {
    const SUF(bwd_args) *a = &j->a;
    const int G = 4 * a->H, H = a->H, NI = j->NI, LZ = a->LZ;
    const long M = j->M;
    if (index < FL_G_CHUNKS) {
        const int g0 = (int)fl_part(G, FL_G_CHUNKS, index);
        const int g1 = (int)fl_part(G, FL_G_CHUNKS, index + 1);
        if (g1 <= g0) return;
        SUF(gemm_rm)(j->gemm, 'T', 'N', g1 - g0, NI, (int)M, a->dz + g0, LZ, j->xr, NI, 0,
                     j->dw_ih + (size_t)g0 * NI, NI);
        SUF(gemm_rm)(j->gemm, 'T', 'N', g1 - g0, H, (int)M, a->dz + g0, LZ, j->hr, H, 0,
                     j->dw_hh + (size_t)g0 * H, H);
        for (int g = g0; g < g1; g++) j->db[g] = 0;
        for (long m = 0; m < M; m++) {
            const R *row = a->dz + m * LZ;
            for (int g = g0; g < g1; g++) j->db[g] += row[g];
        }
        return;
    }
    index -= FL_G_CHUNKS;
    const long m0 = fl_part(M, j->nm, index), m1 = fl_part(M, j->nm, index + 1);
    SUF(gemm_rm)(j->gemm, 'N', 'N', (int)(m1 - m0), NI, G, a->dz + m0 * LZ, LZ, j->w_ih, NI, 0,
                 j->dxr + m0 * NI, NI);
}

static void SUF(bwd_unit)(const void *ctx, int phase, int index) {
    const SUF(bwd_job) *j = ctx;
    const SUF(bwd_args) *a = &j->a;
    const int B = a->B, T = a->T;
    if (phase == (j->mode == FL_MODE_ROWS ? 1 : T + 1)) {
        SUF(bwd_shared)(j, index);
        return;
    }
    if (j->mode == FL_MODE_ROWS) {
        const fl_share s = {fl_chunk_row(B, j->nchunks, index, j->mode),
                            fl_chunk_row(B, j->nchunks, index + 1, j->mode), 0, j->nub};
        for (int t = T - 1; t >= 0; t--) {
            SUF(bwd_gates)(a, t, s);
            SUF(bwd_recurrent)(a, t, s, j->nub, 0, j->ngroups);
        }
        return;
    }
    const int g = index / j->nchunks, c = index % j->nchunks;
    int ub, nv;
    SUF(bwd_group)(j->nub, g, &ub, &nv);
    const fl_share s = {fl_chunk_row(B, j->nchunks, c, j->mode),
                        fl_chunk_row(B, j->nchunks, c + 1, j->mode), ub, ub + nv};
    const int t = T - 1 - phase;
    if (phase > 0) SUF(bwd_recurrent)(a, t + 1, s, j->nub, g, g + 1);
    if (t >= 0) SUF(bwd_gates)(a, t, s);
}

static void SUF(lstm_backward)(int T, int B, int NI, int H, const int *bs, const ptrdiff_t *off,
                               const int *perm, const R *wb, const R *gates, const R *tc,
                               const R *dy, R *dh, R *dc, R *dz, const R *xr, const R *hr,
                               const R *w_ih, SUF(gemm_fn) gemm, R *dxr, R *dw_ih, R *dw_hh,
                               R *db, int how, int nthreads) {
    const int nub = (H + VL - 1) / VL, mode = how & FL_MODE_MASK;
    const long M = off ? (long)off[T] : (long)T * B;
    const SUF(bwd_job) j = {
        {T, B, H, bs, off, perm, wb, gates, tc, dy, dh, dc, dz, FL_DZ_LD(4 * H, (int)sizeof(R))},
        mode, fl_row_chunks(B, mode), nub, SUF(bwd_groups)(nub), NI,
        M < FL_M_CHUNKS ? (int)M : FL_M_CHUNKS, M, xr, hr, w_ih, dxr, dw_ih, dw_hh, db, gemm};
    const int n_phases = (mode == FL_MODE_ROWS ? 1 : T + 1) + 1;
    const fl_job job = {&j, n_phases, SUF(bwd_count), SUF(bwd_unit), nthreads,
                        !(how & FL_NO_WAKE)};
    fl_pool_run(&job);
}

#undef V
#undef IV
#undef UV
#undef VL
/* the template's parameters, so the next instantiation can define them afresh */
#undef R
#undef SUF
#undef FL_EXP_HI
#undef FL_EXP_LO
#undef FL_EXP_TERMS
#undef FL_MANT_BITS
#undef FL_EXP_BIAS
#undef FL_ROUND_MAGIC
