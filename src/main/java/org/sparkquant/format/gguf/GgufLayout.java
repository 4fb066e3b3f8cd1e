package org.sparkquant.format.gguf;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.sparkquant.SparkQuantException;

/**
 * The byte layout of a GGUF v3 file, known before any tensor data exists: the encoded header (magic, version,
 * counts, metadata, tensor infos), the aligned start of the data section, and each tensor's offset. Because every
 * offset is fixed up front, tensor data can be produced in parts (e.g. by executors) and streamed in order.
 */
public final class GgufLayout {
    public static final int MAGIC = 0x46554747; // "GGUF" little-endian
    public static final int VERSION = 3;
    public static final int DEFAULT_ALIGNMENT = 32;
    /** ggml's GGML_MAX_NAME is 64 bytes including the terminating NUL. */
    public static final int MAX_NAME_BYTES = 63;
    public static final int MAX_DIMS = 4;

    private final Map<String, GgufValue> metadata;
    private final List<GgufTensorInfo> tensors;
    private final int alignment;
    private final byte[] header;
    private final long dataStart;
    private final long totalSize;

    private GgufLayout(Map<String, GgufValue> metadata, List<GgufTensorInfo> tensors, int alignment, byte[] header,
            long dataStart, long totalSize) {
        this.metadata = metadata;
        this.tensors = tensors;
        this.alignment = alignment;
        this.header = header;
        this.dataStart = dataStart;
        this.totalSize = totalSize;
    }

    /**
     * Validates the metadata and tensors and lays them out: tensors in the given order, each padded to the
     * alignment ({@code general.alignment} when present, a power-of-two UINT32, else 32).
     */
    public static GgufLayout of(Map<String, GgufValue> metadata, List<GgufTensor> tensors) {
        Map<String, GgufValue> md = new LinkedHashMap<>(metadata);
        int alignment = alignmentOf(md.get("general.alignment"), "metadata");
        for (String key : md.keySet()) {
            if (key.isEmpty() || key.getBytes(StandardCharsets.UTF_8).length > 65535) {
                throw SparkQuantException.badInput("GGUF metadata key '" + key + "' is empty or too long");
            }
        }
        List<GgufTensorInfo> infos = new ArrayList<>(tensors.size());
        Set<String> names = new HashSet<>();
        long offset = 0;
        for (GgufTensor t : tensors) {
            validate(t);
            if (!names.add(t.name())) {
                throw SparkQuantException.badInput("duplicate GGUF tensor name " + t.name());
            }
            infos.add(new GgufTensorInfo(t, offset));
            offset = Math.addExact(offset, pad(t.bytes(), alignment));
        }
        byte[] header = encodeHeader(md, infos);
        long dataStart = pad(header.length, alignment);
        return new GgufLayout(Map.copyOf(md), List.copyOf(infos), alignment, header, dataStart,
                dataStart + offset);
    }

    static void validate(GgufTensor t) {
        int nameBytes = t.name().getBytes(StandardCharsets.UTF_8).length;
        if (nameBytes == 0 || nameBytes > MAX_NAME_BYTES) {
            throw SparkQuantException.badInput("GGUF tensor name '" + t.name() + "' must have 1.." + MAX_NAME_BYTES
                    + " bytes (has " + nameBytes + ")");
        }
        if (t.nDims() < 1 || t.nDims() > MAX_DIMS) {
            throw SparkQuantException.badInput("GGUF tensor " + t.name() + " has " + t.nDims() + " dimensions; 1.."
                    + MAX_DIMS + " allowed");
        }
        for (int i = 0; i < t.nDims(); i++) {
            if (t.ne(i) < 1) {
                throw SparkQuantException.badInput("GGUF tensor " + t.name() + " has dimension ne[" + i + "] = "
                        + t.ne(i));
            }
        }
        if (t.ne(0) % t.type().blockSize() != 0) {
            throw SparkQuantException.badInput("GGUF tensor " + t.name() + ": row length ne[0] = " + t.ne(0)
                    + " is not a multiple of the " + t.type() + " block size " + t.type().blockSize());
        }
        try {
            t.bytes();
        } catch (ArithmeticException e) {
            throw SparkQuantException.badInput("GGUF tensor " + t.name() + " is too large");
        }
    }

    static int alignmentOf(GgufValue v, String where) {
        if (v == null) {
            return DEFAULT_ALIGNMENT;
        }
        if (v.type() != GgufValueType.UINT32) {
            throw SparkQuantException.badInput(where + ": general.alignment must be a UINT32, found " + v.type());
        }
        long a = v.asLong();
        if (a == 0 || (a & (a - 1)) != 0 || a > (1 << 30)) {
            throw SparkQuantException.badInput(where + ": general.alignment " + a + " is not a power of two");
        }
        return (int) a;
    }

    static long pad(long n, long alignment) {
        return (n + alignment - 1) / alignment * alignment;
    }

    private static byte[] encodeHeader(Map<String, GgufValue> md, List<GgufTensorInfo> infos) {
        LittleEndianBuffer b = new LittleEndianBuffer();
        b.u32(MAGIC);
        b.u32(VERSION);
        b.u64(infos.size());
        b.u64(md.size());
        for (Map.Entry<String, GgufValue> e : md.entrySet()) {
            b.string(e.getKey());
            b.u32(e.getValue().type().id());
            writeValue(b, e.getValue());
        }
        for (GgufTensorInfo t : infos) {
            b.string(t.name());
            long[] ne = t.ne();
            b.u32(ne.length);
            for (long d : ne) {
                b.u64(d);
            }
            b.u32(t.type().id());
            b.u64(t.offset());
        }
        return b.toByteArray();
    }

    private static void writeValue(LittleEndianBuffer b, GgufValue v) {
        Object o = v.value();
        switch (v.type()) {
            case UINT8:
            case INT8:
            case BOOL:
                b.u8(o instanceof Boolean ? (((Boolean) o) ? 1 : 0) : (int) (long) (Long) o);
                break;
            case UINT16:
            case INT16:
                b.u16((int) (long) (Long) o);
                break;
            case UINT32:
            case INT32:
                b.u32((int) (long) (Long) o);
                break;
            case UINT64:
            case INT64:
                b.u64((Long) o);
                break;
            case FLOAT32:
                b.u32(Float.floatToRawIntBits((Float) o));
                break;
            case FLOAT64:
                b.u64(Double.doubleToRawLongBits((Double) o));
                break;
            case STRING:
                b.string((String) o);
                break;
            case ARRAY:
                writeArray(b, v.elementType(), o);
                break;
            default:
                throw new IllegalStateException(v.type().toString());
        }
    }

    private static void writeArray(LittleEndianBuffer b, GgufValueType et, Object o) {
        b.u32(et.id());
        switch (et) {
            case UINT8:
            case INT8: {
                byte[] a = (byte[]) o;
                b.u64(a.length);
                b.bytes(a);
                break;
            }
            case BOOL: {
                boolean[] a = (boolean[]) o;
                b.u64(a.length);
                for (boolean x : a) {
                    b.u8(x ? 1 : 0);
                }
                break;
            }
            case UINT16:
            case INT16: {
                short[] a = (short[]) o;
                b.u64(a.length);
                for (short x : a) {
                    b.u16(x);
                }
                break;
            }
            case UINT32:
            case INT32: {
                int[] a = (int[]) o;
                b.u64(a.length);
                for (int x : a) {
                    b.u32(x);
                }
                break;
            }
            case UINT64:
            case INT64: {
                long[] a = (long[]) o;
                b.u64(a.length);
                for (long x : a) {
                    b.u64(x);
                }
                break;
            }
            case FLOAT32: {
                float[] a = (float[]) o;
                b.u64(a.length);
                for (float x : a) {
                    b.u32(Float.floatToRawIntBits(x));
                }
                break;
            }
            case FLOAT64: {
                double[] a = (double[]) o;
                b.u64(a.length);
                for (double x : a) {
                    b.u64(Double.doubleToRawLongBits(x));
                }
                break;
            }
            case STRING: {
                List<?> a = (List<?>) o;
                b.u64(a.size());
                for (Object s : a) {
                    b.string((String) s);
                }
                break;
            }
            default:
                throw new IllegalStateException(et.toString());
        }
    }

    public Map<String, GgufValue> metadata() {
        return metadata;
    }

    public List<GgufTensorInfo> tensors() {
        return tensors;
    }

    public int alignment() {
        return alignment;
    }

    /** Bytes of the header before the alignment padding. */
    public long headerSize() {
        return header.length;
    }

    /** Absolute file offset of the data section. */
    public long dataStart() {
        return dataStart;
    }

    /** Absolute file offset of a tensor's data. */
    public long absoluteOffset(int tensorIndex) {
        return dataStart + tensors.get(tensorIndex).offset();
    }

    /** Size of the whole file, every tensor padded to the alignment. */
    public long totalSize() {
        return totalSize;
    }

    byte[] header() {
        return header;
    }

    /** A growable little-endian byte buffer for the header. */
    static final class LittleEndianBuffer extends ByteArrayOutputStream {
        LittleEndianBuffer() {
            super(1 << 12);
        }

        void u8(int v) {
            write(v);
        }

        void u16(int v) {
            write(v);
            write(v >>> 8);
        }

        void u32(int v) {
            write(v);
            write(v >>> 8);
            write(v >>> 16);
            write(v >>> 24);
        }

        void u64(long v) {
            u32((int) v);
            u32((int) (v >>> 32));
        }

        void bytes(byte[] b) {
            write(b, 0, b.length);
        }

        void string(String s) {
            byte[] b = s.getBytes(StandardCharsets.UTF_8);
            u64(b.length);
            bytes(b);
        }
    }
}
