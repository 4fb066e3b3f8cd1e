package org.sparkquant.format.gguf;

import java.io.IOException;
import java.util.Arrays;
import java.util.function.Function;
import java.util.stream.IntStream;
import org.sparkquant.SparkQuantException;
import org.sparkquant.io.TensorReader;

/**
 * The default {@link TensorProducer}: reads each tensor from a Hugging Face checkpoint (any {@link TensorReader})
 * in chunks of rows, applies the rotary row permutation, and quantizes row by row with {@link GgmlQuant} —
 * round-to-nearest with ggml's reference quantizers, byte-identical to what llama-quantize writes for the same
 * rows (and the same importance matrix, when one is given). F32/F16/BF16 tensors are converted; stacked expert
 * tensors are read expert by expert. One chunk of a tensor is held at a time (about {@link #CHUNK_ELEMENTS} floats).
 */
public final class RtnProducer implements TensorProducer {
    /** Elements read and quantized at once. */
    public static final int CHUNK_ELEMENTS = 1 << 22;

    private final TensorReader source;
    private final Function<String, float[]> importance;

    public RtnProducer(TensorReader source) {
        this(source, name -> null);
    }

    /**
     * @param importance per GGUF tensor name, the importance of each column (an imatrix entry: mean of x² per input
     *     feature), or null for plain RTN; used by the quantized types that take it, as llama-quantize does
     */
    public RtnProducer(TensorReader source, Function<String, float[]> importance) {
        this.source = source;
        this.importance = importance;
    }

    @Override
    public void produce(ExportTensor t, Sink out) throws IOException {
        if (t.generated() != null) {
            float[] v = t.generated();
            out.write(quantize(t, v, 1, null));
            return;
        }
        if (t.stacked()) {
            produceStacked(t, out);
            return;
        }
        long[] shape = source.shape(t.hfName());
        long elements = Arrays.stream(shape).reduce(1, Math::multiplyExact);
        if (elements != t.tensor().elements()) {
            throw SparkQuantException.badInput(source.source() + ": tensor '" + t.hfName() + "' has shape "
                    + Arrays.toString(shape) + ", expected " + t.tensor().elements() + " elements for " + t.name());
        }
        float[] imp = t.quantized() ? importance.apply(t.name()) : null;
        if (imp != null && imp.length != t.rowLength()) {
            throw SparkQuantException.badInput("importance of " + t.name() + " has " + imp.length
                    + " values, expected one per column (" + t.rowLength() + ")");
        }
        if (shape.length < 2) {
            float[] v = source.readFloats(t.hfName());
            if (t.permuteHeads() > 0) {
                v = GgufNames.permuteRows(v, v.length, 1, t.permuteHeads());
            }
            GgmlQuant.requireFinite(v, 0, v.length, t.hfName());
            out.write(quantize(t, v, 1, imp));
            return;
        }
        int rows = t.rows();
        int len = t.rowLength();
        int group = t.rowGroup();
        int step = Math.max(group, CHUNK_ELEMENTS / len / group * group);
        for (int g0 = 0; g0 < rows; g0 += step) {
            int g1 = Math.min(rows, g0 + step);
            // whole heads: the source rows of GGUF rows [g0, g1) are the same range, permuted
            float[] src = source.readRows(t.hfName(), g0, g1);
            float[] x = src;
            if (t.permuteHeads() > 0) {
                x = new float[src.length];
                for (int g = g0; g < g1; g++) {
                    System.arraycopy(src, (t.sourceRow(g) - g0) * len, x, (g - g0) * len, len);
                }
            }
            GgmlQuant.requireFinite(x, 0, x.length, t.hfName() + " rows " + g0 + ".." + (g1 - 1));
            out.write(quantize(t, x, g1 - g0, imp));
        }
    }

    /**
     * A 3-D tensor stacked over experts: each expert's source in turn, in chunks of rows; an importance entry of
     * n_expert × row length values gives each expert its own slice (as llama-quantize reads a 3-D tensor's imatrix).
     */
    private void produceStacked(ExportTensor t, Sink out) throws IOException {
        int len = t.rowLength();
        int per = t.rowsPerExpert();
        float[] imp = t.quantized() ? importance.apply(t.name()) : null;
        if (imp != null && imp.length != len && imp.length != (long) len * t.experts()) {
            throw SparkQuantException.badInput("importance of " + t.name() + " has " + imp.length
                    + " values, expected " + len + " per expert (" + t.experts() + " experts)");
        }
        for (int e = 0; e < t.experts(); e++) {
            String hf = t.sources().get(e);
            long[] shape = source.shape(hf);
            if (shape.length != 2 || shape[0] != per || shape[1] != len) {
                throw SparkQuantException.badInput(source.source() + ": tensor '" + hf + "' has shape "
                        + Arrays.toString(shape) + ", expected [" + per + ", " + len + "] for expert " + e + " of "
                        + t.name());
            }
            float[] ei = imp == null || imp.length == len ? imp : Arrays.copyOfRange(imp, e * len, (e + 1) * len);
            int step = Math.max(1, CHUNK_ELEMENTS / len);
            for (int r0 = 0; r0 < per; r0 += step) {
                int r1 = Math.min(per, r0 + step);
                float[] x = source.readRows(hf, r0, r1);
                GgmlQuant.requireFinite(x, 0, x.length, hf + " rows " + r0 + ".." + (r1 - 1));
                out.write(quantize(t, x, r1 - r0, ei));
            }
        }
    }

    /**
     * Quantizes {@code nRows} rows (GGUF order, row-major, {@link ExportTensor#rowLength()} each) into the
     * tensor's type; rows are quantized in parallel.
     */
    public static byte[] quantize(ExportTensor t, float[] x, int nRows, float[] importance) {
        GgmlType type = t.type();
        int len = x.length / nRows;
        long rowBytes = type.rowBytes(len);
        byte[] dst = new byte[Math.toIntExact(rowBytes * nRows)];
        IntStream rows = IntStream.range(0, nRows);
        if ((long) nRows * len >= 1 << 16 && type.isQuantized()) {
            rows = rows.parallel();
        }
        rows.forEach(r -> GgmlQuant.quantizeRow(type, x, r * len, len, importance, 0, dst, (int) (r * rowBytes)));
        return dst;
    }
}
