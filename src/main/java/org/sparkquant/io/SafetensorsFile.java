package org.sparkquant.io;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.sparkquant.SparkQuantException;

/**
 * A safetensors file opened for positional reads. The header is validated strictly before anything is read: its
 * declared length is bounded, the JSON is well formed, every tensor has a known dtype, a shape whose byte size equals
 * its byte range, and the ranges tile the data section exactly (what the reference implementation requires). A
 * hostile header therefore ends in a {@link SparkQuantException}, never in an OOM or a hang.
 */
public final class SafetensorsFile implements AutoCloseable {
    /** The reference implementation's limit on the header size. */
    public static final long MAX_HEADER_BYTES = 100L << 20;

    private static final ObjectMapper JSON = new ObjectMapper(JsonFactory.builder()
            .enable(com.fasterxml.jackson.core.StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .streamReadConstraints(StreamReadConstraints.builder().maxNestingDepth(64).build())
            .build());

    private final RandomAccessInput input;
    private final Map<String, TensorInfo> tensors;
    private final Map<String, String> metadata;
    private final long dataStart;

    private SafetensorsFile(RandomAccessInput input, Map<String, TensorInfo> tensors, Map<String, String> metadata,
            long dataStart) {
        this.input = input;
        this.tensors = tensors;
        this.metadata = metadata;
        this.dataStart = dataStart;
    }

    public static SafetensorsFile open(Storage storage, String uri) {
        RandomAccessInput input = storage.open(uri);
        try {
            return open(input);
        } catch (RuntimeException e) {
            input.close();
            throw e;
        }
    }

    /** Takes ownership of the input. */
    public static SafetensorsFile open(RandomAccessInput input) {
        String name = input.name();
        long fileLength = input.length();
        if (fileLength < 8) {
            throw bad(name, "file is " + fileLength + " bytes, too short for a safetensors header");
        }
        byte[] lengthBytes = new byte[8];
        input.readFully(0, lengthBytes, 0, 8);
        long headerLength = ByteBuffer.wrap(lengthBytes).order(ByteOrder.LITTLE_ENDIAN).getLong();
        if (headerLength < 2 || headerLength > MAX_HEADER_BYTES) {
            throw bad(name, "header length " + Long.toUnsignedString(headerLength) + " is out of range [2, "
                    + MAX_HEADER_BYTES + "]");
        }
        if (headerLength > fileLength - 8) {
            throw bad(name, "header length " + headerLength + " exceeds the file size " + fileLength);
        }
        byte[] header = new byte[(int) headerLength];
        input.readFully(8, header, 0, header.length);
        long dataStart = 8 + headerLength;
        Parsed parsed = parseHeader(name, header, fileLength - dataStart, dataStart);
        return new SafetensorsFile(input, parsed.tensors, parsed.metadata, dataStart);
    }

    private record Parsed(Map<String, TensorInfo> tensors, Map<String, String> metadata) {}

    private static Parsed parseHeader(String name, byte[] header, long dataLength, long dataStart) {
        String text;
        try {
            text = StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(header)).toString();
        } catch (CharacterCodingException e) {
            throw bad(name, "header is not valid UTF-8");
        }
        JsonNode root;
        try (JsonParser parser = JSON.createParser(text)) {
            root = JSON.readTree(parser);
            if (parser.nextToken() != null) {
                throw bad(name, "header has trailing content after the JSON object");
            }
        } catch (IOException | RuntimeException e) {
            if (e instanceof SparkQuantException s) {
                throw s;
            }
            throw bad(name, "header is not valid JSON (" + firstLine(e.getMessage()) + ")");
        }
        if (root == null || !root.isObject()) {
            throw bad(name, "header is not a JSON object");
        }
        Map<String, String> metadata = Map.of();
        List<TensorInfo> list = new ArrayList<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = root.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> field = it.next();
            String key = field.getKey();
            JsonNode value = field.getValue();
            if (key.equals("__metadata__")) {
                metadata = parseMetadata(name, value);
            } else {
                list.add(parseTensor(name, key, value, dataLength, dataStart));
            }
        }
        // The ranges must tile [0, dataLength) exactly: sorted by start, each begins where the previous ended.
        List<TensorInfo> sorted = new ArrayList<>(list);
        sorted.sort(Comparator.comparingLong(TensorInfo::begin).thenComparingLong(TensorInfo::end));
        long expected = dataStart;
        for (TensorInfo t : sorted) {
            if (t.begin() != expected) {
                throw bad(name, "tensor '" + t.name() + "' starts at data offset " + (t.begin() - dataStart)
                        + (t.begin() < expected ? ", overlapping the previous tensor" : ", leaving a gap")
                        + " (expected " + (expected - dataStart) + ")");
            }
            expected = t.end();
        }
        if (expected != dataStart + dataLength) {
            throw bad(name, "tensors cover " + (expected - dataStart) + " of the " + dataLength
                    + " data bytes (the file has trailing or missing bytes)");
        }
        Map<String, TensorInfo> tensors = new LinkedHashMap<>();
        for (TensorInfo t : list) {
            tensors.put(t.name(), t);
        }
        return new Parsed(Collections.unmodifiableMap(tensors), metadata);
    }

    private static Map<String, String> parseMetadata(String name, JsonNode value) {
        if (!value.isObject()) {
            throw bad(name, "__metadata__ is not an object");
        }
        Map<String, String> map = new LinkedHashMap<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = value.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            if (!e.getValue().isTextual()) {
                throw bad(name, "__metadata__ value of '" + e.getKey() + "' is not a string");
            }
            map.put(e.getKey(), e.getValue().textValue());
        }
        return Collections.unmodifiableMap(map);
    }

    private static TensorInfo parseTensor(String name, String tensor, JsonNode value, long dataLength,
            long dataStart) {
        if (!value.isObject()) {
            throw bad(name, "tensor '" + tensor + "': entry is not an object");
        }
        for (Iterator<String> it = value.fieldNames(); it.hasNext(); ) {
            String field = it.next();
            if (!field.equals("dtype") && !field.equals("shape") && !field.equals("data_offsets")) {
                throw bad(name, "tensor '" + tensor + "': unknown field '" + field + "'");
            }
        }
        JsonNode dtypeNode = value.get("dtype");
        if (dtypeNode == null || !dtypeNode.isTextual()) {
            throw bad(name, "tensor '" + tensor + "': missing dtype");
        }
        DType dtype = DType.parse(dtypeNode.textValue()).orElseThrow(() -> bad(name, "tensor '" + tensor
                + "': unsupported dtype '" + dtypeNode.textValue() + "'"));
        JsonNode shapeNode = value.get("shape");
        if (shapeNode == null || !shapeNode.isArray() || shapeNode.size() > 8) {
            throw bad(name, "tensor '" + tensor + "': shape must be an array of at most 8 dimensions");
        }
        long[] shape = new long[shapeNode.size()];
        long elements = 1;
        for (int i = 0; i < shape.length; i++) {
            JsonNode d = shapeNode.get(i);
            if (!d.isIntegralNumber() || !d.canConvertToLong() || d.longValue() < 0) {
                throw bad(name, "tensor '" + tensor + "': shape " + shapeNode + " has an invalid dimension");
            }
            shape[i] = d.longValue();
            try {
                elements = Math.multiplyExact(elements, shape[i]);
            } catch (ArithmeticException e) {
                throw bad(name, "tensor '" + tensor + "': shape " + shapeNode + " overflows");
            }
        }
        JsonNode offsets = value.get("data_offsets");
        if (offsets == null || !offsets.isArray() || offsets.size() != 2) {
            throw bad(name, "tensor '" + tensor + "': data_offsets must be [begin, end]");
        }
        for (JsonNode o : offsets) {
            if (!o.isIntegralNumber() || !o.canConvertToLong() || o.longValue() < 0) {
                throw bad(name, "tensor '" + tensor + "': invalid data_offsets " + offsets);
            }
        }
        long begin = offsets.get(0).longValue();
        long end = offsets.get(1).longValue();
        if (begin > end || end > dataLength) {
            throw bad(name, "tensor '" + tensor + "': data_offsets " + offsets + " outside the data section of "
                    + dataLength + " bytes");
        }
        long bytes;
        try {
            bytes = Math.multiplyExact(elements, dtype.size());
        } catch (ArithmeticException e) {
            throw bad(name, "tensor '" + tensor + "': shape " + shapeNode + " overflows");
        }
        if (bytes != end - begin) {
            throw bad(name, "tensor '" + tensor + "': shape " + shapeNode + " of " + dtype + " needs " + bytes
                    + " bytes but data_offsets span " + (end - begin));
        }
        return new TensorInfo(tensor, dtype, shape, dataStart + begin, dataStart + end);
    }

    public String name() {
        return input.name();
    }

    public Map<String, TensorInfo> tensors() {
        return tensors;
    }

    public Map<String, String> metadata() {
        return metadata;
    }

    public long dataStart() {
        return dataStart;
    }

    public TensorInfo tensor(String tensor) {
        TensorInfo info = tensors.get(tensor);
        if (info == null) {
            throw bad(name(), "no tensor '" + tensor + "'");
        }
        return info;
    }

    /** The raw bytes of a tensor (little-endian, as stored). */
    public byte[] readRaw(String tensor) {
        TensorInfo info = tensor(tensor);
        if (info.byteSize() > Integer.MAX_VALUE - 16) {
            throw bad(name(), "tensor '" + tensor + "' is " + info.byteSize() + " bytes, too large to read whole");
        }
        byte[] bytes = new byte[(int) info.byteSize()];
        input.readFully(info.begin(), bytes, 0, bytes.length);
        return bytes;
    }

    /** Raw bytes of a byte range inside a tensor. */
    public byte[] readRaw(TensorInfo info, long offset, int length) {
        if (offset < 0 || length < 0 || offset + length > info.byteSize()) {
            throw bad(name(), "range outside tensor '" + info.name() + "'");
        }
        byte[] bytes = new byte[length];
        input.readFully(info.begin() + offset, bytes, 0, length);
        return bytes;
    }

    /** A whole floating-point tensor converted to float, row-major. */
    public float[] readFloats(String tensor) {
        TensorInfo info = tensor(tensor);
        // bound the bytes, not the elements: 2^30 doubles are 2^33 bytes, which an int cast would wrap to 0
        if (info.byteSize() > Integer.MAX_VALUE - 16) {
            throw bad(name(), "tensor '" + tensor + "' has " + info.elements() + " elements (" + info.byteSize()
                    + " bytes), too many to read whole");
        }
        return toFloats(info, readRaw(info, 0, (int) info.byteSize()));
    }

    /** Rows {@code [r0, r1)} of a 2-D floating-point tensor converted to float, row-major. */
    public float[] readRows(String tensor, long r0, long r1) {
        TensorInfo info = tensor(tensor);
        if (info.rank() != 2) {
            throw bad(name(), "tensor '" + tensor + "' is not 2-D: " + info.shapeString());
        }
        if (r0 < 0 || r1 < r0 || r1 > info.dim(0)) {
            throw bad(name(), "rows [" + r0 + ", " + r1 + ") outside tensor '" + tensor + "' " + info.shapeString());
        }
        long rowBytes = info.dim(1) * info.dtype().size();
        long bytes = (r1 - r0) * rowBytes; // at most the tensor's byte size, which the header check bounded
        if (bytes > Integer.MAX_VALUE - 16) {
            throw bad(name(), "rows [" + r0 + ", " + r1 + ") of '" + tensor + "' are too many to read at once");
        }
        return toFloats(info, readRaw(info, r0 * rowBytes, (int) bytes));
    }

    static float[] toFloats(TensorInfo info, byte[] raw) {
        ByteBuffer buf = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN);
        int n = raw.length / info.dtype().size();
        float[] out = new float[n];
        switch (info.dtype()) {
            case F32 -> buf.asFloatBuffer().get(out);
            case F16 -> {
                for (int i = 0; i < n; i++) {
                    out[i] = Half.toFloat(buf.getShort(2 * i));
                }
            }
            case BF16 -> {
                for (int i = 0; i < n; i++) {
                    out[i] = Half.bf16ToFloat(buf.getShort(2 * i));
                }
            }
            case F64 -> {
                for (int i = 0; i < n; i++) {
                    out[i] = (float) buf.getDouble(8 * i);
                }
            }
            default -> throw SparkQuantException.badInput(info.name() + ": dtype " + info.dtype()
                    + " is not a floating-point type");
        }
        return out;
    }

    @Override
    public void close() {
        input.close();
    }

    private static SparkQuantException bad(String file, String problem) {
        return SparkQuantException.badInput(file + ": " + problem);
    }

    private static String firstLine(String s) {
        return s == null ? "" : s.lines().findFirst().orElse("");
    }
}
