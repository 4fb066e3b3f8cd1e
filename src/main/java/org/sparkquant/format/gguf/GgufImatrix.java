package org.sparkquant.format.gguf;

import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.sparkquant.SparkQuantException;
import org.sparkquant.io.Storage;

/**
 * An importance matrix as llama.cpp's llama-imatrix writes it and llama-quantize {@code --imatrix} reads it: per
 * weight tensor (GGUF name, e.g. {@code blk.0.attn_q.weight}) the sum over calibration tokens of each input
 * column's squared activation, and the number of tokens. GPTQ's Hessian carries the same statistic:
 * {@code H = 2/N·Σ xxᵀ}, so {@code Σ x² = diag(H)·N/2}. llama-quantize uses {@code sums / count} as the column
 * weights of its importance-aware quantizers ({@link #importance}).
 *
 * <p>Two file formats (both read by the llama.cpp build the fixtures come from, through common_imatrix_load):
 * <ul>
 *   <li>GGUF (current, {@code .gguf}): {@code general.type = "imatrix"}, {@code imatrix.datasets} (string array),
 *       {@code imatrix.chunk_count} and {@code imatrix.chunk_size} (u32; llama-quantize refuses a GGUF imatrix
 *       without these three), and per entry, sorted by name, the F32 tensors {@code <name>.in_sum2}
 *       ({@code [columns, matrices]}: the raw sums) and {@code <name>.counts} ({@code [1, matrices]}: tokens);</li>
 *   <li>legacy binary ({@code .dat}): i32 entry count; per entry (sorted) i32 name length, name, i32 ncall, i32
 *       value count, float32 values {@code sums/count·ncall} with {@code ncall = ⌈count / chunk_size⌉}; then i32
 *       chunk count, i32 length and the dataset name.</li>
 * </ul>
 * Dense models have one matrix per entry; several (experts) are kept as they are. Immutable; see {@link Builder}.
 */
public final class GgufImatrix {
    /**
     * One tensor's statistic: {@code sums} holds {@code columns × matrices} sums of squares (matrix-major),
     * {@code counts} the tokens of each matrix.
     */
    public record Entry(float[] sums, long[] counts) {
        public Entry {
            if (counts.length == 0 || sums.length == 0 || sums.length % counts.length != 0) {
                throw new IllegalArgumentException(sums.length + " sums for " + counts.length + " matrices");
            }
            sums = sums.clone();
            counts = counts.clone();
        }

        public int columns() {
            return sums.length / counts.length;
        }

        @Override
        public float[] sums() {
            return sums.clone();
        }

        @Override
        public long[] counts() {
            return counts.clone();
        }
    }

    private final Map<String, Entry> entries;
    private final List<String> datasets;
    private final int chunkCount;
    private final int chunkSize;

    private GgufImatrix(Map<String, Entry> entries, List<String> datasets, int chunkCount, int chunkSize) {
        this.entries = Collections.unmodifiableMap(new TreeMap<>(entries));
        this.datasets = List.copyOf(datasets);
        this.chunkCount = chunkCount;
        this.chunkSize = chunkSize;
    }

    public static Builder builder(int chunkSize) {
        return new Builder(chunkSize);
    }

    /** Accumulates sums of squared activations per tensor (e.g. from GPTQ Hessian diagonals), then builds. */
    public static final class Builder {
        private final int chunkSize;
        private final Map<String, double[]> sums = new TreeMap<>();
        private final Map<String, Long> counts = new TreeMap<>();
        /** Stacked expert tensors: per tensor, each expert's sums and tokens (an expert never added: zeros, 0). */
        private final Map<String, double[][]> expertSums = new TreeMap<>();
        private final Map<String, long[]> expertCounts = new TreeMap<>();
        private final List<String> datasets = new ArrayList<>();
        private int chunks = -1;

        private Builder(int chunkSize) {
            if (chunkSize <= 0) {
                throw new IllegalArgumentException("chunk size (tokens per calibration sample) must be positive");
            }
            this.chunkSize = chunkSize;
        }

        /** Adds {@code Σ x²} per column over {@code tokens} tokens to a tensor's entry. */
        public Builder add(String tensor, double[] sumOfSquares, long tokens) {
            double[] s = sums.get(tensor);
            if (s == null) {
                sums.put(tensor, sumOfSquares.clone());
            } else {
                if (s.length != sumOfSquares.length) {
                    throw new IllegalArgumentException(tensor + ": " + sumOfSquares.length + " columns, had "
                            + s.length);
                }
                for (int i = 0; i < s.length; i++) {
                    s[i] += sumOfSquares[i];
                }
            }
            counts.merge(tensor, tokens, Long::sum);
            return this;
        }

        /**
         * Adds {@code Σ x²} per column over {@code tokens} tokens to expert {@code expert}'s slice of a stacked
         * expert tensor of {@code experts} experts (llama-imatrix's per-expert statistics of a 3-D tensor).
         */
        public Builder addExpert(String tensor, int expert, int experts, double[] sumOfSquares, long tokens) {
            if (sums.containsKey(tensor)) {
                throw new IllegalArgumentException(tensor + " has a single-matrix entry");
            }
            double[][] m = expertSums.computeIfAbsent(tensor, k -> new double[experts][]);
            long[] c = expertCounts.computeIfAbsent(tensor, k -> new long[experts]);
            if (m.length != experts || expert < 0 || expert >= experts) {
                throw new IllegalArgumentException(tensor + ": expert " + expert + " of " + experts + ", had "
                        + m.length + " experts");
            }
            for (double[] other : m) {
                if (other != null && other.length != sumOfSquares.length) {
                    throw new IllegalArgumentException(tensor + ": " + sumOfSquares.length + " columns, had "
                            + other.length);
                }
            }
            if (m[expert] == null) {
                m[expert] = new double[sumOfSquares.length];
            }
            for (int i = 0; i < sumOfSquares.length; i++) {
                m[expert][i] += sumOfSquares[i];
            }
            c[expert] += tokens;
            return this;
        }

        /**
         * {@link #add} under the GGUF name of a Hugging Face linear weight, e.g.
         * {@code model.layers.3.mlp.down_proj.weight} → {@code blk.3.ffn_down.weight}; {@code sumOfSquares} are of
         * that module's input.
         */
        public Builder addHf(String architecture, String hfWeight, double[] sumOfSquares, long tokens) {
            String name = GgufNames.ggufName(architecture, hfWeight).orElseThrow(
                    () -> SparkQuantException.badInput(hfWeight + " has no GGUF tensor"));
            return add(name, sumOfSquares, tokens);
        }

        /**
         * {@link #addHf} for a model whose layers have {@code experts} routed experts: an expert's weight adds to
         * its slice of the stacked tensor ({@link #addExpert}), any other weight as {@link #addHf}.
         */
        public Builder addHf(String architecture, String hfWeight, int experts, double[] sumOfSquares, long tokens) {
            GgufNames.Slot slot = GgufNames.slot(architecture, hfWeight).orElseThrow(
                    () -> SparkQuantException.badInput(hfWeight + " has no GGUF tensor"));
            return slot.stacked() ? addExpert(slot.name(), slot.expert(), experts, sumOfSquares, tokens)
                    : add(slot.name(), sumOfSquares, tokens);
        }

        /**
         * Adds a Hessian diagonal {@code diag(2/N·Σ xxᵀ)} of {@code tokens} (= N) tokens, i.e.
         * {@code Σ x² = diag·N/2}.
         */
        public Builder addHessianDiagonal(String tensor, double[] diagonal, long tokens) {
            double[] s = new double[diagonal.length];
            for (int i = 0; i < s.length; i++) {
                s[i] = diagonal[i] * tokens / 2.0;
            }
            return add(tensor, s, tokens);
        }

        public Builder dataset(String name) {
            datasets.add(name);
            return this;
        }

        /** The number of calibration chunks (default: the largest token count / chunk size, rounded up). */
        public Builder chunks(int n) {
            this.chunks = n;
            return this;
        }

        public GgufImatrix build() {
            Map<String, Entry> e = new LinkedHashMap<>();
            long max = 0;
            for (Map.Entry<String, double[]> s : sums.entrySet()) {
                double[] d = s.getValue();
                float[] f = new float[d.length];
                for (int i = 0; i < d.length; i++) {
                    f[i] = (float) d[i];
                    if (!Float.isFinite(f[i])) {
                        throw SparkQuantException.badInput("imatrix entry " + s.getKey() + ": non-finite sum at column "
                                + i);
                    }
                }
                long c = counts.get(s.getKey());
                max = Math.max(max, c);
                e.put(s.getKey(), new Entry(f, new long[] {c}));
            }
            for (Map.Entry<String, double[][]> s : expertSums.entrySet()) {
                double[][] m = s.getValue();
                int cols = java.util.Arrays.stream(m).filter(java.util.Objects::nonNull).findFirst()
                        .orElseThrow().length;
                float[] f = new float[cols * m.length];
                for (int x = 0; x < m.length; x++) {
                    for (int i = 0; m[x] != null && i < cols; i++) {
                        f[x * cols + i] = (float) m[x][i];
                        if (!Float.isFinite(f[x * cols + i])) {
                            throw SparkQuantException.badInput("imatrix entry " + s.getKey() + ": non-finite sum of"
                                    + " expert " + x + " at column " + i);
                        }
                    }
                }
                long[] c = expertCounts.get(s.getKey());
                for (long v : c) {
                    max = Math.max(max, v);
                }
                e.put(s.getKey(), new Entry(f, c));
            }
            // entries sorted by name, as llama-imatrix writes them
            Map<String, Entry> sorted = new LinkedHashMap<>();
            new TreeMap<>(e).forEach(sorted::put);
            e = sorted;
            int n = chunks >= 0 ? chunks : (int) ((max + chunkSize - 1) / chunkSize);
            return new GgufImatrix(e, datasets, n, chunkSize);
        }
    }

    public Map<String, Entry> entries() {
        return entries;
    }

    public List<String> datasets() {
        return datasets;
    }

    public int chunkCount() {
        return chunkCount;
    }

    public int chunkSize() {
        return chunkSize;
    }

    /**
     * The column weights llama-quantize derives for a tensor ({@code sums / count}, matrix by matrix; 1 for a matrix
     * that saw no token), or null when the tensor has no entry.
     */
    public float[] importance(String tensor) {
        Entry e = entries.get(tensor);
        if (e == null) {
            return null;
        }
        int cols = e.columns();
        float[] out = new float[e.sums.length];
        for (int m = 0; m < e.counts.length; m++) {
            float count = (float) e.counts[m];
            for (int i = 0; i < cols; i++) {
                out[m * cols + i] = count > 0 ? e.sums[m * cols + i] / count : 1f;
            }
        }
        return out;
    }

    /** Writes the GGUF format, or the legacy one when the URI ends in ".dat". */
    public void write(Storage storage, String uri) {
        try (OutputStream out = new BufferedOutputStream(storage.create(uri), 1 << 16)) {
            if (uri.endsWith(".dat")) {
                writeLegacy(out);
            } else {
                writeGguf(out);
            }
        } catch (IOException e) {
            throw SparkQuantException.badInput("cannot write " + uri + ": " + e.getMessage(), e);
        }
    }

    /** The GGUF imatrix (the stream is closed). */
    public void writeGguf(OutputStream out) throws IOException {
        Map<String, GgufValue> md = new LinkedHashMap<>();
        md.put("general.type", GgufValue.string("imatrix"));
        md.put("imatrix.datasets", GgufValue.stringArray(datasets));
        md.put("imatrix.chunk_count", GgufValue.u32(chunkCount));
        md.put("imatrix.chunk_size", GgufValue.u32(chunkSize));
        List<GgufTensor> tensors = new ArrayList<>();
        for (Map.Entry<String, Entry> e : entries.entrySet()) {
            int mats = e.getValue().counts.length;
            tensors.add(new GgufTensor(e.getKey() + ".in_sum2", new long[] {e.getValue().columns(), mats},
                    GgmlType.F32));
            tensors.add(new GgufTensor(e.getKey() + ".counts", new long[] {1, mats}, GgmlType.F32));
        }
        try (GgufWriter w = GgufWriter.create(out, md, tensors)) {
            for (Map.Entry<String, Entry> e : entries.entrySet()) {
                w.writeTensor(e.getKey() + ".in_sum2", floats(e.getValue().sums));
                float[] c = new float[e.getValue().counts.length];
                for (int i = 0; i < c.length; i++) {
                    c[i] = (float) e.getValue().counts[i];
                }
                w.writeTensor(e.getKey() + ".counts", floats(c));
            }
        }
    }

    /** The legacy binary imatrix (the stream is closed). */
    public void writeLegacy(OutputStream out) throws IOException {
        try (out) {
            out.write(i32(entries.size()));
            for (Map.Entry<String, Entry> e : entries.entrySet()) {
                Entry en = e.getValue();
                byte[] name = e.getKey().getBytes(StandardCharsets.UTF_8);
                out.write(i32(name.length));
                out.write(name);
                long max = 0;
                for (long c : en.counts) {
                    max = Math.max(max, c);
                }
                int ncall = (int) ((max + chunkSize - 1) / chunkSize);
                out.write(i32(ncall));
                out.write(i32(en.sums.length));
                int per = en.sums.length / en.counts.length;
                float[] v = new float[en.sums.length];
                for (int i = 0; i < v.length; i++) {
                    float count = (float) en.counts[i / per];
                    float value = en.sums[i];
                    if (count == 0f) {
                        value = 1f; // llama-imatrix stores 1 for a matrix without data
                        count = 1f;
                    }
                    v[i] = value / count * (float) ncall;
                }
                out.write(floats(v));
            }
            out.write(i32(chunkCount));
            byte[] dataset = (datasets.isEmpty() ? "" : datasets.get(datasets.size() - 1))
                    .getBytes(StandardCharsets.UTF_8);
            out.write(i32(dataset.length));
            out.write(dataset);
        }
    }

    /** Reads either format (GGUF when the file starts with the GGUF magic). */
    public static GgufImatrix read(Storage storage, String uri) {
        byte[] bytes = storage.readAll(uri);
        if (bytes.length >= 4 && ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).getInt(0) == GgufLayout.MAGIC) {
            return readGguf(bytes, uri);
        }
        return readLegacy(bytes, uri);
    }

    static GgufImatrix readGguf(byte[] bytes, String uri) {
        try (GgufReader r = GgufReader.open(GgufSource.of(bytes), uri)) {
            List<String> datasets = r.get("imatrix.datasets") == null ? List.of()
                    : r.get("imatrix.datasets").asStrings();
            int chunks = r.get("imatrix.chunk_count") == null ? 0 : (int) r.get("imatrix.chunk_count").asLong();
            int size = r.get("imatrix.chunk_size") == null ? 0 : (int) r.get("imatrix.chunk_size").asLong();
            Map<String, float[]> sums = new TreeMap<>();
            Map<String, float[]> counts = new TreeMap<>();
            for (GgufTensorInfo t : r.tensors()) {
                if (t.type() != GgmlType.F32) {
                    throw SparkQuantException.badInput(uri + ": imatrix tensor " + t.name() + " is not F32");
                }
                if (t.name().endsWith(".in_sum2")) {
                    sums.put(t.name().substring(0, t.name().length() - 8), r.readFloats(t.name()));
                } else if (t.name().endsWith(".counts")) {
                    counts.put(t.name().substring(0, t.name().length() - 7), r.readFloats(t.name()));
                }
            }
            Map<String, Entry> e = new LinkedHashMap<>();
            for (Map.Entry<String, float[]> s : sums.entrySet()) {
                float[] c = counts.get(s.getKey());
                if (c == null) {
                    throw SparkQuantException.badInput(uri + ": " + s.getKey() + " has sums but no counts");
                }
                long[] lc = new long[c.length];
                for (int i = 0; i < c.length; i++) {
                    lc[i] = Math.round(c[i]);
                }
                e.put(s.getKey(), new Entry(s.getValue(), lc));
            }
            if (!sums.keySet().containsAll(counts.keySet())) {
                throw SparkQuantException.badInput(uri + ": counts without sums");
            }
            return new GgufImatrix(e, datasets, chunks, size);
        }
    }

    /**
     * The legacy format keeps only {@code sums/count·ncall} and ncall; it is read back as sums = value·chunkSize with
     * count = ncall·chunkSize for an assumed chunk size of 1 (so {@link #importance} is value/ncall, what
     * llama-quantize computes).
     */
    static GgufImatrix readLegacy(byte[] bytes, String uri) {
        ByteBuffer b = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        try {
            int n = b.getInt();
            if (n < 1) {
                throw SparkQuantException.badInput(uri + ": no imatrix entries");
            }
            Map<String, Entry> e = new LinkedHashMap<>();
            for (int i = 0; i < n; i++) {
                int len = b.getInt();
                if (len < 0 || len > b.remaining()) {
                    throw SparkQuantException.badInput(uri + ": corrupt entry name length " + len);
                }
                byte[] name = new byte[len];
                b.get(name);
                int ncall = b.getInt();
                int nval = b.getInt();
                if (nval < 1 || (long) nval * 4 > b.remaining()) {
                    throw SparkQuantException.badInput(uri + ": corrupt value count " + nval);
                }
                float[] v = new float[nval];
                b.asFloatBuffer().get(v);
                b.position(b.position() + 4 * nval);
                e.put(new String(name, StandardCharsets.UTF_8), new Entry(v, new long[] {ncall}));
            }
            int chunks = 0;
            List<String> datasets = new ArrayList<>();
            if (b.remaining() >= 4) {
                chunks = b.getInt();
                if (b.remaining() >= 4) {
                    int len = b.getInt();
                    if (len > 0 && len <= b.remaining()) {
                        byte[] d = new byte[len];
                        b.get(d);
                        datasets.add(new String(d, StandardCharsets.UTF_8));
                    }
                }
            }
            return new GgufImatrix(e, datasets, chunks, 1);
        } catch (java.nio.BufferUnderflowException ex) {
            throw SparkQuantException.badInput(uri + ": truncated legacy imatrix file");
        }
    }

    private static byte[] i32(int v) {
        return ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt(v).array();
    }

    private static byte[] floats(float[] v) {
        ByteBuffer b = ByteBuffer.allocate(4 * v.length).order(ByteOrder.LITTLE_ENDIAN);
        b.asFloatBuffer().put(v);
        return b.array();
    }
}
