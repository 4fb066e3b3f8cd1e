package org.sparkquant.format.gguf;

import java.util.Arrays;
import java.util.Objects;

/**
 * A tensor as declared in a GGUF file: name, shape in ggml order (ne[0] is the row length, so a PyTorch
 * [out, in] weight is ne = [in, out]) and type. Immutable.
 */
public final class GgufTensor {
    private final String name;
    private final long[] ne;
    private final GgmlType type;

    public GgufTensor(String name, long[] ne, GgmlType type) {
        this.name = Objects.requireNonNull(name);
        this.ne = ne.clone();
        this.type = Objects.requireNonNull(type);
    }

    /** From a row-major (PyTorch/safetensors) shape, which is ggml's ne reversed. */
    public static GgufTensor fromRowMajorShape(String name, long[] shape, GgmlType type) {
        long[] ne = new long[shape.length];
        for (int i = 0; i < shape.length; i++) {
            ne[i] = shape[shape.length - 1 - i];
        }
        return new GgufTensor(name, ne, type);
    }

    public String name() {
        return name;
    }

    public long[] ne() {
        return ne.clone();
    }

    public int nDims() {
        return ne.length;
    }

    public long ne(int i) {
        return ne[i];
    }

    public GgmlType type() {
        return type;
    }

    public long elements() {
        long n = 1;
        for (long d : ne) {
            n = Math.multiplyExact(n, d);
        }
        return n;
    }

    /** Rows of ne[0] elements. */
    public long rows() {
        return elements() / ne[0];
    }

    /** Bytes of the tensor data (without alignment padding). */
    public long bytes() {
        return type.tensorBytes(ne);
    }

    public GgufTensor withType(GgmlType newType) {
        return new GgufTensor(name, ne, newType);
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof GgufTensor)) {
            return false;
        }
        GgufTensor t = (GgufTensor) o;
        return name.equals(t.name) && Arrays.equals(ne, t.ne) && type == t.type;
    }

    @Override
    public int hashCode() {
        return Objects.hash(name, Arrays.hashCode(ne), type);
    }

    @Override
    public String toString() {
        return name + Arrays.toString(ne) + " " + type;
    }
}
