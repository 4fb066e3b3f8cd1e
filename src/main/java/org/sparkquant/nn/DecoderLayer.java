package org.sparkquant.nn;

import java.nio.FloatBuffer;

import org.nd4j.linalg.api.ndarray.INDArray;
import org.sparkquant.model.LinearModule;
import org.sparkquant.model.LinearModule.Input;
import org.sparkquant.model.ModelConfig;

/**
 * The decoder layer of the llama family, computed like Hugging Face transformers in fp32:
 * <pre>
 *   x  = RMSNorm(h)                                   → hook ATTN_IN
 *   q, k, v = x·Wqᵀ (+b), x·Wkᵀ (+b), x·Wvᵀ (+b)      (qwen3: per-head RMSNorm of q and k)
 *   q, k = RoPE(q), RoPE(k)
 *   a  = softmax(q·kᵀ/√d + causal mask) · v            per query head, k/v heads shared (GQA) → hook ATTN_OUT_IN
 *   h' = h + a·Woᵀ (+b)
 *   x  = RMSNorm(h')                                  → hook MLP_IN
 *   m  = silu(x·Wgateᵀ) · (x·Wupᵀ)                      → hook DOWN_IN
 *   h  = h' + m·Wdownᵀ
 * </pre>
 * A mixture-of-experts layer replaces the MLP (as transformers' Mixtral/Qwen2-MoE/Qwen3-MoE sparse blocks do):
 * <pre>
 *   p  = softmax(x·Wrouterᵀ) in fp32; the top-k experts of each token (ties: lower index), weights p (divided by
 *        their sum when norm_topk_prob)
 *   for each expert e with tokens, in ascending order: xₑ = rows of x routed to e   → expert hook MLP_IN
 *        aₑ = silu(xₑ·Wgateₑᵀ)·(xₑ·Wupₑᵀ)                                          → expert hook DOWN_IN
 *        m[token] += weight · (aₑ·Wdownₑᵀ)[row]
 *   qwen2_moe: m += sigmoid(x·Wsgᵀ) · (silu(x·Wsgateᵀ)·(x·Wsupᵀ) → hook SHARED_DOWN_IN)·Wsdownᵀ
 *   h  = h' + m
 * </pre>
 * A batch of sequences is processed at once as a {@code [tokens, hidden]} matrix (see {@link SequenceBatch}): the
 * projections are single gemms over all tokens; attention runs per sequence and head, in blocks of query rows that
 * only multiply the keys they can see (causal, and the mistral sliding window when it is shorter than the sequence).
 * <p>
 * Weights come in per call, so one instance serves every layer. Scratch arrays are kept between calls and reused while
 * the token count stays the same: not thread-safe, use one instance per thread.
 */
public final class DecoderLayer implements AutoCloseable {
    /** Query rows per attention block: bounds the score matrix to {@code QUERY_BLOCK × sequence length}. */
    private static final int QUERY_BLOCK = 128;

    private final ModelConfig config;
    private final Rope rope;
    private final float eps;
    private final float scaling;
    private Scratch scratch;

    public DecoderLayer(ModelConfig config) {
        this.config = config;
        this.rope = new Rope(config.rope(), config.headDim());
        this.eps = (float) config.rmsNormEps();
        this.scaling = (float) Math.pow(config.headDim(), -0.5);
    }

    public ModelConfig config() {
        return config;
    }

    /** Runs the layer over {@code hidden} ({@code [batch.tokens(), hidden]}, row-major fp32), updating it in place. */
    public void forward(INDArray hidden, SequenceBatch batch, LayerWeights weights, LayerHooks hooks) {
        run(hidden, batch, weights, hooks, null);
    }

    /**
     * Runs the layer only as far as needed to deliver the input {@code last} to the hooks (earlier inputs are
     * delivered too); {@code hidden} is left unchanged. GPTQ uses this to collect the input of a module group with the
     * groups before it already quantized.
     */
    public void runUntil(INDArray hidden, SequenceBatch batch, LayerWeights weights, LayerHooks hooks, Input last) {
        run(hidden, batch, weights, hooks, last);
    }

    private void run(INDArray hidden, SequenceBatch batch, LayerWeights w, LayerHooks hooks, Input last) {
        int n = batch.tokens();
        int h = config.hiddenSize();
        int heads = config.numHeads();
        int kvHeads = config.numKvHeads();
        int d = config.headDim();
        Kernels.requireMatrix(hidden, n, h, "hidden states");
        Scratch s = scratch(n, batch.maxLength());
        FloatBuffer hb = Kernels.floats(hidden);

        Kernels.rmsNorm(hb, s.normedBuf, n, h, w.inputNorm(), eps);
        hooks.onInput(Input.ATTN_IN, s.normed, batch);
        if (last == Input.ATTN_IN) {
            return;
        }
        Kernels.linear(s.normed, w.linear("q_proj"), s.q);
        Kernels.linear(s.normed, w.linear("k_proj"), s.k);
        Kernels.linear(s.normed, w.linear("v_proj"), s.v);
        if (w.qNorm() != null) {
            Kernels.rmsNorm(s.qBuf, s.qBuf, n * heads, d, w.qNorm(), eps);
            Kernels.rmsNorm(s.kBuf, s.kBuf, n * kvHeads, d, w.kNorm(), eps);
        }
        for (int i = 0, off = 0; i < batch.count(); off += batch.length(i), i++) {
            rope.apply(s.qBuf, off, batch.length(i), heads);
            rope.apply(s.kBuf, off, batch.length(i), kvHeads);
        }
        attention(s, batch);
        hooks.onInput(Input.ATTN_OUT_IN, s.attn, batch);
        if (last == Input.ATTN_OUT_IN) {
            return;
        }
        Kernels.linear(s.attn, w.linear("o_proj"), s.proj);
        Kernels.add(hb, s.projBuf, s.residBuf, n * h);

        Kernels.rmsNorm(s.residBuf, s.normedBuf, n, h, w.postAttentionNorm(), eps);
        hooks.onInput(Input.MLP_IN, s.normed, batch);
        if (w.experts() > 0) {
            if (!experts(s, batch, w, hooks, last)) {
                Kernels.add(s.residBuf, s.projBuf, hb, n * h);
            }
            return;
        }
        if (last == Input.MLP_IN) {
            return;
        }
        Kernels.linear(s.normed, w.linear("gate_proj"), s.gate);
        Kernels.linear(s.normed, w.linear("up_proj"), s.up);
        Kernels.siluMul(s.gateBuf, s.upBuf, n * config.intermediateSize());
        hooks.onInput(Input.DOWN_IN, s.gate, batch);
        if (last == Input.DOWN_IN) {
            return;
        }
        Kernels.linear(s.gate, w.linear("down_proj"), s.proj);
        Kernels.add(s.residBuf, s.projBuf, hb, n * h);
    }

    /**
     * The routing of {@code x} ({@code [tokens, hidden]}) by a router: for each token its top-k experts (descending
     * probability, ties to the lower index) and their weights, as transformers' top-k routers compute them.
     */
    public static Routing route(INDArray x, LinearWeights router, int topK, boolean normalize) {
        int n = x.rows();
        int experts = router.outFeatures();
        INDArray logits = Kernels.matrix(n, experts);
        try {
            Kernels.linear(x, router, logits);
            FloatBuffer lb = Kernels.floats(logits);
            int[] chosen = new int[n * topK];
            float[] weights = new float[n * topK];
            float[] p = new float[experts];
            boolean[] taken = new boolean[experts];
            for (int t = 0; t < n; t++) {
                float max = Float.NEGATIVE_INFINITY;
                for (int e = 0; e < experts; e++) {
                    p[e] = lb.get(t * experts + e);
                    max = Math.max(max, p[e]);
                }
                double sum = 0;
                for (int e = 0; e < experts; e++) {
                    p[e] = (float) Math.exp(p[e] - max);
                    sum += p[e];
                }
                float inv = 1f / (float) sum;
                for (int e = 0; e < experts; e++) {
                    p[e] *= inv;
                }
                java.util.Arrays.fill(taken, false);
                float total = 0f;
                for (int j = 0; j < topK; j++) {
                    int best = -1;
                    for (int e = 0; e < experts; e++) {
                        if (!taken[e] && (best < 0 || p[e] > p[best])) {
                            best = e;
                        }
                    }
                    taken[best] = true;
                    chosen[t * topK + j] = best;
                    weights[t * topK + j] = p[best];
                    total += p[best];
                }
                if (normalize) {
                    for (int j = 0; j < topK; j++) {
                        weights[t * topK + j] /= total;
                    }
                }
            }
            return new Routing(experts, topK, chosen, weights);
        } finally {
            logits.close();
        }
    }

    /**
     * Expert {@code expert}'s down_proj input {@code silu(x·Wgateᵀ)·(x·Wupᵀ)} for every row of {@code x} (the MLP input
     * of all tokens, as if every one were routed to it): {@code [rows, expert width]}, to be closed by the caller.
     */
    public static INDArray expertActivation(INDArray x, LayerWeights w, int expert) {
        LinearWeights gate = w.expert(expert, "gate_proj");
        int rows = x.rows();
        int width = gate.outFeatures();
        INDArray g = Kernels.matrix(rows, width);
        try (INDArray u = Kernels.matrix(rows, width)) {
            Kernels.linear(x, gate, g);
            Kernels.linear(x, w.expert(expert, "up_proj"), u);
            Kernels.siluMul(Kernels.floats(g), Kernels.floats(u), rows * width);
        }
        return g;
    }

    /** Per token (row) its {@code topK} experts and weights, flattened {@code [tokens, topK]}. */
    public record Routing(int experts, int topK, int[] chosen, float[] weights) {
        public int tokens() {
            return chosen.length / topK;
        }

        /** The token rows routed to each expert, ascending. */
        public int[][] rowsByExpert() {
            int[] counts = new int[experts];
            for (int e : chosen) {
                counts[e]++;
            }
            int[][] rows = new int[experts][];
            for (int e = 0; e < experts; e++) {
                rows[e] = new int[counts[e]];
            }
            int[] fill = new int[experts];
            for (int i = 0; i < chosen.length; i++) {
                int e = chosen[i];
                rows[e][fill[e]++] = i / topK;
            }
            return rows;
        }

        /** The weight of expert {@code expert} for token {@code row} (0 when not routed there). */
        public float weight(int row, int expert) {
            for (int j = 0; j < topK; j++) {
                if (chosen[row * topK + j] == expert) {
                    return weights[row * topK + j];
                }
            }
            return 0f;
        }
    }

    /**
     * The MoE block over {@code s.normed} into {@code s.proj}; false when it ran to the end, true when it stopped after
     * delivering {@code last}.
     */
    private boolean experts(Scratch s, SequenceBatch batch, LayerWeights w, LayerHooks hooks, Input last) {
        int n = batch.tokens();
        int h = config.hiddenSize();
        Routing routing = route(s.normed, w.router(), config.moe().topK(), config.moe().normTopkProb());
        int[][] rowsOf = routing.rowsByExpert();
        float[] out = new float[n * h];
        for (int e = 0; e < w.experts(); e++) {
            int[] rows = rowsOf[e];
            if (rows.length == 0) {
                continue; // transformers skips experts without tokens too
            }
            int c = rows.length;
            LinearWeights gate = w.expert(e, "gate_proj");
            int width = gate.outFeatures();
            INDArray xe = Kernels.matrix(c, h);
            INDArray ge = null;
            INDArray ue = null;
            INDArray ye = null;
            try {
                FloatBuffer xb = Kernels.floats(xe);
                for (int i = 0; i < c; i++) {
                    for (int j = 0; j < h; j++) {
                        xb.put(i * h + j, s.normedBuf.get(rows[i] * h + j));
                    }
                }
                hooks.onExpertInput(Input.MLP_IN, e, xe, rows, batch);
                if (last == Input.MLP_IN) {
                    continue;
                }
                ge = Kernels.matrix(c, width);
                ue = Kernels.matrix(c, width);
                Kernels.linear(xe, gate, ge);
                Kernels.linear(xe, w.expert(e, "up_proj"), ue);
                Kernels.siluMul(Kernels.floats(ge), Kernels.floats(ue), c * width);
                hooks.onExpertInput(Input.DOWN_IN, e, ge, rows, batch);
                if (last == Input.DOWN_IN) {
                    continue;
                }
                ye = Kernels.matrix(c, h);
                Kernels.linear(ge, w.expert(e, "down_proj"), ye);
                FloatBuffer yb = Kernels.floats(ye);
                for (int i = 0; i < c; i++) {
                    float weight = routing.weight(rows[i], e);
                    int base = rows[i] * h;
                    for (int j = 0; j < h; j++) {
                        out[base + j] += yb.get(i * h + j) * weight;
                    }
                }
            } finally {
                for (INDArray a : new INDArray[] {xe, ge, ue, ye}) {
                    if (a != null && a.closeable()) {
                        a.close();
                    }
                }
            }
        }
        if (last == Input.MLP_IN || last == Input.DOWN_IN) {
            return true;
        }
        if (w.sharedExpert()) {
            LinearWeights gate = w.linear(LinearModule.SHARED_KINDS.get(0));
            int width = gate.outFeatures();
            INDArray sg = Kernels.matrix(n, width);
            INDArray su = Kernels.matrix(n, width);
            INDArray sy = Kernels.matrix(n, h);
            INDArray sgate = Kernels.matrix(n, 1);
            try {
                Kernels.linear(s.normed, gate, sg);
                Kernels.linear(s.normed, w.linear(LinearModule.SHARED_KINDS.get(1)), su);
                Kernels.siluMul(Kernels.floats(sg), Kernels.floats(su), n * width);
                hooks.onInput(Input.SHARED_DOWN_IN, sg, batch);
                if (last == Input.SHARED_DOWN_IN) {
                    return true;
                }
                Kernels.linear(sg, w.linear(LinearModule.SHARED_KINDS.get(2)), sy);
                Kernels.linear(s.normed, w.sharedGate(), sgate);
                FloatBuffer yb = Kernels.floats(sy);
                FloatBuffer gb = Kernels.floats(sgate);
                for (int t = 0; t < n; t++) {
                    float g = (float) (1.0 / (1.0 + Math.exp(-gb.get(t))));
                    for (int j = 0; j < h; j++) {
                        out[t * h + j] += g * yb.get(t * h + j);
                    }
                }
            } finally {
                for (INDArray a : new INDArray[] {sg, su, sy, sgate}) {
                    if (a.closeable()) {
                        a.close();
                    }
                }
            }
        }
        s.projBuf.put(0, out);
        return false;
    }

    private void attention(Scratch s, SequenceBatch batch) {
        int heads = config.numHeads();
        int group = config.groupSize();
        int d = config.headDim();
        int qDim = config.qDim();
        int kvDim = config.kvDim();
        int window = config.slidingWindow();
        FloatBuffer scores = s.scoresBuf;
        for (int b = 0, off = 0; b < batch.count(); off += batch.length(b), b++) {
            int length = batch.length(b);
            for (int head = 0; head < heads; head++) {
                int kvHead = head / group;
                for (int r0 = 0; r0 < length; r0 += QUERY_BLOCK) {
                    int r1 = Math.min(length, r0 + QUERY_BLOCK);
                    int rows = r1 - r0;
                    int kLo = window > 0 ? Math.max(0, r0 - window + 1) : 0;
                    int cols = r1 - kLo;
                    Kernels.gemm(rows, cols, d, scaling, s.q, (long) (off + r0) * qDim + head * d, qDim,
                            s.k, (long) (off + kLo) * kvDim + kvHead * d, kvDim, true, 0f, s.scores, 0, cols);
                    for (int r = 0; r < rows; r++) {
                        int pos = r0 + r;
                        int lo = (window > 0 ? Math.max(0, pos - window + 1) : 0) - kLo;
                        softmaxRow(scores, r * cols, cols, lo, pos - kLo);
                    }
                    Kernels.gemm(rows, d, cols, 1f, s.scores, 0, cols, s.v, (long) (off + kLo) * kvDim + kvHead * d,
                            kvDim, false, 0f, s.attn, (long) (off + r0) * qDim + head * d, qDim);
                }
            }
        }
    }

    /** Softmax of {@code row[lo..hi]} (inclusive) in fp32 as torch does it; masked entries become exactly 0. */
    private static void softmaxRow(FloatBuffer buf, int base, int cols, int lo, int hi) {
        float max = Float.NEGATIVE_INFINITY;
        for (int j = lo; j <= hi; j++) {
            max = Math.max(max, buf.get(base + j));
        }
        double sum = 0;
        for (int j = lo; j <= hi; j++) {
            float e = (float) Math.exp(buf.get(base + j) - max);
            buf.put(base + j, e);
            sum += e;
        }
        float inv = 1f / (float) sum;
        for (int j = 0; j < lo; j++) {
            buf.put(base + j, 0f);
        }
        for (int j = lo; j <= hi; j++) {
            buf.put(base + j, buf.get(base + j) * inv);
        }
        for (int j = hi + 1; j < cols; j++) {
            buf.put(base + j, 0f);
        }
    }

    private Scratch scratch(int tokens, int maxLength) {
        long widest = Math.max(Math.max(config.qDim(), config.hiddenSize()), config.intermediateSize());
        if ((long) tokens * widest > Integer.MAX_VALUE || (long) QUERY_BLOCK * maxLength > Integer.MAX_VALUE) {
            throw new IllegalArgumentException(tokens + " tokens are too many for one batch; split it");
        }
        if (scratch == null || scratch.tokens != tokens || scratch.maxLength < maxLength) {
            if (scratch != null) {
                scratch.close();
            }
            scratch = new Scratch(config, tokens, maxLength);
        }
        return scratch;
    }

    /** Releases the scratch memory now rather than at garbage collection. */
    @Override
    public void close() {
        if (scratch != null) {
            scratch.close();
            scratch = null;
        }
    }

    private static final class Scratch {
        final int tokens;
        final int maxLength;
        final INDArray normed;
        final INDArray q;
        final INDArray k;
        final INDArray v;
        final INDArray attn;
        final INDArray proj;
        final INDArray resid;
        final INDArray gate;
        final INDArray up;
        final INDArray scores;
        final FloatBuffer normedBuf;
        final FloatBuffer qBuf;
        final FloatBuffer kBuf;
        final FloatBuffer projBuf;
        final FloatBuffer residBuf;
        final FloatBuffer gateBuf;
        final FloatBuffer upBuf;
        final FloatBuffer scoresBuf;

        Scratch(ModelConfig c, int tokens, int maxLength) {
            this.tokens = tokens;
            this.maxLength = maxLength;
            normed = Kernels.matrix(tokens, c.hiddenSize());
            q = Kernels.matrix(tokens, c.qDim());
            k = Kernels.matrix(tokens, c.kvDim());
            v = Kernels.matrix(tokens, c.kvDim());
            attn = Kernels.matrix(tokens, c.qDim());
            proj = Kernels.matrix(tokens, c.hiddenSize());
            resid = Kernels.matrix(tokens, c.hiddenSize());
            gate = Kernels.matrix(tokens, c.intermediateSize());
            up = Kernels.matrix(tokens, c.intermediateSize());
            scores = Kernels.matrix(Math.min(QUERY_BLOCK, maxLength), maxLength);
            normedBuf = Kernels.floats(normed);
            qBuf = Kernels.floats(q);
            kBuf = Kernels.floats(k);
            projBuf = Kernels.floats(proj);
            residBuf = Kernels.floats(resid);
            gateBuf = Kernels.floats(gate);
            upBuf = Kernels.floats(up);
            scoresBuf = Kernels.floats(scores);
        }

        void close() {
            for (INDArray a : new INDArray[] {normed, q, k, v, attn, proj, resid, gate, up, scores}) {
                if (a.closeable()) {
                    a.close();
                }
            }
        }
    }
}
