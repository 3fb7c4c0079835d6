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
    int T, B, H, tu, NI;
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

/* xw: NULL (x W_ih^T fused into each step's block) or [M][G] scratch, filled here first
 * by one GEMM per thread over its slice of the rows (w_ih [G][NI], gemm: BLAS) */
static void SUF(lstm_forward)(int T, int B, int NI, int H, const int *bs, const ptrdiff_t *off,
                              const int *perm, const R *xr, const R *wfi, const R *wf,
                              const R *bf, R *hbuf, R *cbuf, R *y, R *gates, R *tc, R *th,
                              const R *w_ih, SUF(gemm_fn) gemm, R *xw, int tu, int nthreads) {
    const SUF(fwd_args) a = {T, B, H, tu, NI, xr, xw, wfi, bs, off, perm, wf, bf,
                             hbuf, cbuf, y, gates, tc, th};
    const int nub = (H + VL - 1) / VL, G = 4 * H;
    const long M = off ? (long)off[T] : (long)T * B;
#pragma omp parallel num_threads(nthreads)
    {
        const unsigned fp = fl_flush_denormals();
        const fl_share s = fl_my_share(B, nub, tu);
        if (xw) {
            const long m0 = fl_split(M, 0), m1 = fl_split(M, 1);
            SUF(gemm_rm)(gemm, 'N', 'T', (int)(m1 - m0), G, NI, xr + m0 * NI, NI, w_ih, NI, 0,
                         xw + m0 * G, G);
#pragma omp barrier
        }
        for (int t = 0; t < T; t++) {
            const R *hp = hbuf + (size_t)(t & 1) * B * H;
            R *hn = hbuf + (size_t)((t + 1) & 1) * B * H;
            SUF(fwd_step)(&a, t, s, hp, hn);
#pragma omp barrier
        }
        fl_restore_fp(fp);
    }
}

/* ---------------------------------- backward --------------------------------- */

typedef struct {
    int T, B, H, tu;
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

static void SUF(bwd_recurrent)(const SUF(bwd_args) *a, int t, fl_share s) {
    const int active = a->bs ? a->bs[t] : a->B;
    const int r1 = s.r1 < active ? s.r1 : active;
    int ub = s.ub0;
    if (FL_SUMS_PER_ROW(FL_MAX_ROWS) == 4) /* as many unit blocks as a full block has sums */
        for (; ub + 4 <= s.ub1; ub += 4) SUF(bwd_rows)(a, t, s.r0, r1, ub, 4);
    if (FL_SUMS_PER_ROW(FL_MAX_ROWS) >= 2)
        for (; ub + 2 <= s.ub1; ub += 2) SUF(bwd_rows)(a, t, s.r0, r1, ub, 2);
    for (; ub < s.ub1; ub++) SUF(bwd_rows)(a, t, s.r0, r1, ub, 1);
}

static void SUF(lstm_backward)(int T, int B, int NI, int H, const int *bs, const ptrdiff_t *off,
                               const int *perm, const R *wb, const R *gates, const R *tc,
                               const R *dy, R *dh, R *dc, R *dz, const R *xr, const R *hr,
                               const R *w_ih, SUF(gemm_fn) gemm, R *dxr, R *dw_ih, R *dw_hh,
                               R *db, int tu, int nthreads) {
    const int LZ = FL_DZ_LD(4 * H, (int)sizeof(R));
    const SUF(bwd_args) a = {T, B, H, tu, bs, off, perm, wb, gates, tc, dy, dh, dc, dz, LZ};
    const int nub = (H + VL - 1) / VL, G = 4 * H;
    const long M = off ? (long)off[T] : (long)T * B;
#pragma omp parallel num_threads(nthreads)
    {
        const unsigned fp = fl_flush_denormals();
        const fl_share s = fl_my_share(B, nub, tu);
        for (int t = T - 1; t >= 0; t--) {
            SUF(bwd_gates)(&a, t, s);
#pragma omp barrier
            /* dh for the same rows and units this thread reads in the next bwd_gates, from
             * dz rows of step t only: no second barrier is needed */
            SUF(bwd_recurrent)(&a, t, s);
        }
#pragma omp barrier
        /* the weights are shared by every step: their gradients are sums over all of them */
        const int g0 = (int)fl_split(G, 0), g1 = (int)fl_split(G, 1);
        SUF(gemm_rm)(gemm, 'T', 'N', g1 - g0, NI, (int)M, dz + g0, LZ, xr, NI, 0,
                     dw_ih + (size_t)g0 * NI, NI);
        SUF(gemm_rm)(gemm, 'T', 'N', g1 - g0, H, (int)M, dz + g0, LZ, hr, H, 0,
                     dw_hh + (size_t)g0 * H, H);
        for (int g = g0; g < g1; g++) db[g] = 0;
        for (long m = 0; m < M; m++) {
            const R *row = dz + m * LZ;
            for (int g = g0; g < g1; g++) db[g] += row[g];
        }
        const long m0 = fl_split(M, 0), m1 = fl_split(M, 1);
        SUF(gemm_rm)(gemm, 'N', 'N', (int)(m1 - m0), NI, G, dz + m0 * LZ, LZ, w_ih, NI, 0,
                     dxr + m0 * NI, NI);
        fl_restore_fp(fp);
    }
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
