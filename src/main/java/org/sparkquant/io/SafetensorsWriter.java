package org.sparkquant.io;

import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * Writes one safetensors file as a stream: the header is computed from the declared tensors, then each tensor's bytes
 * follow in declaration order, possibly in several chunks. Nothing but the current chunk is held in memory. Closing
 * checks that every declared byte was written, so a short write never looks like a finished file.
 */
public final class SafetensorsWriter implements AutoCloseable {
    private static final ObjectMapper JSON = new ObjectMapper();

    private final OutputStream out;
    private final String name;
    private final List<TensorSpec> specs;
    private final Set<String> empty;
    private int current;
    private long remaining;
    private boolean closed;

    private SafetensorsWriter(OutputStream out, String name, List<TensorSpec> specs) {
        this.out = out;
        this.name = name;
        this.specs = List.copyOf(specs);
        this.empty = emptyTensors(name, specs);
        this.current = -1;
    }

    /**
     * Names of the declared tensors without bytes, after checking that names are unique: a repeated name would
     * collapse into one header entry while its data is written twice, leaving a file no reader accepts.
     */
    static Set<String> emptyTensors(String name, List<TensorSpec> specs) {
        Set<String> seen = new HashSet<>();
        Set<String> empty = new HashSet<>();
        for (TensorSpec spec : specs) {
            if (!seen.add(spec.name()) || spec.name().equals("__metadata__")) {
                throw new IllegalArgumentException(name + ": tensor name '" + spec.name() + "' "
                        + (spec.name().equals("__metadata__") ? "is reserved" : "is declared twice"));
            }
            if (spec.byteSize() == 0) {
                empty.add(spec.name());
            }
        }
        return empty;
    }

    /** Writes the header at once; the stream is owned by the writer. */
    public static SafetensorsWriter create(OutputStream out, String name, List<TensorSpec> specs,
            Map<String, String> metadata) {
        SafetensorsWriter writer = new SafetensorsWriter(out, name, specs);
        writer.writeHeader(metadata);
        writer.advance();
        return writer;
    }

    static byte[] header(List<TensorSpec> specs, Map<String, String> metadata) {
        ObjectNode root = JSON.createObjectNode();
        if (metadata != null && !metadata.isEmpty()) {
            ObjectNode meta = root.putObject("__metadata__");
            new LinkedHashMap<>(metadata).forEach(meta::put);
        }
        long offset = 0;
        for (TensorSpec spec : specs) {
            ObjectNode t = root.putObject(spec.name());
            t.put("dtype", spec.dtype().name());
            ArrayNode shape = t.putArray("shape");
            for (long d : spec.shape()) {
                shape.add(d);
            }
            ArrayNode offsets = t.putArray("data_offsets");
            offsets.add(offset);
            offset += spec.byteSize();
            offsets.add(offset);
        }
        byte[] json;
        try {
            json = JSON.writeValueAsString(root).getBytes(StandardCharsets.UTF_8);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
        // Pad with spaces so the data section starts 8-byte aligned, as the reference writer does.
        int padded = (json.length + 7) / 8 * 8;
        byte[] header = new byte[8 + padded];
        ByteBuffer.wrap(header).order(ByteOrder.LITTLE_ENDIAN).putLong(padded);
        System.arraycopy(json, 0, header, 8, json.length);
        for (int i = 8 + json.length; i < header.length; i++) {
            header[i] = ' ';
        }
        return header;
    }

    /** Total file size for the given tensors. */
    public static long fileSize(List<TensorSpec> specs, Map<String, String> metadata) {
        long data = 0;
        for (TensorSpec s : specs) {
            data += s.byteSize();
        }
        return header(specs, metadata).length + data;
    }

    private void writeHeader(Map<String, String> metadata) {
        try {
            out.write(header(specs, metadata));
        } catch (IOException e) {
            throw new UncheckedIOException(name + ": write failed", e);
        }
    }

    private void advance() {
        do {
            current++;
            remaining = current < specs.size() ? specs.get(current).byteSize() : 0;
        } while (current < specs.size() && remaining == 0);
    }

    /** The tensor whose bytes are expected next, or null when all are written. */
    public String expected() {
        return current < specs.size() ? specs.get(current).name() : null;
    }

    /**
     * Appends bytes of the named tensor, which must be the one expected next. A tensor without bytes (a zero
     * dimension) is never expected; writing its zero bytes is accepted and does nothing, so callers can copy every
     * tensor in order.
     */
    public void write(String tensor, byte[] bytes, int offset, int length) {
        if (length == 0 && empty.contains(tensor)) {
            return;
        }
        if (current >= specs.size() || !specs.get(current).name().equals(tensor)) {
            throw new IllegalStateException(name + ": " + (expected() == null ? "no more tensors expected"
                    : "expected data of '" + expected() + "'") + ", got '" + tensor + "'");
        }
        if (length > remaining) {
            throw new IllegalStateException(name + ": " + length + " bytes exceed what is left of '" + tensor + "' ("
                    + remaining + ")");
        }
        try {
            out.write(bytes, offset, length);
        } catch (IOException e) {
            throw new UncheckedIOException(name + ": write failed", e);
        }
        remaining -= length;
        if (remaining == 0) {
            advance();
        }
    }

    public void write(String tensor, byte[] bytes) {
        write(tensor, bytes, 0, bytes.length);
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            out.close();
        } catch (IOException e) {
            throw new UncheckedIOException(name + ": close failed", e);
        }
        if (current < specs.size()) {
            throw new IllegalStateException(name + ": closed before tensor '" + expected() + "' was written");
        }
    }
}
