package org.sparkquant.format.gguf;

import java.io.Closeable;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.Map;

/**
 * Streams a GGUF v3 file to an OutputStream: the header is written when the writer is created (all tensor names,
 * shapes and types are declared first, so every offset is known), then the tensors' data in declared order, one
 * tensor at a time and in as many pieces as convenient — the writer never holds tensor data. Each tensor must get
 * exactly its size in bytes; padding is added. Not thread-safe.
 *
 * <pre>
 * try (GgufWriter w = GgufWriter.create(out, metadata, tensors)) {
 *     for (GgufTensor t : tensors) { w.beginTensor(t.name()); w.write(rowBlock...); ...; w.endTensor(); }
 * }
 * </pre>
 */
public final class GgufWriter implements Closeable {
    private static final byte[] ZEROS = new byte[4096];

    private final OutputStream out;
    private final GgufLayout layout;
    private int next;
    private boolean inTensor;
    private long remaining;
    private long position;
    private boolean closed;

    private GgufWriter(OutputStream out, GgufLayout layout) {
        this.out = out;
        this.layout = layout;
    }

    /** Validates the declaration, writes the header and padding, and returns a writer expecting the first tensor. */
    public static GgufWriter create(OutputStream out, Map<String, GgufValue> metadata, List<GgufTensor> tensors)
            throws IOException {
        return create(out, GgufLayout.of(metadata, tensors));
    }

    public static GgufWriter create(OutputStream out, GgufLayout layout) throws IOException {
        GgufWriter w = new GgufWriter(out, layout);
        out.write(layout.header());
        w.position = layout.headerSize();
        w.zeros(layout.dataStart() - layout.headerSize());
        return w;
    }

    public GgufLayout layout() {
        return layout;
    }

    /** Bytes written so far (the absolute file position). */
    public long position() {
        return position;
    }

    /** The tensor expected next, or null when all are written. */
    public GgufTensorInfo nextTensor() {
        return next < layout.tensors().size() ? layout.tensors().get(next) : null;
    }

    /** Starts the data of {@code name}, which must be the next declared tensor. */
    public void beginTensor(String name) {
        checkOpen();
        if (inTensor) {
            throw new IllegalStateException("tensor " + layout.tensors().get(next).name() + " is not finished");
        }
        GgufTensorInfo t = nextTensor();
        if (t == null) {
            throw new IllegalStateException("all " + layout.tensors().size() + " tensors are written; got " + name);
        }
        if (!t.name().equals(name)) {
            throw new IllegalStateException("expected tensor " + t.name() + " next, got " + name);
        }
        inTensor = true;
        remaining = t.bytes();
    }

    public void write(byte[] b, int off, int len) throws IOException {
        checkData(len);
        out.write(b, off, len);
        remaining -= len;
        position += len;
    }

    public void write(byte[] b) throws IOException {
        write(b, 0, b.length);
    }

    /** Writes the buffer's remaining bytes (advancing its position). */
    public void write(ByteBuffer b) throws IOException {
        int len = b.remaining();
        checkData(len);
        if (b.hasArray()) {
            out.write(b.array(), b.arrayOffset() + b.position(), len);
            b.position(b.limit());
        } else {
            byte[] chunk = new byte[Math.min(len, 1 << 16)];
            while (b.hasRemaining()) {
                int n = Math.min(chunk.length, b.remaining());
                b.get(chunk, 0, n);
                out.write(chunk, 0, n);
            }
        }
        remaining -= len;
        position += len;
    }

    /** Ends the current tensor (which must be complete) and writes its padding. */
    public void endTensor() throws IOException {
        checkOpen();
        if (!inTensor) {
            throw new IllegalStateException("no tensor started");
        }
        GgufTensorInfo t = layout.tensors().get(next);
        if (remaining != 0) {
            throw new IllegalStateException("tensor " + t.name() + " is " + remaining + " bytes short of "
                    + t.bytes());
        }
        zeros(GgufLayout.pad(t.bytes(), layout.alignment()) - t.bytes());
        inTensor = false;
        next++;
    }

    /** Writes a whole tensor: begin, data, end. */
    public void writeTensor(String name, byte[] data) throws IOException {
        beginTensor(name);
        write(data);
        endTensor();
    }

    /** Closes the stream; fails if some declared tensor was not written (the file would be unusable). */
    @Override
    public void close() throws IOException {
        if (closed) {
            return;
        }
        closed = true;
        out.close();
        if (inTensor || next < layout.tensors().size()) {
            throw new IllegalStateException("GGUF file closed after " + next + " of " + layout.tensors().size()
                    + " tensors");
        }
    }

    private void checkData(int len) {
        checkOpen();
        if (!inTensor) {
            throw new IllegalStateException("write outside a tensor: call beginTensor first");
        }
        if (len > remaining) {
            throw new IllegalStateException("tensor " + layout.tensors().get(next).name() + " gets " + len
                    + " more bytes but only " + remaining + " remain");
        }
    }

    private void checkOpen() {
        if (closed) {
            throw new IllegalStateException("writer is closed");
        }
    }

    private void zeros(long n) throws IOException {
        while (n > 0) {
            int k = (int) Math.min(n, ZEROS.length);
            out.write(ZEROS, 0, k);
            n -= k;
            position += k;
        }
    }
}
