package org.sparkquant.io;

import java.io.BufferedInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.zip.ZipEntry;
import java.util.zip.ZipInputStream;
import org.sparkquant.SparkQuantException;

/**
 * NumPy {@code .npy} files (format version 1.0 written, 1.0–3.0 read), little-endian, C order, and {@code .npz}
 * archives (a zip of {@code .npy} members, stored or deflated) for reading. Used for Hessian dumps and test
 * fixtures. Arrays larger than a Java array can be streamed: {@link #writeHeader} then the raw little-endian data,
 * or {@link #readHeader} then read {@link Header#dataBytes()} bytes.
 */
public final class Npy {
    private Npy() {}

    private static final byte[] MAGIC = {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y'};
    private static final Pattern DESCR = Pattern.compile("'descr'\\s*:\\s*'([^']*)'");
    private static final Pattern FORTRAN = Pattern.compile("'fortran_order'\\s*:\\s*(True|False)");
    private static final Pattern SHAPE = Pattern.compile("'shape'\\s*:\\s*\\(([^)]*)\\)");

    /** The element types this project reads and writes. */
    public enum DType {
        FLOAT32("<f4", 4), FLOAT64("<f8", 8), INT32("<i4", 4), INT64("<i8", 8), UINT8("|u1", 1), INT8("|i1", 1);

        private final String descr;
        private final int size;

        DType(String descr, int size) {
            this.descr = descr;
            this.size = size;
        }

        public String descr() {
            return descr;
        }

        public int size() {
            return size;
        }

        static DType of(String descr, String source) {
            String d = descr;
            if (d.length() == 3 && d.charAt(0) == '=') {
                d = (d.charAt(2) == '1' ? "|" : "<") + d.substring(1); // '=' is native order: little-endian here
            }
            if (d.equals("<u1") || d.equals("<b1") || d.equals("|b1")) {
                d = "|u1";
            } else if (d.equals("<i1")) {
                d = "|i1";
            }
            for (DType t : values()) {
                if (t.descr.equals(d)) {
                    return t;
                }
            }
            throw SparkQuantException.badInput(source + ": unsupported npy dtype '" + descr
                    + "' (supported: little-endian f4, f8, i4, i8, u1, i1)");
        }
    }

    /** Parsed header; {@link #dataBytes()} raw little-endian bytes follow it. */
    public record Header(DType dtype, long[] shape) {
        public long elements() {
            long n = 1;
            for (long s : shape) {
                n = Math.multiplyExact(n, s);
            }
            return n;
        }

        public long dataBytes() {
            return Math.multiplyExact(elements(), dtype.size());
        }
    }

    /** An in-memory array: a header and its little-endian data. */
    public record Array(DType dtype, long[] shape, ByteBuffer data) {
        public Array {
            data = data.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        }

        public int size() {
            return Math.toIntExact(new Header(dtype, shape).elements());
        }

        public int dim(int i) {
            return Math.toIntExact(shape[i]);
        }

        /** Values as float (float32 exactly; float64 rounded; integers converted). */
        public float[] floats() {
            float[] out = new float[size()];
            if (dtype == DType.FLOAT32) {
                data.duplicate().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(out);
            } else {
                double[] d = doubles();
                for (int i = 0; i < out.length; i++) {
                    out[i] = (float) d[i];
                }
            }
            return out;
        }

        /** Values as double (exact for every supported type except int64 beyond 2^53). */
        public double[] doubles() {
            double[] out = new double[size()];
            ByteBuffer b = data.duplicate().order(ByteOrder.LITTLE_ENDIAN);
            switch (dtype) {
                case FLOAT64 -> b.asDoubleBuffer().get(out);
                case FLOAT32 -> {
                    for (int i = 0; i < out.length; i++) {
                        out[i] = b.getFloat(i * 4);
                    }
                }
                default -> {
                    long[] l = longs();
                    for (int i = 0; i < out.length; i++) {
                        out[i] = l[i];
                    }
                }
            }
            return out;
        }

        /** Integer values as int; fails on float arrays and on int64 values outside the int range. */
        public int[] ints() {
            long[] l = longs();
            int[] out = new int[l.length];
            for (int i = 0; i < l.length; i++) {
                out[i] = Math.toIntExact(l[i]);
            }
            return out;
        }

        /** Integer values as long (uint8 as 0..255); fails on float arrays. */
        public long[] longs() {
            long[] out = new long[size()];
            ByteBuffer b = data.duplicate().order(ByteOrder.LITTLE_ENDIAN);
            for (int i = 0; i < out.length; i++) {
                out[i] = switch (dtype) {
                    case INT32 -> b.getInt(i * 4);
                    case INT64 -> b.getLong(i * 8);
                    case UINT8 -> b.get(i) & 0xFF;
                    case INT8 -> b.get(i);
                    default -> throw new IllegalStateException("npy array of " + dtype + " is not an integer array");
                };
            }
            return out;
        }
    }

    // ---------------------------------------------------------------- writing

    public static void write(OutputStream out, float[] data, long... shape) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(data.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        b.asFloatBuffer().put(data);
        write(out, DType.FLOAT32, shape, b.array(), data.length);
    }

    public static void write(OutputStream out, double[] data, long... shape) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(data.length * 8).order(ByteOrder.LITTLE_ENDIAN);
        b.asDoubleBuffer().put(data);
        write(out, DType.FLOAT64, shape, b.array(), data.length);
    }

    public static void write(OutputStream out, int[] data, long... shape) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(data.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        b.asIntBuffer().put(data);
        write(out, DType.INT32, shape, b.array(), data.length);
    }

    /** Unsigned bytes ({@code |u1}). */
    public static void writeUint8(OutputStream out, byte[] data, long... shape) throws IOException {
        write(out, DType.UINT8, shape, data, data.length);
    }

    public static void write(Path path, float[] data, long... shape) throws IOException {
        try (OutputStream out = Files.newOutputStream(path)) {
            write(out, data, shape);
        }
    }

    public static void write(Path path, double[] data, long... shape) throws IOException {
        try (OutputStream out = Files.newOutputStream(path)) {
            write(out, data, shape);
        }
    }

    public static void write(Path path, int[] data, long... shape) throws IOException {
        try (OutputStream out = Files.newOutputStream(path)) {
            write(out, data, shape);
        }
    }

    private static void write(OutputStream out, DType dtype, long[] shape, byte[] bytes, long count)
            throws IOException {
        Header h = new Header(dtype, shape);
        if (h.elements() != count) {
            throw new IllegalArgumentException("npy shape " + Arrays.toString(shape) + " does not hold " + count
                    + " elements");
        }
        writeHeader(out, h);
        out.write(bytes);
    }

    /** Writes a version 1.0 header (padded to 64 bytes); the caller then streams the little-endian data. */
    public static void writeHeader(OutputStream out, Header header) throws IOException {
        StringBuilder s = new StringBuilder("{'descr': '").append(header.dtype().descr())
                .append("', 'fortran_order': False, 'shape': (");
        for (int i = 0; i < header.shape().length; i++) {
            if (header.shape()[i] < 0) {
                throw new IllegalArgumentException("negative npy dimension " + Arrays.toString(header.shape()));
            }
            s.append(header.shape()[i]).append(header.shape().length == 1 ? "," : (i + 1 < header.shape().length
                    ? ", " : ""));
        }
        s.append("), }");
        int unpadded = MAGIC.length + 2 + 2 + s.length() + 1;
        int pad = (64 - unpadded % 64) % 64;
        s.append(" ".repeat(pad)).append('\n');
        byte[] text = s.toString().getBytes(StandardCharsets.US_ASCII);
        if (text.length > 0xFFFF) {
            throw new IllegalArgumentException("npy header too long");
        }
        out.write(MAGIC);
        out.write(new byte[] {1, 0, (byte) (text.length & 0xFF), (byte) (text.length >>> 8)});
        out.write(text);
    }

    // ---------------------------------------------------------------- reading

    public static Array read(Path path) throws IOException {
        try (InputStream in = new BufferedInputStream(Files.newInputStream(path))) {
            return read(in, path.toString());
        }
    }

    /** Reads one array; {@code source} names the file in error messages. */
    public static Array read(InputStream in, String source) throws IOException {
        Header h = readHeader(in, source);
        long bytes = h.dataBytes();
        if (bytes > Integer.MAX_VALUE - 16) {
            throw SparkQuantException.badInput(source + ": npy array of " + bytes
                    + " bytes is too large to read whole; stream it after readHeader");
        }
        byte[] data = new byte[(int) bytes];
        try {
            new DataInputStream(in).readFully(data);
        } catch (EOFException e) {
            throw SparkQuantException.badInput(source + ": npy data truncated (expected " + bytes + " bytes)", e);
        }
        return new Array(h.dtype(), h.shape(), ByteBuffer.wrap(data));
    }

    /** Reads and validates the header, leaving {@code in} at the first data byte. */
    public static Header readHeader(InputStream in, String source) throws IOException {
        DataInputStream din = new DataInputStream(in);
        byte[] magic = new byte[8];
        try {
            din.readFully(magic);
        } catch (EOFException e) {
            throw SparkQuantException.badInput(source + ": not an npy file (too short)", e);
        }
        if (!Arrays.equals(Arrays.copyOf(magic, 6), MAGIC)) {
            throw SparkQuantException.badInput(source + ": not an npy file (bad magic)");
        }
        int major = magic[6];
        long len;
        if (major == 1) {
            len = din.readUnsignedByte() | (din.readUnsignedByte() << 8);
        } else if (major == 2 || major == 3) {
            len = Integer.toUnsignedLong(Integer.reverseBytes(din.readInt()));
        } else {
            throw SparkQuantException.badInput(source + ": unsupported npy version " + major + "." + magic[7]);
        }
        if (len > 1 << 20) {
            throw SparkQuantException.badInput(source + ": npy header of " + len + " bytes is implausible");
        }
        byte[] text = new byte[(int) len];
        din.readFully(text);
        String dict = new String(text, major == 3 ? StandardCharsets.UTF_8 : StandardCharsets.ISO_8859_1);
        Matcher d = DESCR.matcher(dict);
        Matcher f = FORTRAN.matcher(dict);
        Matcher s = SHAPE.matcher(dict);
        if (!d.find() || !f.find() || !s.find()) {
            throw SparkQuantException.badInput(source + ": malformed npy header: " + dict.strip());
        }
        if (f.group(1).equals("True")) {
            throw SparkQuantException.badInput(source + ": Fortran-order npy arrays are not supported");
        }
        DType dtype = DType.of(d.group(1), source);
        String[] parts = s.group(1).split(",");
        long[] shape = Arrays.stream(parts).map(String::strip).filter(p -> !p.isEmpty())
                .mapToLong(p -> {
                    try {
                        return Long.parseLong(p.endsWith("L") ? p.substring(0, p.length() - 1) : p);
                    } catch (NumberFormatException e) {
                        throw SparkQuantException.badInput(source + ": bad npy shape (" + s.group(1) + ")", e);
                    }
                }).toArray();
        return new Header(dtype, shape);
    }

    /** All members of an {@code .npz} archive, keyed by name without the {@code .npy} suffix, in archive order. */
    public static Map<String, Array> readNpz(Path path) throws IOException {
        try (InputStream in = Files.newInputStream(path)) {
            return readNpz(in, path.toString());
        }
    }

    public static Map<String, Array> readNpz(InputStream in, String source) throws IOException {
        Map<String, Array> out = new LinkedHashMap<>();
        try (ZipInputStream zip = new ZipInputStream(new BufferedInputStream(in))) {
            for (ZipEntry e; (e = zip.getNextEntry()) != null; ) {
                String name = e.getName().endsWith(".npy")
                        ? e.getName().substring(0, e.getName().length() - 4) : e.getName();
                ByteArrayOutputStream buf = new ByteArrayOutputStream();
                zip.transferTo(buf);
                out.put(name, read(new java.io.ByteArrayInputStream(buf.toByteArray()), source + "!" + e.getName()));
            }
        }
        if (out.isEmpty()) {
            throw SparkQuantException.badInput(source + ": empty or not an npz archive");
        }
        return out;
    }
}
