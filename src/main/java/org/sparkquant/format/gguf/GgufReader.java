package org.sparkquant.format.gguf;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.sparkquant.SparkQuantException;

/**
 * Reads a GGUF (v2/v3, little-endian) file: header, metadata, tensor infos, and tensor bytes by positional reads.
 * The header is validated strictly, with ggml's own rules (power-of-two alignment, names under 64 bytes, at most 4
 * dimensions, tensors contiguous in declaration order at aligned offsets, data inside the file); every problem is a
 * one-line {@link SparkQuantException#badInput} naming the file. Counts and lengths are checked against the file
 * size before anything is allocated, so a corrupt header cannot exhaust memory.
 */
public final class GgufReader implements Closeable {
    private final GgufSource source;
    private final String file;
    private final long fileSize;
    private final int version;
    private final Map<String, GgufValue> metadata;
    private final List<GgufTensorInfo> tensors;
    private final Map<String, GgufTensorInfo> byName;
    private final int alignment;
    private final long dataStart;

    private GgufReader(GgufSource source, String file) throws IOException {
        this.source = source;
        this.file = file;
        this.fileSize = source.size();
        Cursor c = new Cursor();
        int magic = c.u32("magic");
        if (magic != GgufLayout.MAGIC) {
            throw fail(String.format("not a GGUF file (magic 0x%08x, expected \"GGUF\")", magic));
        }
        long v = c.u32("version") & 0xffffffffL;
        if (v == 1) {
            throw fail("GGUF version 1 is not supported");
        }
        if (v == 0x02000000L || v == 0x03000000L) {
            throw fail("big-endian GGUF is not supported");
        }
        if (v != 2 && v != 3) {
            throw fail("unsupported GGUF version " + v);
        }
        this.version = (int) v;
        long nTensors = c.u64("tensor count");
        long nKv = c.u64("metadata count");
        // minimal encodings: a tensor info takes ≥ 8+1+4+8+4+8 bytes, a KV ≥ 8+1+4+1
        if (nTensors < 0 || nTensors > c.remaining() / 33) {
            throw fail("truncated or corrupt: tensor count " + Long.toUnsignedString(nTensors)
                    + " cannot fit in a file of " + fileSize + " bytes");
        }
        if (nKv < 0 || nKv > c.remaining() / 14) {
            throw fail("truncated or corrupt: metadata count " + Long.toUnsignedString(nKv)
                    + " cannot fit in a file of " + fileSize + " bytes");
        }
        Map<String, GgufValue> md = new LinkedHashMap<>();
        for (long i = 0; i < nKv; i++) {
            long at = c.pos;
            String key = c.string("metadata key " + i);
            if (md.containsKey(key)) {
                throw fail("duplicate metadata key '" + key + "' at offset " + at);
            }
            long typeId = c.u32("type of '" + key + "'") & 0xffffffffL;
            GgufValueType t = GgufValueType.fromIdOrNull(typeId);
            if (t == null) {
                throw fail("metadata key '" + key + "' has unknown value type " + typeId);
            }
            md.put(key, value(c, t, key));
        }
        this.metadata = Collections.unmodifiableMap(md);
        try {
            this.alignment = GgufLayout.alignmentOf(md.get("general.alignment"), file);
        } catch (SparkQuantException e) {
            throw e;
        }
        List<GgufTensorInfo> infos = new ArrayList<>((int) nTensors);
        Map<String, GgufTensorInfo> names = new LinkedHashMap<>();
        long expected = 0;
        for (long i = 0; i < nTensors; i++) {
            String name = c.string("name of tensor " + i);
            int nameBytes = name.getBytes(StandardCharsets.UTF_8).length;
            if (nameBytes > GgufLayout.MAX_NAME_BYTES) {
                throw fail("tensor name '" + name + "' is " + nameBytes + " bytes; at most "
                        + GgufLayout.MAX_NAME_BYTES + " allowed");
            }
            if (names.containsKey(name)) {
                throw fail("duplicate tensor name " + name);
            }
            long nDims = c.u32("dimensions of tensor " + name) & 0xffffffffL;
            if (nDims < 1 || nDims > GgufLayout.MAX_DIMS) {
                throw fail("tensor " + name + " has " + nDims + " dimensions; 1.." + GgufLayout.MAX_DIMS
                        + " allowed");
            }
            long[] ne = new long[(int) nDims];
            for (int d = 0; d < nDims; d++) {
                ne[d] = c.u64("shape of tensor " + name);
                if (ne[d] < 0) {
                    throw fail("tensor " + name + " has dimension ne[" + d + "] = " + Long.toUnsignedString(ne[d]));
                }
            }
            long typeId = c.u32("type of tensor " + name) & 0xffffffffL;
            GgmlType type = GgmlType.fromIdOrNull(typeId);
            if (type == null) {
                throw fail("tensor " + name + " has unsupported ggml type id " + typeId);
            }
            long offset = c.u64("offset of tensor " + name);
            GgufTensor t = new GgufTensor(name, ne, type);
            long bytes;
            try {
                if (ne[0] % type.blockSize() != 0) {
                    throw fail("tensor " + name + ": row length " + ne[0] + " is not a multiple of the " + type
                            + " block size " + type.blockSize());
                }
                bytes = t.bytes();
            } catch (ArithmeticException e) {
                throw fail("tensor " + name + " shape " + java.util.Arrays.toString(ne) + " overflows");
            }
            if (offset % alignment != 0) {
                throw fail("tensor " + name + " data offset " + Long.toUnsignedString(offset)
                        + " is misaligned (alignment " + alignment + ")");
            }
            if (offset != expected) {
                throw fail("tensor " + name + " data offset " + Long.toUnsignedString(offset) + ", expected "
                        + expected + " (tensors must be contiguous in declaration order)");
            }
            if (bytes > fileSize) {
                throw fail("tensor " + name + " needs " + bytes + " bytes, more than the whole file");
            }
            expected = offset + GgufLayout.pad(bytes, alignment);
            GgufTensorInfo info = new GgufTensorInfo(t, offset);
            infos.add(info);
            names.put(name, info);
        }
        this.tensors = Collections.unmodifiableList(infos);
        this.byName = Collections.unmodifiableMap(names);
        this.dataStart = GgufLayout.pad(c.pos, alignment);
        if (!infos.isEmpty()) {
            GgufTensorInfo last = infos.get(infos.size() - 1);
            long end = dataStart + last.offset() + last.bytes();
            if (end > fileSize) {
                throw fail("truncated: tensor data ends at byte " + end + " but the file has " + fileSize);
            }
        }
    }

    /** Opens and validates a local file. */
    public static GgufReader open(Path path) {
        GgufSource s;
        try {
            s = GgufSource.of(path);
        } catch (IOException e) {
            throw SparkQuantException.badInput("cannot open GGUF file " + path + ": " + e.getMessage(), e);
        }
        return open(s, path.toString());
    }

    /** Opens and validates a GGUF file on any {@link org.sparkquant.io.Storage} URI (positional reads). */
    public static GgufReader open(org.sparkquant.io.Storage storage, String uri) {
        return open(GgufSource.of(storage.open(uri)), uri);
    }

    /** Reads and validates the header of a source; {@code name} names the file in errors. Closes it on failure. */
    public static GgufReader open(GgufSource source, String name) {
        try {
            return new GgufReader(source, name);
        } catch (IOException e) {
            closeQuietly(source);
            throw SparkQuantException.badInput("cannot read GGUF file " + name + ": " + e.getMessage(), e);
        } catch (RuntimeException e) {
            closeQuietly(source);
            throw e;
        }
    }

    private static void closeQuietly(GgufSource s) {
        try {
            s.close();
        } catch (IOException ignored) {
            // already failing
        }
    }

    public String file() {
        return file;
    }

    public int version() {
        return version;
    }

    public Map<String, GgufValue> metadata() {
        return metadata;
    }

    public GgufValue get(String key) {
        return metadata.get(key);
    }

    public List<GgufTensorInfo> tensors() {
        return tensors;
    }

    public GgufTensorInfo tensor(String name) {
        GgufTensorInfo t = byName.get(name);
        if (t == null) {
            throw SparkQuantException.badInput(file + ": no tensor named " + name);
        }
        return t;
    }

    public int alignment() {
        return alignment;
    }

    /** Absolute offset of the data section. */
    public long dataStart() {
        return dataStart;
    }

    public long fileSize() {
        return fileSize;
    }

    /** Reads dst.remaining() bytes of a tensor's data starting {@code pos} bytes into the tensor. */
    public void read(GgufTensorInfo t, long pos, ByteBuffer dst) {
        if (pos < 0 || pos + dst.remaining() > t.bytes()) {
            throw new IndexOutOfBoundsException("bytes [" + pos + ", " + (pos + dst.remaining()) + ") outside tensor "
                    + t.name() + " of " + t.bytes());
        }
        try {
            source.readFully(dataStart + t.offset() + pos, dst);
        } catch (IOException e) {
            throw SparkQuantException.badInput(file + ": cannot read tensor " + t.name() + ": " + e.getMessage(), e);
        }
    }

    /** All bytes of a tensor (must fit in an array). */
    public byte[] readTensor(String name) {
        GgufTensorInfo t = tensor(name);
        if (t.bytes() > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("tensor " + name + " is too large for one array; read it in parts");
        }
        byte[] out = new byte[(int) t.bytes()];
        read(t, 0, ByteBuffer.wrap(out));
        return out;
    }

    /** A tensor's values as floats (dequantized), in ggml element order. */
    public float[] readFloats(String name) {
        GgufTensorInfo t = tensor(name);
        byte[] b = readTensor(name);
        long n = t.tensor().elements();
        float[] out = new float[Math.toIntExact(n)];
        GgmlQuant.dequantize(t.type(), b, 0, out, 0, out.length);
        return out;
    }

    @Override
    public void close() {
        closeQuietly(source);
    }

    private SparkQuantException fail(String problem) {
        return SparkQuantException.badInput(file + ": " + printable(problem));
    }

    /** Names read from a corrupt file can hold anything: keep the message on one readable line. */
    static String printable(String s) {
        StringBuilder b = new StringBuilder(Math.min(s.length(), 300));
        for (int i = 0; i < s.length() && b.length() < 300; i++) {
            char c = s.charAt(i);
            if (Character.isISOControl(c) || c == '\u2028' || c == '\u2029' || c == '\ufffd') {
                b.append(String.format("\\x%02x", (int) c & 0xff));
            } else {
                b.append(c);
            }
        }
        if (b.length() >= 300) {
            b.append("...");
        }
        return b.toString();
    }

    private GgufValue value(Cursor c, GgufValueType t, String key) throws IOException {
        switch (t) {
            case UINT8:
                return GgufValue.of(t, null, (long) (c.u8(key) & 0xff));
            case INT8:
                return GgufValue.of(t, null, (long) c.u8(key));
            case UINT16:
                return GgufValue.of(t, null, (long) (c.u16(key) & 0xffff));
            case INT16:
                return GgufValue.of(t, null, (long) c.u16(key));
            case UINT32:
                return GgufValue.of(t, null, c.u32(key) & 0xffffffffL);
            case INT32:
                return GgufValue.of(t, null, (long) c.u32(key));
            case UINT64:
            case INT64:
                return GgufValue.of(t, null, c.u64(key));
            case FLOAT32:
                return GgufValue.of(t, null, Float.intBitsToFloat(c.u32(key)));
            case FLOAT64:
                return GgufValue.of(t, null, Double.longBitsToDouble(c.u64(key)));
            case BOOL: {
                byte b = c.u8(key);
                if (b != 0 && b != 1) {
                    throw fail("metadata key '" + key + "' has bool value " + (b & 0xff));
                }
                return GgufValue.of(t, null, b == 1);
            }
            case STRING:
                return GgufValue.of(t, null, c.string(key));
            case ARRAY:
                return array(c, key);
            default:
                throw new IllegalStateException(t.toString());
        }
    }

    private GgufValue array(Cursor c, String key) throws IOException {
        long etId = c.u32(key) & 0xffffffffL;
        GgufValueType et = GgufValueType.fromIdOrNull(etId);
        if (et == null) {
            throw fail("metadata key '" + key + "' is an array of unknown type " + etId);
        }
        if (et == GgufValueType.ARRAY) {
            throw fail("metadata key '" + key + "' is an array of arrays, which ggml does not support");
        }
        long n = c.u64(key);
        int minSize = et == GgufValueType.STRING ? 8 : et.size();
        if (n < 0 || n > c.remaining() / minSize || n > Integer.MAX_VALUE - 8) {
            throw fail("metadata key '" + key + "': array of " + Long.toUnsignedString(n) + " " + et
                    + " values does not fit in the file");
        }
        int len = (int) n;
        switch (et) {
            case UINT8:
            case INT8: {
                byte[] a = new byte[len];
                c.bytes(a, key);
                return GgufValue.of(GgufValueType.ARRAY, et, a);
            }
            case BOOL: {
                byte[] raw = new byte[len];
                c.bytes(raw, key);
                boolean[] a = new boolean[len];
                for (int i = 0; i < len; i++) {
                    if (raw[i] != 0 && raw[i] != 1) {
                        throw fail("metadata key '" + key + "' has bool value " + (raw[i] & 0xff));
                    }
                    a[i] = raw[i] == 1;
                }
                return GgufValue.of(GgufValueType.ARRAY, et, a);
            }
            case UINT16:
            case INT16: {
                short[] a = new short[len];
                for (int i = 0; i < len; i++) {
                    a[i] = c.u16(key);
                }
                return GgufValue.of(GgufValueType.ARRAY, et, a);
            }
            case UINT32:
            case INT32: {
                int[] a = new int[len];
                for (int i = 0; i < len; i++) {
                    a[i] = c.u32(key);
                }
                return GgufValue.of(GgufValueType.ARRAY, et, a);
            }
            case UINT64:
            case INT64: {
                long[] a = new long[len];
                for (int i = 0; i < len; i++) {
                    a[i] = c.u64(key);
                }
                return GgufValue.of(GgufValueType.ARRAY, et, a);
            }
            case FLOAT32: {
                float[] a = new float[len];
                for (int i = 0; i < len; i++) {
                    a[i] = Float.intBitsToFloat(c.u32(key));
                }
                return GgufValue.of(GgufValueType.ARRAY, et, a);
            }
            case FLOAT64: {
                double[] a = new double[len];
                for (int i = 0; i < len; i++) {
                    a[i] = Double.longBitsToDouble(c.u64(key));
                }
                return GgufValue.of(GgufValueType.ARRAY, et, a);
            }
            case STRING: {
                List<String> a = new ArrayList<>(len);
                for (int i = 0; i < len; i++) {
                    a.add(c.string(key));
                }
                return GgufValue.of(GgufValueType.ARRAY, et, Collections.unmodifiableList(a));
            }
            default:
                throw new IllegalStateException(et.toString());
        }
    }

    /** Sequential little-endian reads through the header with a window buffer; fails cleanly at end of file. */
    private final class Cursor {
        private final ByteBuffer buf = ByteBuffer.allocate(1 << 16).order(ByteOrder.LITTLE_ENDIAN);
        private long bufStart;
        long pos;

        Cursor() {
            buf.limit(0);
        }

        long remaining() {
            return fileSize - pos;
        }

        private void need(int n, String what) throws IOException {
            if (n > remaining()) {
                throw fail("truncated: " + what + " needs " + n + " bytes at offset " + pos + " but the file ends at "
                        + fileSize);
            }
            long inBuf = bufStart + buf.limit() - pos;
            if (pos >= bufStart && inBuf >= n) {
                buf.position((int) (pos - bufStart));
                return;
            }
            buf.clear();
            int len = (int) Math.min(buf.capacity(), remaining());
            buf.limit(len);
            source.readFully(pos, buf);
            buf.flip();
            bufStart = pos;
        }

        byte u8(String what) throws IOException {
            need(1, what);
            byte b = buf.get();
            pos += 1;
            return b;
        }

        short u16(String what) throws IOException {
            need(2, what);
            short v = buf.getShort();
            pos += 2;
            return v;
        }

        int u32(String what) throws IOException {
            need(4, what);
            int v = buf.getInt();
            pos += 4;
            return v;
        }

        long u64(String what) throws IOException {
            need(8, what);
            long v = buf.getLong();
            pos += 8;
            return v;
        }

        void bytes(byte[] dst, String what) throws IOException {
            if (dst.length > remaining()) {
                throw fail("truncated: " + what + " needs " + dst.length + " bytes at offset " + pos
                        + " but the file ends at " + fileSize);
            }
            if (dst.length <= buf.capacity()) {
                need(dst.length, what);
                buf.get(dst);
            } else {
                source.readFully(pos, ByteBuffer.wrap(dst));
            }
            pos += dst.length;
        }

        String string(String what) throws IOException {
            long len = u64(what);
            if (len < 0 || len > remaining() || len > Integer.MAX_VALUE - 8) {
                throw fail("truncated or corrupt: " + what + " is a string of " + Long.toUnsignedString(len)
                        + " bytes at offset " + (pos - 8) + " but the file ends at " + fileSize);
            }
            byte[] b = new byte[(int) len];
            bytes(b, what);
            return new String(b, StandardCharsets.UTF_8);
        }
    }
}
