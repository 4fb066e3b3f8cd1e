package org.sparkquant.format.gptq;

import java.util.List;
import java.util.Optional;

import org.sparkquant.model.LinearModule;

/**
 * The int32 bit packing of GPTQ checkpoints (docs/formats.md §1), as AutoGPTQ, GPTQModel, transformers and vLLM
 * read it. {@code qweight} [K·bits/32, N] packs codes along the input dimension (one packed row per 32/bits input
 * rows), {@code qzeros} [G, N·bits/32] packs zero points along the output dimension. For 2/4/8 bits a word holds
 * 32/bits fields, the first value in the lowest bits; for 3 bits 32 values share 3 words and two values straddle a
 * word boundary (value 10: bits 30-31 of word 0 and bit 0 of word 1; value 21: bit 31 of word 1 and bits 0-1 of word
 * 2). Everything is uint32 arithmetic stored as int32.
 *
 * <p>Zero points: checkpoint_format {@code gptq} (v1) stores {@code zero − 1}, {@code gptq_v2} stores the zero
 * itself. A v1 field cannot hold a zero of 0 (AutoGPTQ's packer would write −1 and corrupt the neighbouring
 * fields; runtimes disagree on how to read a masked −1), so packing one is refused: asymmetric checkpoints are v2.
 */
public final class GptqPacking {
    public static final List<Integer> SUPPORTED_BITS = List.of(2, 3, 4, 8);

    private GptqPacking() {}

    public static boolean supported(int bits) {
        return SUPPORTED_BITS.contains(bits);
    }

    /** How many values a dimension must be a multiple of to pack: 32/bits, or 32 for 3 bits (3 words). */
    public static int multiple(int bits) {
        checkBits(bits);
        return bits == 3 ? 32 : 32 / bits;
    }

    /** Words needed for {@code count} values (count must be a multiple of {@link #multiple}). */
    public static int words(int count, int bits) {
        if (count % multiple(bits) != 0) {
            throw new IllegalArgumentException(count + " values cannot be packed at " + bits + " bits (need a multiple of "
                    + multiple(bits) + ")");
        }
        return count / 32 * bits + (count % 32) * bits / 32;
    }

    /** Why a linear layer cannot be stored at {@code bits}, or empty when it can. */
    public static Optional<String> unpackableReason(int inFeatures, int outFeatures, int bits) {
        int m = multiple(bits);
        if (inFeatures % m != 0) {
            return Optional.of("in_features " + inFeatures + " is not a multiple of " + m + " (qweight packs " + bits
                    + "-bit codes along the input dimension)");
        }
        if (outFeatures % m != 0) {
            return Optional.of("out_features " + outFeatures + " is not a multiple of " + m + " (qzeros packs " + bits
                    + "-bit zeros along the output dimension)");
        }
        return Optional.empty();
    }

    public static boolean packable(int inFeatures, int outFeatures, int bits) {
        return unpackableReason(inFeatures, outFeatures, bits).isEmpty();
    }

    /** Whether the module's qweight and qzeros can be packed at {@code bits}: the pipeline asks before quantizing. */
    public static boolean packable(LinearModule module, int bits) {
        return packable(module.inFeatures(), module.outFeatures(), bits);
    }

    /**
     * Packs {@code count} values {@code values[from..from+count)}, each in [0, 2^bits), into
     * {@code words[wordFrom..wordFrom+words(count))}.
     */
    public static void pack(int bits, int[] values, int from, int count, int[] words, int wordFrom) {
        int maxq = (1 << bits) - 1;
        for (int i = from; i < from + count; i++) {
            if (values[i] < 0 || values[i] > maxq) {
                throw new IllegalArgumentException("value " + values[i] + " at " + (i - from) + " is outside [0, " + maxq
                        + "] for " + bits + " bits");
            }
        }
        int n = words(count, bits);
        if (bits == 3) {
            for (int u = 0; u < count / 32; u++) {
                pack3(values, from + 32 * u, words, wordFrom + 3 * u);
            }
            return;
        }
        int perWord = 32 / bits;
        for (int w = 0; w < n; w++) {
            int word = 0;
            int base = from + w * perWord;
            for (int j = 0; j < perWord; j++) {
                word |= values[base + j] << (bits * j);
            }
            words[wordFrom + w] = word;
        }
    }

    /** Inverse of {@link #pack}: every field of the words is read, so any int32 content unpacks. */
    public static void unpack(int bits, int[] words, int wordFrom, int count, int[] values, int from) {
        int n = words(count, bits);
        if (bits == 3) {
            for (int u = 0; u < count / 32; u++) {
                unpack3(words, wordFrom + 3 * u, values, from + 32 * u);
            }
            return;
        }
        int perWord = 32 / bits;
        int mask = (1 << bits) - 1;
        for (int w = 0; w < n; w++) {
            int word = words[wordFrom + w];
            int base = from + w * perWord;
            for (int j = 0; j < perWord; j++) {
                values[base + j] = (word >>> (bits * j)) & mask;
            }
        }
    }

    private static void pack3(int[] v, int o, int[] w, int wo) {
        int w0 = 0;
        for (int j = 0; j < 10; j++) {
            w0 |= v[o + j] << (3 * j);
        }
        w0 |= v[o + 10] << 30; // low two bits of value 10; its third bit opens word 1
        int w1 = (v[o + 10] >>> 2) & 1;
        for (int j = 0; j < 10; j++) {
            w1 |= v[o + 11 + j] << (3 * j + 1);
        }
        w1 |= v[o + 21] << 31; // bit 0 of value 21; bits 1-2 open word 2
        int w2 = (v[o + 21] >>> 1) & 3;
        for (int j = 0; j < 10; j++) {
            w2 |= v[o + 22 + j] << (3 * j + 2);
        }
        w[wo] = w0;
        w[wo + 1] = w1;
        w[wo + 2] = w2;
    }

    private static void unpack3(int[] w, int wo, int[] v, int o) {
        int w0 = w[wo];
        int w1 = w[wo + 1];
        int w2 = w[wo + 2];
        for (int j = 0; j < 10; j++) {
            v[o + j] = (w0 >>> (3 * j)) & 7;
            v[o + 11 + j] = (w1 >>> (3 * j + 1)) & 7;
            v[o + 22 + j] = (w2 >>> (3 * j + 2)) & 7;
        }
        v[o + 10] = ((w0 >>> 30) & 3) | ((w1 << 2) & 4);
        v[o + 21] = ((w1 >>> 31) & 1) | ((w2 << 1) & 6);
    }

    /**
     * {@code qweight} [in·bits/32, out] (row-major) from codes [out][in] (row-major, unsigned bytes): each output
     * channel's codes are packed along the input dimension into one column.
     */
    public static int[] packQweight(byte[] codes, int in, int out, int bits) {
        checkLength("codes", codes.length, (long) in * out);
        int rows = words(in, bits);
        int[] qweight = new int[Math.multiplyExact(rows, out)];
        int[] column = new int[in];
        int[] packed = new int[rows];
        for (int n = 0; n < out; n++) {
            int base = n * in;
            for (int k = 0; k < in; k++) {
                column[k] = codes[base + k] & 0xff;
            }
            pack(bits, column, 0, in, packed, 0);
            for (int r = 0; r < rows; r++) {
                qweight[r * out + n] = packed[r];
            }
        }
        return qweight;
    }

    /** Codes [out][in] from {@code qweight} [in·bits/32, out]. */
    public static byte[] unpackQweight(int[] qweight, int in, int out, int bits) {
        int rows = words(in, bits);
        checkLength("qweight", qweight.length, (long) rows * out);
        byte[] codes = new byte[Math.multiplyExact(in, out)];
        int[] packed = new int[rows];
        int[] column = new int[in];
        for (int n = 0; n < out; n++) {
            for (int r = 0; r < rows; r++) {
                packed[r] = qweight[r * out + n];
            }
            unpack(bits, packed, 0, in, column, 0);
            int base = n * in;
            for (int k = 0; k < in; k++) {
                codes[base + k] = (byte) column[k];
            }
        }
        return codes;
    }

    /** {@code qzeros} [groups, out·bits/32] from zeros [groups][out], in the convention of {@code format}. */
    public static int[] packQzeros(int[] zeros, int groups, int out, int bits, GptqConfig.Format format) {
        checkLength("zeros", zeros.length, (long) groups * out);
        int cols = words(out, bits);
        int[] qzeros = new int[Math.multiplyExact(groups, cols)];
        int[] row = new int[out];
        for (int g = 0; g < groups; g++) {
            for (int n = 0; n < out; n++) {
                int z = zeros[g * out + n];
                if (format == GptqConfig.Format.GPTQ) {
                    if (z == 0) {
                        throw new IllegalArgumentException("zero point 0 (group " + g + ", channel " + n
                                + ") cannot be stored in checkpoint_format gptq (v1 stores zero - 1); use gptq_v2");
                    }
                    z -= 1;
                }
                row[n] = z;
            }
            pack(bits, row, 0, out, qzeros, g * cols);
        }
        return qzeros;
    }

    /**
     * Zeros [groups][out] from {@code qzeros}. For v1 the stored field plus one is masked to the field width, as
     * AutoGPTQ's reference dequantization does: a stored 2^bits−1 reads as zero 0 (see {@link #v1Wraps}).
     */
    public static int[] unpackQzeros(int[] qzeros, int groups, int out, int bits, GptqConfig.Format format) {
        int cols = words(out, bits);
        checkLength("qzeros", qzeros.length, (long) groups * cols);
        int[] zeros = new int[Math.multiplyExact(groups, out)];
        int mask = (1 << bits) - 1;
        for (int g = 0; g < groups; g++) {
            unpack(bits, qzeros, g * cols, out, zeros, g * out);
        }
        if (format == GptqConfig.Format.GPTQ) {
            for (int i = 0; i < zeros.length; i++) {
                zeros[i] = (zeros[i] + 1) & mask;
            }
        }
        return zeros;
    }

    /**
     * Whether a v1 qzeros holds a field 2^bits−1, i.e. a zero of 0 stored as −1: AutoGPTQ's torch path reads it as 0,
     * vLLM's kernels as 2^bits. Such checkpoints are ambiguous and worth a warning.
     */
    public static boolean v1Wraps(int[] qzeros, int groups, int out, int bits) {
        int[] fields = new int[Math.multiplyExact(groups, out)];
        int cols = words(out, bits);
        for (int g = 0; g < groups; g++) {
            unpack(bits, qzeros, g * cols, out, fields, g * out);
        }
        int maxq = (1 << bits) - 1;
        for (int f : fields) {
            if (f == maxq) {
                return true;
            }
        }
        return false;
    }

    private static void checkBits(int bits) {
        if (!supported(bits)) {
            throw new IllegalArgumentException("bits " + bits + " is not supported (2, 3, 4, 8)");
        }
    }

    private static void checkLength(String what, int actual, long expected) {
        if (actual != expected) {
            throw new IllegalArgumentException(what + " has " + actual + " elements, expected " + expected);
        }
    }
}
