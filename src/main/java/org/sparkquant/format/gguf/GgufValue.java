package org.sparkquant.format.gguf;

import java.util.Arrays;
import java.util.List;
import java.util.Objects;

/**
 * One GGUF metadata value. Scalars: integer types hold a {@link Long} (UINT64 as the unsigned bit pattern),
 * FLOAT32 a {@link Float}, FLOAT64 a {@link Double}, BOOL a {@link Boolean}, STRING a {@link String}. Arrays hold
 * a primitive array of the element type (byte[] for UINT8/INT8, short[], int[], long[], float[], double[],
 * boolean[]) or a {@code List<String>} for strings. Arrays of arrays are not supported: ggml refuses them.
 */
public final class GgufValue {
    private final GgufValueType type;
    private final GgufValueType elementType;
    private final Object value;

    private GgufValue(GgufValueType type, GgufValueType elementType, Object value) {
        this.type = type;
        this.elementType = elementType;
        this.value = value;
    }

    public static GgufValue u8(int v) {
        return integer(GgufValueType.UINT8, v, 0, 0xff);
    }

    public static GgufValue i8(int v) {
        return integer(GgufValueType.INT8, v, Byte.MIN_VALUE, Byte.MAX_VALUE);
    }

    public static GgufValue u16(int v) {
        return integer(GgufValueType.UINT16, v, 0, 0xffff);
    }

    public static GgufValue i16(int v) {
        return integer(GgufValueType.INT16, v, Short.MIN_VALUE, Short.MAX_VALUE);
    }

    public static GgufValue u32(long v) {
        return integer(GgufValueType.UINT32, v, 0, 0xffffffffL);
    }

    public static GgufValue i32(int v) {
        return new GgufValue(GgufValueType.INT32, null, (long) v);
    }

    /** A UINT64 value; negative longs stand for values of 2^63 and above. */
    public static GgufValue u64(long v) {
        return new GgufValue(GgufValueType.UINT64, null, v);
    }

    public static GgufValue i64(long v) {
        return new GgufValue(GgufValueType.INT64, null, v);
    }

    public static GgufValue f32(float v) {
        return new GgufValue(GgufValueType.FLOAT32, null, v);
    }

    public static GgufValue f64(double v) {
        return new GgufValue(GgufValueType.FLOAT64, null, v);
    }

    public static GgufValue bool(boolean v) {
        return new GgufValue(GgufValueType.BOOL, null, v);
    }

    public static GgufValue string(String v) {
        return new GgufValue(GgufValueType.STRING, null, Objects.requireNonNull(v));
    }

    public static GgufValue stringArray(List<String> v) {
        for (String s : v) {
            Objects.requireNonNull(s, "null string in array");
        }
        return new GgufValue(GgufValueType.ARRAY, GgufValueType.STRING, List.copyOf(v));
    }

    public static GgufValue f32Array(float[] v) {
        return new GgufValue(GgufValueType.ARRAY, GgufValueType.FLOAT32, v.clone());
    }

    public static GgufValue i32Array(int[] v) {
        return new GgufValue(GgufValueType.ARRAY, GgufValueType.INT32, v.clone());
    }

    public static GgufValue u32Array(int[] v) {
        return new GgufValue(GgufValueType.ARRAY, GgufValueType.UINT32, v.clone());
    }

    /**
     * An array of any element type but ARRAY; {@code elements} must be the representation documented on this
     * class (it is copied).
     */
    public static GgufValue array(GgufValueType elementType, Object elements) {
        Object copy;
        switch (elementType) {
            case UINT8:
            case INT8:
                copy = ((byte[]) elements).clone();
                break;
            case UINT16:
            case INT16:
                copy = ((short[]) elements).clone();
                break;
            case UINT32:
            case INT32:
                copy = ((int[]) elements).clone();
                break;
            case UINT64:
            case INT64:
                copy = ((long[]) elements).clone();
                break;
            case FLOAT32:
                copy = ((float[]) elements).clone();
                break;
            case FLOAT64:
                copy = ((double[]) elements).clone();
                break;
            case BOOL:
                copy = ((boolean[]) elements).clone();
                break;
            case STRING:
                return stringArray(castList(elements, String.class));
            default:
                throw new IllegalArgumentException(elementType.toString());
        }
        return new GgufValue(GgufValueType.ARRAY, elementType, copy);
    }

    private static <T> List<T> castList(Object o, Class<T> cls) {
        List<?> l = (List<?>) o;
        for (Object e : l) {
            cls.cast(Objects.requireNonNull(e));
        }
        @SuppressWarnings("unchecked")
        List<T> t = (List<T>) l;
        return t;
    }

    private static GgufValue integer(GgufValueType t, long v, long min, long max) {
        if (v < min || v > max) {
            throw new IllegalArgumentException(v + " out of range for " + t);
        }
        return new GgufValue(t, null, v);
    }

    /** Package-private constructor for the reader, which has already validated the representation. */
    static GgufValue of(GgufValueType type, GgufValueType elementType, Object value) {
        return new GgufValue(type, elementType, value);
    }

    public GgufValueType type() {
        return type;
    }

    /** The element type of an array, or null for scalars. */
    public GgufValueType elementType() {
        return elementType;
    }

    /** The raw representation (see the class comment); arrays are shared, do not modify. */
    public Object value() {
        return value;
    }

    public boolean isInteger() {
        return value instanceof Long;
    }

    public long asLong() {
        if (!(value instanceof Long)) {
            throw new IllegalStateException("GGUF value of type " + type + " is not an integer");
        }
        return (Long) value;
    }

    public double asDouble() {
        if (value instanceof Number && !(value instanceof Long)) {
            return ((Number) value).doubleValue();
        }
        if (value instanceof Long) {
            return (Long) value;
        }
        throw new IllegalStateException("GGUF value of type " + type + " is not a number");
    }

    public String asString() {
        if (!(value instanceof String)) {
            throw new IllegalStateException("GGUF value of type " + type + " is not a string");
        }
        return (String) value;
    }

    public boolean asBoolean() {
        if (!(value instanceof Boolean)) {
            throw new IllegalStateException("GGUF value of type " + type + " is not a bool");
        }
        return (Boolean) value;
    }

    @SuppressWarnings("unchecked")
    public List<String> asStrings() {
        if (elementType != GgufValueType.STRING) {
            throw new IllegalStateException("GGUF value is not a string array");
        }
        return (List<String>) value;
    }

    /** Number of elements of an array value. */
    public int arrayLength() {
        if (type != GgufValueType.ARRAY) {
            throw new IllegalStateException("GGUF value of type " + type + " is not an array");
        }
        if (value instanceof List) {
            return ((List<?>) value).size();
        }
        return java.lang.reflect.Array.getLength(value);
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof GgufValue)) {
            return false;
        }
        GgufValue v = (GgufValue) o;
        return type == v.type && elementType == v.elementType && Objects.deepEquals(value, v.value);
    }

    @Override
    public int hashCode() {
        return Objects.hash(type, elementType, Arrays.deepHashCode(new Object[] {value}));
    }

    @Override
    public String toString() {
        if (type != GgufValueType.ARRAY) {
            return type + ":" + value;
        }
        return "ARRAY<" + elementType + ">[" + arrayLength() + "]";
    }
}
