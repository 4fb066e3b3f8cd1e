package org.sparkquant.io;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;

import org.sparkquant.SparkQuantException;

/** Builds safetensors bytes by hand (any header, valid or not) and opens them in memory. */
final class SafetensorsBytes {
    private SafetensorsBytes() {}

    /** The 8-byte little-endian length, the header bytes as given (no padding), then the data. */
    static byte[] raw(byte[] header, byte[] data) {
        ByteBuffer buf = ByteBuffer.allocate(8 + header.length + data.length).order(ByteOrder.LITTLE_ENDIAN);
        buf.putLong(header.length).put(header).put(data);
        return buf.array();
    }

    static byte[] raw(String header, byte[] data) {
        return raw(header.getBytes(StandardCharsets.UTF_8), data);
    }

    /** A file whose header JSON is written with single quotes for readability: {'a': ...} becomes {"a": ...}. */
    static byte[] json(String singleQuoted, int dataBytes) {
        return raw(singleQuoted.replace('\'', '"'), new byte[dataBytes]);
    }

    /** Written by {@link SafetensorsWriter}, tensors in the order given. */
    static byte[] written(List<TensorSpec> specs, Map<String, byte[]> data, Map<String, String> metadata) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try (SafetensorsWriter writer = SafetensorsWriter.create(out, "memory", specs, metadata)) {
            for (TensorSpec spec : specs) {
                writer.write(spec.name(), data.get(spec.name()));
            }
        }
        return out.toByteArray();
    }

    static SafetensorsFile open(byte[] bytes) {
        return SafetensorsFile.open(input("test.safetensors", bytes));
    }

    static ByteBuffer le(int capacity) {
        return ByteBuffer.allocate(capacity).order(ByteOrder.LITTLE_ENDIAN);
    }

    /** An in-memory file with the same contract as Storage's inputs: reads past the end are bad input. */
    static RandomAccessInput input(String name, byte[] bytes) {
        return new RandomAccessInput() {
            @Override
            public String name() {
                return name;
            }

            @Override
            public long length() {
                return bytes.length;
            }

            @Override
            public void readFully(long position, byte[] buffer, int offset, int count) {
                if (position < 0 || count < 0 || position > bytes.length - count) {
                    throw SparkQuantException.badInput(name + ": read past the end");
                }
                System.arraycopy(bytes, (int) position, buffer, offset, count);
            }

            @Override
            public void close() {}
        };
    }
}
