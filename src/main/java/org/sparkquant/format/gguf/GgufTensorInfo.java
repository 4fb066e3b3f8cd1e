package org.sparkquant.format.gguf;

/**
 * A tensor of a GGUF file with its data offset: {@code offset} is relative to the start of the data section
 * ({@link GgufLayout#dataStart()}), a multiple of the file's alignment.
 */
public record GgufTensorInfo(GgufTensor tensor, long offset) {
    public String name() {
        return tensor.name();
    }

    public GgmlType type() {
        return tensor.type();
    }

    public long[] ne() {
        return tensor.ne();
    }

    public long bytes() {
        return tensor.bytes();
    }
}
